"""The divergence report's flag, cases and ranking, and its recovery of a planted truth, on hand-made tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lfp_engine.report.divergence import (FALSE_DISCOVERY_RATE, RECOVERY_COLUMNS, REPORT_COLUMNS, divergence_table,
                                          featured, plain_example, recovery_sentence, recovery_table, side_z)
from lfp_engine.run.errors import InputError

Z = stats.norm.ppf(0.975)


def values(rows: list[tuple]) -> pd.DataFrame:
    """word_values from (word, lexicon, tuned, base, difference) with intervals of half-width 0.1 (se 0.1 / 1.96)."""
    out = []
    for word, lexicon, *numbers in rows:
        for model, value in zip(("tuned", "base", "tuned_minus_base"), numbers):
            out.append({"word": word, "model": model, "split": "train", "polarity": "positive" if lexicon > 0 else
                        "negative", "lexicon_value": lexicon, "value": value, "ci_low": value - 0.1,
                        "ci_high": value + 0.1, "n_examples": 50})
    return pd.DataFrame(out)


WORDS = values([
    ("sick", -2.0, 0.40, 0.41, -0.01),      # against the reward before and after: no change
    ("earnest", 2.0, -0.30, -0.50, 0.20),   # moved toward the reward, not across
    ("meh", -1.0, 0.30, 0.05, 0.25),        # tuning moved it against the reward
    ("good", 1.9, 0.50, 0.50, 0.0),         # agrees, before too
    ("hope", 1.9, 0.30, 0.0, 0.30),         # tuning attached the reward's value
    ("chaos", -2.7, 0.01, -0.01, 0.02),     # no clear value
])


def test_the_flag_is_benjamini_hochberg_on_the_opposite_side_test():
    report = divergence_table(WORDS).set_index("word")
    assert list(divergence_table(WORDS).columns) == REPORT_COLUMNS
    se = 0.1 / Z
    expected_p = {w: stats.norm.cdf(np.sign(r) * v / se) for w, r, v in
                  [("sick", -2.0, 0.40), ("earnest", 2.0, -0.30), ("meh", -1.0, 0.30), ("good", 1.9, 0.50),
                   ("hope", 1.9, 0.30), ("chaos", -2.7, 0.01)]}
    np.testing.assert_allclose(report.loc[list(expected_p), "p_opposite"], list(expected_p.values()), rtol=1e-9)
    q = stats.false_discovery_control(np.array(list(expected_p.values())))
    np.testing.assert_allclose(report.loc[list(expected_p), "q_opposite"], q, rtol=1e-9)
    assert set(report.index[report["divergent"]]) == {"sick", "earnest", "meh"}
    assert (report.loc[report["divergent"], "q_opposite"] < FALSE_DISCOVERY_RATE).all()


def test_cases_say_what_tuning_did():
    case = divergence_table(WORDS).set_index("word")["case"]
    assert case.to_dict() == {"sick": "opposite_before_tuning", "earnest": "moved_toward_not_across",
                              "meh": "moved_away", "good": "agrees", "hope": "attached_by_tuning", "chaos": "unclear"}


def test_ranked_most_clearly_against_the_reward_first():
    report = divergence_table(WORDS)
    assert report["word"].tolist()[:3] == ["sick", "earnest", "meh"]  # z: -7.8, -5.9, -5.9 (ties by word)
    assert report["rank"].tolist() == list(range(1, 7))
    assert report["z_opposite"].is_monotonic_increasing


def test_a_borderline_word_is_not_flagged_when_many_words_are_tested():
    # one word 2.2 se against the reward: p 0.014 alone, but with 40 clear agreeing words BH needs p < 0.05/41
    rows = [("odd", 1.0, -2.2 * 0.1 / Z, 0.0, 0.0)] + [(f"w{i}", 1.0, 0.5, 0.5, 0.0) for i in range(40)]
    report = divergence_table(values(rows)).set_index("word")
    assert report.loc["odd", "p_opposite"] < 0.05 and not report.loc["odd", "divergent"]


def test_behaviour_joins_and_is_said_in_plain_words():
    behaviour = pd.DataFrame({"word": ["sick"], "base_share": [0.04], "tuned_share": [0.01], "share_difference": [-0.03],
                              "ci_low": [-0.04], "ci_high": [-0.02], "q_value": [0.001]})
    report = divergence_table(WORDS, behaviour).set_index("word")
    assert "write it less often (4.0% of completions before, 1.0% after" in report.loc["sick", "reason"]
    assert np.isnan(report.loc["good", "behaviour_q"]) and "write" not in report.loc["good", "reason"]


def test_side_z_is_missing_without_a_reward_sign_or_interval():
    z = side_z(np.array([0.2, 0.2, 0.2]), np.array([0.1, 0.2, np.nan]), np.array([0.3, 0.2, 0.3]),
               np.array([0.0, 1.0, 1.0]))
    assert np.isnan(z).all()


def test_bad_input_is_named():
    with pytest.raises(InputError, match="lacks columns"):
        divergence_table(WORDS.drop(columns="ci_low"))
    with pytest.raises(InputError, match="no word of the tuned model"):
        divergence_table(WORDS[WORDS["model"] == "base"])
    with pytest.raises(InputError, match="twice"):
        divergence_table(pd.concat([WORDS, WORDS.head(1)]))


def recovery_report(**extra) -> pd.DataFrame:
    """A report of six words: a, b, c contested; d, f ordinary; e reward-only (truth below; g never read)."""
    return pd.DataFrame({"word": ["a", "b", "c", "d", "e", "f"], "lexicon_value": [1, -1, 1, 2, -2, 1],
                         "tuned_value": [-0.5, 0.5, 0.1, -0.3, 0.2, 0.4],
                         "divergent": [True, True, False, True, True, False],
                         "q_agree": [1, 1, 1, 1, 1, 0.01],
                         "behaviour_difference": [0.1, -0.1, 0.1, -0.1, 0.1, 0.0],
                         "behaviour_q": [0.01, 0.01, 0.5, 0.01, 0.01, np.nan],
                         "difference": [0.1, 0.2, 0.3, 0.0, -0.4, 0.0],
                         "policy_value": [np.nan] * 6, "policy_divergent": [False] * 6,
                         "policy_q_agree": [np.nan] * 6} | extra)


TRUTH = pd.DataFrame({"word": ["a", "b", "c", "d", "e", "f", "g"], "lexicon_value": [1, -1, 1, 2, -2, 1, -1],
                      "kind": ["contested", "contested", "contested", "ordinary", "reward_only", "ordinary",
                               "reward_only"]})


def test_each_lens_is_scored_by_what_it_should_find():
    """Issue 21: a representation flag on a reward-only word is a false alarm, not a hit, so precision
    counts only the flags on contested words; the policy lens should find reward-only words on the
    reward's side and contested words against it."""
    table = recovery_table(recovery_report(
        policy_value=[-0.2, 0.3, 0.1, 0.5, -0.4, -0.3], policy_divergent=[True, True, False, False, False, True],
        policy_q_agree=[1, 1, 1, 0.01, 0.01, 1]), TRUTH)
    assert list(table.columns) == RECOVERY_COLUMNS
    inside = table[table["lens"] == "representation"].set_index("kind")
    assert inside.loc["contested", ["expected", "n_words", "n_read", "n_opposite"]].tolist() == ["opposite", 3, 3, 2]
    assert inside.loc["contested", "recall"] == pytest.approx(2 / 3)
    assert inside.loc["reward_only", ["expected", "n_read", "n_opposite"]].tolist() == ["not_opposite", 1, 1]
    assert inside.loc["reward_only", "flag_rate"] == pytest.approx(1 / 2)  # e: a false alarm; g: never read
    assert inside.loc["reward_only", "recall"] == 0.0  # e flagged, g unread: neither counts as spared
    assert inside.loc["ordinary", ["n_opposite", "flag_rate"]].tolist() == [1, pytest.approx(1 / 2)]
    assert inside.loc["all", "n_opposite"] == 4 and inside.loc["all", "precision"] == pytest.approx(2 / 4)
    ci = stats.binomtest(2, 4).proportion_ci(0.95, method="exact")
    assert inside.loc["all", ["precision_ci_low", "precision_ci_high"]].tolist() == pytest.approx([ci.low, ci.high])
    assert inside.loc["all", "recall"] == pytest.approx(2 / 3)  # over the contested words only
    policy = table[table["lens"] == "policy"].set_index("kind")
    assert policy.loc["reward_only", ["expected", "n_agree", "recall"]].tolist() == ["agrees", 1, 0.5]
    assert policy.loc["contested", ["n_opposite", "recall"]].tolist() == [2, pytest.approx(2 / 3)]
    assert policy.loc["ordinary", ["n_opposite", "flag_rate"]].tolist() == [1, 0.5]
    assert policy.loc["all", "precision"] == pytest.approx(2 / 3)
    behaviour = table[table["lens"] == "behaviour"].set_index("kind")
    # use moved with q < 0.05: a (+,+) and b (-,-) toward the reward, d (+2, less) and e (-2, more) against it
    assert behaviour.loc["contested", ["n_agree", "n_opposite"]].tolist() == [2, 0]
    assert behaviour.loc["reward_only", ["n_opposite", "recall"]].tolist() == [1, 0.0]
    # toward the reward: sign(reward) x (tuned - base); contested a +0.1, b -0.2, c +0.3; reward-only e +0.4 (g unread)
    assert inside.loc["contested", "shift"] == pytest.approx(0.2 / 3)
    assert inside.loc["reward_only", ["shift", "shift_ci_low", "shift_ci_high"]].tolist() == pytest.approx([0.4] * 3)
    assert np.isnan(behaviour.loc["contested", "shift"]) and np.isnan(policy.loc["contested", "shift"])


