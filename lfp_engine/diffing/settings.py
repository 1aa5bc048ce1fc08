"""Settings of model diffing (after the paper: Lindsey et al. 2024, Minder et al. 2025): the
crosscoder over the base and tuned models, its latents' tags, and their links to the reward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lfp_engine.run.fields import one_of, require
from lfp_engine.run.precision import Precision

CrosscoderArchitecture = Literal["batchtopk", "untied"]


@dataclass
class CrosscoderSettings:
    """The crosscoder over base and tuned (model diffing, after the paper: Lindsey et al. 2024,
    Minder et al. 2025): one dictionary per chosen layer, read from and written to both models."""

    architecture: CrosscoderArchitecture = "batchtopk"
    """'batchtopk' (Minder et al. 2025: avoids the L1 artefacts that fake tuned-only latents) or
    'untied' (Lindsey et al. 2024's L1 penalty weighted by the sum of the two decoder norms)."""
    dict_multiplier: int = 4
    """Latents per layer, as a multiple of the model width d (the input is 2d wide)."""
    k: int = 32
    """'batchtopk': latents kept per token, on average over a batch."""
    l1_coefficient: float = 1e-3
    """'untied': weight of the L1 penalty (on activations normalised to mean squared norm d)."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 256
    """Token rows (pairs of activations) per step."""
    n_train_examples: int = 150_000
    """Rows seen in training; more than the captured rows means several epochs."""
    auxk_coefficient: float = 1 / 32
    """Weight of the AuxK loss that revives dead latents (Gao et al. 2024: 1/32; 0 switches it off)."""
    auxk_dead_tokens: int = 10_000_000
    """A latent that has not fired on this many training tokens counts as dead for AuxK (Gao et al.)."""
    threshold_rate: float = 0.01
    """Rate of the moving average that estimates BatchTopK's inference threshold (SAELens: 0.01)."""
    precision: Precision = "float32"
    """'float32', or 'bfloat16': training's matrix products under bfloat16 autocast (weights, Adam
    and the loss stay float32); about 1.5x faster on a CPU with AVX-512 BF16 at the tiny preset's
    batch of 512, with variance explained, L0 and dead latents within the seed's own spread
    (docs/benchmarks.md). Where the device lacks native bfloat16, float32 (logged)."""
    tuned_only_min: float = 0.9
    """Tag 'tuned-only' when the relative decoder norm ||d_tuned|| / (||d_base|| + ||d_tuned||) is at
    least this; 'base-only' when it is at most 1 - this. The cut-points 0.1 / 0.4 / 0.6 / 0.9 are
    those Minder et al. 2025 use for their relative norm difference."""
    shared_band: float = 0.1
    """Tag 'shared' when the relative decoder norm is within this of 0.5 (0.4..0.6); latents between
    the bands are tagged 'changed'."""
    scaling_ratio_max: float = 0.5
    """Latent Scaling: a tuned-only (base-only) latent counts as specific only when the other model
    needs less than this share of it, in its error and in its reconstruction (ratios nu of Minder
    et al. 2025, who rank latents by these ratios; this cut is ours)."""
    n_top: int = 10
    """Tuned-only latents described in full (examples, explanation, plain sentence), by reward link."""
    n_ablate: int = 5
    """Of those, the ones ablated in the tuned model one at a time, each beside a random live latent
    of the same layer ablated the same way (the control)."""
    n_prompts: int = 200
    """Held-out openings completed for each ablation (the validate stage's method)."""
    max_probe_triples: int = 3000
    """Contrastive triples encoded for the probe on crosscoder codes (a seeded sample; 0: all)."""

    def __post_init__(self) -> None:
        one_of("crosscoder.architecture", self.architecture, CrosscoderArchitecture)
        require(self.dict_multiplier >= 1, "setting crosscoder.dict_multiplier: must be at least 1")
        require(self.k >= 1, "setting crosscoder.k: must be at least 1")
        require(self.l1_coefficient >= 0, "setting crosscoder.l1_coefficient: cannot be negative")
        require(0 < self.learning_rate < 1, "setting crosscoder.learning_rate: must be in (0, 1)")
        require(self.batch_size >= 1, "setting crosscoder.batch_size: must be at least 1")
        require(self.n_train_examples >= self.batch_size,
                "setting crosscoder.n_train_examples: must be at least one batch (crosscoder.batch_size)")
        require(self.auxk_coefficient >= 0, "setting crosscoder.auxk_coefficient: cannot be negative")
        require(self.auxk_dead_tokens >= 1, "setting crosscoder.auxk_dead_tokens: must be at least 1")
        require(0 < self.threshold_rate <= 1, "setting crosscoder.threshold_rate: must be in (0, 1]")
        one_of("crosscoder.precision", self.precision, Precision)
        require(0.5 < self.tuned_only_min <= 1, "setting crosscoder.tuned_only_min: must be in (0.5, 1]")
        require(0 <= self.shared_band < self.tuned_only_min - 0.5,
                "setting crosscoder.shared_band: the shared band 0.5 +- band must stay inside the "
                "tuned-only and base-only cut-points")
        require(0 < self.scaling_ratio_max <= 1, "setting crosscoder.scaling_ratio_max: must be in (0, 1]")
        require(self.n_top >= 1 and 0 <= self.n_ablate <= self.n_top,
                "settings crosscoder.n_top >= 1 and 0 <= crosscoder.n_ablate <= crosscoder.n_top")
        require(self.n_prompts >= 2, "setting crosscoder.n_prompts: a paired test needs at least 2 prompts")
        require(self.max_probe_triples >= 0, "setting crosscoder.max_probe_triples: cannot be negative (0: all)")
