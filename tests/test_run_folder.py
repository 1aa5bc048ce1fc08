"""The run folder is made, locked and logged to once, before anything is written (`lfp_engine.run.folder`):
a 2-process run into a folder that does not exist yet, a second writer refused while a first holds
the folder, a killed writer that leaves no stale lock, and a hub preset that cannot reach the hub
leaves no folder behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lfp_engine.run.folder import check_free, open_run
from lfp_engine.run.manifest import read_manifest
from lfp_engine.run.errors import RunFolderError
from lfp_engine.run.store import RunPaths, RunStore

from .conftest import ROOT, lfp_command, run_lfp
from .test_cli import folder_digest

pytestmark = pytest.mark.slow


def refusal(folder: Path, pid: int) -> str:
    return f"lfp: error: run folder {folder} is in use by another lfp run (pid {pid})"


def test_a_fresh_two_process_run_makes_its_folder_once(tmp_path):
    out = tmp_path / "runs" / "new"
    result = run_lfp("run", "--preset", "micro", "--out", str(out), "--stages", "world",
                     "--launcher", "torchrun", "--nproc", "2")
    assert "FileNotFoundError" not in result.stderr
    assert read_manifest(RunStore(out))["world"].status == "done"
    log = (out / "lfp.log").read_text()
    assert log.count("held by process") == 1 and "stage world        done" in log


def test_a_second_writer_is_refused_and_touches_nothing(tmp_path):
    paths = RunPaths(tmp_path / "run")
    with open_run(paths):
        before = folder_digest(paths.root)
        assert set(before) == {"lfp.lock", "lfp.log"}
        with pytest.raises(RunFolderError, match=f"in use by another lfp run \\(pid {os.getpid()}\\)"):
            check_free(paths)
        for launch in ([], ["--launcher", "torchrun", "--nproc", "2"]):
            second = run_lfp("run", "--preset", "micro", "--out", str(paths.root), *launch, check=False)
            assert second.returncode == 2
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(refusal(paths.root, os.getpid())), second.stderr
        assert folder_digest(paths.root) == before
    check_free(paths)  # released with the block


def test_a_killed_writer_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    first = subprocess.Popen(lfp_command("run", "--preset", "micro", "--out", str(out)), cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not ((out / "lfp.log").exists() and "stage world        running" in (out / "lfp.log").read_text()):
        assert first.poll() is None and time.monotonic() < deadline, "the first run ended before it could be killed"
        time.sleep(0.05)
    second = run_lfp("run", "--out", str(out), "--stages", "world", check=False)
    assert second.returncode == 2 and refusal(out.resolve(), first.pid) in second.stderr
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    assert (out / "lfp.lock").read_text().strip() == str(first.pid)  # the file still names it; the lock is gone
    later = run_lfp("run", "--out", str(out), "--stages", "world")
    assert "in use" not in later.stderr
    assert read_manifest(RunStore(out))["world"].status == "done"


def test_a_hub_preset_without_the_hub_leaves_no_folder(tmp_path):
    out = tmp_path / "hub"
    (tmp_path / "hf").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(lfp_command("run", "--preset", "pythia-70m", "--out", str(out)), cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lfp: error: offline: use --preset tiny or a local path"), \
        result.stderr
    assert not out.exists()
