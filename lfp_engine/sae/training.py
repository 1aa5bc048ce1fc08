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
with the same batch size, up to the rounding of the sums. Which latents fired (AuxK's dead-latent
count) is combined over the processes too. BatchTopK is the exception: each process keeps the
k x rows largest codes of its own slice (as sparsify and dictionary_learning do across GPUs), not
of the global batch, and the inference threshold is the processes' average estimate.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from lfp_engine.run.distributed import SINGLE, Ranks
from lfp_engine.run.errors import InputError
from lfp_engine.run.precision import Precision, autocast
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
    n_blocks: int = 1
    """Equal-width inputs concatenated in each row: 1 for an SAE, the models of a crosscoder."""
    auxk_coefficient: float = 0.0
    """Weight of the AuxK loss (Gao et al. 2024: 1/32); 0 switches it off."""
    auxk_dead_tokens: int = 10_000_000
    """Training tokens without firing after which a latent counts as dead for AuxK."""
    threshold_rate: float = 0.01
    """'batchtopk': rate of the moving average of the smallest kept score (the inference threshold)."""

    def seed(self, seed: int) -> int:
        """This dictionary's init seed: its layer and size only, whatever is trained alongside it,
        so variants that differ in L1 coefficient or tying (the sweep, the comparison) start alike."""
        return derive_seed(seed, "sae", str(self.layer), str(self.d_sae))


@dataclass
class TrainedSaes:
    saes: list[SparseAutoencoder]
    """One per spec, in the order of the specs ('batchtopk': thresholds set)."""
    log: pd.DataFrame
    """spec (index into the specs), step, loss, mse, sparsity, aux: means over each logging window."""
    seconds: float
    score_thresholds: list[float | None]
    """'batchtopk': the estimated threshold on ReLU(pre) * w per spec (None for the others)."""


LOGGED = ("loss", "mse", "sparsity", "aux")


class _Stack:
    """The specs of one shape trained as one module, with their per-member training state: loss
    coefficients, tokens since each latent last fired (AuxK), and the BatchTopK threshold estimate."""

    def __init__(self, specs: Sequence[SaeSpec], members: list[int], rows: list[int], n_layers: int, d_in: int,
                 seed: int, device: torch.device | str, ranks: Ranks = SINGLE, precision: Precision = "float32"):
        first = specs[members[0]]
        self.members, self.ranks, self.precision, self.device = members, ranks, precision, torch.device(device)
        self.module = SparseAutoencoder(d_in, first.d_sae, first.architecture, first.k, stack=len(members),
                                        n_blocks=first.n_blocks).to(device)
        self.module.initialize([torch.Generator().manual_seed(specs[i].seed(seed)) for i in members])
        # A stack holding every layer in batch order reads the batch as it is, without a copy.
        self.select = None if rows == list(range(n_layers)) else torch.tensor(rows, device=device)
        values = {name: torch.tensor([float(getattr(specs[i], name)) for i in members], device=device)
                  for name in ("l1_coefficient", "auxk_coefficient", "auxk_dead_tokens", "threshold_rate")}
        self.l1, self.auxk, self.rate = values["l1_coefficient"], values["auxk_coefficient"], values["threshold_rate"]
        self.dead_after = values["auxk_dead_tokens"].unsqueeze(-1)
        self.use_auxk = bool((self.auxk > 0).any())
        self.relu_by_hand = first.architecture in ("tied", "untied") and not self.use_auxk
        if self.relu_by_hand and precision != "float32":
            log.info("%s SAEs without AuxK train in float32 (their step by hand), whatever the precision asked",
                     first.architecture)
        self.since_fired = torch.zeros(len(members), first.d_sae, device=device)
        self.theta = torch.full((len(members),), math.nan, device=device)
        self.window = torch.zeros(len(LOGGED), len(members), device=device)

    def step(self, batch: torch.Tensor) -> None:
        """The gradients of one batch ([n_layers, B, d_in]) into the parameters' `.grad`, replacing the
        last step's; updates the firing, threshold and logging state. The ReLU architectures without AuxK take their
        gradient by hand (`SparseAutoencoder.relu_step`, float32), the others through autograd, their
        forward pass in the stack's precision."""
        x = batch if self.select is None else batch.index_select(0, self.select)
        if self.relu_by_hand:
            terms = self.module.relu_step(x, self.l1)
        else:
            dead = self.since_fired >= self.dead_after if self.use_auxk else None
            if dead is not None and not bool(dead.any()):  # nothing to revive: skip the second decoder pass
                dead = None
            self.module.zero_grad(set_to_none=True)
            with autocast(self.precision, self.device):
                terms = self.module.losses(x, self.l1, dead, self.auxk)
            terms.loss.sum().backward()
        with torch.no_grad():
            if self.use_auxk:
                # Data-parallel: a latent fired if it fired in any process's slice of the global batch.
                fired = self.ranks.either(terms.fired)
                self.since_fired = torch.where(fired, 0.0, self.since_fired + x.shape[-2] * self.ranks.size)
            if terms.min_kept is not None:
                seen = torch.isfinite(terms.min_kept)
                moved = torch.where(torch.isnan(self.theta), terms.min_kept,
                                    (1 - self.rate) * self.theta + self.rate * terms.min_kept)
                self.theta = torch.where(seen, moved, self.theta)
            self.window += torch.stack([terms.loss, terms.mse, terms.sparsity, terms.aux])

    def finish(self) -> list[tuple[int, SparseAutoencoder, float | None]]:
        """(spec index, trained SAE, score threshold) per member; BatchTopK thresholds set."""
        theta = None
        if self.module.architecture == "batchtopk":
            theta = torch.nan_to_num(self.theta, nan=0.0)
            self.ranks.average_([theta])  # data-parallel: every process's estimate, so all save one threshold
            self.module.set_threshold(theta)
        return [(i, self.module.member(j).eval(), None if theta is None else float(theta[j]))
                for j, i in enumerate(self.members)]


