"""Switching SAE features off (zero ablation) or pushing on them (steering), inside the model.

Zero ablation (paper table 6), done as the paper describes and its code did not: at each
chosen layer the MLP output h is encoded, the ablated features' code entries are set to zero,
and the SAE's reconstruction *plus its error term* replaces h:

    decode(z') + (h - decode(z)) = h - sum over ablated f of z_f * W_dec[f]

so exactly what the ablated features contributed is removed and nothing else changes; with
nothing ablated, h passes through untouched (bit for bit). Steering adds
strength * W_dec[f] / ||W_dec[f]|| at every position.

Crosscoder latents (model diffing, after the paper) are ablated the same way in the tuned model,
h_tuned - sum over ablated j of z_j * d_j^tuned, where the code z_j reads the base model's output
at the same token too: the base model runs in lockstep (`diffing/paired_forward.py`), and with nothing
ablated it does not run at all.

Interventions are per request. `intervention_hooks` installs, once per model, one forward hook
per layer that applies whatever intervention is *current*; `intervening` makes an intervention
current for the block of code that runs it, through a `ContextVar`. Each thread (each dashboard
session) has its own context, so two sessions generating at once, one ablating and one not,
each get exactly the result they would get alone, with one shared model in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
from torch import nn

from lfp_engine.diffing.paired_forward import (LatentContribution, PairedModels, accompanied, check_latents,
                                               companion_hooks, latent_contributions)
from lfp_engine.models.architecture import mlp_modules
from lfp_engine.run.errors import InputError
from lfp_engine.sae.autoencoder import SparseAutoencoder
from lfp_engine.sae.keys import DictionaryKey
from lfp_engine.validation.contribution import FeatureContribution, check_range

LayerEdit = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Intervention:
    ablate: Mapping[DictionaryKey, tuple[int, ...]] = field(default_factory=dict)
    """Features whose code entries are zeroed, per dictionary."""
    steer: Mapping[DictionaryKey, tuple[tuple[int, float], ...]] = field(default_factory=dict)
    """(feature, strength) pairs whose unit decoder direction is added, per dictionary."""
    ablate_crosscoder: Mapping[DictionaryKey, tuple[int, ...]] = field(default_factory=dict)
    """Crosscoder latents whose contribution to the tuned model is removed, per crosscoder."""

    @property
    def empty(self) -> bool:
        return not any(self.ablate.values()) and not any(self.steer.values()) and \
            not any(self.ablate_crosscoder.values())


NO_INTERVENTION = Intervention()
_current: ContextVar[Mapping[int, LayerEdit]] = ContextVar("lfp_intervention", default=MappingProxyType({}))
"""The current intervention, as the edit it makes at each layer it touches."""


def validate(intervention: Intervention, saes: Mapping[DictionaryKey, SparseAutoencoder],
             paired: PairedModels | None = None) -> None:
    """Refuse unknown dictionaries, feature indices out of range and non-finite strengths."""
    sizes = {key: sae.d_sae for key, sae in saes.items()}
    for key, features in [*intervention.ablate.items(),
                          *((k, tuple(f for f, _ in v)) for k, v in intervention.steer.items())]:
        if key not in saes:
            raise InputError(f"no dictionary of size {key[1]} at layer {key[0]}; available: {sorted(saes)}")
        check_range(features, sizes[key], f"layer {key[0]}'s dictionary of {sizes[key]}")
    check_latents(paired, intervention.ablate_crosscoder)
    for pairs in intervention.steer.values():
        for _, strength in pairs:
            if not math.isfinite(strength):
                raise InputError(f"steering strength must be a finite number, got {strength}")


def layer_edits(intervention: Intervention, saes: Mapping[DictionaryKey, SparseAutoencoder],
                paired: PairedModels | None = None) -> dict[int, LayerEdit]:
    """{layer: h -> h after the intervention} for the layers it touches, prepared once per request
    (index tensors, encoder columns, summed steering vectors) so each forward pass only computes.
    Every removal is computed from the layer's unmodified output."""
    ablated: dict[int, list[tuple[SparseAutoencoder, tuple[int, ...]]]] = {}
    for key, features in sorted(intervention.ablate.items()):
        if features:
            ablated.setdefault(key[0], []).append((saes[key], tuple(features)))
    crossed = latent_contributions(paired, intervention.ablate_crosscoder)
    pushes: dict[int, torch.Tensor] = {}
    for key, pairs in sorted(intervention.steer.items()):
        for feature, strength in pairs:
            direction = saes[key].W_dec[feature].detach()
            push = strength * direction / direction.norm()
            pushes[key[0]] = pushes[key[0]] + push if key[0] in pushes else push

    def edit(removals: list[FeatureContribution | LatentContribution], push: torch.Tensor | None) -> LayerEdit:
        def apply(h: torch.Tensor) -> torch.Tensor:
            out = h
            for removal in removals:
                out = out - removal.removed(h).to(h.dtype)
            return out if push is None else out + push.to(h.dtype)

        return apply

    layers = ablated.keys() | crossed.keys() | pushes.keys()
    return {layer: edit(([FeatureContribution(ablated[layer])] if layer in ablated else []) +
                        ([crossed[layer]] if layer in crossed else []), pushes.get(layer))
            for layer in layers}


@contextmanager
def intervention_hooks(model: nn.Module, saes: Mapping[DictionaryKey, SparseAutoencoder],
                       paired: PairedModels | None = None) -> Iterator[None]:
    """Install one hook per layer that has an SAE (or a crosscoder, with `paired`); each applies
    the *current* intervention. With `paired`, also the pre-hook that runs the base model alongside
    when the current intervention ablates crosscoder latents.

    The dashboard keeps the block open for the model's lifetime; the pipeline scopes it to a
    stage. Hooks are removed on exit, whatever happened inside.
    """
    layers = sorted({layer for layer, _ in saes} | ({key[0] for key in paired.crosscoders} if paired else set()))

    def hook_for(layer: int):
        def hook(_module: nn.Module, _inputs: tuple, output):
            edit = _current.get().get(layer)
            if edit is None:
                return None  # untouched output, bit for bit
            new = edit(output[0] if isinstance(output, tuple) else output)
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    with ExitStack() as stack:
        for layer, module in mlp_modules(model, layers).items():
            stack.callback(module.register_forward_hook(hook_for(layer)).remove)
        if paired is not None:
            stack.enter_context(companion_hooks(model))
        yield


@contextmanager
def intervening(intervention: Intervention, saes: Mapping[DictionaryKey, SparseAutoencoder],
                paired: PairedModels | None = None) -> Iterator[None]:
    """Make `intervention` current for this block (this thread's context only); with crosscoder
    latents, also a base-model companion at their layers."""
    validate(intervention, saes, paired)
    crossed = sorted({key[0] for key, latents in intervention.ablate_crosscoder.items() if latents})
    with ExitStack() as stack:
        if crossed:
            stack.enter_context(accompanied(paired.base, crossed))
        token = _current.set(layer_edits(intervention, saes, paired))
        stack.callback(_current.reset, token)
        yield
