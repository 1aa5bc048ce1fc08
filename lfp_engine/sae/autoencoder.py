"""The sparse autoencoder over MLP outputs (paper sections 2 and 3.2, appendix F); training is `training.py`.

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

from collections.abc import Sequence

import torch
from torch import nn

from lfp_engine.run.errors import InputError
from lfp_engine.sae.settings import ARCHITECTURES



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
