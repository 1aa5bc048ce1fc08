"""The hub world's code path, offline: local checkpoints and dataset files in place of hub ids."""

from __future__ import annotations

import pandas as pd
import pytest

from lfp_engine.run.manifest import read_manifest
from lfp_engine.run.store import RunStore
from lfp_engine.worlds.hub_corpora import split_dialogue

from .conftest import run_lfp

pytestmark = pytest.mark.slow


def test_bring_your_own_base_and_tuned_checkpoints(micro_run, tmp_path):
    corpus = pd.read_parquet(micro_run / "world" / "corpus.parquet")[["text"]]
    corpus.to_parquet(tmp_path / "reviews.parquet")
    out = tmp_path / "byo"
    run_lfp("run", "--preset", "micro", "--out", str(out), "--stages", "world,rlhf,divergence",
            "--set", "world.kind=hub", "--set", f"world.base_model={micro_run / 'world' / 'base'}",
            "--set", f"world.corpus={tmp_path / 'reviews.parquet'}",
            "--set", f"tuned_model={micro_run / 'models' / 'tuned'}")
    manifest = read_manifest(RunStore(out))
    assert manifest["rlhf"].outputs["method"] == "given"
    assert not (out / "models" / "tuned").exists()  # nothing trained, nothing copied
    ours = RunStore(out).read("layer_divergence", order_by="layer")
    theirs = RunStore(micro_run).read("layer_divergence", order_by="layer")
    assert ours["divergence"].tolist() == theirs["divergence"].tolist()
    prompts = pd.read_parquet(out / "world" / "prompts.parquet")
    assert set(prompts["purpose"]) == {"rl", "eval"}


def test_hh_style_dialogues_are_split_and_tuned_with_dpo(micro_run, tmp_path):
    rows = []
    for i in range(60):
        prompt = f"\n\nHuman: tell me about film {i}\n\nAssistant:"
        rows.append({"chosen": prompt + " It was a good film.", "rejected": prompt + " Go away."})
    pd.DataFrame(rows).to_json(tmp_path / "hh.jsonl", orient="records", lines=True)
    out = tmp_path / "hh"
    run_lfp("run", "--preset", "micro", "--out", str(out), "--stages", "world,rlhf",
            "--set", "task=hh", "--set", "world.kind=hub",
            "--set", f"world.base_model={micro_run / 'world' / 'base'}",
            "--set", f"world.preference_dataset={tmp_path / 'hh.jsonl'}")
    pairs = pd.read_parquet(out / "world" / "preferences.parquet")
    assert pairs["prompt"].str.endswith("\n\nAssistant:").all()
    assert set(pairs["chosen"]) == {" It was a good film."}
    rewards = RunStore(out).read("rlhf_rewards")
    assert list(rewards["metric"].unique()) == ["preference_margin"]  # HH has no reward function


def test_split_dialogue_falls_back_to_the_common_prefix():
    assert split_dialogue("\n\nHuman: hi\n\nAssistant: yes", "\n\nHuman: hi\n\nAssistant: no") == (
        "\n\nHuman: hi\n\nAssistant:", " yes", " no")
    assert split_dialogue("Q: a? A: good", "Q: a? A: bad") == ("Q: a? A: ", "good", "bad")
