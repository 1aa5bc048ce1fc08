"""The verdict: plain-language answers to "did tuning raise the reward?" and "did the model learn the
feedback?", each read from a measured number, its interval and its test.

Written once, here, so that the dashboard and the command line say the same thing with the same
thresholds. Every sentence carries the numbers it is read from, so a reader can check it.
"""

from __future__ import annotations

from typing import Any

from lfp_engine.report.formatting import interval, missing, num, p_value, percent, signed
from lfp_engine.report.headline import read_headline
from lfp_engine.run.store import RunStore

SIGNIFICANCE = 0.05
"""A test below this p-value counts as evidence."""
STRONG_TAU = 0.5
"""Kendall tau from which the probe's agreement with the reward reads 'Largely' rather than 'Partly'."""
STRONG_ACCURACY = 0.9
"""The same boundary for a preference probe's accuracy."""
REWARD_NAMES = {"vader_reward": "VADER reward", "classifier_reward": "classifier reward",
                "preference_margin": "preference margin"}


def reward_change(tuned: Any, base: Any, metric: str) -> str:
    """Did tuning raise the reward? From the tuned row of rlhf_rewards (it holds the paired test)."""
    name = REWARD_NAMES.get(metric, metric.replace("_", " "))
    sentence = (f"On {num(tuned['n'])} held-out openings, the tuned model's completions average a {name} of "
                f"{num(tuned['mean'])} against {num(base['mean'])} for the base model: a difference of "
                f"{signed(tuned['mean_difference'])} ({interval(tuned['ci_low'], tuned['ci_high'])}, "
                f"{tuned['test']} {p_value(tuned['p_value'])}).")
    if missing(tuned["p_value"]):
        return sentence
    if tuned["p_value"] < SIGNIFICANCE and tuned["mean_difference"] > 0:
        return "Yes. " + sentence
    return "Not reliably. " + sentence


def _verdict(value: float, p: float, low: float, chance: float, strong: float) -> str:
    if missing(p) or missing(low) or p >= SIGNIFICANCE or low <= chance:
        return "Not detectably"
    return "Largely" if value >= strong else "Partly"


def feedback_learned_tau(row: Any, held_out_of_tuning: bool) -> str:
    """The answer to "did the model learn the feedback?" from the probe's Kendall tau on test words."""
    verdict = _verdict(row["value"], row["p_value"], row["ci_low"], chance=0.0, strong=STRONG_TAU)
    words = ("words that tuning never showed the model and the probe was never fitted on"
             if held_out_of_tuning else "words the probe was never fitted on")
    agrees = "agrees" if verdict != "Not detectably" else "does not reliably agree"
    return (f"{verdict}: on {num(row['n'])} {words}, the ranking the probe reads out of the tuned model "
            f"{agrees} with the true reward (Kendall tau {num(row['value'], 2)}, "
            f"{interval(row['ci_low'], row['ci_high'], lambda v: num(v, 2))}, {p_value(row['p_value'])}).")


def feedback_learned_accuracy(row: Any) -> str:
    """The same answer for preference (DPO) tasks: can the probe tell preferred from rejected?"""
    verdict = _verdict(row["value"], row["p_value"], row["ci_low"], chance=0.5, strong=STRONG_ACCURACY)
    return (f"{verdict}: on {num(row['n'])} held-out examples, a probe on the tuned model's features tells the "
            f"preferred answer from the rejected one {percent(row['value'])} of the time, where chance is 50% "
            f"({interval(row['ci_low'], row['ci_high'], percent)}, {p_value(row['p_value'])}).")


def verdict_sentences(store: RunStore) -> list[str]:
    """The run's answers as the Story page gives them, for the command line: did tuning raise the
    reward, and did the model learn the feedback (each only once its stage has run)."""
    lines = []
    headline = read_headline(store)
    tables = store.tables()
    if headline.reward_metric is not None:
        rewards = store.read("rlhf_rewards", where="metric = ?", params=[headline.reward_metric]).set_index("model")
        if {"base", "tuned"} <= set(rewards.index):
            lines.append(reward_change(rewards.loc["tuned"], rewards.loc["base"], headline.reward_metric))
    if "probe_metrics" in tables:
        rows = store.read("probe_metrics", where="variant = ? AND subset = ? AND metric IN (?, ?)",
                          params=["sae", "test", "kendall_tau", "accuracy"]).set_index("metric")
        if "kendall_tau" in rows.index:
            lines.append(feedback_learned_tau(rows.loc["kendall_tau"], "world_lexicon" in tables))
        elif "accuracy" in rows.index:
            lines.append(feedback_learned_accuracy(rows.loc["accuracy"]))
    return lines
