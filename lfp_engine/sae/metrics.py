"""How good is a dictionary? Reconstruction, sparsity, feature health, and the spliced-in LM loss.

Measured on held-out activations (the corpus's test split), never on the training rows:
- `mse`: mean squared error per activation entry.
- `normalized_mse`: the paper's "normalised reconstruction loss" (tables 11 and 12, figure 8),
  sum ||x - x_hat||^2 / sum ||x||^2.
- `variance_explained`: 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2; unlike the paper's
  normalisation it does not give credit for the mean, which a bias alone reconstructs.
- `l0`: mean number of non-zero codes per token, the paper's "true sparsity"; `l0_fraction` is
  l0 / dictionary size; `l0_scaled` is l0 / 100, the true sparsity as the paper's tables 11 and 12
  and figure 8 report it (appendix F: "scale down by a factor of 100").
- `dead_fraction`: features that never fire on the held-out tokens; `dense_fraction`: features
  firing on more than `dense_threshold` of them.
- Spliced-in loss: the model's next-token cross-entropy with a layer's MLP output replaced by the
  SAE's reconstruction (`ce_spliced`), against the clean model (`ce_clean`) and the MLP output
  zero-ablated (`ce_zero_ablated`). `loss_recovered` = (zero - spliced) / (zero - clean): 1 when
  the SAE changes nothing the model uses, 0 when it is as bad as deleting the block (the score
  SAELens and SAEBench report). Replacements touch only text tokens, the rows the SAE was trained
  on, never padding or BOS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

import pandas as pd

from lfp_engine.models.hooks import replace_mlp_output
from lfp_engine.sae.settings import SaeSettings
from lfp_engine.run.errors import InputError
from lfp_engine.sae.activations import ActivationSet, pad_batch
from lfp_engine.sae.autoencoder import SparseAutoencoder
from lfp_engine.sae.training import SaeSpec

EVAL_BATCH_ROWS = 8192
PAPER_SPARSITY_SCALE = 100.0
"""The paper divides L0 by this in tables 11 and 12 and figure 8 (appendix F)."""


@dataclass
class ReconstructionMetrics:
    n_tokens: int
    mse: float
    normalized_mse: float
    variance_explained: float
    l0: float
    l0_fraction: float
    l0_scaled: float
    dead_fraction: float
    dense_fraction: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class ReconstructionTotals:
    """Running float64 sums over activation rows, from which `ReconstructionMetrics` is read; a
    crosscoder keeps one per model, over that model's block of each row."""

    def __init__(self, d_in: int, d_sae: int, device: torch.device | str):
        self.d_in, self.d_sae = d_in, d_sae
        self.n = 0
        self.err = self.total = self.active = 0.0
        self.sum_x = torch.zeros(d_in, dtype=torch.float64, device=device)
        self.fired = torch.zeros(d_sae, dtype=torch.float64, device=device)

    def add(self, x: torch.Tensor, x_hat: torch.Tensor, z: torch.Tensor) -> None:
        x64 = x.double()
        self.err += (x_hat.double() - x64).pow(2).sum().item()
        self.total += x64.pow(2).sum().item()
        self.sum_x += x64.sum(0)
        nonzero = z > 0
        self.fired += nonzero.sum(0).double()
        self.active += nonzero.sum().item()
        self.n += x.shape[0]

    def metrics(self, dense_threshold: float) -> ReconstructionMetrics:
        n = self.n
        if n == 0:
            raise InputError("no activation rows to measure the SAE on")
        centered = self.total - (self.sum_x @ self.sum_x).item() / n
        density = self.fired / n
        l0 = self.active / n
        return ReconstructionMetrics(
            n_tokens=n,
            mse=self.err / (n * self.d_in),
            normalized_mse=self.err / self.total if self.total > 0 else float("nan"),
            variance_explained=1 - self.err / centered if centered > 0 else float("nan"),
            l0=l0,
            l0_fraction=l0 / self.d_sae,
            l0_scaled=l0 / PAPER_SPARSITY_SCALE,
            dead_fraction=(density == 0).double().mean().item(),
            dense_fraction=(density > dense_threshold).double().mean().item(),
        )


@torch.no_grad()
def reconstruction_metrics(sae: SparseAutoencoder, rows: Iterable[torch.Tensor],
                           dense_threshold: float = 0.1) -> ReconstructionMetrics:
    """Metrics of `sae` over activation rows ([n, d_in] chunks), accumulated in float64."""
    device = sae.W_enc.device
    totals = ReconstructionTotals(sae.d_in, sae.d_sae, device)
    for x in rows:
        x = x.to(device)
        z = sae.encode(x)
        totals.add(x, sae.decode(z), z)
    return totals.metrics(dense_threshold)


def zero_output(h: torch.Tensor) -> torch.Tensor:
    """The zero ablation of an MLP output."""
    return torch.zeros_like(h)


