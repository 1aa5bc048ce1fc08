"""Sparse autoencoders over MLP outputs, and their training (paper sections 2 and 3.2, appendix F).

The paper's SAE: z = ReLU(x W_enc + b_enc), x_hat = z W_dec + b_dec, with tied weights
(W_dec = W_enc^T, one parameter, so each feature is explicitly a direction in activation
space), loss = ||x - x_hat||^2 (summed over dimensions, averaged over the batch) + alpha ||z||_1.
Options: 'untied' (a free W_dec; its L1 term is weighted by each decoder row's norm, as in
SAELens's standard SAE, so the penalty cannot be dodged by shrinking codes and growing the
decoder), and 'topk' (Gao et al. 2024: only the k largest pre-activations survive, no L1).

Weights use SAELens's orientation (x @ W_enc, z @ W_dec), so the same module writes and reads
SAELens files unchanged. A module may hold a *stack* of SAEs of one shape: parameters then carry a
leading stack dimension and inputs are [stack, rows, d_in]. Training stacks every dictionary of
one shape (all layers, one hidden size) into one module, so one pass over the activations trains
all of them with batched matrix products: the work per step grows, the Python overhead does not,
and a GPU is kept busy. Stacked members are independent: the loss is a sum, and Adam is
elementwise, so each member follows exactly the updates it would get alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from lfp_engine.run.errors import InputError
from lfp_engine.run.seeding import derive_seed

log = logging.getLogger(__name__)

Architecture = Literal["tied", "untied", "topk"]
"""The SAE variants: the paper's tied ReLU SAE, an untied one, and top-k (see the module docstring)."""
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)


