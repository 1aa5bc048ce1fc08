"""Settings of the report's own measurements: what tuning taught the model to write (`behaviour`)."""

from __future__ import annotations

from dataclasses import dataclass

from lfp_engine.run.fields import require


@dataclass
class BehaviourSettings:
    """Base and tuned completions of the same held-out openings, counted word by word (not in the
    paper, whose figure 4 sets probe error against generation counts of the tuned model only)."""

    n_openings: int = 2000
    """Held-out reviews (the world's test split) whose opening both models complete, at most the split's size.
    Each word is tested on paired completions, so rare words need many openings to show a change."""
    opening_tokens: int = 8
    """Tokens of each review kept as its opening: short, so the model, not the review, chooses the sentiment."""
    n_bootstrap: int = 2000
    """Resamples of the completion pairs for the intervals of a word kind's share among its competitors."""

    def __post_init__(self) -> None:
        require(self.n_openings >= 2, "setting behaviour.n_openings: a paired test needs at least 2 openings")
        require(self.opening_tokens >= 1, "setting behaviour.opening_tokens: must be at least 1")
        require(self.n_bootstrap >= 100, "setting behaviour.n_bootstrap: use at least 100 resamples")
