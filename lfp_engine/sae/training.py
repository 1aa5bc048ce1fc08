"""Training sparse autoencoders: every dictionary of a run in one pass (paper 3.2, appendix F).

Specs of one shape (all layers, one hidden size) are stacked into one module (see
`autoencoder.py`), so one pass over the activations trains all of them with batched matrix
products; stacked members are independent (the loss is a sum and Adam is elementwise), so each
follows exactly the updates it would get alone. Which dictionaries a run trains, and on what, is
`dictionaries.py`.

Data-parallel training over several processes (`ranks`) is DistributedDataParallel's scheme:
every process draws the same global batch, computes the losses on its equal slice of the rows,
and the gradients are averaged over the processes before every optimizer step. The losses are
means over rows, so the averaged gradient is the global batch's: the same updates as one process
with the same batch size, up to the rounding of the sums.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from lfp_engine.run.distributed import SINGLE, Ranks
from lfp_engine.run.errors import InputError
from lfp_engine.run.seeding import derive_seed
from lfp_engine.sae.autoencoder import SparseAutoencoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SaeSpec:
    """One dictionary to train: on which layer's activations, how wide, how."""

    layer: int
    d_sae: int
    architecture: str = "tied"
    l1_coefficient: float = 1e-3
    k: int | None = None

    def seed(self, seed: int) -> int:
        """This dictionary's init seed: its layer and size only, whatever is trained alongside it,
        so variants that differ in L1 coefficient or tying (the sweep, the comparison) start alike."""
        return derive_seed(seed, "sae", str(self.layer), str(self.d_sae))


@dataclass
class TrainedSaes:
    saes: list[SparseAutoencoder]
    """One per spec, in the order of the specs."""
    log: pd.DataFrame
    """spec (index into the specs), step, loss, mse, sparsity: means over each logging window."""
    seconds: float


def _stacks(specs: Sequence[SaeSpec]) -> dict[tuple[str, int, int | None], list[int]]:
    groups: dict[tuple[str, int, int | None], list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault((spec.architecture, spec.d_sae, spec.k), []).append(i)
    return groups


def train_saes(batches: Iterable[torch.Tensor], layers: Sequence[int], specs: Sequence[SaeSpec], d_in: int,
               n_steps: int, learning_rate: float, seed: int, device: torch.device | str = "cpu",
               log_every: int = 100, desc: str = "train SAEs", ranks: Ranks = SINGLE) -> TrainedSaes:
    """Train every SAE in `specs` in one pass over `batches` ([len(layers), B, d_in] each, layer
    i of the batch holding layer `layers[i]`'s activations of the same rows).

    Specs of one shape share a stacked module and one batched forward/backward per step; one
    Adam optimizer (per-parameter, so per member) updates everything. Losses stay on the device
    and are read every `log_every` steps only, so a GPU never waits on the host mid-window.
    Deterministic: seeded init per spec, and the batch order is the caller's (seeded). With several
    processes (`ranks`) the batches are global ones, of which each process trains on its slice,
    and gradients and logged losses are averaged over the processes (module docstring).
    Long because the loop's state (stacks, optimizer, on-device loss windows) is shared by every
    step; split up, it would travel between functions on every one of them.
    """
    if not specs:
        raise InputError("no SAEs to train")
    missing = sorted({s.layer for s in specs} - set(layers))
    if missing:
        raise InputError(f"SAEs asked for layers {missing}, which the activations do not hold ({list(layers)})")
    position = {layer: i for i, layer in enumerate(layers)}
    stacks: list[tuple[SparseAutoencoder, torch.Tensor | None, torch.Tensor, list[int]]] = []
    for (architecture, d_sae, k), members in _stacks(specs).items():
        module = SparseAutoencoder(d_in, d_sae, architecture, k, stack=len(members)).to(device)
        module.initialize([torch.Generator().manual_seed(specs[i].seed(seed)) for i in members])
        rows = [position[specs[i].layer] for i in members]
        # A stack holding every layer in batch order reads the batch as it is, without a copy.
        select = None if rows == list(range(len(layers))) else torch.tensor(rows, device=device)
        l1 = torch.tensor([specs[i].l1_coefficient for i in members], device=device)
        stacks.append((module, select, l1, members))
    params = [p for module, *_ in stacks for p in module.parameters()]
    # Fused Adam: one kernel for all parameters, about 3x faster than the foreach version on a CPU.
    optimizer = torch.optim.Adam(params, lr=learning_rate, fused=True)
    windows = [torch.zeros(3, len(members), device=device) for *_, members in stacks]
    records = []
    start = time.monotonic()
    iterator = iter(batches)
    progress = tqdm(range(n_steps), desc=desc, unit="step", mininterval=1, leave=False)
    for step in progress:
        batch = next(iterator, None)
        if batch is None:
            raise InputError(f"the activation stream ended after {step} of {n_steps} steps")
        batch = ranks.part(batch, dim=1)
        optimizer.zero_grad(set_to_none=True)
        total = None
        for (module, select, l1, _), window in zip(stacks, windows):
            loss, mse, sparsity = module.losses(batch if select is None else batch.index_select(0, select), l1)
            total = loss.sum() if total is None else total + loss.sum()
            window += torch.stack([loss, mse, sparsity]).detach()
        total.backward()
        ranks.average_([p.grad for p in params if p.grad is not None])
        optimizer.step()
        if (step + 1) % log_every == 0 or step + 1 == n_steps:
            n = (step % log_every) + 1
            ranks.average_(windows)
            means = torch.zeros(len(specs), 3)
            for (*_, members), window in zip(stacks, windows):
                means[members] = (window / n).T.cpu()
                window.zero_()
            records += [{"spec": i, "step": step + 1, "loss": v[0], "mse": v[1], "sparsity": v[2]}
                        for i, v in enumerate(means.tolist())]
            progress.set_postfix(loss=f"{means[:, 0].mean().item():.4g}")
    progress.close()
    saes: list[SparseAutoencoder] = [None] * len(specs)  # type: ignore[list-item]
    for module, _, _, members in stacks:
        for j, i in enumerate(members):
            saes[i] = module.member(j).eval()
    seconds = time.monotonic() - start
    log.info("trained %d SAEs in %d steps in %.1f s", len(specs), n_steps, seconds)
    return TrainedSaes(saes=saes, log=pd.DataFrame(records), seconds=seconds)

