"""The base model run in lockstep with the tuned model, for interventions through a crosscoder.

A crosscoder latent's code reads both models at the same token (Lindsey et al. 2024), so ablating
it inside the tuned model needs, at every forward pass of the tuned model, the base model's MLP
outputs on exactly the same inputs. A forward pre-hook on the tuned model (`companion_hooks`) runs
the base model first, with the same arguments (token ids, attention mask, positions, cache
positions), stopped after the deepest layer needed, and keeps its outputs for the tuned model's
layer hooks. During generation the tuned model reads only the new tokens against its key-value
cache; the base model then gets a cache of its own, started afresh whenever the tuned model starts
a new cache (a new `generate` call), so both read the same prefix. The companion is current per
request (a `ContextVar`), like interventions, and runs only when the current request needs it.
`LatentContribution` is what the tuned model's layer hook removes: the chosen latents' codes on
[base; tuned] at that layer times their tuned decoder rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from lfp_engine.diffing.crosscoder import Crosscoder
from lfp_engine.models.hooks import capture_mlp_outputs
from lfp_engine.run.errors import InputError
from lfp_engine.sae.keys import DictionaryKey
from lfp_engine.validation.contribution import FeatureContribution, check_range


@dataclass(frozen=True)
class PairedModels:
    """What intervening on crosscoder latents needs besides the tuned model: the base model and the
    crosscoders over the two (by layer and size)."""

    base: nn.Module
    crosscoders: Mapping[DictionaryKey, Crosscoder]


class BaseCompanion:
    """The base model's MLP outputs at `layers` for the tuned model's current forward pass."""

    def __init__(self, base: nn.Module, layers: Sequence[int]):
        self.base, self.layers = base, sorted(set(layers))
        self.tuned_cache: object | None = None
        self.base_cache: DynamicCache | None = None
        self.outputs: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def run(self, args: tuple, kwargs: dict) -> None:
        """Run the base model on the tuned model's arguments (its own key-value cache in place of the
        tuned model's) and keep its outputs at the companion's layers."""
        inputs = dict(kwargs)
        if args:
            inputs.setdefault("input_ids", args[0])
        cache = inputs.pop("past_key_values", None)
        if cache is not None:
            if cache is not self.tuned_cache:
                self.tuned_cache, self.base_cache = cache, DynamicCache(config=self.base.config)
            inputs["past_key_values"] = self.base_cache
        with capture_mlp_outputs(self.base, self.layers, stop_after_last=True) as captured:
            self.base(**inputs)
        self.outputs = dict(captured)


_companion: ContextVar[BaseCompanion | None] = ContextVar("lfp_base_companion", default=None)


def current_companion() -> BaseCompanion | None:
    return _companion.get()


def _run_companion(_module: nn.Module, args: tuple, kwargs: dict) -> None:
    companion = _companion.get()
    if companion is not None:
        companion.run(args, kwargs)


@contextmanager
def companion_hooks(tuned: nn.Module) -> Iterator[None]:
    """Install the pre-hook that runs the current companion before each forward pass of `tuned`."""
    handle = tuned.register_forward_pre_hook(_run_companion, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def accompanied(base: nn.Module, layers: Sequence[int]) -> Iterator[BaseCompanion]:
    """Make a fresh companion current for this block (this thread's context only)."""
    companion = BaseCompanion(base, layers)
    token = _companion.set(companion)
    try:
        yield companion
    finally:
        _companion.reset(token)


class LatentContribution:
    """What some crosscoder latents contribute to the tuned model's output at one layer: their codes
    (read from the base model's output there too, through the current companion) times their tuned
    decoder rows."""

    def __init__(self, parts: list[tuple[Crosscoder, tuple[int, ...]]]):
        self.layer = parts[0][0].layer
        self.parts = [(crosscoder.width, FeatureContribution([(crosscoder.module, latents)]))
                      for crosscoder, latents in parts]

    def removed(self, h: torch.Tensor) -> torch.Tensor:
        companion = current_companion()
        if companion is None or self.layer not in companion.outputs:
            raise RuntimeError("crosscoder latents ablated without the base model running alongside")
        base = companion.outputs[self.layer].to(h.dtype)
        total = None
        for width, contribution in self.parts:
            part = contribution.removed(torch.cat([base, h], dim=-1))[..., width:]
            total = part if total is None else total + part
        return total


def check_latents(paired: PairedModels | None, latents: Mapping[DictionaryKey, tuple[int, ...]]) -> None:
    """Refuse latents of a crosscoder `paired` does not hold (none without `paired`) and latent indices
    out of range."""
    crosscoders = {} if paired is None else paired.crosscoders
    for key, chosen in latents.items():
        if chosen and key not in crosscoders:
            raise InputError(f"no crosscoder of size {key[1]} at layer {key[0]}; available: {sorted(crosscoders)} "
                             "(the `crosscoder` stage makes them)")
        if chosen:
            check_range(chosen, crosscoders[key].module.d_sae, f"layer {key[0]}'s crosscoder of {key[1]}")


def latent_contributions(paired: PairedModels | None,
                         latents: Mapping[DictionaryKey, tuple[int, ...]]) -> dict[int, LatentContribution]:
    """{layer: what the chosen `latents` of its crosscoders contribute to the tuned model there}, for
    the layers where any is chosen (`paired` is read only then)."""
    crossed: dict[int, list[tuple[Crosscoder, tuple[int, ...]]]] = {}
    for key, chosen in sorted(latents.items()):
        if chosen:
            crossed.setdefault(key[0], []).append((paired.crosscoders[key], tuple(chosen)))
    return {layer: LatentContribution(parts) for layer, parts in crossed.items()}
