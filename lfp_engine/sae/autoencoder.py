"""The sparse autoencoder over MLP outputs (paper sections 2 and 3.2, appendix F); training is `training.py`.

The paper's SAE: z = ReLU(x W_enc + b_enc), x_hat = z W_dec + b_dec, with tied weights
(W_dec = W_enc^T, one parameter, so each feature is explicitly a direction in activation
space), loss = ||x - x_hat||^2 (summed over dimensions, averaged over the batch) + alpha ||z||_1.
Options: 'untied' (a free W_dec; its L1 term is weighted by each decoder row's norm, as in
SAELens's standard SAE, so the penalty cannot be dodged by shrinking codes and growing the
decoder), 'topk' (Gao et al. 2024: only the k largest pre-activations survive, no L1), and
'batchtopk' (Bussmann et al. 2024: the k x batch largest codes of the whole batch survive, so the
number per token varies; at inference, where there is no batch, a threshold estimated during
training replaces the batch top-k, so each code depends on its own pre-activation only:
z = ReLU(pre) where pre > threshold, which is SAELens's JumpReLU form).

BatchTopK ranks codes by z_f times the decoder weight w_f (`latent_weights`), as SAELens's
`rescale_acts_by_decoder_norm` does, so the choice does not depend on how a latent splits its scale
between code and decoder; the estimated threshold is in those units, and each latent's threshold
on its pre-activation is that threshold / w_f. The auxiliary loss AuxK (Gao et al. 2024, appendix
A.2) makes the top dead latents reconstruct the residual error, which revives them.

A crosscoder (Lindsey et al. 2024) is an SAE on the concatenation of several models' activations at
the same token, here `n_blocks` of them: one encoder reads all blocks (their contributions summed),
one decoder writes each block. Its latent weight is the *sum* of its decoder's block norms, the
crosscoder's sparsity weighting; with one block it is the decoder row's norm.

Weights use SAELens's orientation (x @ W_enc, z @ W_dec), so the same module writes and reads
SAELens files unchanged. A module may hold a *stack* of SAEs of one shape: parameters then carry a
leading stack dimension and inputs are [stack, rows, d_in]. Training stacks every dictionary of
one shape (all layers, one hidden size) into one module, so one pass over the activations trains
all of them with batched matrix products: the work per step grows, the Python overhead does not,
and a GPU is kept busy. Stacked members are independent: the loss is a sum, and Adam is
elementwise, so each member follows exactly the updates it would get alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from lfp_engine.run.errors import InputError
from lfp_engine.sae.settings import ARCHITECTURES

MODULE_ARCHITECTURES: tuple[str, ...] = (*ARCHITECTURES, "jumprelu")
"""What a module can be: the trainable architectures, and 'jumprelu', SAELens's inference form,
for SAEs trained elsewhere (loaded, never trained here)."""
THRESHOLDED = ("batchtopk", "jumprelu")
"""Architectures whose inference codes are ReLU(pre) where pre exceeds a per-latent threshold."""
TOP_K = ("topk", "batchtopk")


@dataclass
class StepTerms:
    """One training step's terms, per stack member ([stack] tensors, or scalars for one SAE)."""

    loss: torch.Tensor
    mse: torch.Tensor
    sparsity: torch.Tensor
    """L1 term before its coefficient (0 for the top-k architectures)."""
    aux: torch.Tensor
    """AuxK term before its coefficient (0 without dead latents)."""
    fired: torch.Tensor
    """[*stack, d_sae] bool: latents with a non-zero code on some row of the batch."""
    min_kept: torch.Tensor | None
    """'batchtopk': the smallest score kept in the batch per member (inf when none was)."""


