"""Scoped forward hooks on MLP blocks: read their outputs, or replace them, for one block of code.

The authors' code registered hooks every batch and never removed them, so later passes ran
through a growing pile of stale hooks (docs/architecture.md, "The authors' mistakes"). Here every hook lives inside a
`with` block and is removed in `finally`, whatever happens inside it, an exception included.

Two uses:
- `capture_mlp_outputs`: record the MLP outputs of several layers during one forward pass
  (activation capture for the SAEs, SAE codes for the probe and the dashboard). With
  `stop_after_last=True` the pass ends as soon as the deepest requested layer has run, since
  nothing after it is needed (later layers, the unembedding and its logits are skipped).
- `replace_mlp_output`: substitute f(output) for a layer's MLP output, e.g. an SAE's
  reconstruction (the spliced-in loss), zeros (zero ablation), or a reconstruction with some
  features switched off plus the SAE's error term (the ablation stage).

A capture belongs to the code that opened it: its hooks record (and stop) only the forward
passes run in the same context (thread), through a `ContextVar`. The dashboard shares one model
between sessions, so a session encoding text while another generates must neither fill the
other's capture nor stop its pass. And since registering and removing hooks while another thread
runs the model races with torch's iteration over them, a shared model gets permanent capture
hooks once (`shared_capture_hooks`); a capture on such a model then registers nothing.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import nn

from lfp_engine.models.architecture import mlp_modules, num_layers

MlpOutputFn = Callable[[torch.Tensor], torch.Tensor]


class _StopForward(Exception):
    """Raised by the deepest capture hook to end a forward pass early; never leaves this module."""


def _main_tensor(output: torch.Tensor | tuple) -> torch.Tensor:
    """An MLP block returns a tensor in most architectures and a tuple (output, extras) in a few."""
    return output[0] if isinstance(output, tuple) else output


@dataclass
class _Capture:
    layers: frozenset[int]
    stop_at: int | None
    """The layer after whose MLP the pass ends (None: run the pass to the end)."""
    captured: dict[int, torch.Tensor] = field(default_factory=dict)


_current_capture: ContextVar[_Capture | None] = ContextVar("lfp_capture", default=None)
_shared: weakref.WeakSet[nn.Module] = weakref.WeakSet()
"""Models that carry permanent capture hooks."""


def _capture_hook(layer: int):
    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor | tuple) -> None:
        capture = _current_capture.get()
        if capture is None or layer not in capture.layers:
            return
        capture.captured[layer] = _main_tensor(output).detach()
        if layer == capture.stop_at:
            raise _StopForward

    return hook


@contextmanager
def capture_mlp_outputs(model: nn.Module, layers: list[int],
                        stop_after_last: bool = False) -> Iterator[dict[int, torch.Tensor]]:
    """Yield a dict that each forward pass inside the block fills with {layer: MLP output [B, T, d]}.

    The tensors are detached and keep the model's dtype and device. With `stop_after_last`, a
    forward pass inside the block stops once the deepest requested layer's MLP has run: the
    model call then returns nothing and the block is left at once (make the call the block's
    last statement). A layer index out of range raises `InputError` before any hook is placed.
    Only passes run in this context (thread) are recorded.
    """
    modules = mlp_modules(model, layers)
    capture = _Capture(frozenset(layers), max(layers) if stop_after_last else None)
    handles = [] if model in _shared else [
        module.register_forward_hook(_capture_hook(layer)) for layer, module in modules.items()]
    token = _current_capture.set(capture)
    try:
        yield capture.captured
    except _StopForward:
        pass
    finally:
        _current_capture.reset(token)
        for handle in handles:
            handle.remove()


@contextmanager
def shared_capture_hooks(model: nn.Module) -> Iterator[None]:
    """Permanent capture hooks on every MLP of a model that several threads run at once: inside
    the block, `capture_mlp_outputs` on it registers nothing. Install before any thread runs it."""
    modules = mlp_modules(model, list(range(num_layers(model))))
    handles = [module.register_forward_hook(_capture_hook(layer)) for layer, module in modules.items()]
    _shared.add(model)
    try:
        yield
    finally:
        _shared.discard(model)
        for handle in handles:
            handle.remove()


@contextmanager
def replace_mlp_output(model: nn.Module, layer: int, fn: MlpOutputFn,
                       positions: torch.Tensor | None = None) -> Iterator[None]:
    """Inside the block, the MLP output h [B, T, d] of `layer` becomes fn(h) in every forward pass.

    `positions` ([B, T] bool), when given, limits the replacement to those token positions (the
    others keep h), e.g. the text tokens an SAE was trained on, not padding or the BOS token.
    `fn` must return a tensor of h's shape; it runs under the caller's grad mode.
    """
    (module,) = mlp_modules(model, [layer]).values()

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor | tuple) -> torch.Tensor | tuple:
        h = _main_tensor(output)
        new = fn(h).to(h.dtype)
        if new.shape != h.shape:
            raise ValueError(f"replacement for layer {layer}'s MLP output has shape {tuple(new.shape)}, "
                             f"expected {tuple(h.shape)}")
        if positions is not None:
            new = torch.where(positions.to(h.device)[..., None], new, h)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
