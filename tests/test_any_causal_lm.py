"""Any causal LM: every stage of the micro pipeline on small local checkpoints of five architectures
other than the synthetic world's GPT-NeoX, through the hub world with local files (a model folder
and a review file, no network): four tuned by RLOO through TRL, the fifth with a tuned checkpoint
brought along (the bring-your-own path: `rlhf` only evaluates it).

The checkpoints have random weights at toy sizes and reuse the micro world's tokenizer; their
results mean nothing. What is checked is that the engine finds each architecture's layers, MLP
blocks and final norm from the model itself (`lfp_engine/models/architecture.py`, no table per
architecture) and that every stage, TRL's RLOO included, runs on them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from lfp_engine.run.manifest import read_manifest
from lfp_engine.run.store import RunStore
from lfp_engine.sae.activations import ActivationSet
from precompute.stages import STAGES

from .conftest import run_lfp

pytestmark = pytest.mark.slow

SHAPE = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 64,
         "max_position_embeddings": 64, "initializer_range": 0.2}
"""Toy sizes in the names most configs share; `initializer_range` 0.2 gives MLP outputs of order one,
so SAEs with the micro preset's L1 coefficient do not die at once on a random model."""

ARCHITECTURES = {
    "gpt2": ({}, "transformer.h.{}.mlp"),
    "gpt_neo": ({"attention_types": [[["global", "local"], 1], [["global"], 1]], "window_size": 16},
                "transformer.h.{}.mlp"),
    "llama": ({"num_key_value_heads": 1}, "model.layers.{}.mlp"),
    "gemma2": ({"num_key_value_heads": 1, "head_dim": 16, "sliding_window": 16}, "model.layers.{}.mlp"),
    "qwen2": ({"num_key_value_heads": 1}, "model.layers.{}.mlp"),
}
"""model_type -> (what its config needs beyond SHAPE, the module path of a layer's MLP block)."""
BROUGHT = "qwen2"
"""The architecture run with a tuned checkpoint brought along (the others are tuned by RLOO here)."""

FAST = ["world.n_rl_prompts=32", "world.n_eval_prompts=8", "rlhf.steps=2", "rlhf.generation_batch_size=8",
        "rlhf.mini_batch_size=4", "evaluation.n_prompts=8", "evaluation.batch_size=8",
        "activations.n_train_tokens=1500", "activations.n_eval_tokens=400", "sae.n_train_examples=640",
        "contrastive.n_triples=60", "probe.n_bootstrap=20", "probe.n_generation_prompts=8", "validate.n_prompts=8",
        "validate.n_random_draws=1", "explain.n_windows=10"]
"""The micro preset cut to what exercises every code path in seconds."""


def build_checkpoint(model_type: str, folder: Path, tokenizer_from: Path, seed: int = 0, noise: float = 0.0) -> Path:
    """A randomly initialised `model_type` causal LM with the micro world's tokenizer, saved to `folder`;
    `noise` adds Gaussian noise of that size to every weight (a stand-in for a tuned model)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    extra, _ = ARCHITECTURES[model_type]
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                  **SHAPE, **extra)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    if noise:
        with torch.no_grad():
            for param in model.parameters():
                param.add_(noise * torch.randn_like(param))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reviews(micro_run, tmp_path_factory) -> Path:
    """The micro world's reviews as a plain review file, as a user would bring one."""
    path = tmp_path_factory.mktemp("reviews") / "reviews.parquet"
    pd.read_parquet(micro_run / "world" / "corpus.parquet")[["text"]].to_parquet(path)
    return path


def run_hub_world(out: Path, base: Path, reviews: Path, *extra: str) -> None:
    settings = [f"world.base_model={base}", f"world.corpus={reviews}", *FAST, *extra]
    run_lfp("run", "--preset", "micro", "--out", str(out), "--set", "world.kind=hub",
            *(a for s in settings for a in ("--set", s)))


def check_every_stage(out: Path, mlp_path: str) -> None:
    """Every stage done; the activations and SAEs name the architecture's own MLP modules; the tables
    of the later stages hold rows."""
    manifest = read_manifest(RunStore(out))
    assert {stage.name: manifest[stage.name].status for stage in STAGES} == {s.name: "done" for s in STAGES}
    train = ActivationSet(out / "activations" / "train")
    assert {train.hook_name(layer) for layer in train.layers} == {mlp_path.format(layer) for layer in train.layers}
    store = RunStore(out)
    metrics = store.read("sae_metrics")
    assert len(metrics) == 2 * 2 * len(train.layers) and metrics["variance_explained"].notna().all()
    assert (metrics["l0"] > 0).all(), "dead SAEs: the later stages would have nothing to read"
    assert len(store.read("features")) == int(metrics["dict_size"].sum())
    assert "sae" in set(store.read("probe_metrics")["variant"])
    assert set(store.read("ablation_results")["condition"]) == {"none", "relevant", "random"}


@pytest.mark.parametrize("model_type", [m for m in ARCHITECTURES if m != BROUGHT])
def test_every_stage_runs_on_a_local_checkpoint(model_type, micro_run, reviews, tmp_path):
    base = build_checkpoint(model_type, tmp_path / model_type, micro_run / "world" / "base")
    out = tmp_path / "run"
    run_hub_world(out, base, reviews)
    check_every_stage(out, ARCHITECTURES[model_type][1])
    assert read_manifest(RunStore(out))["rlhf"].outputs["method"] == "rloo"


def test_a_tuned_checkpoint_brought_along_is_evaluated_not_trained(micro_run, reviews, tmp_path):
    base = build_checkpoint(BROUGHT, tmp_path / "base", micro_run / "world" / "base")
    tuned = build_checkpoint(BROUGHT, tmp_path / "tuned", micro_run / "world" / "base", noise=0.02)
    out = tmp_path / "run"
    run_hub_world(out, base, reviews, f"tuned_model={tuned}")
    check_every_stage(out, ARCHITECTURES[BROUGHT][1])
    manifest = read_manifest(RunStore(out))
    assert manifest["rlhf"].outputs["method"] == "given" and manifest["rlhf"].outputs["tuned_model"] == str(tuned)
    assert not (out / "models" / "tuned").exists()  # nothing trained, nothing copied
    assert ActivationSet(out / "activations" / "train").info.model == str(tuned)
    assert (RunStore(out).read("layer_divergence")["divergence"] > 0).all()
