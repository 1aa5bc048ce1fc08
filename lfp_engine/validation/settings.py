"""Settings of the validation step: feature frequency (paper table 7) and ablation (table 6)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lfp_engine.run.fields import require


@dataclass
class ValidateSettings:
    """The probe's validation against the explanations (paper tables 6 and 7)."""

    threshold: float = 3.0
    """Inputs whose implicit reward the probe puts above this (reward units) count as strong (the paper: 3)."""
    n_prompts: int = 1000
    """Held-out prefixes completed with and without ablation (the paper: 1000)."""
    n_random_draws: int = 10
    """Density-matched random feature sets ablated as the control, one generation each (their rewards
    are averaged per prompt for the paired tests; the rank test's smallest p-value is 1/(1 + draws))."""
    match_pool: int = 5
    """Controls matched to each relevant feature: its nearest live features in density (docs/store.md)."""
    n_bootstrap: int = 2000
    """Resamples of the features for the enrichment intervals."""
    n_samples_stored: int = 20
    """Completions of each condition stored for reading (table `ablation_samples`)."""

    def __post_init__(self) -> None:
        require(math.isfinite(self.threshold), "setting validate.threshold: must be a finite number")
        require(self.n_prompts >= 2, "setting validate.n_prompts: a paired test needs at least 2 prompts")
        require(self.n_random_draws >= 1, "setting validate.n_random_draws: must be at least 1")
        require(self.match_pool >= 1, "setting validate.match_pool: must be at least 1")
        require(self.n_bootstrap >= 100, "setting validate.n_bootstrap: use at least 100 resamples")
        require(self.n_samples_stored >= 0, "setting validate.n_samples_stored: cannot be negative")
