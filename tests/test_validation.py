"""Unit tests of the validation statistics: which features count as relevant, the density-matched
controls, enrichment and the ablation's tests, each against a direct computation (scipy for the
tests), and the notes that say why a comparison is missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lfp_engine.sae.keys import DictionaryKey, FeatureKey
from lfp_engine.validation.ablation import (NO_RELEVANT, ConditionRewards, ablation_design, ablation_table, draw_rank,
                                            draw_table, relevant_features)
from lfp_engine.validation.frequency import NO_CONTROL, NO_STRONG, FiringCounter, feature_frequency
from lfp_engine.validation.frequency import NO_RELEVANT as NO_RELEVANT_FREQUENCY
from lfp_engine.validation.matching import (density_matched_pools, log_density, matched_draw, nearest_pools,
                                            shared_masks, validation_controls)

D = DictionaryKey(3, 8)


def test_relevant_features_come_from_the_probes_dictionaries_only():
    explanations = pd.DataFrame({
        "layer": [3, 3, 3, 4, 4], "dict_size": [128, 256, 128, 128, 128], "feature": [58, 231, 7, 81, 9],
        "relevance": pd.array([True, True, None, True, False], dtype="boolean")})
    assert relevant_features(explanations, [(3, 128), (4, 128)]) == {(3, 128): [58], (4, 128): [81]}
    assert relevant_features(explanations, [(3, 256)]) == {(3, 256): [231]}


def brute_force_pools(log_d: np.ndarray, targets: list[int], candidates: list[int], k: int) -> dict[int, set[int]]:
    """The rule spelled out: each target in turn takes the k closest candidates nobody took."""
    left = [c for c in candidates if c not in targets]
    out = {}
    for t in targets:
        ranked = sorted(left, key=lambda c: (abs(log_d[c] - log_d[t]), c))[:k]
        out[t] = set(ranked)
        left = [c for c in left if c not in ranked]
    return out


def test_pools_are_the_nearest_live_eligible_features_in_log_density_none_given_twice():
    rng = np.random.default_rng(0)
    for _ in range(30):
        density = rng.random(40) ** 3 * (rng.random(40) < 0.8)  # some dead features
        eligible = rng.random(40) < 0.7
        targets = sorted(rng.choice(40, size=3, replace=False).tolist())
        pools = density_matched_pools({D: targets}, {D: density}, {D: eligible}, 1000, 4)[D]
        live = [int(f) for f in np.flatnonzero((density > 0) & eligible)]
        expected = brute_force_pools(log_density(density, 1000), targets, live, 4)
        assert {t: set(p) for t, p in pools.items()} == expected
        chosen = [f for p in pools.values() for f in p]
        assert len(chosen) == len(set(chosen)) and not set(chosen) & set(targets)
        assert all(density[f] > 0 and eligible[f] for f in chosen)


def test_a_dead_relevant_feature_is_matched_to_the_rarest_live_ones():
    density = np.array([0.0, 0.5, 0.001, 0.002, 0.3])
    assert nearest_pools(log_density(density, 1000), [0], [1, 2, 3, 4], 2) == {0: (2, 3)}


def test_draws_take_one_feature_from_each_pool_and_stay_close_in_density():
    rng = np.random.default_rng(1)
    density = np.sort(rng.random(64))  # feature index orders density
    relevant = {D: [60, 61, 62, 63]}  # the densest features
    pools = density_matched_pools(relevant, {D: density}, {D: np.ones(64, bool)}, 10_000, 3)
    seen = set()
    for _ in range(200):
        drawn = matched_draw(pools, rng)[D]
        assert len(drawn) == 4 and all(any(f in pool for f in drawn) for pool in pools[D].values())
        seen |= set(drawn)
    assert seen == {f for pool in pools[D].values() for f in pool}  # every pool member gets drawn
    unmatched = np.mean([density[rng.choice(60, 4, replace=False)].mean() for _ in range(200)])
    matched = np.mean(density[sorted(seen)])
    assert abs(matched - density[60:].mean()) < abs(unmatched - density[60:].mean()) / 3


def test_frequency_controls_are_shared_features_ablation_controls_any_live_feature():
    density = np.linspace(0.01, 0.5, 16)
    features = pd.DataFrame({"layer": 3, "dict_size": 16, "feature": np.arange(16), "is_shared": np.arange(16) % 2 == 0})
    shared = shared_masks(features, {DictionaryKey(3, 16): 16})
    controls = validation_controls({DictionaryKey(3, 16): [8]}, {DictionaryKey(3, 16): density}, shared, 1000, 2)
    assert {k.feature for k in controls.frequency} == {6, 10}
    assert set(controls.ablation[DictionaryKey(3, 16)][8]) == {7, 9}


def planted_counter() -> tuple[FiringCounter, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    codes = np.maximum(rng.normal(size=(600, 8)), 0) * (rng.random((600, 8)) < np.linspace(0.05, 0.6, 8))
    strong = rng.random(600) < 0.3
    codes[strong, 1] += 1.0  # feature 1 fires on every strong input
    codes[:, 7] = 0  # a dead feature
    counter = FiringCounter()
    for part in np.array_split(np.arange(600), 3):  # chunk by chunk, as the stage streams
        counter.add({D: codes[part]}, strong[part])
    return counter, codes, strong


def test_firing_rates_density_and_enrichment_match_a_direct_computation():
    counter, codes, strong = planted_counter()
    rates = counter.rates()
    fired = codes > 0
    assert rates["firing_rate"].to_numpy() == pytest.approx(fired[strong].mean(axis=0))
    assert rates["density"].to_numpy() == pytest.approx(fired.mean(axis=0))
    assert counter.densities()[D] == pytest.approx(fired.mean(axis=0))
    expected = fired[strong].mean(axis=0)[:7] / fired.mean(axis=0)[:7]
    assert rates["enrichment"].to_numpy()[:7] == pytest.approx(expected)
    assert np.isnan(rates["enrichment"].iloc[7])  # dead: no enrichment, not 0/0 = something


def test_enrichment_against_matched_features_matches_scipy():
    counter, _, _ = planted_counter()
    rates = counter.rates()
    relevant, controls = {FeatureKey("tuned", 3, 8, 1), FeatureKey("tuned", 3, 8, 4)}, \
        {FeatureKey("tuned", 3, 8, f) for f in (0, 2, 3, 5, 7)}
    table = feature_frequency(rates, relevant, controls, 3.0, counter.n_strong, 500, 0)
    groups = table[table["compared_with"].isna()].set_index("group")
    e = rates["enrichment"].to_numpy()
    assert groups.loc["relevant", "enrichment"] == pytest.approx(e[[1, 4]].mean())
    assert groups.loc["matched_shared", "enrichment"] == pytest.approx(e[[0, 2, 3, 5]].mean())  # 7 is dead
    assert groups.loc["matched_shared", "n_features"] == 5 and groups.loc["matched_shared", "n_live"] == 4
    assert groups.loc["all", "firing_rate"] == pytest.approx(rates["firing_rate"].mean())
    test = table[table["compared_with"] == "matched_shared"].iloc[0]
    reference = stats.mannwhitneyu(e[[1, 4]], e[[0, 2, 3, 5]], alternative="greater")
    assert test["p_value"] == pytest.approx(reference.pvalue) and test["statistic"] == reference.statistic
    assert test["enrichment"] == pytest.approx(e[[1, 4]].mean() / e[[0, 2, 3, 5]].mean())
    assert test["ci_low"] <= test["enrichment"] <= test["ci_high"]
    assert table["note"].isna().all() and (table["n_inputs"] == counter.n_strong).all()


def test_frequency_says_why_when_nothing_is_relevant_or_strong_or_matched():
    counter, _, _ = planted_counter()
    rates = counter.rates()

    def figures_missing_have_a_reason(table: pd.DataFrame) -> None:
        missing = table["enrichment"].isna() | (table["compared_with"].notna() & table["p_value"].isna())
        assert table.loc[missing, "note"].notna().all()

    none = feature_frequency(rates, set(), set(), 3.0, counter.n_strong, 200, 0)
    figures_missing_have_a_reason(none)
    assert none["p_value"].isna().all()
    none = none[none["compared_with"].isna()].set_index("group")
    assert none.loc["relevant", "n_features"] == 0
    assert (none.loc[["relevant", "matched_shared"], "note"] == NO_RELEVANT_FREQUENCY).all()
    assert pd.isna(none.loc["all", "note"])
    alone = feature_frequency(rates, {FeatureKey("tuned", 3, 8, 1)}, set(), 3.0, counter.n_strong, 200, 0)
    assert (alone.loc[alone["group"] == "matched_shared", "note"] == NO_CONTROL).all()
    figures_missing_have_a_reason(alone)
    weak = FiringCounter()
    weak.add({D: np.ones((5, 8))}, np.zeros(5, bool))
    nothing = feature_frequency(weak.rates(), {FeatureKey("tuned", 3, 8, 1)}, set(), 3.0, 0, 200, 0)
    assert (nothing["note"] == NO_STRONG).all()
    figures_missing_have_a_reason(nothing)


def planted_rewards(effect: float, n: int = 80, draws: int = 6, seed: int = 0) -> ConditionRewards:
    rng = np.random.default_rng(seed)
    none = rng.normal(1.0, 1.0, n)
    return ConditionRewards(none=none, relevant=none - effect + rng.normal(0, 0.3, n),
                            draws=[none - 0.05 + rng.normal(0, 0.3, n) for _ in range(draws)])


def design_for(n_draws: int = 6):
    density = {D: np.linspace(0.01, 0.4, 8)}
    pools = density_matched_pools({D: [2, 5]}, density, {D: np.ones(8, bool)}, 1000, 2)
    return ablation_design({D: [2, 5]}, pools, density, n_draws, np.random.default_rng(0))


def test_ablation_tests_match_scipy_and_the_draw_rank():
    rewards, design = planted_rewards(0.5), design_for()
    table = ablation_table(rewards, design, seed=0)
    rows = {(r.condition, r.compared_with): r for r in table.itertuples()}
    random = np.mean(rewards.draws, axis=0)
    for key, treated, control, alternative in ((("relevant", "none"), rewards.relevant, rewards.none, "less"),
                                               (("random", "none"), random, rewards.none, "two-sided"),
                                               (("relevant", "random"), rewards.relevant, random, "less")):
        reference = stats.ttest_rel(treated, control, alternative=alternative)
        assert rows[key].p_value == pytest.approx(reference.pvalue) and rows[key].statistic == pytest.approx(
            reference.statistic)
        assert rows[key].mean_difference == pytest.approx(np.mean(treated - control))
        assert rows[key].ci_low < rows[key].mean_difference < rows[key].ci_high
    assert rows[("relevant", "random")].p_value < 0.001  # planted: relevant costs 0.5, random 0.05
    rank = rows[("relevant", "random draws")]
    assert (rank.statistic, rank.p_value) == (0, pytest.approx(1 / 7))
    assert rows[("random", "none")].n_draws == 6 and rows[("random", "none")].n_features == 2
    assert rows[("relevant", "none")].mean_density == pytest.approx(design.density[D][[2, 5]].mean())
    assert table["note"].isna().all()


def test_relevant_no_worse_than_random_is_not_significant():
    table = ablation_table(planted_rewards(0.05, seed=3), design_for(), seed=0).set_index(["condition", "compared_with"])
    assert table.loc[("relevant", "random"), "p_value"] > 0.05
    assert draw_rank(1.0, [0.5, 0.9, 1.0, 1.2]) == (3, pytest.approx(4 / 5))


def test_draws_are_stored_one_row_each_with_their_density():
    rewards, design = planted_rewards(0.5), design_for()
    draws = draw_table(rewards, design)
    assert list(draws["draw"]) == list(range(6)) and (draws["n_features"] == 2).all()
    for row, intervention, values in zip(draws.itertuples(), design.draws, rewards.draws, strict=True):
        assert row.mean_reward == pytest.approx(values.mean())
        assert row.mean_difference == pytest.approx((values - rewards.none).mean())
        assert row.mean_density == pytest.approx(design.density[D][list(intervention.ablate[D])].mean())


def test_with_nothing_relevant_the_ablation_table_says_so():
    density = {D: np.linspace(0.01, 0.4, 8)}
    design = ablation_design({}, {}, density, 5, np.random.default_rng(0))
    assert design.draws == () and design.note == NO_RELEVANT
    table = ablation_table(ConditionRewards(none=np.linspace(0, 1, 10)), design, seed=0)
    assert list(zip(table["condition"], table["compared_with"].fillna(""))) == [
        ("none", ""), ("relevant", "none"), ("random", "none"), ("relevant", "random"), ("relevant", "random draws")]
    assert table["mean_reward"].iloc[0] == pytest.approx(0.5) and pd.isna(table["note"].iloc[0])
    later = table.iloc[1:]
    assert later["p_value"].isna().all() and (later["note"] == NO_RELEVANT).all() and (later["n_features"] == 0).all()
    assert draw_table(ConditionRewards(none=np.zeros(3)), design).empty


def test_a_relevant_feature_without_candidates_is_reported():
    density = {D: np.array([0.1, 0.2, 0.15, 0.0, 0.0, 0.0, 0.0, 0.0])}  # one live candidate for two relevant
    pools = density_matched_pools({D: [0, 1]}, density, {D: np.ones(8, bool)}, 1000, 3)
    assert sum(1 for pool in pools[D].values() if not pool) == 1
    design = ablation_design({D: [0, 1]}, pools, density, 3, np.random.default_rng(0))
    assert all(len(d.ablate[D]) == 1 for d in design.draws) and "1 of 2 relevant features" in design.note
