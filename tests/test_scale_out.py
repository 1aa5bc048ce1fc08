"""Two processes on CPUs (gloo), launched as users launch them (`lfp run --launcher torchrun|accelerate`),
against the single-process micro run.

- From `activations` on, a 2-process run gives the same activation files, SAEs equal within rounding
  (data-parallel training averages gradients), and the same downstream tables; one of its
  processes is killed mid-stage, and the run resumes as a single-process one does.
- Dictionaries placed by layer (`distributed.sae=layers`) are the single process's, bit for bit.
- `rlhf` through TRL under accelerate: DPO on 2 processes with half the per-process batch equals
  DPO on one (the same global batches); RLOO runs data-parallel on 2.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from lfp_engine.run.manifest import read_config, read_manifest
from lfp_engine.run.store import RunStore
from precompute.stages import STAGES

from .conftest import ROOT, lfp_command, run_lfp

pytestmark = pytest.mark.slow

SHARED = ["activations", "sae", "features", "contrastive", "probe", "explain", "validate"]
"""The stages the 2-process run makes; world, rlhf and divergence are the single-process run's."""
SKIPPED_TABLES = {"run_manifest", "run_config"}
LAUNCH = ["--launcher", "torchrun", "--nproc", "2"]
QUICK_EVALUATION = ["--set", "evaluation.n_prompts=16", "--set", "evaluation.batch_size=8"]
"""The tuned model's evaluation cut to two batches (one per process), for the rlhf checks."""


def tables(run: Path) -> dict[str, pd.DataFrame]:
    store = RunStore(run)
    return {name: store.read(name) for name in sorted(store.tables() - SKIPPED_TABLES)}


def assert_same_table(name: str, ours: pd.DataFrame, theirs: pd.DataFrame, rtol: float) -> None:
    """Same rows and columns; every non-float value equal, floats (and float lists) within `rtol`."""
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs), name
    for column in ours.columns:
        if column == "train_seconds":
            continue
        a, b = ours[column], theirs[column]
        if pd.api.types.is_float_dtype(a):
            np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=rtol, atol=1e-6,
                                       err_msg=f"{name}.{column}")
        elif len(a) and isinstance(a.iloc[0], (list, np.ndarray)) and np.asarray(a.iloc[0]).dtype.kind == "f":
            for x, y in zip(a, b):
                np.testing.assert_allclose(np.asarray(x, float), np.asarray(y, float), rtol=rtol, atol=1e-6,
                                           err_msg=f"{name}.{column}")
        else:
            assert a.astype(str).tolist() == b.astype(str).tolist(), f"{name}.{column}"


def up_to_divergence(micro_run: Path, target: Path) -> Path:
    """A copy of the micro run as it stood after `divergence`: the later stages not run yet."""
    shutil.copytree(micro_run, target)
    (target / "lfp.log").unlink()  # its log is the single-process run's story
    marks = ", ".join("?" * len(SHARED))
    RunStore(target).write({}, [(f"DELETE FROM run_manifest WHERE stage IN ({marks})", SHARED)])
    return target


def process_of_rank(launcher_pid: int, rank: int) -> int | None:
    """The pid of the launcher's worker with RANK=`rank` (read from /proc), None while not started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if parent == launcher_pid and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def kill_rank_during(run: Path, stage: str, rank: int) -> dict[str, str]:
    """Start the 2-process run, kill process `rank` once `stage` is running; the statuses after."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    launcher = subprocess.Popen(lfp_command("run", "--out", str(run), *LAUNCH), cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    marker = f"stage {stage:<12} running"
    while not ((run / "lfp.log").exists() and marker in (run / "lfp.log").read_text()):
        assert launcher.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    victim = process_of_rank(launcher.pid, rank)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    assert launcher.wait(timeout=120) != 0  # torchrun stops the other process and fails
    return {name: r.status for name, r in read_manifest(RunStore(run)).items()}


