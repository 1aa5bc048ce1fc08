"""Switching SAE features off (zero ablation) or pushing on them (steering), inside the model.

Zero ablation (paper table 6), done as the paper describes and its code did not: at each
chosen layer the MLP output h is encoded, the ablated features' code entries are set to zero,
and the SAE's reconstruction *plus its error term* replaces h:

    decode(z') + (h - decode(z)) = h - sum over ablated f of z_f * W_dec[f]

so exactly what the ablated features contributed is removed and nothing else changes; with
nothing ablated, h passes through untouched (bit for bit). Steering adds
strength * W_dec[f] / ||W_dec[f]|| at every position.

Interventions are per request. `intervention_hooks` installs, once per model, one forward hook
per layer that applies whatever intervention is *current*; `intervening` makes an intervention
current for the block of code that runs it, through a `ContextVar`. Each thread (each dashboard
session) has its own context, so two sessions generating at once, one ablating and one not,
each get exactly the result they would get alone, with one shared model in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import nn

from .architecture import mlp_modules
from .errors import InputError
from .sae import SparseAutoencoder

Key = tuple[int, int]
"""(layer, dict_size): which dictionary a feature index refers to."""


@dataclass(frozen=True)
class Intervention:
    ablate: Mapping[Key, tuple[int, ...]] = field(default_factory=dict)
    """Features whose code entries are zeroed, per dictionary."""
    steer: Mapping[Key, tuple[tuple[int, float], ...]] = field(default_factory=dict)
    """(feature, strength) pairs whose unit decoder direction is added, per dictionary."""

    @property
    def empty(self) -> bool:
        return not any(self.ablate.values()) and not any(self.steer.values())

    def layers(self) -> set[int]:
        return {k[0] for k, v in self.ablate.items() if v} | {k[0] for k, v in self.steer.items() if v}


NO_INTERVENTION = Intervention()
_current: ContextVar[Intervention] = ContextVar("lfp_intervention", default=NO_INTERVENTION)


def validate(intervention: Intervention, saes: Mapping[Key, SparseAutoencoder]) -> None:
    """Refuse unknown dictionaries, feature indices out of range and non-finite strengths."""
    for key, features in [*intervention.ablate.items(),
                          *((k, tuple(f for f, _ in v)) for k, v in intervention.steer.items())]:
        if key not in saes:
            raise InputError(f"no dictionary of size {key[1]} at layer {key[0]}; available: {sorted(saes)}")
        bad = [f for f in features if not 0 <= int(f) < saes[key].d_sae]
        if bad:
            raise InputError(f"feature index {bad} out of range for layer {key[0]}'s dictionary of {saes[key].d_sae}")
    for pairs in intervention.steer.values():
        for _, strength in pairs:
            if not math.isfinite(strength):
                raise InputError(f"steering strength must be a finite number, got {strength}")


def intervened(h: torch.Tensor, layer: int, intervention: Intervention,
               saes: Mapping[Key, SparseAutoencoder]) -> torch.Tensor | None:
    """h after the layer's part of the intervention, or None when it leaves this layer alone."""
    delta = None
    for key, features in intervention.ablate.items():
        if key[0] != layer or not features:
            continue
        sae = saes[key]
        idx = torch.as_tensor(features, dtype=torch.long, device=h.device)
        z = sae.encode(h.to(sae.W_enc.dtype))[..., idx]
        part = z @ sae.W_dec[idx]
        delta = part if delta is None else delta + part
    out = h if delta is None else h - delta.to(h.dtype)
    for key, pairs in intervention.steer.items():
        if key[0] != layer or not pairs:
            continue
        sae = saes[key]
        for feature, strength in pairs:
            direction = sae.W_dec[feature]
            out = out + (strength * direction / direction.norm()).to(h.dtype)
    return None if out is h else out


@contextmanager
def intervention_hooks(model: nn.Module, saes: Mapping[Key, SparseAutoencoder]) -> Iterator[None]:
    """Install one hook per layer that has an SAE; each applies the *current* intervention.

    The dashboard keeps the block open for the model's lifetime; the pipeline scopes it to a
    stage. Hooks are removed on exit, whatever happened inside.
    """
    layers = sorted({layer for layer, _ in saes})
    handles = []

    def hook_for(layer: int):
        def hook(_module: nn.Module, _inputs: tuple, output):
            intervention = _current.get()
            if intervention.empty or layer not in intervention.layers():
                return None  # untouched output, bit for bit
            h = output[0] if isinstance(output, tuple) else output
            new = intervened(h, layer, intervention, saes)
            if new is None:
                return None
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    try:
        for layer, module in mlp_modules(model, layers).items():
            handles.append(module.register_forward_hook(hook_for(layer)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def intervening(intervention: Intervention, saes: Mapping[Key, SparseAutoencoder]) -> Iterator[None]:
    """Make `intervention` current for this block (this thread's context only)."""
    validate(intervention, saes)
    token = _current.set(intervention)
    try:
        yield
    finally:
        _current.reset(token)