class SparseAutoencoder(nn.Module):
    """One SAE (`stack=None`) or a stack of `stack` SAEs of the same shape and architecture.

    Parameters: `W_enc` [*stack, d_in, d_sae], `b_enc` [*stack, d_sae], `b_dec` [*stack, d_in], and
    for 'untied'/'topk' also `W_dec` [*stack, d_sae, d_in]. For 'tied', `W_dec` is a view of
    `W_enc` transposed: there is one weight parameter, so the two can never drift apart.
    """

    def __init__(self, d_in: int, d_sae: int, architecture: str = "tied", k: int | None = None,
                 stack: int | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise InputError(f"unknown SAE architecture {architecture!r}; choose one of: {', '.join(ARCHITECTURES)}")
        if d_in < 1 or d_sae < 1:
            raise InputError(f"an SAE needs a positive input width and dictionary size, got d_in={d_in}, d_sae={d_sae}")
        if architecture == "topk" and (k is None or not 1 <= k <= d_sae):
            raise InputError(f"a topk SAE needs 1 <= k <= d_sae ({d_sae}), got k={k}")
        self.d_in, self.d_sae, self.architecture = d_in, d_sae, architecture
        self.k = k if architecture == "topk" else None
        self.stack = stack
        lead = () if stack is None else (stack,)
        self.W_enc = nn.Parameter(torch.zeros(*lead, d_in, d_sae, dtype=dtype))
        self.b_enc = nn.Parameter(torch.zeros(*lead, d_sae, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(*lead, d_in, dtype=dtype))
        if architecture != "tied":
            self.W_dec_free = nn.Parameter(torch.zeros(*lead, d_sae, d_in, dtype=dtype))

    @property
    def tied(self) -> bool:
        return self.architecture == "tied"

    @property
    def W_dec(self) -> torch.Tensor:
        """Decoder [*stack, d_sae, d_in]: row j is feature j's direction in activation space."""
        return self.W_enc.transpose(-1, -2) if self.tied else self.W_dec_free

    # -- the computation (the same code serves a single SAE and a stack, by broadcasting) --

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_enc + self.b_enc.unsqueeze(-2)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        if self.architecture == "topk":
            top = pre.topk(self.k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
        return torch.relu(pre)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (feature activations) of activations x [..., d_in] -> [..., d_sae].

        For a stack, x is [stack, rows, d_in]. Any leading shape works for a single SAE, e.g.
        [batch, tokens, d_in] from `activations.mlp_outputs`.
        """
        return self.activate(self.pre_activations(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec.unsqueeze(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction x_hat of x."""
        return self.decode(self.encode(x))

    def losses(self, x: torch.Tensor, l1_coefficient: torch.Tensor | float) -> tuple[torch.Tensor, ...]:
        """(loss, mse, sparsity) per stack member ([stack] or scalars) on a batch x [*stack, B, d_in].

        mse: squared error summed over dimensions, mean over rows (the paper's first term).
        sparsity: L1 of the codes, mean over rows; for 'untied' each code is weighted by its
        decoder row's norm; 'topk' has no sparsity term (k is the constraint).
        """
        z = self.encode(x)
        x_hat = self.decode(z)
        mse = (x_hat - x).pow(2).sum(-1).mean(-1)
        if self.architecture == "topk":
            sparsity = torch.zeros_like(mse)
        elif self.tied:
            sparsity = z.sum(-1).mean(-1)  # z >= 0, so its L1 norm is its sum
        else:
            sparsity = (z * self.W_dec.norm(dim=-1).unsqueeze(-2)).sum(-1).mean(-1)
        return mse + l1_coefficient * sparsity, mse, sparsity

    # -- construction --

    @torch.no_grad()
    def initialize(self, generators: Sequence[torch.Generator]) -> None:
        """Feature directions uniformly random on the unit sphere, one generator per member
        (so a member's start does not depend on what it is stacked with); biases zero.

        Unit-norm directions give a tied SAE a reconstruction of the input's order of
        magnitude from the first step; the untied decoder starts as the encoder transposed.
        """
        members = [self] if self.stack is None else range(self.stack)
        if len(generators) != len(members):
            raise ValueError(f"need {len(members)} generators, got {len(generators)}")
        for i, generator in enumerate(generators):
            directions = torch.randn(self.d_sae, self.d_in, generator=generator, dtype=torch.float64)
            directions /= directions.norm(dim=-1, keepdim=True)
            target = self.W_enc if self.stack is None else self.W_enc[i]
            target.copy_(directions.T.to(self.W_enc.dtype))
        self.b_enc.zero_()
        self.b_dec.zero_()
        if not self.tied:
            self.W_dec_free.copy_(self.W_enc.transpose(-1, -2))

    def member(self, i: int) -> SparseAutoencoder:
        """Member i of a stack as a standalone SAE (a copy, on the same device)."""
        if self.stack is None:
            raise ValueError("not a stack")
        single = SparseAutoencoder(self.d_in, self.d_sae, self.architecture, self.k, dtype=self.W_enc.dtype)
        single.to(self.W_enc.device)
        with torch.no_grad():
            for name, param in single.named_parameters():
                param.copy_(getattr(self, name)[i])
        return single

    def extra_repr(self) -> str:
        stack = f", stack={self.stack}" if self.stack is not None else ""
        k = f", k={self.k}" if self.k is not None else ""
        return f"d_in={self.d_in}, d_sae={self.d_sae}, architecture={self.architecture}{k}{stack}"


# ---------------------------------------------------------------------------------------
# Training


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
               log_every: int = 100, desc: str = "train SAEs") -> TrainedSaes:
    """Train every SAE in `specs` in one pass over `batches` ([len(layers), B, d_in] each, layer
    i of the batch holding layer `layers[i]`'s activations of the same rows).

    Specs of one shape share a stacked module and one batched forward/backward per step; one
    Adam optimizer (per-parameter, so per member) updates everything. Losses stay on the device
    and are read every `log_every` steps only, so a GPU never waits on the host mid-window.
    Deterministic: seeded init per spec, and the batch order is the caller's (seeded).
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
        optimizer.zero_grad(set_to_none=True)
        total = None
        for (module, select, l1, _), window in zip(stacks, windows):
            loss, mse, sparsity = module.losses(batch if select is None else batch.index_select(0, select), l1)
            total = loss.sum() if total is None else total + loss.sum()
            window += torch.stack([loss, mse, sparsity]).detach()
        total.backward()
        optimizer.step()
        if (step + 1) % log_every == 0 or step + 1 == n_steps:
            n = (step % log_every) + 1
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
