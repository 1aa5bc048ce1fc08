"""Plain sentences built from a run's numbers, for readers who are not specialists.

Every number in a sentence is a value from the store, formatted; the words around it only
translate (a verdict is a reading of the p-value and the interval the store holds, spelled out
in the sentence so the reader can check it).
"""

from __future__ import annotations

from typing import Any

from lfp_engine.run.tasks import TaskSpec

from .formatting import interval, missing, num, p_value, percent, signed

SIGNIFICANCE = 0.05
REWARD_NAMES = {"vader_reward": "VADER reward", "classifier_reward": "classifier reward",
                "preference_margin": "preference margin"}


def base_model(config: dict[str, Any], world: dict[str, Any]) -> str:
    """What the base model is, in words."""
    w = config.get("world", {})
    if w.get("kind") == "synthetic":
        s = config.get("synthetic", {})
        size = f"{num(world['n_parameters'])}-parameter " if "n_parameters" in world else ""
        reviews = f" on {num(world['n_reviews'])} synthetic movie reviews" if "n_reviews" in world else ""
        return (f"a small {size}GPT-NeoX language model ({s.get('num_layers', '?')} layers) that this run "
                f"pretrained from scratch{reviews}")
    return f"`{w.get('base_model')}` from the Hugging Face Hub"


def tuning(config: dict[str, Any], spec: TaskSpec | None) -> str:
    """How the model was tuned, in words."""
    if config.get("tuned_model"):
        return f"an already tuned checkpoint, `{config['tuned_model']}`, was brought in"
    if spec is None:
        return "it was tuned"
    if spec.method == "rloo":
        r = config.get("rlhf", {})
        return (f"it was tuned with reinforcement learning (RLOO, {r.get('steps', '?')} steps, with a penalty "
                f"of {r.get('beta', '?')} for drifting from the base model)")
    d = config.get("dpo", {})
    return f"it was tuned with DPO on pairs of answers where one is preferred ({d.get('steps', '?')} steps)"


def reward(config: dict[str, Any], spec: TaskSpec | None) -> str:
    """What the feedback was, in words."""
    if spec is None:
        return ""
    r = config.get("reward", {})
    if spec.method == "dpo" and spec.reward == "none":
        return ("There is no reward function: the model learned only from which of two answers people "
                "preferred.")
    if spec.reward == "vader":
        lead = "The feedback" if spec.method == "rloo" else "The reward used to judge it"
        return (f"{lead} is the VADER sentiment lexicon: every word the lexicon knows carries a rating from "
                f"-4 (very negative) to +4 (very positive); a text scores {num(r.get('scale'))} times the sum "
                f"of its words' ratings, clipped to ±{num(r.get('clip'))}.")
    return (f"The feedback is how positive a sentiment classifier (`{r.get('classifier')}`) finds the text "
            "(its positive-class logit).")


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
    verdict = _verdict(row["value"], row["p_value"], row["ci_low"], chance=0.0, strong=0.5)
    words = ("words that tuning never showed the model and the probe was never fitted on"
             if held_out_of_tuning else "words the probe was never fitted on")
    agrees = "agrees" if verdict != "Not detectably" else "does not reliably agree"
    return (f"{verdict}: on {num(row['n'])} {words}, the ranking the probe reads out of the tuned model "
            f"{agrees} with the true reward (Kendall tau {num(row['value'], 2)}, "
            f"{interval(row['ci_low'], row['ci_high'], lambda v: num(v, 2))}, {p_value(row['p_value'])}).")


def feedback_learned_accuracy(row: Any) -> str:
    """The same answer for preference (DPO) tasks: can the probe tell preferred from rejected?"""
    verdict = _verdict(row["value"], row["p_value"], row["ci_low"], chance=0.5, strong=0.9)
    return (f"{verdict}: on {num(row['n'])} held-out examples, a probe on the tuned model's features tells the "
            f"preferred answer from the rejected one {percent(row['value'])} of the time, where chance is 50% "
            f"({interval(row['ci_low'], row['ci_high'], percent)}, {p_value(row['p_value'])}).")