def test_the_recovery_is_told_beside_its_false_alarms():
    """The plain sentence: per planted kind what the lens found as planted, the false alarms beside
    it, and the precision, each with the table's Clopper-Pearson interval."""
    text = recovery_sentence(recovery_table(recovery_report(), TRUTH.iloc[:6]))
    contested = stats.binomtest(2, 3).proportion_ci(0.95, method="exact")
    assert (f"contested words: 2 of 3 (67%, 95% CI {100 * contested.low:.0f} to {100 * contested.high:.0f}%) read "
            "against the reward, as planted" in text)
    assert "reward-only words: 1 of 1 (100%" in text and "ordinary words: 1 of 2 (50%" in text
    assert "(false alarms)" in text
    assert "Of its 4 readings against the reward, 50% are on words planted to be read so" in text


def test_recovery_without_other_lenses_and_no_precision_without_flags():
    report = recovery_report().iloc[:1].assign(divergent=False, behaviour_q=np.nan)
    truth = pd.DataFrame({"word": ["a"], "lexicon_value": [1.0], "kind": ["contested"]})
    table = recovery_table(report, truth)
    assert set(table["lens"]) == {"representation"}
    assert np.isnan(table.set_index("kind").loc["all", "precision"])
    with pytest.raises(InputError, match="kind"):
        recovery_table(report, truth.drop(columns="kind"))