@pytest.fixture(scope="module")
def two_processes(micro_run, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The micro run's later stages made by 2 processes, process 1 killed during `probe` and the run
    resumed; the statuses right after the kill."""
    run = up_to_divergence(micro_run, tmp_path_factory.mktemp("scale") / "two")
    after_kill = kill_rank_during(run, "probe", rank=1)
    run_lfp("run", "--out", str(run), *LAUNCH)
    return run, after_kill


def test_a_killed_process_leaves_the_run_resumable(two_processes):
    run, after_kill = two_processes
    assert {after_kill[s] for s in ("activations", "sae", "features", "contrastive")} == {"done"}
    assert after_kill["probe"] in ("running", "failed") and "explain" not in after_kill
    assert {r.status for r in read_manifest(RunStore(run)).values()} == {"done"}
    assert not [p for p in run.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


def test_two_processes_capture_the_same_activation_files(two_processes, micro_run):
    run, _ = two_processes
    files = sorted(p.relative_to(micro_run) for p in micro_run.rglob("activations/*/*") if p.is_file())
    assert len(files) >= 10
    for rel in files:
        assert (run / rel).read_bytes() == (micro_run / rel).read_bytes(), rel


def test_data_parallel_saes_equal_one_process_within_rounding(two_processes, micro_run):
    run, _ = two_processes
    files = sorted(micro_run.rglob("saes/*/sae_weights.safetensors"))
    assert len(files) == 8
    for path in files:
        ours, theirs = load_file(run / path.relative_to(micro_run)), load_file(path)
        for name, value in theirs.items():
            np.testing.assert_allclose(ours[name].numpy(), value.numpy(), rtol=1e-4, atol=1e-6, err_msg=str(path))


def test_the_downstream_tables_are_the_same(two_processes, micro_run):
    run, _ = two_processes
    ours, theirs = tables(run), tables(micro_run)
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert_same_table(name, ours[name], theirs[name], rtol=1e-3)
    for stage in STAGES:
        assert read_manifest(RunStore(run))[stage.name].fingerprint == read_manifest(RunStore(micro_run))[
            stage.name].fingerprint


def test_dictionaries_placed_by_layer_are_one_process_s_bit_for_bit(micro_run, tmp_path):
    run = tmp_path / "layers"
    shutil.copytree(micro_run, run)
    run_lfp("run", "--out", str(run), "--stages", "sae", "--force", "sae", "--set", "distributed.sae=layers", *LAUNCH)
    files = list(micro_run.rglob("saes/*/*"))
    assert len(files) == 16
    for path in files:
        assert (run / path.relative_to(micro_run)).read_bytes() == path.read_bytes(), path
    # The metrics' float64 sums over the held-out rows reduce in another order with one thread per
    # process (torchrun's default) than with two: equal to the last few bits.
    for name in ("sae_metrics", "sae_training_log"):
        assert_same_table(name, RunStore(run).read(name), RunStore(micro_run).read(name), rtol=1e-12)


def test_dpo_through_accelerate_on_two_processes_equals_one(micro_run, tmp_path):
    runs = {}
    for name, launch in (("one", []), ("two", ["--launcher", "accelerate", "--nproc", "2"])):
        runs[name] = tmp_path / name
        shutil.copytree(micro_run, runs[name])
        run_lfp("run", "--out", str(runs[name]), "--stages", "rlhf", "--set", "task=dpo", *QUICK_EVALUATION, *launch)
    assert "DPOTrainer trains on 2 process(es)" in (runs["two"] / "lfp.log").read_text()
    assert "4 example(s) per process" in (runs["two"] / "lfp.log").read_text()  # dpo.batch_size 8 over 2
    one, two = (RunStore(r).read("rlhf_training_log") for r in (runs["one"], runs["two"]))
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)
    weights = {n: load_file(r / "models" / "tuned" / "model.safetensors") for n, r in runs.items()}
    base = load_file(micro_run / "world" / "base" / "model.safetensors")
    moved = max((weights["one"][k] - base[k]).abs().max().item() for k in base)
    apart = max((weights["two"][k] - weights["one"][k]).abs().max().item() for k in base)
    assert apart < 0.1 * moved, (apart, moved)


def test_rloo_runs_data_parallel_on_two_processes(micro_run, tmp_path):
    run = tmp_path / "rloo"
    shutil.copytree(micro_run, run)
    run_lfp("run", "--out", str(run), "--stages", "rlhf", "--force", "rlhf", *QUICK_EVALUATION, *LAUNCH)
    text = (run / "lfp.log").read_text()
    assert "RLOOTrainer trains on 2 process(es) (accelerate: DistributedType.MULTI_CPU), 4 example(s)" in text
    manifest = read_manifest(RunStore(run))
    assert manifest["rlhf"].status == "done" and manifest["rlhf"].outputs["method"] == "rloo"
    steps = read_config(RunStore(run))[1]["rlhf"]["steps"]
    assert RunStore(run).read("rlhf_training_log")["step"].max() == steps
