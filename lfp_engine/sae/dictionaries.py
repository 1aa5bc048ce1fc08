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

from lfp_engine.run.distributed import SINGLE, Ranks
from lfp_engine.run.errors import ConfigError
from lfp_engine.run.settings import SaePlacement
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
                       device: torch.device, desc: str = "train SAEs", ranks: Ranks = SINGLE,
                       buffer_layers: int | None = None) -> TrainedSaes:
    """Train `specs` on the training set with the run's optimiser settings, in one joint loop; with
    several processes (`ranks`), data-parallel over them. `buffer_layers`: see
    `ActivationSet.shuffled_batches`."""
    layers = sorted({s.layer for s in specs})
    n_steps = settings.n_train_examples // settings.batch_size
    batches = train.shuffled_batches(layers, settings.batch_size, n_steps, seed, device, buffer_layers=buffer_layers)
    return train_saes(batches, layers, specs, train.d_model, n_steps, settings.learning_rate, seed, device,
                      desc=desc, ranks=ranks)


@dataclass
class MeasuredDictionaries:
    specs: list[SaeSpec]
    saes: list[SparseAutoencoder]
    """One per spec, in the order of the specs, on the CPU: the dictionaries this process saves
    (all of them for one process; with several, see `train_and_measure`)."""
    metrics: pd.DataFrame
    """One row per dictionary of the run: its spec, reconstruction and spliced-loss metrics, train_seconds."""
    training_log: pd.DataFrame
    """layer, dict_size, step, loss, mse, sparsity, for every dictionary of the run."""


def measure(evaluation: ActivationSet, model: nn.Module, pad_token_id: int, specs: Sequence[SaeSpec],
            saes: Sequence[SparseAutoencoder], settings: SaeSettings, device: torch.device) -> pd.DataFrame:
    """Held-out reconstruction metrics and the spliced-in LM loss of each dictionary, one row each."""
    metrics = reconstruction_table(evaluation, specs, saes, settings, device)
    return metrics.merge(spliced_losses(model, pad_token_id, evaluation, specs, saes, settings.eval_batch_size),
                         on=["layer", "dict_size"])


def _log_frame(trained: TrainedSaes, specs: Sequence[SaeSpec], numbers: Sequence[int]) -> pd.DataFrame:
    """The training log with each row's dictionary named (layer, dict_size) and numbered in the run
    (`spec`: `numbers[i]` for the i-th of `specs`)."""
    log = trained.log
    return log.assign(layer=[specs[i].layer for i in log["spec"]], dict_size=[specs[i].d_sae for i in log["spec"]],
                      spec=[numbers[i] for i in log["spec"]])


def train_and_measure(train: ActivationSet, evaluation: ActivationSet, model: nn.Module, pad_token_id: int,
                      settings: SaeSettings, seed: int, device: torch.device, desc: str, ranks: Ranks = SINGLE,
                      placement: SaePlacement = "data") -> MeasuredDictionaries:
    """Train the n and 2n dictionaries of every layer of `train` and measure them on `evaluation`,
    the spliced-in loss on `model` (the model the activations came from).

    With several processes (`ranks`) the layers are dealt out, each process measuring the
    dictionaries of its layers, and `placement` says who trains: 'data', every process every
    dictionary on its slice of each batch (data-parallel; rank 0 then saves them all), or
    'layers', each process the dictionaries of its layers on whole batches (each saves its own).
    The metrics and the training log come back whole, in one process's order, on every process."""
    specs = dictionary_specs(settings, train.layers, train.d_model)
    if placement == "data" and settings.batch_size % ranks.size:
        raise ConfigError(f"setting sae.batch_size: {settings.batch_size} rows do not split evenly over "
                          f"{ranks.size} processes: choose a multiple of {ranks.size}, or distributed.sae=layers")
    if placement == "layers" and ranks.size > len(train.layers):
        raise ConfigError(f"distributed.sae=layers deals {len(train.layers)} layers to {ranks.size} processes, "
                          "leaving some without work: use distributed.sae=data or fewer processes")
    local = [i for i, s in enumerate(specs) if s.layer in ranks.mine(sorted(train.layers))]
    if placement == "layers":
        trained = train_dictionaries(train, [specs[i] for i in local], settings, seed, device, desc,
                                     buffer_layers=len(train.layers))
        saes, log = dict(zip(local, trained.saes)), _log_frame(trained, [specs[i] for i in local], local)
    else:
        trained = train_dictionaries(train, specs, settings, seed, device, desc, ranks=ranks)
        saes, log = dict(enumerate(trained.saes)), _log_frame(trained, specs, range(len(specs)))
    metrics = measure(evaluation, model, pad_token_id, [specs[i] for i in local], [saes[i] for i in local],
                      settings, device).assign(spec=local) if local else None
    parts = ranks.all_gather((metrics, log if placement == "layers" else None, trained.seconds))
    metrics = pd.concat([m for m, _, _ in parts if m is not None]).sort_values("spec", kind="stable")
    metrics = metrics.drop(columns="spec").reset_index(drop=True).assign(train_seconds=max(t for *_, t in parts))
    if placement == "layers":
        log = pd.concat([g for _, g, _ in parts]).sort_values(["step", "spec"], kind="stable").reset_index(drop=True)
    kept = sorted(saes) if placement == "layers" or ranks.is_main else []
    return MeasuredDictionaries([specs[i] for i in kept], [saes[i].cpu() for i in kept], metrics,
                                log.drop(columns="spec"))
