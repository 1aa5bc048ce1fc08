"""End to end on the micro world: every stage, re-runs skip, changes redo downstream, DPO offline,
and a run killed mid-stage resumes to the same results as an uninterrupted one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lfp_engine.run.manifest import read_manifest
from lfp_engine.run.store import RunStore

from .conftest import ROOT, lfp_command, run_lfp

pytestmark = pytest.mark.slow

FOUNDATION = ["world", "rlhf", "divergence"]


def statuses(out: Path) -> dict[str, str]:
    return {name: r.status for name, r in read_manifest(RunStore(out)).items()}


def outcome_lines(result) -> dict[str, str]:
    """The stage -> done/skipped summary the CLI logs at the end of a run."""
    found = {}
    for line in result.stderr.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] == "lfp:" and parts[2] in FOUNDATION and parts[3] in ("done", "skipped"):
            found[parts[2]] = parts[3]
    return found


def test_micro_run_fills_the_store(micro_run):
    store = RunStore(micro_run)
    assert all(statuses(micro_run)[s] == "done" for s in FOUNDATION)
    assert {"run_manifest", "run_config", "world_lexicon", "rlhf_rewards", "rlhf_samples", "rlhf_training_log",
            "layer_divergence"} <= store.tables()
    rewards = store.read("rlhf_rewards")
    assert set(rewards["model"]) == {"base", "tuned"} and (rewards["metric"] == "vader_reward").all()
    assert rewards["p_value"].between(0, 1).all()
    divergence = store.read("layer_divergence", order_by="layer")
    assert divergence["chosen"].sum() == 2 and (divergence["divergence"] > 0).all()
    manifest = read_manifest(store)
    assert manifest["divergence"].outputs["layers"] == sorted(divergence.loc[divergence.chosen, "layer"].tolist())
    assert (micro_run / "models" / "tuned" / "model.safetensors").exists()
    assert (micro_run / "world" / "base" / "tokenizer.json").exists()
    assert manifest["world"].versions["torch"].startswith("2.13")


def test_status_prints_the_manifest(micro_run):
    result = run_lfp("status", str(micro_run))
    assert "preset micro" in result.stdout and "rlhf" in result.stdout and "kl_to_base" in result.stdout


def test_rerun_skips_and_changes_redo_only_downstream(micro_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(micro_run, out)
    assert outcome_lines(run_lfp("run", "--out", str(out))) == dict.fromkeys(FOUNDATION, "skipped")
    changed = run_lfp("run", "--out", str(out), "--set", "divergence.top_k=1")
    assert outcome_lines(changed) == {"world": "skipped", "rlhf": "skipped", "divergence": "done"}
    assert RunStore(out).read("layer_divergence")["chosen"].sum() == 1


def test_dpo_runs_offline_on_the_synthetic_world(micro_run, dpo_run):
    out = dpo_run
    before, after = read_manifest(RunStore(micro_run)), read_manifest(RunStore(out))
    assert after["world"].finished_at == before["world"].finished_at  # the world was reused, not redone
    assert after["rlhf"].fingerprint != before["rlhf"].fingerprint
    rewards = RunStore(out).read("rlhf_rewards")
    assert set(rewards["metric"]) == {"vader_reward", "preference_margin"}
    assert read_manifest(RunStore(out))["rlhf"].outputs["method"] == "dpo"


def _tables(out: Path) -> dict:
    store = RunStore(out)
    return {t: store.read(t) for t in ("rlhf_rewards", "rlhf_samples", "layer_divergence", "world_lexicon")}


def test_a_killed_run_resumes_to_the_same_results(tmp_path):
    settings = ["--preset", "micro", "--set", "rlhf.steps=40"]
    reference = tmp_path / "reference"
    run_lfp("run", *settings, "--out", str(reference))

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    proc = subprocess.Popen(lfp_command("run", *settings, "--out", str(out)), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log = out / "lfp.log"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if log.exists() and "stage rlhf         running" in log.read_text():
            break
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    time.sleep(1.5)  # into RL training
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    after_kill = statuses(out)
    assert after_kill["world"] == "done" and after_kill.get("rlhf") == "running"

    resumed = run_lfp("run", "--out", str(out))
    assert outcome_lines(resumed) == {"world": "skipped", "rlhf": "done", "divergence": "done"}
    assert all(s == "done" for s in statuses(out).values())
    for name, frame in _tables(reference).items():
        assert frame.equals(_tables(out)[name]), f"table {name} differs after resume"
    assert (out / "models/tuned/model.safetensors").read_bytes() == (reference / "models/tuned/model.safetensors").read_bytes()
    assert not [p for p in out.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]