@torch.inference_mode()
def token_loss(model: nn.Module, sequences: Sequence[Sequence[int]], *, pad_token_id: int,
               bos_token_id: int | None, batch_size: int, layer: int | None = None,
               replace: Callable[[torch.Tensor], torch.Tensor] | None = None,
               before_batch: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
               desc: str = "LM loss") -> float:
    """Mean next-token cross-entropy over the text tokens of `sequences`, optionally with layer
    `layer`'s MLP output replaced by replace(output) at the text tokens. `before_batch(ids,
    attention, text)` runs before each batch's forward pass (a crosscoder's replacement places the
    other model's activations of the batch's text tokens there). Batches are `sequences` in order."""
    if not sequences:
        raise InputError("no sequences to measure the loss on")
    device = next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for start in tqdm(range(0, len(sequences), batch_size), desc=desc, unit="batch", leave=False, mininterval=1):
        ids, attention, text = pad_batch(sequences[start:start + batch_size], pad_token_id, bos_token_id, device)
        if before_batch is not None:
            before_batch(ids, attention, text)
        if replace is None:
            logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits
        else:
            with replace_mlp_output(model, layer, replace, positions=text):
                logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits
        targets = text[:, 1:]
        losses = nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none")
        total += losses[targets].double().sum()
        count += int(targets.sum())
    if count == 0:
        raise InputError("the sequences have no predicted text tokens (each needs a BOS or two tokens)")
    return (total / count).item()


def loss_recovered(ce_clean: float, ce_spliced: float, ce_zero_ablated: float) -> float:
    """(zero - spliced) / (zero - clean); NaN when zero-ablating the layer costs nothing."""
    gap = ce_zero_ablated - ce_clean
    return (ce_zero_ablated - ce_spliced) / gap if gap != 0 else float("nan")


def reconstruction_table(evaluation: ActivationSet, specs: Sequence[SaeSpec], saes: Sequence[SparseAutoencoder],
                         settings: SaeSettings, device: torch.device) -> pd.DataFrame:
    """Per dictionary: its spec and its reconstruction, sparsity and feature-health metrics."""
    rows = []
    for spec, sae in zip(specs, saes):
        chunks = (x[0] for _, x in evaluation.iter_rows([spec.layer], EVAL_BATCH_ROWS, device))
        metrics = reconstruction_metrics(sae, chunks, settings.dense_threshold)
        rows.append({"layer": spec.layer, "dict_size": spec.d_sae, "architecture": spec.architecture,
                     "l1_coefficient": spec.l1_coefficient, "n_train_examples": settings.n_train_examples,
                     "n_eval_tokens": metrics.n_tokens, **{k: v for k, v in metrics.as_dict().items()
                                                          if k != "n_tokens"}})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ReferenceLosses:
    """The two ends of `loss_recovered` for one model and layer on the held-out texts: the clean
    loss and the loss with the layer's MLP output zeroed. The `sae` stage measures them for every
    model and layer; model diffing, on the same texts in the same batches, reads them back from
    `sae_metrics` rather than measuring them again."""

    clean: float
    zero_ablated: float


def reference_losses(model: nn.Module, sequences: Sequence[Sequence[int]], layers: Iterable[int],
                     **common: object) -> dict[int, ReferenceLosses]:
    """{layer: ReferenceLosses} of `model` on `sequences` (`common`: `token_loss`'s batching)."""
    clean = token_loss(model, sequences, desc="LM loss, clean", **common)
    return {layer: ReferenceLosses(clean, token_loss(model, sequences, layer=layer, replace=zero_output,
                                                     desc=f"LM loss, layer {layer} zeroed", **common))
            for layer in layers}


def spliced_losses(model: nn.Module, pad_token_id: int, evaluation: ActivationSet, specs: Sequence[SaeSpec],
                   saes: Sequence[SparseAutoencoder], batch_size: int) -> pd.DataFrame:
    """ce_clean, ce_spliced, ce_zero_ablated and loss_recovered per dictionary, on the eval texts."""
    sequences = [tokens for _, tokens in evaluation.sequences()]
    common = dict(pad_token_id=pad_token_id, bos_token_id=evaluation.info.bos_token_id, batch_size=batch_size)
    references = reference_losses(model, sequences, sorted({s.layer for s in specs}), **common)
    rows = []
    for spec, sae in zip(specs, saes):
        spliced = token_loss(model, sequences, layer=spec.layer, replace=lambda h, sae=sae: sae(h.float()),
                             desc=f"LM loss, SAE {spec.layer}/{spec.d_sae}", **common)
        reference = references[spec.layer]
        rows.append({"layer": spec.layer, "dict_size": spec.d_sae, "ce_clean": reference.clean, "ce_spliced": spliced,
                     "ce_zero_ablated": reference.zero_ablated,
                     "loss_recovered": loss_recovered(reference.clean, spliced, reference.zero_ablated)})
    return pd.DataFrame(rows)