class SparseAutoencoder(nn.Module):
    """One SAE (`stack=None`) or a stack of `stack` SAEs of the same shape and architecture.

    Parameters: `W_enc` [*stack, d_in, d_sae], `b_enc` [*stack, d_sae], `b_dec` [*stack, d_in], and
    for all but 'tied' also `W_dec` [*stack, d_sae, d_in]. For 'tied', `W_dec` is a view of
    `W_enc` transposed: there is one weight parameter, so the two can never drift apart.
    'batchtopk' and 'jumprelu' carry a buffer `threshold` [*stack, d_sae] (per-latent, on the
    pre-activation). `n_blocks` > 1 makes it a crosscoder over that many equal-width inputs.
    """

    def __init__(self, d_in: int, d_sae: int, architecture: str = "tied", k: int | None = None,
                 stack: int | None = None, dtype: torch.dtype = torch.float32, n_blocks: int = 1):
        super().__init__()
        if architecture not in MODULE_ARCHITECTURES:
            raise InputError(f"unknown SAE architecture {architecture!r}; choose one of: {', '.join(ARCHITECTURES)}")
        if d_in < 1 or d_sae < 1:
            raise InputError(f"an SAE needs a positive input width and dictionary size, got d_in={d_in}, d_sae={d_sae}")
        if architecture in TOP_K and (k is None or not 1 <= k <= d_sae):
            raise InputError(f"a {architecture} SAE needs 1 <= k <= d_sae ({d_sae}), got k={k}")
        if n_blocks < 1 or d_in % n_blocks:
            raise InputError(f"a crosscoder's input width {d_in} must split into {n_blocks} equal blocks")
        self.d_in, self.d_sae, self.architecture, self.n_blocks = d_in, d_sae, architecture, n_blocks
        self.k = k if architecture in TOP_K else None
        self.stack = stack
        lead = () if stack is None else (stack,)
        self.W_enc = nn.Parameter(torch.zeros(*lead, d_in, d_sae, dtype=dtype))
        self.b_enc = nn.Parameter(torch.zeros(*lead, d_sae, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(*lead, d_in, dtype=dtype))
        if architecture != "tied":
            self.W_dec_free = nn.Parameter(torch.zeros(*lead, d_sae, d_in, dtype=dtype))
        if architecture in THRESHOLDED:
            self.register_buffer("threshold", torch.zeros(*lead, d_sae, dtype=dtype))

    @property
    def tied(self) -> bool:
        return self.architecture == "tied"

    @property
    def W_dec(self) -> torch.Tensor:
        """Decoder [*stack, d_sae, d_in]: row j is feature j's direction in activation space."""
        return self.W_enc.transpose(-1, -2) if self.tied else self.W_dec_free

    def block_norms(self) -> torch.Tensor:
        """[*stack, d_sae, n_blocks]: the norm of each latent's decoder in each input block."""
        return self.W_dec.unflatten(-1, (self.n_blocks, self.d_in // self.n_blocks)).norm(dim=-1)

    def latent_weights(self) -> torch.Tensor:
        """w_f [*stack, d_sae]: the sum of latent f's decoder block norms; ||W_dec[f]|| for an SAE,
        ||d_f^base|| + ||d_f^tuned|| for a crosscoder (Lindsey et al. 2024)."""
        return self.block_norms().sum(-1)

    # -- the computation (the same code serves a single SAE and a stack, by broadcasting) --

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_enc + self.b_enc.unsqueeze(-2)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """Inference codes: each token on its own (BatchTopK through its threshold)."""
        if self.architecture == "topk":
            top = pre.topk(self.k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
        if self.architecture in THRESHOLDED:
            return torch.where(pre > self.threshold.unsqueeze(-2), torch.relu(pre), torch.zeros_like(pre))
        return torch.relu(pre)

    def batch_topk(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training codes of 'batchtopk' from pre-activations [*stack, B, d_sae]: the k x B largest
        scores ReLU(pre) * w of each member's batch survive (Bussmann et al. 2024). Returns the
        codes and the smallest score kept per member (inf when none was positive)."""
        acts = torch.relu(pre)
        scores = acts * self.latent_weights().detach().unsqueeze(-2)
        flat = scores.flatten(-2)
        top = flat.topk(min(self.k * pre.shape[-2], flat.shape[-1]), dim=-1)
        kept = torch.zeros_like(flat, dtype=torch.bool).scatter(-1, top.indices, True).view_as(pre) & (acts > 0)
        codes = torch.where(kept, acts, torch.zeros_like(acts))
        min_kept = torch.where(kept, scores, torch.full_like(scores, math.inf)).flatten(-2).amin(-1)
        return codes, min_kept

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (feature activations) of activations x [..., d_in] -> [..., d_sae].

        For a stack, x is [stack, rows, d_in]. Any leading shape works for a single SAE, e.g.
        [batch, tokens, d_in] from `activations.mlp_outputs`. Always the inference rule, so a code
        never depends on the other rows of x.
        """
        return self.activate(self.pre_activations(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec.unsqueeze(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction x_hat of x."""
        return self.decode(self.encode(x))

    def losses(self, x: torch.Tensor, l1_coefficient: torch.Tensor | float, dead: torch.Tensor | None = None,
               auxk_coefficient: torch.Tensor | float = 0.0) -> StepTerms:
        """The training terms on a batch x [*stack, B, d_in] (rows: dimension -2).

        mse: squared error summed over dimensions, mean over rows (the paper's first term).
        sparsity: L1 of the codes, mean over rows; for 'untied' each code is weighted by its latent
        weight (decoder norm; crosscoder: sum of block norms); the top-k architectures have no
        sparsity term (k is the constraint). aux: AuxK over the `dead` latents ([*stack, d_sae]).
        """
        if self.architecture == "jumprelu":
            raise InputError("a JumpReLU SAE loaded from SAELens can be used here, not trained")
        pre = self.pre_activations(x)
        min_kept = None
        if self.architecture == "batchtopk":
            z, min_kept = self.batch_topk(pre)
        else:
            z = self.activate(pre)
        error = x - self.decode(z)
        mse = error.pow(2).sum(-1).mean(-1)
        if self.architecture in TOP_K:
            sparsity = torch.zeros_like(mse)
        elif self.tied:
            sparsity = z.sum(-1).mean(-1)  # z >= 0, so its L1 norm is its sum
        else:
            sparsity = (z * self.latent_weights().unsqueeze(-2)).sum(-1).mean(-1)
        aux = torch.zeros_like(mse) if dead is None else self.auxk_loss(error.detach(), pre, dead)
        loss = mse + l1_coefficient * sparsity + auxk_coefficient * aux
        return StepTerms(loss, mse, sparsity, aux, (z > 0).any(-2), min_kept)

    @torch.no_grad()
    def relu_step(self, x: torch.Tensor, l1_coefficient: torch.Tensor | float) -> StepTerms:
        """`losses(x, l1_coefficient)` of a stack of ReLU SAEs ('tied', 'untied'; no AuxK) on a batch
        x [stack, B, d_in], with the gradient of the summed loss written to every parameter's `.grad`
        (overwritten in place where there is one: no fresh buffers each step, nothing to zero first).

        The gradient is the one autograd takes through `losses` (tested against it in float64),
        derived by hand: with e = x_hat - x and g = 2 e / B (the squared error's gradient at x_hat),
        b_dec gets sum_rows g; the codes get dz = g W_dec^T + alpha w / B (w: the latent weights,
        1 for 'tied'); the pre-activations dpre = dz where pre > 0; W_enc gets x^T dpre, b_enc
        sum_rows dpre, and the decoder z^T g ('tied': transposed into W_enc's gradient; 'untied':
        plus the L1 term's alpha sum_rows(z_f) W_dec[f] / (B ||W_dec[f]||)). Five batched products
        and a few elementwise operations, where autograd runs some forty nodes: at the paper's batch
        of 32 rows those cost more than the products themselves on a CPU.
        """
        if self.architecture not in ("tied", "untied") or self.stack is None or x.ndim != 3:
            raise ValueError("relu_step trains a stack of tied or untied SAEs on a batch [stack, rows, d_in]")
        rows = x.shape[-2]
        alpha = torch.as_tensor(l1_coefficient, dtype=x.dtype, device=x.device).expand(self.stack)
        decoder = self.W_dec
        z = torch.relu(torch.baddbmm(self.b_enc.unsqueeze(-2), x, self.W_enc))
        error = torch.baddbmm(self.b_dec.unsqueeze(-2), z, decoder).sub_(x)
        mse = error.pow(2).sum((-2, -1)) / rows
        code_sums = z.sum(-2)
        weights = None if self.tied else decoder.norm(dim=-1)
        sparsity = (code_sums if weights is None else code_sums * weights).sum(-1) / rows
        grad_out = error.mul_(2.0 / rows)
        per_row = (alpha / rows).unsqueeze(-1)  # the L1 term's weight on each row's codes
        penalty = (per_row if weights is None else per_row * weights).unsqueeze(-2)
        # The ReLU's backward (autograd's own kernel): dz where z > 0, which is where pre > 0.
        grad_pre = torch.ops.aten.threshold_backward(torch.baddbmm(penalty, grad_out, decoder.transpose(-1, -2)), z, 0)
        params = (self.W_enc, self.b_enc, self.b_dec) + (() if weights is None else (self.W_dec_free,))
        for p in params:
            if p.grad is None:
                p.grad = torch.empty_like(p)
        torch.bmm(x.transpose(-1, -2), grad_pre, out=self.W_enc.grad)
        if weights is None:  # W_dec = W_enc^T: the decoder's gradient z^T g, transposed, joins the encoder's
            self.W_enc.grad.baddbmm_(grad_out.transpose(-1, -2), z)
        else:  # the L1 term's gradient, alpha sum_rows(z_f) / (B ||W_dec[f]||) times W_dec[f], in one fused op
            scale = per_row * code_sums / weights.clamp_min(torch.finfo(weights.dtype).tiny)
            torch.bmm(z.transpose(-1, -2), grad_out, out=self.W_dec_free.grad).addcmul_(decoder, scale.unsqueeze(-1))
        torch.sum(grad_pre, -2, out=self.b_enc.grad)
        torch.sum(grad_out, -2, out=self.b_dec.grad)
        loss = mse + alpha * sparsity
        return StepTerms(loss, mse, sparsity, torch.zeros_like(mse), code_sums > 0, None)

    def auxk_loss(self, residual: torch.Tensor, pre: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
        """AuxK (Gao et al. 2024, appendix A.2), per member: the k_aux = d_in / 2 (their B.1
        heuristic) dead latents with the largest ReLU(pre) reconstruct the residual error e with the
        decoder alone (no bias): mean over rows of ||e - e_hat||^2, scaled by min(n_dead / k_aux, 1)
        when few latents are dead, as SAELens and EleutherAI's sparsify do."""
        k_aux = max(1, self.d_in // 2)
        candidates = torch.where(dead.unsqueeze(-2), torch.relu(pre), torch.full_like(pre, -math.inf))
        top = candidates.topk(min(k_aux, self.d_sae), dim=-1)
        z_aux = torch.zeros_like(pre).scatter(-1, top.indices, top.values.clamp_min(0))  # -inf: too few dead
        loss = (z_aux @ self.W_dec - residual).pow(2).sum(-1).mean(-1)
        scale = (dead.sum(-1).to(loss.dtype) / k_aux).clamp(max=1.0)
        return scale * loss

    # -- construction --

    @torch.no_grad()
    def initialize(self, generators: Sequence[torch.Generator]) -> None:
        """Feature directions uniformly random on the unit sphere, one generator per member
        (so a member's start does not depend on what it is stacked with); biases zero.

        Unit-norm directions give a tied SAE a reconstruction of the input's order of
        magnitude from the first step; the untied decoder starts as the encoder transposed. A
        crosscoder's latent starts with the same direction in every block (scaled so the whole has
        unit norm): equally present in every model, relative norm 1/2, until the data say otherwise.
        """
        members = [self] if self.stack is None else range(self.stack)
        if len(generators) != len(members):
            raise ValueError(f"need {len(members)} generators, got {len(generators)}")
        width = self.d_in // self.n_blocks
        for i, generator in enumerate(generators):
            directions = torch.randn(self.d_sae, width, generator=generator, dtype=torch.float64)
            directions /= directions.norm(dim=-1, keepdim=True)
            if self.n_blocks > 1:
                directions = directions.repeat(1, self.n_blocks) / math.sqrt(self.n_blocks)
            target = self.W_enc if self.stack is None else self.W_enc[i]
            target.copy_(directions.T.to(self.W_enc.dtype))
        self.b_enc.zero_()
        self.b_dec.zero_()
        if not self.tied:
            self.W_dec_free.copy_(self.W_enc.transpose(-1, -2))

    @torch.no_grad()
    def set_threshold(self, score_threshold: torch.Tensor | float) -> None:
        """'batchtopk': each latent's inference threshold on its pre-activation, from a threshold on
        the score ReLU(pre) * w ([*stack] or a number): threshold_f = score_threshold / w_f."""
        if self.architecture != "batchtopk":
            raise ValueError(f"a {self.architecture} SAE has no batch threshold")
        theta = torch.as_tensor(score_threshold, dtype=self.threshold.dtype, device=self.threshold.device)
        weights = self.latent_weights().clamp_min(torch.finfo(self.threshold.dtype).tiny)
        self.threshold.copy_(theta.unsqueeze(-1) / weights if theta.ndim else theta / weights)

    def member(self, i: int) -> SparseAutoencoder:
        """Member i of a stack as a standalone SAE (a copy, on the same device)."""
        if self.stack is None:
            raise ValueError("not a stack")
        single = SparseAutoencoder(self.d_in, self.d_sae, self.architecture, self.k, dtype=self.W_enc.dtype,
                                   n_blocks=self.n_blocks)
        single.to(self.W_enc.device)
        with torch.no_grad():
            for name, tensor in [*single.named_parameters(), *single.named_buffers()]:
                tensor.copy_(getattr(self, name)[i])
        return single

    def extra_repr(self) -> str:
        stack = f", stack={self.stack}" if self.stack is not None else ""
        k = f", k={self.k}" if self.k is not None else ""
        blocks = f", n_blocks={self.n_blocks}" if self.n_blocks > 1 else ""
        return f"d_in={self.d_in}, d_sae={self.d_sae}, architecture={self.architecture}{k}{blocks}{stack}"
