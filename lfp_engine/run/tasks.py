"""The fine-tuning tasks of the paper (section 3.1) and what each implies downstream.

A task fixes how the policy is tuned (online RL against a reward function, or DPO on
preference pairs), which plain-language description the explainer's relevance labels are
judged against (section 3.4), and, for the contrastive triples, whether "positive" means the
preferred or the dispreferred direction (the toxic task rewards toxicity, so its polarity is
swapped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lfp_engine.run.errors import ConfigError

Method = Literal["rloo", "dpo"]
TaskName = Literal["vader", "classifier", "dpo", "hh", "toxic"]
"""The tasks of `TASKS` (a test keeps the two equal): the type of the `task` setting."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    method: Method
    description: str
    """Plain-language description of the fine-tuning goal, used for relevance labels."""
    reward: Literal["vader", "classifier", "none"]
    """Reward function that tunes (rloo) or evaluates (dpo) the policy; 'none' for hub DPO."""
    default_preference_dataset: str
    """Hub id of the preference pairs for DPO tasks ('' = the world's own synthetic pairs)."""
    polarity_swapped: bool = False
    """True when the preferred behaviour is the one people would call negative (toxicity)."""


TASKS: dict[str, TaskSpec] = {
    "vader": TaskSpec(
        name="vader",
        method="rloo",
        description="generate completions with positive sentiment",
        reward="vader",
        default_preference_dataset="",
    ),
    "classifier": TaskSpec(
        name="classifier",
        method="rloo",
        description="generate completions with positive sentiment",
        reward="classifier",
        default_preference_dataset="",
    ),
    "dpo": TaskSpec(
        name="dpo",
        method="dpo",
        description="generate completions with positive sentiment",
        reward="vader",
        default_preference_dataset="",
    ),
    "hh": TaskSpec(
        name="hh",
        method="dpo",
        description="behave like a helpful and harmless assistant",
        reward="none",
        default_preference_dataset="Anthropic/hh-rlhf",
    ),
    "toxic": TaskSpec(
        name="toxic",
        method="dpo",
        description="generate toxic, harmful responses",
        reward="none",
        default_preference_dataset="unalignment/toxic-dpo-v0.2",
        polarity_swapped=True,
    ),
}


def task_spec(name: str) -> TaskSpec:
    """Look a task up by name, with the list of valid names in the error."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None
