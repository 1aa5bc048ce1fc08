"""Settings of the probe steps: contrastive triples and the probes on the implicit reward (paper 3.3, 4.1)."""

from __future__ import annotations

from dataclasses import dataclass

from lfp_engine.run.fields import require


@dataclass
class ContrastiveSettings:
    """Contrastive triples (paper 3.3)."""

    n_triples: int = 10000
    """Word-substitution triples (VADER task), shared between the word splits by their sizes."""
    max_context_chars: int = 600
    """Preceding context kept before the substituted word, in characters."""
    skip_negated: bool = True
    """Skip occurrences right after a negation ("not good"): its substitutes would mean the opposite
    of their lexicon value (the paper does not say it skipped them)."""
    min_word_count: int = 5
    """Hub corpora: a lexicon word must occur this often to be substituted."""
    min_abs_value: float = 0.5
    """Hub corpora: words rated closer to zero than this (lexicon units, -4..4) are too weak to substitute."""
    test_fraction: float = 0.2
    """Share of words (hub) or texts (preference tasks) held out for testing the probe."""
    n_text_triples: int = 1000
    """Preference tasks: entries rewritten (by the LLM, or the synthetic generator)."""

    def __post_init__(self) -> None:
        require(self.n_triples >= 10, "setting contrastive.n_triples: must be at least 10")
        require(self.max_context_chars >= 0, "setting contrastive.max_context_chars: cannot be negative")
        require(self.min_word_count >= 1, "setting contrastive.min_word_count: must be at least 1")
        require(0 <= self.min_abs_value < 4, "setting contrastive.min_abs_value: must be in [0, 4)")
        require(0 < self.test_fraction < 1, "setting contrastive.test_fraction: must be strictly between 0 and 1")
        require(self.n_text_triples >= 10, "setting contrastive.n_text_triples: must be at least 10")


@dataclass
class ProbeSettings:
    """Probes on the implicit reward (paper 3.3, 4.1)."""

    cv_folds: int = 5
    """Word-grouped folds that choose the regularisation strength."""
    n_bootstrap: int = 1000
    """Resamples for the intervals: of test words (within polarity) for Kendall's tau and the tuned
    minus base difference, of a word's triples for its cross-fitted value."""
    n_permutations: int = 1000
    """Probes refit to targets shuffled between words for the permutation null of every Kendall tau (0: none,
    and no p-values); the smallest p it can give is 1 / (n + 1)."""
    batch_size: int = 32
    """Texts per forward pass when encoding the triples."""
    n_generation_prompts: int = 1000
    """Held-out prompts the tuned and base models complete to count how often they write each word."""
    max_pca_rows: int = 4000
    """Points kept in the stored PCA of the probe's inputs (figure 5)."""
    neutral_tokens_per_triple: int = 8
    """Word triples: tokens drawn from the text each triple's elements share before its neutral word,
    fit at target 0 beside the neutral word (their delta is 0: the probe's zero point, which reading
    it at every token needs). 0 keeps the neutral word alone; more rows cost fitting time."""

    def __post_init__(self) -> None:
        require(2 <= self.cv_folds <= 20, "setting probe.cv_folds: must be between 2 and 20")
        require(self.n_bootstrap >= 0, "setting probe.n_bootstrap: cannot be negative")
        require(self.n_permutations >= 0, "setting probe.n_permutations: cannot be negative")
        require(self.batch_size >= 1, "setting probe.batch_size: must be at least 1")
        require(self.n_generation_prompts >= 1, "setting probe.n_generation_prompts: must be at least 1")
        require(self.max_pca_rows >= 10, "setting probe.max_pca_rows: must be at least 10")
        require(self.neutral_tokens_per_triple >= 0, "setting probe.neutral_tokens_per_triple: cannot be negative")
