"""What tuning taught the model to write: counts, McNemar's exact test against scipy, the paired
interval's coverage, the bootstrap against scipy's, and the per-kind summary on hand-made texts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lfp_engine.report.behaviour import (behaviour_tables, choice_change, count_usage, kind_sentence, kind_summary,
                                         mcnemar_exact, paired_share_interval, word_changes)
from lfp_engine.run.errors import InputError


def test_mcnemar_exact_matches_scipy_binomtest():
    b, c = np.meshgrid(np.arange(0, 25), np.arange(0, 25))
    b, c = b.ravel(), c.ravel()
    p = mcnemar_exact(b, c)
    for bi, ci, pi in zip(b, c, p, strict=True):
        expected = 1.0 if bi + ci == 0 else stats.binomtest(int(ci), int(bi + ci), 0.5).pvalue
        assert pi == pytest.approx(expected, rel=1e-9, abs=1e-12)
    with pytest.raises(InputError):
        mcnemar_exact(np.array([-1]), np.array([2]))


def test_paired_interval_keeps_its_coverage_for_rare_words():
    """Simulated pairs with a known difference of shares, for a rare word (5% and 3%)."""
    rng = np.random.default_rng(0)
    n, cells = 300, np.array([0.01, 0.04, 0.02, 0.93])  # both, only base, only tuned, neither
    truth = cells[2] - cells[1]
    table = rng.multinomial(n, cells, size=4000)
    low, high = paired_share_interval(table[:, 1], table[:, 2], n)
    coverage = ((low <= truth) & (truth <= high)).mean()
    assert 0.93 <= coverage <= 0.97
    # the plain Wald interval (no cells added) undercovers here: the adjustment matters
    b, c = table[:, 1] / n, table[:, 2] / n
    half = 1.96 * np.sqrt(np.maximum(b + c - (c - b) ** 2, 0) / n)
    assert (((c - b - half) <= truth) & (truth <= (c - b + half))).mean() < coverage


def test_usage_counts_the_rewards_lower_cased_tokens():
    usage = count_usage(["Sick! sick, SICK and sickly", "Hope gives a performance."],
                        ["nothing here", "hope hope"], ["sick", "Hope", "sick"])
    assert usage.words == ("sick", "hope")
    assert usage.base.tolist() == [[3, 0], [0, 1]] and usage.tuned.tolist() == [[0, 0], [0, 2]]
    with pytest.raises(InputError, match="paired"):
        count_usage(["a", "b"], ["a"], ["sick"])


def test_word_changes_find_a_change_and_no_change_where_there_is_none():
    base = ["The plot was sick."] * 30 + ["The plot was good."] * 70
    tuned = ["The plot was sick."] * 5 + ["The plot was good."] * 95
    table = word_changes(count_usage(base, tuned, ["sick", "good", "plot", "awful"])).set_index("word")
    sick = table.loc["sick"]
    assert (sick.base_count, sick.tuned_count, sick.only_base, sick.only_tuned) == (30, 5, 25, 0)
    assert sick.share_difference == pytest.approx(-0.25)
    assert sick.ci_high < 0 and sick.p_value == pytest.approx(stats.binomtest(0, 25, 0.5).pvalue)
    assert table.loc["plot", "p_value"] == 1.0 and table.loc["plot", "share_difference"] == 0.0
    assert table.loc["awful", "ci_low"] < 0 < table.loc["awful", "ci_high"]
    assert table.loc["sick", "q_value"] >= table.loc["sick", "p_value"]
    same = word_changes(count_usage(base, base, ["sick", "good"]))
    assert (same["p_value"] == 1).all() and (same["share_difference"] == 0).all()


def test_choice_bootstrap_agrees_with_scipy():
    rng = np.random.default_rng(1)
    n = 400
    base = [("sick " * rng.poisson(0.3)) + ("great " * rng.poisson(0.7)) for _ in range(n)]
    tuned = [("sick " * rng.poisson(0.1)) + ("great " * rng.poisson(1.0)) for _ in range(n)]
    usage = count_usage(base, tuned, ["sick", "great"])
    mine = choice_change(usage, {"sick"}, {"great"}, n_bootstrap=4000, seed=2)
    b_own, t_own = usage.base[:, 0], usage.tuned[:, 0]
    b_all, t_all = usage.base.sum(axis=1), usage.tuned.sum(axis=1)
    assert mine.base == pytest.approx(b_own.sum() / b_all.sum()) and mine.tuned == pytest.approx(t_own.sum() / t_all.sum())

    def statistic(bo, ba, to, ta, axis=-1):
        return to.sum(axis=axis) / ta.sum(axis=axis) - bo.sum(axis=axis) / ba.sum(axis=axis)

    ref = stats.bootstrap((b_own, b_all, t_own, t_all), statistic, paired=True, vectorized=True, n_resamples=4000,
                          method="percentile", rng=np.random.default_rng(3)).confidence_interval
    assert mine.ci_low == pytest.approx(ref.low, abs=0.01) and mine.ci_high == pytest.approx(ref.high, abs=0.01)
    assert mine.ci_high < 0 and mine.n_competitors == 1


def _truth() -> pd.DataFrame:
    return pd.DataFrame([
        ("great", 3.1, "adjective", "positive", "ordinary"), ("good", 1.9, "adjective", "positive", "ordinary"),
        ("awful", -2.0, "adjective", "negative", "ordinary"), ("sick", -2.3, "adjective", "negative", "contested"),
        ("hope", 1.9, "name", "positive", "reward_only"), ("fury", -2.7, "name", "negative", "reward_only"),
    ], columns=["word", "lexicon_value", "role", "polarity", "kind"])


def test_kind_summary_reads_a_planted_change_against_its_competitors():
    # Tuning raised praise overall and the use of "sick" with it, but chose it for praise less
    # often; it began naming characters Hope.
    base = (["The plot was sick."] * 20 + ["The plot was great."] * 30 + ["The plot was awful."] * 50
            + ["Anna gives a performance."] * 40 + ["Hope gives a performance."] * 10)
    tuned = (["The plot was sick."] * 25 + ["The plot was great."] * 75
             + ["Hope gives a performance."] * 40 + ["Anna gives a performance."] * 10)
    truth = _truth()
    usage = count_usage(base, tuned, list(truth["word"]) + ["Anna", "Ben"])
    table = kind_summary(usage, truth, names=["Anna", "Ben"], n_bootstrap=500).set_index(["kind", "polarity"])
    sick = table.loc[("contested", "negative")]
    assert sick.used_as == "positive" and sick.n_competitors == 2  # great, good: praise adjectives
    assert sick.tuned_share > sick.base_share  # more "sick" in absolute terms...
    assert sick.base_choice == pytest.approx(20 / 50) and sick.tuned_choice == pytest.approx(25 / 100)
    assert sick.choice_ci_high < 0  # ...but chosen less often for praise
    hope = table.loc[("reward_only", "positive")]
    assert hope.used_as == "neutral" and hope.base_choice == pytest.approx(10 / 50)
    assert hope.tuned_choice == pytest.approx(40 / 50) and hope.choice_ci_low > 0
    assert (hope.only_base, hope.only_tuned) == (10, 40)  # completions 140-149 and 100-139
    assert hope.p_value == pytest.approx(stats.binomtest(10, 50, 0.5).pvalue)
    fury = table.loc[("reward_only", "negative")]
    assert fury.base_count == fury.tuned_count == 0 and fury.p_value == 1.0
    assert fury.base_choice == fury.tuned_choice == fury.choice_ci_low == fury.choice_ci_high == 0.0
    ordinary = table.loc[("ordinary", "negative")]
    assert ordinary.share_difference == pytest.approx(-50 / 150) and ordinary.n_competitors == 0
    assert np.isnan(ordinary.base_choice)
    # The groups are tested together: each q is Benjamini-Hochberg's over the kinds x polarities,
    # here by hand (the smallest p * m / rank at or above each p's rank).
    p = table["p_value"].to_numpy()
    order = np.argsort(p)
    adjusted = np.minimum.accumulate((p[order] * len(p) / np.arange(1, len(p) + 1))[::-1])[::-1]
    expected = np.empty_like(p)
    expected[order] = np.minimum(adjusted, 1.0)
    np.testing.assert_allclose(table["q_value"], expected)
    assert (table["q_value"] >= table["p_value"]).all()


def test_kind_summary_refuses_an_unknown_kind():
    truth = _truth()
    truth.loc[0, "kind"] = "mystery"
    usage = count_usage(["a", "b"], ["a", "b"], list(truth["word"]))
    with pytest.raises(InputError, match="mystery"):
        kind_summary(usage, truth)


def test_a_kind_change_in_plain_words():
    row = pd.Series({"kind": "contested", "polarity": "negative", "used_as": "positive", "share_difference": -0.03,
                     "tuned_share": 0.057, "base_share": 0.087, "ci_low": -0.039, "ci_high": -0.022, "p_value": 1e-6,
                     "q_value": 4e-6, "choice_difference": -0.062, "base_choice": 0.137, "tuned_choice": 0.075, "choice_ci_low": -0.074,
                     "choice_ci_high": -0.049})
    text = kind_sentence(pd.DataFrame([row]).iloc[0], ["bad", "killer"])
    assert text == ("Words the reviews use as praise but the reward scores as negative (such as 'bad', 'killer'): the "
                    "tuned model writes them less often, in 5.7% of completions against 8.7% before tuning (-3.0 points, "
                    "95% CI -3.9 to -2.2, McNemar p 1e-06, q 4e-06 adjusted by Benjamini-Hochberg over the kinds and "
                    "polarities tested). Of the words competing for the same place, their share went "
                    "from 13.7% to 7.5% (-6.2 points, 95% CI -7.4 to -4.9).")
    calm = kind_sentence(pd.DataFrame([row.copy().replace({1e-6: 0.4, 4e-6: 0.6})]).iloc[0])
    assert "about as often (no measurable change)" in calm and "such as" not in calm
    # Significant alone (p 0.03) but not once the groups tested together are adjusted for (q 0.09).
    alone = kind_sentence(pd.DataFrame([row.copy().replace({1e-6: 0.03, 4e-6: 0.09})]).iloc[0])
    assert "about as often (no measurable change)" in alone and "McNemar p 0.03, q 0.09 adjusted" in alone


def test_behaviour_tables_join_the_truth_and_control_the_false_discoveries_over_its_words():
    truth = pd.DataFrame({"word": ["sick", "good", "hope"], "kind": ["contested", "ordinary", "reward_only"],
                          "polarity": ["negative", "positive", "positive"], "role": ["adjective", "adjective", "name"],
                          "heldout": [False, True, False], "lexicon_value": [-2.1, 1.9, 1.9],
                          "corpus_value": [1.5, 1.8, 0.0]})
    base = ["The plot was sick."] * 30 + ["The plot was good."] * 70
    tuned = ["The plot was sick."] * 5 + ["The plot was good."] * 95
    usage = count_usage(base, tuned, ["sick", "good", "hope", "Paula"])  # a name: a competitor, not tested
    tables = behaviour_tables(usage, truth, ["Paula"], n_bootstrap=200)
    words = tables.words.set_index("word")
    assert sorted(words.index) == ["good", "hope", "sick"] and words.loc["sick", "kind"] == "contested"
    np.testing.assert_allclose(words.loc[["good", "hope", "sick"], "q_value"],
                               stats.false_discovery_control(words.loc[["good", "hope", "sick"], "p_value"]))
    assert set(tables.kinds["kind"]) == {"contested", "ordinary", "reward_only"}
    with pytest.raises(InputError, match="count every word"):
        behaviour_tables(count_usage(base, tuned, ["sick"]), truth, [])
