"""Seeds: one run seed, from which every stage derives its own.

A stage's seed is a hash of the run seed and the stage's name, so stages draw independent
streams, and re-running one stage alone (after a crash, or with `--stages`) draws exactly
what it drew in the full run.
"""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch


def derive_seed(seed: int, *names: str) -> int:
    digest = hashlib.sha256(":".join([str(seed), *names]).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and GPU), and ask cuBLAS for reproducible kernels."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
