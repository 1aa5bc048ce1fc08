"""Plain sentences describing a run's setup (model, tuning, reward), for readers who are not
specialists. The verdicts on its results are the engine's (`lfp_engine.report.verdict`), so the
dashboard and `lfp status` say the same thing.
"""

from __future__ import annotations

from typing import Any

from lfp_engine.report.formatting import num
from lfp_engine.run.tasks import TaskSpec


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
