"""Settings of the sparse-autoencoder steps: activations captured, SAEs trained, features described.

Paper section 3.2 and appendix F (the SAEs), section 3.4 (shared features).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from lfp_engine.run.fields import one_of, require

ModelRole = Literal["tuned", "base"]


Architecture = Literal["tied", "untied", "topk", "batchtopk"]
"""The SAE variants (`autoencoder.py`): the paper's tied ReLU SAE, an untied one, top-k (Gao et al.
2024) and BatchTopK (Bussmann et al. 2024)."""
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)

@dataclass
class ActivationSettings:
    """Which tokens' MLP outputs are captured for the SAEs (paper section 3.2)."""

    n_train_tokens: int = 75000
    """Token rows captured for SAE training: the paper's 75,000 training examples per SAE."""
    n_eval_tokens: int = 20000
    """Held-out token rows (corpus test split) on which every quality metric is measured."""
    max_tokens_per_text: int = 128
    """Each text is cut to this many tokens (and to the model's context) before capture."""
    batch_size: int = 64
    """Texts per forward pass."""
    shard_rows: int = 16384
    """Rows per shard file; a shard is the unit held in memory, so capture stays bounded."""
    prepend_bos: bool = True
    """Feed the document separator before each text, as in pretraining (its row is not stored)."""
    models: list[ModelRole] = field(default_factory=lambda: ["tuned", "base"])
    """Whose MLP outputs get captured, and so SAEs and feature statistics: the tuned model (the
    method's subject) and the base model (the probe's base-model baseline, appendix B's comparison)."""

    def __post_init__(self) -> None:
        require(self.n_train_tokens >= 64, "setting activations.n_train_tokens: must be at least 64")
        require(self.n_eval_tokens >= 16, "setting activations.n_eval_tokens: must be at least 16")
        require(self.max_tokens_per_text >= 2, "setting activations.max_tokens_per_text: must be at least 2")
        require(self.batch_size >= 1, "setting activations.batch_size: must be at least 1")
        require(self.shard_rows >= 256, "setting activations.shard_rows: must be at least 256")
        models = self.models
        require("tuned" in models and set(models) <= {"tuned", "base"} and len(set(models)) == len(models),
                f"setting activations.models: expected [\"tuned\"] or [\"tuned\", \"base\"], got {models}")


@dataclass
class SaeSettings:
    """The sparse autoencoders: the paper's tied ReLU SAE by default (section 3.2, appendix F)."""

    architecture: Architecture = "tied"
    """'tied' (decoder = encoder transposed, the paper's), 'untied', or 'topk' (k largest codes kept)."""
    dict_multipliers: list[int] = field(default_factory=lambda: [1, 2])
    """Hidden sizes as multiples of the input width: the paper's two dictionaries n and 2n."""
    l1_coefficient: float = 1e-3
    """Weight alpha of the codes' L1 norm in the loss (the paper: 0.001, GPT-Neo 0.0015; tiny: 0.1)."""
    learning_rate: float = 1e-3
    """Adam learning rate (the paper: 1e-3)."""
    batch_size: int = 32
    """Activation rows per optimizer step (the paper: 32)."""
    n_train_examples: int = 75000
    """Activation rows seen in training; more than the captured rows means several epochs."""
    topk: int = 32
    """k of the 'topk' architecture (codes kept per token) and of 'batchtopk' (codes kept per token on
    average over a batch); unused by the others."""
    auxk_coefficient: float = 0.0
    """Weight alpha of the AuxK loss that revives dead latents (Gao et al. 2024, appendix A.2: 1/32);
    0, the default, switches it off, as in the paper's SAEs."""
    auxk_dead_tokens: int = 10_000_000
    """For AuxK, a latent is dead once it has not fired on this many training tokens (Gao et al. 2024:
    10 million)."""
    threshold_rate: float = 0.01
    """'batchtopk': rate of the moving average that estimates the inference threshold from the
    smallest code kept in each batch (Bussmann et al. 2024; SAELens's topk_threshold_lr 0.01)."""
    dense_threshold: float = 0.1
    """A feature firing on more than this fraction of tokens counts as dense."""
    eval_batch_size: int = 32
    """Texts per forward pass when measuring the spliced-in language-model loss."""

    def __post_init__(self) -> None:
        one_of("sae.architecture", self.architecture, Architecture)
        sizes = self.dict_multipliers
        require(len(sizes) == 2 and all(x >= 1 for x in sizes) and sizes[0] < sizes[1],
                f"setting sae.dict_multipliers: expected two increasing whole numbers >= 1 (the paper: [1, 2]), "
                f"got {sizes}; a dictionary size of zero has no features")
        require(self.l1_coefficient >= 0, "setting sae.l1_coefficient: cannot be negative")
        require(0 < self.learning_rate < 1, "setting sae.learning_rate: must be in (0, 1)")
        require(self.batch_size >= 1 and self.eval_batch_size >= 1,
                "settings sae.batch_size and sae.eval_batch_size: must be at least 1")
        require(self.n_train_examples >= self.batch_size,
                "setting sae.n_train_examples: must be at least one batch (sae.batch_size)")
        require(self.topk >= 1, "setting sae.topk: must be at least 1")
        require(self.auxk_coefficient >= 0, "setting sae.auxk_coefficient: cannot be negative")
        require(self.auxk_dead_tokens >= 1, "setting sae.auxk_dead_tokens: must be at least 1")
        require(0 < self.threshold_rate <= 1, "setting sae.threshold_rate: must be in (0, 1]")
        require(0 < self.dense_threshold <= 1, "setting sae.dense_threshold: must be in (0, 1]")


@dataclass
class FeatureSettings:
    """Per-feature statistics and what a feature page shows (paper section 3.4)."""

    shared_threshold: float = 0.7
    """A feature whose best twin in the other dictionary has a higher decoder cosine is 'shared'."""
    n_top_examples: int = 20
    """Highest-activating token windows stored per feature."""
    n_quantiles: int = 5
    """Bands of equal probability mass over a feature's non-zero activations, sampled for examples."""
    examples_per_quantile: int = 4
    """Token windows sampled from each band."""
    context_before: int = 16
    """Tokens shown before the activating token."""
    context_after: int = 7
    """Tokens shown after the activating token (24 tokens with the defaults)."""
    histogram_bins: int = 40
    """Bins of the histogram of each feature's non-zero activations."""
    n_logits: int = 10
    """Tokens listed per feature in each direction (boosted, suppressed)."""
    n_neighbors: int = 10
    """Features listed as nearest to each feature by decoder cosine, in the same dictionary."""
    batch_rows: int = 8192
    """Activation rows encoded at once while streaming over the shards."""

    def __post_init__(self) -> None:
        require(-1 <= self.shared_threshold <= 1, "setting features.shared_threshold: a cosine, must be in [-1, 1]")
        require(self.n_top_examples >= 1, "setting features.n_top_examples: must be at least 1")
        require(self.n_quantiles >= 1 and self.examples_per_quantile >= 0,
                "settings features.n_quantiles >= 1 and features.examples_per_quantile >= 0")
        require(self.context_before >= 0 and self.context_after >= 0,
                "settings features.context_before/context_after: cannot be negative")
        require(self.histogram_bins >= 1, "setting features.histogram_bins: must be at least 1")
        require(self.n_logits >= 1 and self.n_neighbors >= 1,
                "settings features.n_logits/n_neighbors: must be at least 1")
        require(self.batch_rows >= 1, "setting features.batch_rows: must be at least 1")
