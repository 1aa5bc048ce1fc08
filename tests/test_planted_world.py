"""The micro run's world plants every kind of word, records it, and the later stages use it."""

from __future__ import annotations

import numpy as np
import pytest

from lfp_engine.manifest import read_manifest
from lfp_engine.store import RunStore
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
