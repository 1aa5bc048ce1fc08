"""Several processes, one run: who is who, how they wait for and hear from each other, and how a
stage deals its work out among them.

A run is spread over processes the way PyTorch and Hugging Face jobs are (docs/scaling.md):
a launcher (`torchrun`, `accelerate launch`, or either under Slurm's `srun`) starts the same
`lfp run` in every process and tells each its place through the environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT). `Ranks` is that place plus the few collectives the stages
need, over `torch.distributed` (NCCL between GPUs, gloo between CPU processes):

- rank 0, the main rank, alone writes the store and the manifest, so a run's store is written by
  one process however many there are; a stage that does not share its work runs on rank 0 while
  the others wait;
- a stage that shares its work (`Stage.distributed`) runs on every rank and deals out units that a
  single process has too (a shard of activation rows, a batch of generations or encodings, a
  layer's dictionaries), each computed exactly as one process computes it, so the merged result is
  the single process's, number for number (data-parallel SAE training: up to the rounding of the
  averaged gradients);
- with one process (`SINGLE`) every collective is the identity and every unit is local: the
  single-process path runs the same code and computes the same numbers, bit for bit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

from lfp_engine.run.atomic import atomic_path
from lfp_engine.run.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the run's processes, and the collectives between them."""

    rank: int = 0
    """0 for the main process, which alone writes the store."""
    size: int = 1
    """How many processes run the stage (the launcher's WORLD_SIZE)."""
    local_rank: int = 0
    """Its place on its own machine: which of the machine's GPUs it uses."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def owns(self, unit: int) -> bool:
        """Whether unit number `unit` of a stage's work is this process's: units are dealt round-robin."""
        return unit % self.size == self.rank

    def mine(self, units: Sequence[T]) -> list[T]:
        """This process's units of `units`, dealt round-robin as `owns` deals them."""
        return list(units[self.rank::self.size])

    def part(self, batch: torch.Tensor, dim: int) -> torch.Tensor:
        """This process's equal slice of a global batch along `dim` (the batch itself for one process)."""
        if not self.distributed:
            return batch
        n = batch.shape[dim]
        if n % self.size:
            raise ConfigError(f"a batch of {n} rows does not split evenly over {self.size} processes: "
                              f"choose a batch size divisible by {self.size}")
        step = n // self.size
        return batch.narrow(dim, self.rank * step, step)

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.distributed:
            dist.barrier()

    def broadcast(self, value: T) -> T:
        """Rank 0's `value` on every process (what the others pass is ignored)."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, value: T) -> list[T]:
        """Every process's `value`, in rank order, on every process."""
        if not self.distributed:
            return [value]
        gathered: list[T] = [None] * self.size  # type: ignore[list-item]
        dist.all_gather_object(gathered, value)
        return gathered

    def merged(self, local: Mapping[int, T]) -> list[T]:
        """The values of every process's units ({unit: value}, units dealt by `owns`), in unit order,
        on every process: what one process computing every unit in order would hold."""
        everything: dict[int, T] = {}
        for part in self.all_gather(dict(local)):
            everything.update(part)
        return [everything[unit] for unit in sorted(everything)]

    def average_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Replace each tensor, in place, by its mean over the processes (one all-reduce for all of
        them, as DistributedDataParallel averages gradients)."""
        if not self.distributed or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()

    def either(self, mask: torch.Tensor) -> torch.Tensor:
        """The elementwise OR of a boolean tensor over the processes (the tensor itself for one)."""
        if not self.distributed:
            return mask
        values = mask.to(torch.uint8)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return values.bool()

    def sum_(self, array: np.ndarray) -> None:
        """Replace `array`, in place, by its sum over the processes: each process fills the rows of
        its units and leaves zeros in the others', and every process ends with every row (exactly:
        adding zeros rounds nothing)."""
        if not self.distributed:
            return
        tensor = torch.from_numpy(array)
        if dist.get_backend() == "nccl":
            on_device = tensor.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(on_device)
            tensor.copy_(on_device.cpu())
        else:
            dist.all_reduce(tensor)

    def from_main(self, work: Callable[[], T]) -> T:
        """`work()` run on rank 0 alone; its value, or the error it raised, on every process."""
        if not self.distributed:
            return work()
        outcome: tuple[bool, object] | None = None
        if self.is_main:
            try:
                outcome = (True, work())
            except Exception as err:  # noqa: BLE001 - handed to every process, then raised there
                outcome = (False, err)
        ok, value = self.broadcast(outcome)
        if not ok:
            raise value  # type: ignore[misc]
        return value  # type: ignore[return-value]

    def device(self, device: torch.device) -> torch.device:
        """Where this process works: with several processes on GPUs, the GPU of its local rank."""
        if not self.distributed or device.type != "cuda":
            return device
        if device.index is not None:
            raise ConfigError(f"setting device: {device} names one GPU, but each of the {self.size} processes "
                              "needs its own: use device=auto or device=cuda")
        return torch.device("cuda", self.local_rank)


SINGLE = Ranks()
"""One process: every collective is the identity."""


def from_environment() -> Ranks:
    """This process's place as its launcher set it (torchrun, accelerate launch, srun with either);
    one process when no launcher did."""
    try:
        ranks = Ranks(rank=int(os.environ.get("RANK", "0")), size=int(os.environ.get("WORLD_SIZE", "1")),
                      local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (set by torchrun or "
                          "accelerate launch)") from None
    if not 0 <= ranks.rank < ranks.size:
        raise ConfigError(f"RANK={ranks.rank} is not below WORLD_SIZE={ranks.size}")
    return ranks


def connect(ranks: Ranks, device: torch.device, timeout_minutes: float) -> None:
    """Join the launcher's process group (NCCL for GPUs, gloo for CPUs); nothing for one process."""
    if not ranks.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    log.info("process %d of %d joined the process group (%s, device %s)", ranks.rank, ranks.size, backend, device)


def disconnect() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def shared_atomic_path(final: Path, ranks: Ranks) -> Iterator[Path]:
    """`atomic_path` for a folder every process writes its part of: rank 0 creates the temporary
    folder and tells the others its name; once every process has left the block, rank 0 renames it
    into place. A process killed inside leaves only the temporary, which the next run sweeps away."""
    if not ranks.distributed:
        with atomic_path(final) as tmp:
            yield tmp
        return
    if ranks.is_main:
        with atomic_path(final) as tmp:
            tmp.mkdir(parents=True)
            ranks.broadcast(str(tmp))
            yield tmp
            ranks.barrier()
    else:
        tmp = Path(ranks.broadcast(""))
        yield tmp
        ranks.barrier()