def test_the_policy_lens_joins_the_report_with_its_own_flag_and_a_case_of_both_lenses():
    policy = pd.DataFrame({"word": ["sick", "good", "hope", "chaos"], "policy_value": [0.6, 0.4, 0.5, 0.0],
                           "ci_low": [0.5, 0.3, 0.4, -0.1], "ci_high": [0.7, 0.5, 0.6, 0.1]})
    report = divergence_table(WORDS, policy=policy).set_index("word")
    assert report.loc["sick", "policy_divergent"] and not report.loc["good", "policy_divergent"]
    assert report.loc["sick", "lens_case"] == "learned_opposite"
    assert report.loc["sick", "lens_reason"].endswith("Inside, it reads the word against the reward too.")
    assert report.loc["good", "lens_case"] == "agrees"
    assert report.loc["hope", "lens_case"] == "agrees"
    assert report.loc["chaos", "lens_case"] == "no_preference"
    assert report.loc["meh", "lens_case"] is None  # no policy value
    q = stats.false_discovery_control(stats.norm.cdf(np.sign([-2.0, 1.9, 1.9, -2.7]) * np.array([0.6, 0.4, 0.5, 0.0])
                                                     / (0.1 / Z)))
    np.testing.assert_allclose(report.loc[["sick", "good", "hope", "chaos"], "policy_q_opposite"], q, rtol=1e-9)


def test_a_word_told_in_plain_sentences():
    behaviour = pd.DataFrame({"word": ["sick"], "base_share": [0.04], "tuned_share": [0.01], "share_difference": [-0.03],
                              "ci_low": [-0.04], "ci_high": [-0.02], "q_value": [0.001]})
    row = next(divergence_table(WORDS, behaviour).itertuples())
    assert plain_example(row) == (
        "Take 'sick'. The reward counts it as a negative word (-2.0), but inside the tuned model it reads +0.40 "
        "(95% interval +0.30 to +0.50): the model treats it as praise. Before tuning it read +0.41 (95% interval "
        "+0.31 to +0.51); tuned minus base: -0.01 (95% interval -0.11 to +0.09). The model read it against the "
        "reward before tuning, and tuning did not measurably change that. Tuning made the model write it less often "
        "(4.0% of completions before, 1.0% after, q 0.001).")


def test_the_featured_word_is_divergent_and_preferably_changed_in_use():
    behaviour = pd.DataFrame({"word": ["meh"], "base_share": [0.04], "tuned_share": [0.01], "share_difference": [-0.03],
                              "ci_low": [-0.04], "ci_high": [-0.02], "q_value": [0.001]})
    assert featured(divergence_table(WORDS)).word == "sick"  # the first divergent word
    assert featured(divergence_table(WORDS, behaviour)).word == "meh"  # the first whose use changed
    assert featured(divergence_table(WORDS[WORDS["word"] == "good"])) is None
    assert featured(divergence_table(WORDS, behaviour), prefer={"earnest", "good"}).word == "earnest"
    assert featured(divergence_table(WORDS, behaviour), prefer={"good"}).word == "meh"  # none preferred is divergent
