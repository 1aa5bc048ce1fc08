"""The micro run's world plants every kind of word, records it, and the later stages use it."""

from __future__ import annotations

import numpy as np
import pytest

from lfp_engine.run.manifest import read_manifest
from lfp_engine.run.store import RunStore
from lfp_engine.worlds.synthetic_reviews import CONTESTED, KINDS, REWARD_ONLY

pytestmark = pytest.mark.slow


def test_micro_world_records_the_planted_kinds(micro_run):
    store = RunStore(micro_run)
    truth = store.read("world_lexicon")
    config = read_manifest(store)["world"].settings["synthetic"]
    assert {"kind", "corpus_value"} <= set(truth.columns)
    counts = truth["kind"].value_counts()
    assert set(counts.index) == set(KINDS)
    assert counts[CONTESTED] == config["n_contested_words"] and counts[REWARD_ONLY] == config["n_reward_only_words"]
    for kind in (CONTESTED, REWARD_ONLY):
        assert truth.loc[truth["kind"] == kind, "heldout"].nunique() == 2  # some held out, some not
    contested = truth[(truth["kind"] == CONTESTED) & (truth["corpus_count"] > 0)]
    assert (np.sign(contested["corpus_value"]) == -np.sign(contested["lexicon_value"])).all()
    # the probe's triples substitute reward-only names too, on both sides of the word split
    triples = store.read("triples")
    names = triples[triples["role"] == "name"]
    assert set(names["split"]) == {"train", "test"}
    only = set(truth.loc[truth["kind"] == REWARD_ONLY, "word"])
    assert set(names["word_positive"]) | set(names["word_negative"]) <= only


def test_micro_run_counts_behaviour_and_reports_divergence_against_the_planted_truth(micro_run):
    store = RunStore(micro_run)
    truth = store.read("world_lexicon")
    behaviour = store.read("behaviour_words")
    assert sorted(behaviour["word"]) == sorted(truth["word"]) and behaviour["q_value"].between(0, 1).all()
    assert (behaviour["base_share"] <= 1).all() and (behaviour["ci_low"] <= behaviour["ci_high"]).all()
    kinds = store.read("behaviour_kinds")
    assert set(kinds["kind"]) == set(KINDS) and (kinds["n_completions"] == behaviour["n_completions"].iloc[0]).all()
    report = store.read("lfp_divergence", order_by="rank")
    values = store.read("word_values")
    assert sorted(report["word"]) == sorted(values.loc[values["model"] == "tuned", "word"])
    assert report["rank"].tolist() == list(range(1, len(report) + 1))
    assert (report["divergent"] == (report["q_opposite"] < 0.05)).all()
    if report["divergent"].any():  # ranked by z: every flagged word before every other
        assert report.loc[report["divergent"], "z_opposite"].max() <= report.loc[~report["divergent"], "z_opposite"].min()
    assert (report["policy_divergent"] == (report["policy_q_opposite"] < 0.05)).all()
    difference = values[values["model"] == "tuned_minus_base"].set_index("word")["value"]
    np.testing.assert_allclose(report.set_index("word").loc[difference.index, "difference"], difference)
    recovery = store.read("divergence_recovery").set_index(["lens", "kind"])
    for lens, flag in (("representation", "divergent"), ("policy", "policy_divergent")):
        for kind in KINDS:
            planted = truth[truth["kind"] == kind]
            row = recovery.loc[(lens, kind)]
            assert row["n_words"] == len(planted)
            assert row["n_opposite"] == report["word"].isin(planted["word"]).__and__(report[flag]).sum()
        assert recovery.loc[(lens, "all"), "n_opposite"] == report[flag].sum()
