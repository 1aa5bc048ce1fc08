"""Settings of the run as a whole that no stage's results depend on: how it uses several processes.

Kept apart from the stages' sections on purpose: no stage fingerprints `distributed`, so a run
started on one GPU resumes on eight (and the other way round) without redoing finished stages;
what changes between the two is how fast a stage runs and the rounding of floating-point sums,
never what it computes (docs/scaling.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lfp_engine.run.fields import one_of, require

SaePlacement = Literal["data", "layers"]


@dataclass
class DistributedSettings:
    """How the stages share their work when `lfp run` is launched as several processes
    (`torchrun`, `accelerate launch`, `lfp run --launcher`); ignored by a single process."""

    sae: SaePlacement = "data"
    """How the sae stage uses the processes: data (every process trains every dictionary on its
    slice of each batch and the gradients are averaged, so the global batch is sae.batch_size as in
    one process: data-parallel, DDP) or layers (each process trains the dictionaries of its share of
    the layers on whole batches, as sparsify's --distribute_modules: no gradient traffic, for runs
    with many layers)."""
    timeout_minutes: float = 1440.0
    """How long a process waits for the others at a synchronisation point before giving up, e.g.
    while process 0 alone pretrains a synthetic world or writes the store."""

    def __post_init__(self) -> None:
        one_of("distributed.sae", self.sae, SaePlacement)
        require(self.timeout_minutes > 0,
                f"setting distributed.timeout_minutes: expected a positive number, got {self.timeout_minutes}")
