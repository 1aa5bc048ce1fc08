"""The verdict: every answer the numbers can produce, read from `probe_metrics` rows as the probe
stage writes them, with the numbers beside each sentence; where the model diverges; the record the
pages and `lfp report` print."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lfp_engine.probe.measures import MetricRow, metrics_frame
from lfp_engine.report.divergence import divergence_table, read_divergence_report
from lfp_engine.report.verdict import (
    ANSWERS,
    SIGNIFICANCE,
    Reading,
    Verdict,
    classify,
    divergence_from_report,
    learned_by_policy,
    learned_from_accuracy,
    learned_from_taus,
    outdated_probe,
    reward_change,
)
from lfp_engine.run.store import RunStore


def reading(value=0.3, low=0.1, high=0.5, p=0.01) -> Reading:
    return Reading(value, low, high, p, 33, 0.2)


SIGNIFICANT, CHANCE = reading(p=0.001), reading(p=0.4)
ABOVE, SPANS, BELOW = reading(0.3, 0.1, 0.5), reading(0.0, -0.2, 0.2), reading(-0.3, -0.5, -0.1)


@pytest.mark.parametrize("tuned, base, difference, answer", [
    (SIGNIFICANT, CHANCE, ABOVE, "added_by_tuning"),
    (CHANCE, CHANCE, ABOVE, "moved_within_chance"),
    (SIGNIFICANT, SIGNIFICANT, BELOW, "weakened_by_tuning"),
    (SIGNIFICANT, SIGNIFICANT, SPANS, "already_there"),
    (SIGNIFICANT, CHANCE, SPANS, "origin_unclear"),
    (CHANCE, SIGNIFICANT, SPANS, "no_evidence"),
    (CHANCE, CHANCE, SPANS, "no_evidence"),
    (SIGNIFICANT, None, None, "tuned_only"),
    (CHANCE, None, None, "no_evidence_tuned_only"),
])
def test_every_case_of_the_answer(tuned, base, difference, answer):
    assert classify(tuned, base, difference) == answer
    assert answer in ANSWERS


def test_a_p_value_at_the_threshold_is_not_evidence_and_a_missing_one_neither():
    assert not reading(p=SIGNIFICANCE).beats_null and not reading(p=math.nan).beats_null
    assert reading(low=math.nan, high=0.4).side == "spans"


def tau_metrics(tuned=(0.21, -0.05, 0.44, 0.21), base=(0.25, 0.0, 0.5, 0.15), difference=(-0.04, -0.3, 0.21, 0.7),
                pooled=(0.56, 0.4, 0.7, 0.001), polarity=0.51) -> pd.DataFrame:
    """probe_metrics rows as the probe stage writes them (value, ci_low, ci_high, p)."""
    rows = []
    for variant, numbers, test in (("sae", tuned, "permutation"), ("base_model", base, "permutation"),
                                   ("tuned_minus_base", difference, "paired_bootstrap")):
        if numbers is not None:
            rows.append(MetricRow(variant, "test_within", "kendall_tau", numbers[0], 33, numbers[3], numbers[1],
                                  numbers[2], test, 0.0, 0.31))
    rows.append(MetricRow("sae", "test", "kendall_tau", pooled[0], 33, pooled[3], pooled[1], pooled[2], "permutation"))
    rows.append(MetricRow("sae", "test_positive", "kendall_tau", 0.22, 18, 0.2, -0.1, 0.5, "permutation"))
    rows.append(MetricRow("polarity_only", "test", "kendall_tau", polarity, 33))
    return metrics_frame(rows)


def test_overlapping_intervals_say_no_evidence_with_the_numbers():
    finding = learned_from_taus(tau_metrics(), held_out_of_tuning=True)
    assert finding.answer == "no_evidence" and finding.headline.startswith("No evidence either way")
    assert finding.sentences == (
        "On 33 held-out words (kept out of the tuning prompts, though the reward paid for them whenever the policy wrote them), the probe on the tuned model orders words of the "
        "same polarity like the reward with Kendall tau 0.21 (95% CI -0.05 to 0.44; positive words 0.22); probes "
        "refit to targets shuffled between words reach 0.31 one time in twenty (permutation p = 0.21).",
        "The same probe on the model before tuning: tau 0.25 (95% CI 0 to 0.5, permutation p = 0.15).",
        "Tuned minus base: -0.04 (95% CI -0.3 to 0.21, paired bootstrap p = 0.7); the interval includes 0, so the "
        "data do not show a change.",
        "Pooled over both polarities, tau is 0.56 (95% CI 0.4 to 0.7), against 0.51 for a readout that knows only "
        "each word's polarity: about what knowing polarity alone gives.")
    assert finding.text == " ".join((finding.headline, *finding.sentences))
    assert "Largely" not in finding.text and "Partly" not in finding.text


def test_added_by_tuning_and_a_pooled_tau_above_polarity_alone():
    finding = learned_from_taus(tau_metrics(tuned=(0.5, 0.3, 0.7, 0.001), difference=(0.3, 0.1, 0.5, 0.004),
                                            pooled=(0.8, 0.7, 0.9, 0.001)), held_out_of_tuning=False)
    assert finding.answer == "added_by_tuning" and "the interval lies above 0" in finding.text
    assert "more than knowing polarity alone gives" in finding.text and "On 33 held-out words," in finding.text


def test_without_a_base_model_the_tuning_question_is_not_answered():
    finding = learned_from_taus(tau_metrics(base=None, difference=None), held_out_of_tuning=True)
    assert finding.answer == "no_evidence_tuned_only" and "before tuning" not in finding.text
    assert learned_from_taus(metrics_frame([]), True) is None
    old_run = metrics_frame([MetricRow("sae", "test", "kendall_tau", 0.56, 33, 1e-6, 0.4, 0.7)])
    assert learned_from_taus(old_run, True) is None and outdated_probe(old_run).answer == "not_measured"


def test_preference_tasks_answer_from_accuracy():
    rows = [MetricRow("sae", "test", "accuracy", 0.95, 60, 1e-9, 0.9, 0.99, "binomial"),
            MetricRow("base_model", "test", "accuracy", 0.93, 60, 1e-8, 0.85, 0.98, "binomial"),
            MetricRow("tuned_minus_base", "test", "accuracy", 0.02, 60, 0.6, -0.05, 0.08, "paired_bootstrap")]
    finding = learned_from_accuracy(metrics_frame(rows))
    assert finding.answer == "already_there"
    assert "tell the preferred answer from the rejected one beyond chance" in finding.headline
    assert "95.0% of the time, where chance is 50%" in finding.text and "Tuned minus base: +2.0%" in finding.text


def word_values(rows) -> pd.DataFrame:
    """word_values of (word, lexicon, tuned (value, low, high), base (value, low, high))."""
    out = []
    for word, lexicon, tuned, base in rows:
        for model, (value, low, high) in (("tuned", tuned), ("base", base)):
            out.append((word, model, "train", "positive" if lexicon > 0 else "negative", lexicon, value, low, high))
    return pd.DataFrame(out, columns=["word", "model", "split", "polarity", "lexicon_value", "value", "ci_low",
                                      "ci_high"])


def test_divergence_names_the_words_read_with_the_opposite_sign_clearest_first():
    table = word_values([
        ("great", 3.1, (2.0, 1.5, 2.5), (2.0, 1.5, 2.5)),
        ("dull", -1.8, (0.9, 0.2, 1.6), (0.5, 0.1, 0.9)),     # against the reward, z -2.6; the base model too
        ("fine", 1.0, (-1.2, -1.6, -0.8), (0.4, 0.1, 0.7)),   # against the reward, z -5.9: named first
        ("meh", -0.5, (0.1, -0.3, 0.5), (0.1, -0.3, 0.5)),    # unclear
    ])
    finding = divergence_from_report(divergence_table(table))
    assert finding.answer == "opposite_sign"
    assert finding.headline == "In 2 of 4 words, the tuned model reads the opposite sign of the reward."
    assert "1 read with the reward's sign, 1 are unclear and 2 read against it" in finding.text
    assert finding.sentences[1] == ("Read against the reward most clearly: 'fine' (reward +1) reads -1.2 (95% CI -1.6 to -0.8) in the tuned "
                                    "model and +0.4 (95% CI 0.1 to 0.7) before tuning; 'dull' (reward -1.8) reads +0.9 "
                                    "(95% CI 0.2 to 1.6) in the tuned model and +0.5 (95% CI 0.1 to 0.9) before "
                                    "tuning.")
    assert finding.sentences[2] == "Of the 2: 1 read against the reward before tuning too, unchanged by it; 1 read " \
                                   "with the reward before tuning."
    calm = divergence_from_report(divergence_table(table[table["word"].isin(["great", "meh"])]))
    assert calm.answer == "nowhere_clear" and calm.headline.startswith("Nowhere clearly")
    policy = pd.DataFrame({"word": ["great", "dull", "fine", "meh"], "policy_value": [0.5, 0.4, 0.3, 0.0],
                           "ci_low": [0.4, 0.3, 0.2, -0.1], "ci_high": [0.6, 0.5, 0.4, 0.1]})
    both = divergence_from_report(divergence_table(table, policy=policy))
    assert both.headline == ("The policy learned 1 of 4 words against the reward; inside, the tuned model reads 2 of "
                             "4 with the opposite sign of the reward.")
    assert both.sentences[0] == ("In what it learned to write, tested the same way: 2 of 4 words are preferred on the "
                                 "reward's side, 1 show no clear preference and 1 were learned against the reward.")
    assert both.sentences[1] == "Learned against the reward most clearly: 'dull' (reward -1.8) +0.4 (95% CI 0.3 to 0.5)."



def test_the_report_is_the_stored_one_or_computed_from_word_values_before_word_report(tmp_path):
    store = RunStore(tmp_path)
    assert read_divergence_report(store) is None  # no store yet: nothing to rank
    table = word_values([("great", 3.1, (2.0, 1.5, 2.5), (2.0, 1.5, 2.5)),
                         ("fine", 1.0, (-1.2, -1.6, -0.8), (0.4, 0.1, 0.7))])
    store.write({"word_values": table})
    computed = read_divergence_report(store)
    pd.testing.assert_frame_equal(computed, divergence_table(table))
    stored = computed.assign(rank=[2, 1])  # the stored table wins, read in its rank order
    store.write({"lfp_divergence": stored})
    assert read_divergence_report(store)["word"].tolist() == stored.sort_values("rank")["word"].tolist()

def test_the_record_prints_each_question_with_its_answer():
    tuned = {"n": 400, "mean": 2.1, "mean_difference": 1.8, "ci_low": 1.5, "ci_high": 2.1, "test": "paired t-test",
             "p_value": 1e-6}
    reward = reward_change(tuned, {"mean": 0.3}, "vader_reward")
    assert reward.text.startswith("Yes. On 400 held-out openings")
    assert reward_change({**tuned, "p_value": 0.4}, {"mean": 0.3}, "vader_reward").headline == "Not reliably."
    learned = learned_from_taus(tau_metrics(), True)
    verdict = Verdict((reward, learned))
    assert verdict.text() == f"{reward.question}\n{reward.text}\n\n{learned.question}\n{learned.text}"
    assert verdict.to_dict()["findings"][1]["text"] == learned.text and verdict.get("divergence") is None


def policy_rows(sign_p: float, tau_p: float) -> pd.DataFrame:
    return pd.DataFrame([
        {"variant": "policy", "subset": "test", "metric": "sign_agreement", "value": 0.9, "n": 40, "ci_low": 0.76,
         "ci_high": 0.97, "p_value": sign_p, "null_q95": np.nan},
        {"variant": "policy", "subset": "test_within", "metric": "kendall_tau", "value": 0.5, "n": 40, "ci_low": 0.3,
         "ci_high": 0.7, "p_value": tau_p, "null_q95": 0.21},
        {"variant": "policy", "subset": "all", "metric": "absorbed_share", "value": 0.42, "n": 194, "ci_low": 0.35,
         "ci_high": 0.5, "p_value": np.nan, "null_q95": np.nan}])


def test_the_policy_lens_answers_against_its_controls():
    finding = learned_by_policy(policy_rows(0.001, 0.002), beta=0.5, trl_accuracy=None)
    assert finding.key == "policy" and finding.answer == "learned"
    assert "takes the reward's sign for 90.0% of them (95% CI 76.0% to 97.0%, binomial against 50% p = 0.001)" in \
        finding.text
    assert "the lexicon's values shuffled among the words reach 0.21 one time in twenty (p = 0.002)" in finding.text
    assert "the policy absorbed 42% of the reward's own difference" in finding.text
    assert learned_by_policy(policy_rows(0.001, 0.4), 0.5, None).answer == "learned_sign"
    assert learned_by_policy(policy_rows(0.3, 0.4), 0.5, None).answer == "no_evidence"
    pairs = pd.DataFrame([{"variant": "policy", "subset": "test", "metric": "preference_accuracy", "value": 0.8,
                           "n": 50, "ci_low": 0.66, "ci_high": 0.9, "p_value": 1e-5, "null_q95": np.nan}])
    dpo = learned_by_policy(pairs, beta=0.5, trl_accuracy=0.875)
    assert dpo.answer == "prefers_chosen" and "TRL's DPO trainer logged 87.5% on its last training batches" in dpo.text
