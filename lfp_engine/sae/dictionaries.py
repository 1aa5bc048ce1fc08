"""A run's dictionaries: which SAEs it trains, trained on its activations and measured.

The paper trains two dictionaries per chosen layer, of n and 2n features (n = the input width,
section 3.2): `dictionary_specs` names them, `train_dictionaries` trains them all in one joint loop
(`training.py`), and `train_and_measure` adds the held-out metrics of `metrics.py` and the training
log, one row per dictionary, as the `sae` stage stores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from lfp_engine.sae.settings import SaeSettings
from lfp_engine.sae.activations import ActivationSet
from lfp_engine.sae.autoencoder import TOP_K, SparseAutoencoder
from lfp_engine.sae.metrics import reconstruction_table, spliced_losses
from lfp_engine.sae.training import SaeSpec, TrainedSaes, train_saes


def dictionary_specs(settings: SaeSettings, layers: Sequence[int], d_in: int, architecture: str | None = None,
                     l1_coefficient: float | None = None) -> list[SaeSpec]:
    """The n and 2n (per `dict_multipliers`) dictionaries of each layer, as the settings say."""
    architecture = architecture or settings.architecture
    return [SaeSpec(layer=layer, d_sae=m * d_in, architecture=architecture,
                    l1_coefficient=settings.l1_coefficient if l1_coefficient is None else l1_coefficient,
                    k=settings.topk if architecture in TOP_K else None, auxk_coefficient=settings.auxk_coefficient,
                    auxk_dead_tokens=settings.auxk_dead_tokens, threshold_rate=settings.threshold_rate)
            for layer in layers for m in settings.dict_multipliers]


def train_dictionaries(train: ActivationSet, specs: Sequence[SaeSpec], settings: SaeSettings, seed: int,
                       device: torch.device, desc: str = "train SAEs") -> TrainedSaes:
    """Train `specs` on the training set with the run's optimiser settings, in one joint loop."""
    layers = sorted({s.layer for s in specs})
    n_steps = settings.n_train_examples // settings.batch_size
    batches = train.shuffled_batches(layers, settings.batch_size, n_steps, seed, device)
    return train_saes(batches, layers, specs, train.d_model, n_steps, settings.learning_rate, seed, device,
                      desc=desc)


@dataclass
class MeasuredDictionaries:
    specs: list[SaeSpec]
    saes: list[SparseAutoencoder]
    """One per spec, in the order of the specs, on the CPU."""
    metrics: pd.DataFrame
    """One row per dictionary: its spec, reconstruction and spliced-loss metrics, train_seconds."""
    training_log: pd.DataFrame
    """layer, dict_size, step, loss, mse, sparsity."""


def train_and_measure(train: ActivationSet, evaluation: ActivationSet, model: nn.Module, pad_token_id: int,
                      settings: SaeSettings, seed: int, device: torch.device, desc: str) -> MeasuredDictionaries:
    """Train the n and 2n dictionaries of every layer of `train` and measure them on `evaluation`,
    the spliced-in loss on `model` (the model the activations came from)."""
    specs = dictionary_specs(settings, train.layers, train.d_model)
    trained = train_dictionaries(train, specs, settings, seed, device, desc=desc)
    metrics = reconstruction_table(evaluation, specs, trained.saes, settings, device)
    metrics = metrics.merge(spliced_losses(model, pad_token_id, evaluation, specs, trained.saes,
                                           settings.eval_batch_size), on=["layer", "dict_size"])
    metrics["train_seconds"] = trained.seconds
    training_log = trained.log.assign(layer=[specs[i].layer for i in trained.log["spec"]],
                                      dict_size=[specs[i].d_sae for i in trained.log["spec"]]).drop(columns="spec")
    return MeasuredDictionaries(specs, [sae.cpu() for sae in trained.saes], metrics, training_log)