def _stacks(specs: Sequence[SaeSpec]) -> dict[tuple[str, int, int | None, int], list[int]]:
    groups: dict[tuple[str, int, int | None, int], list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault((spec.architecture, spec.d_sae, spec.k, spec.n_blocks), []).append(i)
    return groups


def train_saes(batches: Iterable[torch.Tensor], layers: Sequence[int], specs: Sequence[SaeSpec], d_in: int,
               n_steps: int, learning_rate: float, seed: int, device: torch.device | str = "cpu",
               log_every: int = 100, desc: str = "train SAEs", ranks: Ranks = SINGLE,
               precision: Precision = "float32") -> TrainedSaes:
    """Train every SAE in `specs` in one pass over `batches` ([len(layers), B, d_in] each, layer
    i of the batch holding layer `layers[i]`'s activations of the same rows).

    Specs of one shape share a stacked module and one batched forward/backward per step; one
    Adam optimizer (per-parameter, so per member) updates everything. Losses stay on the device
    and are read every `log_every` steps only, so a GPU never waits on the host mid-window.
    Deterministic: seeded init per spec, and the batch order is the caller's (seeded). With several
    processes (`ranks`) the batches are global ones, of which each process trains on its slice,
    and gradients and logged losses are averaged over the processes (module docstring).
    `precision` 'bfloat16' runs the forward passes of the autograd path under bfloat16 autocast (an
    effective precision: `lfp_engine.run.precision`); at the paper's batch of 32 rows it would gain
    nothing (casting costs what the products save), so the SAEs' own step stays float32.
    """
    if not specs:
        raise InputError("no SAEs to train")
    missing = sorted({s.layer for s in specs} - set(layers))
    if missing:
        raise InputError(f"SAEs asked for layers {missing}, which the activations do not hold ({list(layers)})")
    position = {layer: i for i, layer in enumerate(layers)}
    stacks = [_Stack(specs, members, [position[specs[i].layer] for i in members], len(layers), d_in, seed, device,
                     ranks, precision) for members in _stacks(specs).values()]
    params = [p for stack in stacks for p in stack.module.parameters()]
    # Fused Adam: one kernel for all parameters, about 3x faster than the foreach version on a CPU.
    optimizer = torch.optim.Adam(params, lr=learning_rate, fused=True)
    records: list[dict] = []
    start = time.monotonic()
    iterator = iter(batches)
    progress = tqdm(range(n_steps), desc=desc, unit="step", mininterval=1, leave=False)
    for step in progress:
        batch = next(iterator, None)
        if batch is None:
            raise InputError(f"the activation stream ended after {step} of {n_steps} steps")
        batch = ranks.part(batch, dim=1)
        for stack in stacks:  # each writes its gradients afresh
            stack.step(batch)
        ranks.average_([p.grad for p in params if p.grad is not None])
        optimizer.step()
        if (step + 1) % log_every == 0 or step + 1 == n_steps:
            ranks.average_([stack.window for stack in stacks])
            records += _window_records(stacks, len(specs), step, log_every)
            progress.set_postfix(loss=f"{records[-1]['loss']:.4g}")
    progress.close()
    finished = sorted(item for stack in stacks for item in stack.finish())
    seconds = time.monotonic() - start
    log.info("trained %d SAEs in %d steps in %.1f s", len(specs), n_steps, seconds)
    return TrainedSaes(saes=[sae for _, sae, _ in finished], log=pd.DataFrame(records), seconds=seconds,
                       score_thresholds=[theta for _, _, theta in finished])


def _window_records(stacks: Sequence[_Stack], n_specs: int, step: int, log_every: int) -> list[dict]:
    """The mean of each logged term over the window that ends at `step`, per spec; windows reset."""
    n = (step % log_every) + 1
    means = torch.zeros(n_specs, len(LOGGED))
    for stack in stacks:
        means[stack.members] = (stack.window / n).T.cpu()
        stack.window.zero_()
    return [{"spec": i, "step": step + 1, **dict(zip(LOGGED, v))} for i, v in enumerate(means.tolist())]
