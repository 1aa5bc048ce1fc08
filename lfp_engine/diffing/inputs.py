"""What every reading of the trained crosscoders needs, in one record.

Model diffing reads its crosscoders several ways (`metrics.py`, `tables.py`,
`reward_correlation.py`, `probe.py`, `explanations.py`, `ablation.py`), each over the same
crosscoders, the same paired activations, the same two models and the same settings and seed; the
record carries them, so each reading is a function of it and of what it alone needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lfp_engine.diffing.crosscoder import Crosscoder
from lfp_engine.diffing.paired_activations import PairedActivations
from lfp_engine.diffing.paired_forward import PairedModels
from lfp_engine.diffing.settings import CrosscoderSettings
from lfp_engine.sae.settings import FeatureSettings


@dataclass(frozen=True)
class DiffingInputs:
    """The trained crosscoders, the activations they read, and the models they read them from."""

    crosscoders: list[Crosscoder]
    """One per chosen layer, ascending."""
    train: PairedActivations
    """The paired rows the crosscoders were trained on (statistics and examples are read here)."""
    evaluation: PairedActivations
    """Held-out paired rows (reconstruction, Latent Scaling, the reward of held-out texts)."""
    models: Mapping[str, nn.Module]
    """'base' and 'tuned'."""
    tokenizer: Any
    """The models' tokenizer (a Hugging Face tokenizer)."""
    vocab: list[str]
    """Each token id's string, for examples and explanations."""
    settings: CrosscoderSettings
    features: FeatureSettings
    """How latents' statistics and examples are read (as the paper's features' are)."""
    seed: int
    """The stage's seed; each reading derives its own from it."""
    device: torch.device | str

    @property
    def by_layer(self) -> dict[int, Crosscoder]:
        return {c.layer: c for c in self.crosscoders}

    def paired(self) -> PairedModels:
        """The base model and the crosscoders, for interventions on latents in the tuned model."""
        return PairedModels(self.models["base"], {c.key: c for c in self.crosscoders})
