"""Matrix products in bfloat16 during training, where the hardware computes bfloat16 natively.

Training the offline world's model and the dictionaries is mostly matrix products. Under
`torch.autocast` with bfloat16 the products read bfloat16 copies of their operands and
accumulate in float32, while the weights, Adam's state, layer norms, softmax and the loss stay
float32 (mixed precision, Micikevicius et al. 2018; bfloat16 keeps float32's exponent range, so no
loss scaling is needed). On a CPU with AVX-512 BF16 or AMX, or a GPU with bfloat16 units, that
runs the products at two to three times float32's rate (docs/benchmarks.md). Elsewhere bfloat16
is emulated and slower than float32, so the setting falls back to float32 and says so in the log.

Which precision a step trains in is a setting (`synthetic.pretrain_precision`,
`crosscoder.precision`), float32 by default, so a preset chooses it explicitly, it is part of the
stage's fingerprint, and a run on new hardware never changes precision unasked. The SAEs train in
float32: at the paper's batch of 32 rows, casting costs what bfloat16 products save.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Literal

import torch

log = logging.getLogger(__name__)

Precision = Literal["float32", "bfloat16"]


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 products natively (CPU: AVX-512 BF16 or AMX; CUDA: the
    device's own answer); emulated bfloat16 is slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(check() for check in checks if check is not None)
    return False


def effective_precision(precision: Precision, device: torch.device, what: str) -> Precision:
    """The precision `what` trains in on `device`: the one asked for, or float32 (logged) where
    the device has no native bfloat16."""
    if precision == "bfloat16" and not native_bfloat16(device):
        log.warning("%s: %s has no native bfloat16 (AVX-512 BF16, AMX or a bfloat16 GPU); training in float32",
                    what, device.type)
        return "float32"
    return precision


@contextlib.contextmanager
def autocast(precision: Precision, device: torch.device) -> Iterator[None]:
    """Matrix products in `precision` inside the block (an effective precision: see above)."""
    if precision == "float32":
        yield
        return
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield
