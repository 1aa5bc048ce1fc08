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
  SAELens and SAEBench report). Its denominator, `loss_increase` = zero - clean, is reported
  beside it with its standard error over the evaluation texts; where deleting the block costs
  the model almost nothing the ratio is noise, and it is left empty (`MIN_INCREASE_STANDARD_ERRORS`).
  Replacements touch only text tokens, the rows the SAE was trained on, never padding or BOS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

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


@dataclass(frozen=True)
class TextLosses:
    """A model's next-token cross-entropy on each evaluation text: the sum over the text's predicted
    tokens and their number. The texts, not the tokens, are the unit the noise of a mean is taken
    over (a text's tokens share its context, so they are not independent draws)."""

    sums: np.ndarray
    counts: np.ndarray

    @property
    def mean(self) -> float:
        """The mean loss per predicted token, over all texts."""
        return float(self.sums.sum() / self.counts.sum())


@torch.inference_mode()
def text_losses(model: nn.Module, sequences: Sequence[Sequence[int]], *, pad_token_id: int,
                bos_token_id: int | None, batch_size: int, layer: int | None = None,
                replace: Callable[[torch.Tensor], torch.Tensor] | None = None,
                before_batch: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
                desc: str = "LM loss") -> TextLosses:
    """Next-token cross-entropy of the text tokens of each of `sequences`, optionally with layer
    `layer`'s MLP output replaced by replace(output) at the text tokens. `before_batch(ids,
    attention, text)` runs before each batch's forward pass (a crosscoder's replacement places the
    other model's activations of the batch's text tokens there). Batches are `sequences` in order."""
    if not sequences:
        raise InputError("no sequences to measure the loss on")
    device = next(model.parameters()).device
    sums, counts = [], []
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
        sums.append((losses.double() * targets).sum(1).cpu())
        counts.append(targets.sum(1).cpu())
    result = TextLosses(torch.cat(sums).numpy(), torch.cat(counts).numpy())
    if result.counts.sum() == 0:
        raise InputError("the sequences have no predicted text tokens (each needs a BOS or two tokens)")
    return result


MIN_INCREASE_STANDARD_ERRORS = 3.0
"""Loss recovered is reported only where zero-ablating the layer raises the loss by at least this many
standard errors of that increase (`increase_standard_error`); below it the ratio's denominator is
within the noise of a mean over the evaluation texts, and so is the ratio. Measured on the tiny run
at seed 0 (`lfp run --preset tiny`, 470 held-out texts, 20,000 tokens; the columns loss_increase and
loss_increase_se of `sae_metrics`): zeroing the tuned model's layer 2 raises the loss by 0.00026 nats
against a standard error of 0.00029 (0.9 standard errors), and its ratio read 0.84 and 0.76 for the
two SAEs (and 2.20 for the crosscoder, as issue 21 reported it); every other studied layer of either model raises it by 8 to
13 standard errors (0.0023 to 0.0088 nats), where the SAEs' ratios agree at 0.96 to 1.00. Three
standard errors leave a chance below 0.2% (one-sided, normal) that noise alone passes the floor."""


def increase_standard_error(clean: TextLosses, other: TextLosses) -> float:
    """The standard error of other.mean - clean.mean over the texts: the two are measured on the same
    texts, so the difference is paired, and a ratio of sums, so its spread is that of the texts'
    residuals d_t - g n_t (d_t: the text's loss difference summed over its n_t tokens, g: the mean
    difference), the usual linearisation of a ratio estimator with texts as clusters."""
    if not np.array_equal(clean.counts, other.counts):
        raise InputError("the two losses were measured on different texts")
    n = clean.counts.astype(np.float64)
    if len(n) < 2:
        return float("nan")
    difference = other.sums - clean.sums
    residual = difference - difference.sum() / n.sum() * n
    return float(np.sqrt(len(n) / (len(n) - 1) * (residual ** 2).sum()) / n.sum())


@dataclass(frozen=True)
class ReferenceLosses:
    """The two ends of `loss_recovered` for one model and layer on the held-out texts: the clean loss,
    the loss with the layer's MLP output zeroed, and the increase with its standard error. The `sae`
    stage measures them for every model and layer; model diffing, on the same texts in the same
    batches, reads them back from `sae_metrics` rather than measuring them again."""

    clean: float
    zero_ablated: float
    loss_increase: float
    """zero_ablated - clean: what deleting the layer costs, in nats per token."""
    loss_increase_se: float
    """Its standard error over the evaluation texts (`increase_standard_error`)."""

    @classmethod
    def of(cls, clean: TextLosses, zero: TextLosses) -> ReferenceLosses:
        return cls(clean.mean, zero.mean, zero.mean - clean.mean, increase_standard_error(clean, zero))

    @property
    def above_noise(self) -> bool:
        """Whether the increase clears `MIN_INCREASE_STANDARD_ERRORS` standard errors."""
        return self.loss_increase > 0 and self.loss_increase >= MIN_INCREASE_STANDARD_ERRORS * self.loss_increase_se


def reference_losses(model: nn.Module, sequences: Sequence[Sequence[int]], layers: Iterable[int],
                     **common: object) -> dict[int, ReferenceLosses]:
    """{layer: ReferenceLosses} of `model` on `sequences` (`common`: `text_losses`' batching)."""
    clean = text_losses(model, sequences, desc="LM loss, clean", **common)
    return {layer: ReferenceLosses.of(clean, text_losses(model, sequences, layer=layer, replace=zero_output,
                                                         desc=f"LM loss, layer {layer} zeroed", **common))
            for layer in layers}


@dataclass(frozen=True)
class LossRecovered:
    """The spliced-in loss of a dictionary against the clean and the zero-ablated model (one row of
    the metric tables: `sae_metrics`, `crosscoder_metrics`)."""

    ce_clean: float
    ce_spliced: float
    ce_zero_ablated: float
    loss_increase: float
    """ce_zero_ablated - ce_clean: what deleting the layer costs, in nats per token."""
    loss_increase_se: float
    """Its standard error over the evaluation texts (`increase_standard_error`)."""
    loss_recovered: float | None
    """(zero - spliced) / (zero - clean); None (NULL in the store) when the increase is below
    `MIN_INCREASE_STANDARD_ERRORS` standard errors (`loss_recovered_reason` says why)."""

    @classmethod
    def measure(cls, reference: ReferenceLosses, spliced: float) -> LossRecovered:
        ratio = (reference.zero_ablated - spliced) / reference.loss_increase if reference.above_noise else None
        return cls(reference.clean, spliced, reference.zero_ablated, reference.loss_increase,
                   reference.loss_increase_se, ratio)

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def mean_loss_recovered(values: pd.Series) -> tuple[float | None, int]:
    """The mean loss recovered over the dictionaries that have one (None when none has), and how many have one."""
    present = values.dropna()
    return (float(present.mean()) if len(present) else None), int(len(present))


def loss_recovered_reason(loss_increase: float, loss_increase_se: float) -> str:
    """Why a dictionary has no loss recovered, in words (the pages show it instead of a number)."""
    return (f"zeroing the layer raises the loss by only {loss_increase:.2g} nats per token, less than "
            f"{MIN_INCREASE_STANDARD_ERRORS:g} standard errors ({loss_increase_se:.2g} each) of the "
            "evaluation texts' noise, so the ratio would be noise")


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


def spliced_losses(model: nn.Module, pad_token_id: int, evaluation: ActivationSet, specs: Sequence[SaeSpec],
                   saes: Sequence[SparseAutoencoder], batch_size: int) -> pd.DataFrame:
    """Per dictionary: layer, dict_size and its `LossRecovered` on the eval texts."""
    sequences = [tokens for _, tokens in evaluation.sequences()]
    common = dict(pad_token_id=pad_token_id, bos_token_id=evaluation.info.bos_token_id, batch_size=batch_size)
    references = reference_losses(model, sequences, sorted({s.layer for s in specs}), **common)
    rows = []
    for spec, sae in zip(specs, saes):
        spliced = text_losses(model, sequences, layer=spec.layer, replace=lambda h, sae=sae: sae(h.float()),
                              desc=f"LM loss, SAE {spec.layer}/{spec.d_sae}", **common)
        rows.append({"layer": spec.layer, "dict_size": spec.d_sae,
                     **LossRecovered.measure(references[spec.layer], spliced.mean).as_dict()})
    return pd.DataFrame(rows)
