"""Settings of the policy lens: the tuned policy's implicit reward (docs/method.md, "The policy lens")."""

from __future__ import annotations

from dataclasses import dataclass

from lfp_engine.run.fields import require


@dataclass
class PolicySettings:
    """The policy lens (stage `policy`): beta log pi_tuned / pi_base on the contrastive triples."""

    batch_size: int = 256
    """Texts per forward pass of each model (the triples' texts are short: on the tiny world 256 of them
    cost 2.5 times less per text than 64)."""
    n_bootstrap: int = 1000
    """Resamples for the intervals: of a word's triples for its value, of words for the measures and
    the share of the reward absorbed."""
    n_permutations: int = 1000
    """Permutations of the lexicon values among the held-out words for the null of every Kendall tau
    (0: none, and no p-values); the smallest p it can give is 1 / (n + 1)."""

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, "setting policy.batch_size: must be at least 1")
        require(self.n_bootstrap >= 0, "setting policy.n_bootstrap: cannot be negative")
        require(self.n_permutations >= 0, "setting policy.n_permutations: cannot be negative")
