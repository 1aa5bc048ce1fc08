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
from lfp_engine.sae.keys import DictionaryKey


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
