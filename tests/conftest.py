"""Shared fixtures: small random models of several architectures, and one micro run per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def lfp_command(*args: str) -> list[str]:
    """Run the CLI as a subprocess of this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "precompute.cli", *args]


def run_lfp(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    result = subprocess.run(lfp_command(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"lfp {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory) -> Path:
    """A finished micro run (every stage), made once per test session in a subprocess."""
    out = tmp_path_factory.mktemp("runs") / "micro"
    run_lfp("run", "--preset", "micro", "--out", str(out))
    return out


def tiny_neox(layers: int = 3, hidden: int = 16, vocab: int = 64, seed: int = 0):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    return GPTNeoXForCausalLM(GPTNeoXConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=4 * hidden, max_position_embeddings=64)).eval()


@pytest.fixture(scope="session")
def app_runs(micro_run, tmp_path_factory) -> dict[str, Path]:
    """Run folders for the dashboard, side by side in one runs/ folder: the real micro run as the
    pipeline left it; copies with the probe and explain tables of tests/contract_fixture.py (FIXTURE
    data: a VADER-task regression probe, and a preference-task logistic probe); a run with only its
    world stage; one cut back to its `features` stage; a store that is not a database."""
    from lfp_engine.run.store import RunStore

    from .contract_fixture import add_contract_tables, copy_run

    root = tmp_path_factory.mktemp("app") / "runs"
    runs = {"micro": copy_run(micro_run, root / "micro")}
    runs["fixture"] = add_contract_tables(copy_run(micro_run, root / "fixture"))
    runs["dpo_fixture"] = add_contract_tables(copy_run(micro_run, root / "dpo-fixture"), probe="logistic",
                                              explain=False)
    bare = RunStore(copy_run(micro_run, root / "bare"))
    bare.drop(sorted(bare.tables() - {"run_config", "run_manifest", "world_lexicon"}))
    bare.write({}, [("DELETE FROM run_manifest WHERE stage <> ?", ["world"])])
    runs["bare"] = bare.paths.root
    runs["sae_only"] = strip_to_features(copy_run(micro_run, root / "sae-only"))
    (root / "corrupted").mkdir()
    (root / "corrupted" / "lfp.duckdb").write_bytes(b"not a database, a half-copied file" * 100)
    runs["corrupted"] = root / "corrupted"
    return runs


@pytest.fixture
def open_app(monkeypatch):
    """Start the dashboard as `streamlit run app/main.py -- --run RUN` would, on a page (with query
    params), under Streamlit's AppTest; no exception allowed."""
    from streamlit.testing.v1 import AppTest

    from .apptest import MAIN

    def start(run: Path, page: str | None = None, query: dict[str, str] | None = None) -> AppTest:
        monkeypatch.setattr(sys, "argv", [str(MAIN), "--run", str(run), "--runs", str(run.parent)])
        at = AppTest.from_file(str(MAIN), default_timeout=120).run()
        if page is not None:
            at.switch_page(page)
        if query:
            at.query_params.update(query)
        if page is not None or query:
            at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return start


@pytest.fixture(scope="session")
def dpo_run(micro_run, tmp_path_factory) -> Path:
    """The micro run tuned with DPO on the world's preference pairs instead (every stage from `rlhf` on)."""
    import shutil

    out = tmp_path_factory.mktemp("dpo") / "dpo"
    shutil.copytree(micro_run, out)
    run_lfp("run", "--out", str(out), "--set", "task=dpo")
    return out


@pytest.fixture(scope="session")
def live_app_run(micro_run, tmp_path_factory) -> Path:
    """A whole copy of the micro run (models, SAEs, probes and store; not the activations) for the
    dashboard's live pages, which load the models and whose quiz writes to the store."""
    import shutil

    target = tmp_path_factory.mktemp("live") / "runs" / "micro"
    shutil.copytree(micro_run, target, ignore=lambda folder, names: [n for n in names if n in ("activations", ".work")])
    return target


LATER_STAGES = ("contrastive", "policy", "probe", "word_report", "explain", "validate")
LATER_TABLES = ("triples", "contrastive_words", "policy_triples", "policy_values", "policy_metrics", "probe_metrics", "probe_predictions", "probe_weights", "probe_pca",
                "lexicon_comparison", "word_values", "lfp_divergence", "divergence_recovery", "feature_explanations",
                "explanation_summary", "annotation_questions", "annotations", "feature_frequency", "ablation_results",
                "ablation_draws", "ablation_samples")


def strip_to_features(run: Path) -> Path:
    """The run as it stood after its `features` stage: later stages' tables, manifest rows and the
    explanation columns of `features` gone, as in a run stopped there (or made before they existed)."""
    from lfp_engine.run.store import RunStore

    store = RunStore(run)
    store.drop(sorted(store.tables() & set(LATER_TABLES)))
    marks = ", ".join("?" * len(LATER_STAGES))
    store.write({}, [(f"DELETE FROM run_manifest WHERE stage IN ({marks})", list(LATER_STAGES)),
                     ("UPDATE features SET explanation = NULL, explanation_source = NULL, relevance = NULL, "
                      "simulation_score = NULL, detection_score = NULL", [])])
    return run
