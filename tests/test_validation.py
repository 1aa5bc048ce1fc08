"""Unit tests of the validation statistics: which features count as relevant, the random
control, and the firing-rate comparison against scipy computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lfp_engine.sae.keys import FeatureKey
from lfp_engine.validation.ablation import random_intervention, relevant_features
from lfp_engine.validation.frequency import FiringCounter, feature_frequency


def test_relevant_features_come_from_the_probes_dictionaries_only():
    explanations = pd.DataFrame({
        "layer": [3, 3, 3, 4, 4], "dict_size": [128, 256, 128, 128, 128], "feature": [58, 231, 7, 81, 9],
        "relevance": pd.array([True, True, None, True, False], dtype="boolean")})
    assert relevant_features(explanations, [(3, 128), (4, 128)]) == {(3, 128): [58], (4, 128): [81]}
    assert relevant_features(explanations, [(3, 256)]) == {(3, 256): [231]}


def test_the_random_control_ablates_as_many_other_features_per_dictionary():
    relevant = {(3, 128): [1, 2, 3], (4, 128): [5]}
    for seed in range(20):
        drawn = random_intervention(relevant, {(3, 128): 128, (4, 128): 128}, np.random.default_rng(seed)).ablate
        assert {k: len(v) for k, v in drawn.items()} == {k: len(v) for k, v in relevant.items()}
        assert all(not set(drawn[k]) & set(relevant[k]) and all(0 <= f < 128 for f in drawn[k]) for k in drawn)


def test_firing_rates_and_their_test_match_a_direct_computation():
    rng = np.random.default_rng(0)
    codes = {(3, 8): np.maximum(rng.normal(size=(500, 8)), 0) * (rng.random((500, 8)) < 0.3)}
    strong = rng.random(500) < 0.4
    counter = FiringCounter()
    for part in np.array_split(np.arange(500), 3):  # chunk by chunk, as the stage streams
        counter.add({k: z[part] for k, z in codes.items()}, strong[part])
    rates = counter.rates()
    expected = (codes[(3, 8)][strong] > 0).mean(axis=0)
    assert rates["firing_rate"].to_numpy() == pytest.approx(expected)

    table = feature_frequency(rates, {FeatureKey("tuned", 3, 8, 0), FeatureKey("tuned", 3, 8, 5)}, 3.0,
                              counter.n_strong).set_index("group")
    assert table.loc["relevant", "firing_rate"] == pytest.approx(expected[[0, 5]].mean())
    assert table.loc["other", "firing_rate"] == pytest.approx(np.delete(expected, [0, 5]).mean())
    reference = stats.mannwhitneyu(expected[[0, 5]], np.delete(expected, [0, 5]), alternative="greater")
    assert table.loc["relevant", "p_value"] == pytest.approx(reference.pvalue)
    assert (table["n_inputs"] == strong.sum()).all()
