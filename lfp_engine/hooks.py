"""Scoped forward hooks on MLP blocks: read their outputs, or replace them, for one block of code.

The authors' code registered hooks every batch and never removed them, so later passes ran
through a growing pile of stale hooks (METHOD.md, "mistakes"). Here every hook lives inside a
`with` block and is removed in `finally`, whatever happens inside it, an exception included.

Two uses:
- `capture_mlp_outputs`: record the MLP outputs of several layers during one forward pass
  (activation capture for the SAEs, SAE codes for the probe and the dashboard). With
  `stop_after_last=True` the pass ends as soon as the deepest requested layer has run, since
  nothing after it is needed (later layers, the unembedding and its logits are skipped).
- `replace_mlp_output`: substitute f(output) for a layer's MLP output, e.g. an SAE's
  reconstruction (the spliced-in loss), zeros (zero ablation), or a reconstruction with some
  features switched off plus the SAE's error term (the ablation stage).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .architecture import mlp_modules

MlpOutputFn = Callable[[torch.Tensor], torch.Tensor]


class _StopForward(Exception):
    """Raised by the deepest capture hook to end a forward pass early; never leaves this module."""


def _main_tensor(output: torch.Tensor | tuple) -> torch.Tensor:
    """An MLP block returns a tensor in most architectures and a tuple (output, extras) in a few."""
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def capture_mlp_outputs(model: nn.Module, layers: list[int],
                        stop_after_last: bool = False) -> Iterator[dict[int, torch.Tensor]]:
    """Yield a dict that each forward pass inside the block fills with {layer: MLP output [B, T, d]}.

    The tensors are detached and keep the model's dtype and device. With `stop_after_last`, a
    forward pass inside the block stops once the deepest requested layer's MLP has run: the
    model call then returns nothing and the block is left at once (make the call the block's
    last statement). A layer index out of range raises `InputError` before any hook is placed.
    """
    modules = mlp_modules(model, layers)
    captured: dict[int, torch.Tensor] = {}
    last = max(layers)
    handles = []

    def hook_for(layer: int):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor | tuple) -> None:
            captured[layer] = _main_tensor(output).detach()
            if stop_after_last and layer == last:
                raise _StopForward

        return hook

    try:
        for layer, module in modules.items():
            handles.append(module.register_forward_hook(hook_for(layer)))
        yield captured
    except _StopForward:
        pass
    finally:
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
