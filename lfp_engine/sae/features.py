"""Everything a feature page shows: how often and how strongly a feature fires, on which tokens,
what its direction does to the model's next-token prediction, and which features resemble it.

Statistics stream over an activation set in a few passes (the codes of all rows are never held
at once, so memory does not grow with the corpus):
1. density (fraction of tokens where the code is non-zero), max, mean over the tokens where it
   fires, and the top-activating rows;
2. a histogram of the non-zero activations (equal-width bins from 0 to the max), plus a fine one
   from which the activation quantiles are read;
3. a seeded uniform sample of rows inside each quantile band of the non-zero activations (band j
   holds the activations between quantiles j/q and (j+1)/q), so a page shows weak and middling
   activations too, not only the extremes; sampling keeps, per band, the rows with the largest
   random keys, which is a uniform sample that can be taken while streaming;
4. for every chosen example, the feature's activation on each token of its context window.

Direct logit effect: a decoder direction d added to the residual stream reaches the logits,
ignoring the later layers, through the final normalisation and the unembedding W_U. We apply the
model's own final norm to d alone and subtract the norm of the zero vector, i.e. W_U (N(d) - N(0)):
that keeps the norm's centring and gain (whatever its kind: LayerNorm, RMSNorm, Gemma's 1 + w)
and drops its bias, which is the same for every feature and says nothing about this one. Scaling
by d's own spread is a positive factor per feature, so it never changes which tokens rank first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from lfp_engine.sae.activations import ActivationSet
from lfp_engine.models.architecture import final_norm
from lfp_engine.sae.autoencoder import SparseAutoencoder

FINE_BINS = 1024
"""Resolution of the histogram from which activation quantiles are read."""


@dataclass
class FeatureStatistics:
    frame: pd.DataFrame
    """feature, density, max_activation, mean_activation (over firing tokens), n_firing."""
    histogram: pd.DataFrame
    """feature, bin_left, bin_right, count: non-zero activations only (density covers the zeros)."""
    examples: pd.DataFrame
    """feature, kind ('top' or 'quantile'), rank, quantile, row, activation: which rows to show."""


def _merge_top(values: torch.Tensor, rows: torch.Tensor, new_values: torch.Tensor, new_rows: torch.Tensor,
               k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the k largest of the kept and the new candidates, per feature (dim 1)."""
    values = torch.cat([values, new_values])
    rows = torch.cat([rows, new_rows])
    k = min(k, values.shape[0])
    top = values.topk(k, dim=0)
    return top.values, rows.gather(0, top.indices)


@dataclass
class _Totals:
    """Pass 1 over the rows: per feature, how often it fires, its summed and largest activation,
    and its top activations with their row numbers."""

    n_rows: int
    fired: torch.Tensor
    total: torch.Tensor
    maximum: torch.Tensor
    top_values: torch.Tensor
    top_rows: torch.Tensor


def _totals(sae: SparseAutoencoder, rows: Callable[[], Iterable[tuple[int, torch.Tensor]]], n_top: int) -> _Totals:
    device, F = sae.W_enc.device, sae.d_sae
    n_rows = 0
    fired = torch.zeros(F, dtype=torch.float64, device=device)
    total = torch.zeros(F, dtype=torch.float64, device=device)
    maximum = torch.zeros(F, device=device)
    top_values = torch.zeros(0, F, device=device)
    top_rows = torch.zeros(0, F, dtype=torch.long, device=device)
    for start, x in rows():
        z = sae.encode(x.to(device))
        n_rows += z.shape[0]
        fired += (z > 0).sum(0)
        total += z.sum(0, dtype=torch.float64)
        maximum = torch.maximum(maximum, z.max(0).values)
        numbers = torch.arange(start, start + z.shape[0], device=device)[:, None].expand_as(z)
        top_values, top_rows = _merge_top(top_values, top_rows, z, numbers, n_top)
    return _Totals(n_rows, fired, total, maximum, top_values, top_rows)


def _histograms(sae: SparseAutoencoder, rows: Callable[[], Iterable[tuple[int, torch.Tensor]]], scale: torch.Tensor,
                histogram_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pass 2: each feature's non-zero activations binned relative to its maximum, finely (for the
    quantile edges) and in the `histogram_bins` shown; [F, FINE_BINS] and [F, histogram_bins]."""
    device, F = sae.W_enc.device, sae.d_sae
    fine = torch.zeros(F * FINE_BINS, dtype=torch.float64, device=device)
    shown = torch.zeros(F * histogram_bins, dtype=torch.float64, device=device)
    offsets = torch.arange(F, device=device)
    for _, x in rows():
        z = sae.encode(x.to(device))
        on = z > 0
        feats = offsets.expand_as(z)[on]
        relative = (z / scale)[on]
        for counts, bins in ((fine, FINE_BINS), (shown, histogram_bins)):
            index = feats * bins + (relative * bins).long().clamp_(0, bins - 1)
            counts.index_add_(0, index, torch.ones_like(relative, dtype=torch.float64))
    return fine.view(F, FINE_BINS), shown.view(F, histogram_bins)


def _quantile_samples(sae: SparseAutoencoder, rows: Callable[[], Iterable[tuple[int, torch.Tensor]]],
                      edges: torch.Tensor, n_quantiles: int, per_quantile: int,
                      seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Pass 3: a uniform sample of `per_quantile` rows within each quantile band of each feature
    (reservoir keys and row numbers per band, [per_quantile, F] each).

    Every (row, feature) entry gets a uniform key; a band keeps its largest keys among the entries
    that fire in it. Only firing entries are placed (codes are sparse), feature by feature, and the
    keys are continuous, so the kept rows do not depend on how the selection is laid out."""
    device, F = sae.W_enc.device, sae.d_sae
    generator = torch.Generator(device=device).manual_seed(seed)
    keys = [torch.full((F, 0), -1.0, device=device) for _ in range(n_quantiles)]
    kept = [torch.zeros(F, 0, dtype=torch.long, device=device) for _ in range(n_quantiles)]
    if per_quantile > 0:
        for start, x in rows():
            z = sae.encode(x.to(device))
            u = torch.rand(z.shape, generator=generator, device=device)
            row, feature = torch.nonzero(z > 0, as_tuple=True)
            band = (z[row, feature, None] > edges[feature, 1:-1]).sum(-1)
            for j in range(n_quantiles):
                inside = band == j
                candidate = torch.full((F, z.shape[0]), -1.0, device=device)
                candidate[feature[inside], row[inside]] = u[row[inside], feature[inside]]
                top = candidate.topk(min(per_quantile, z.shape[0]), dim=1)
                values = torch.cat([keys[j], top.values], dim=1)
                merged = values.topk(min(per_quantile, values.shape[1]), dim=1)
                numbers = torch.cat([kept[j], top.indices + start], dim=1)
                keys[j], kept[j] = merged.values, numbers.gather(1, merged.indices)
    return [k.T for k in keys], [k.T for k in kept]


@torch.no_grad()
def feature_statistics(sae: SparseAutoencoder, rows: Callable[[], Iterable[tuple[int, torch.Tensor]]], *,
                       n_top: int, n_quantiles: int, per_quantile: int, histogram_bins: int,
                       seed: int) -> FeatureStatistics:
    """Statistics of every feature of `sae` over the activation rows that `rows()` yields anew on
    each call, as (first row number, [n, d_in]) chunks, in three streaming passes (totals,
    histograms, quantile samples). Examples refer to rows by number."""
    F = sae.d_sae
    totals = _totals(sae, rows, n_top)
    fired, maximum = totals.fired, totals.maximum
    # A feature that never fires gets width-one bins so the arithmetic holds.
    scale = torch.where(maximum > 0, maximum, torch.ones_like(maximum))
    fine, shown = _histograms(sae, rows, scale, histogram_bins)
    keys, kept = _quantile_samples(sae, rows, _quantile_edges(fine, scale, n_quantiles), n_quantiles, per_quantile,
                                   seed)
    frame = pd.DataFrame({
        "feature": np.arange(F),
        "density": (fired / max(totals.n_rows, 1)).cpu().numpy(),
        "max_activation": maximum.cpu().double().numpy(),
        "mean_activation": torch.where(fired > 0, totals.total / fired.clamp_min(1),
                                       torch.zeros_like(totals.total)).cpu().numpy(),
        "n_firing": fired.cpu().numpy().astype(np.int64),
    })
    width = (scale / histogram_bins).cpu().double().numpy()
    bins = np.arange(histogram_bins)
    histogram = pd.DataFrame({
        "feature": np.repeat(np.arange(F), histogram_bins),
        "bin_left": (width[:, None] * bins[None, :]).reshape(-1),
        "bin_right": (width[:, None] * (bins[None, :] + 1)).reshape(-1),
        "count": shown.cpu().numpy().reshape(-1).astype(np.int64),
    })
    histogram = histogram[np.repeat(frame["n_firing"].to_numpy() > 0, histogram_bins)]
    return FeatureStatistics(frame=frame, histogram=histogram.reset_index(drop=True),
                             examples=_chosen_examples(totals.top_values, totals.top_rows, keys, kept, n_quantiles))


def _quantile_edges(fine: torch.Tensor, scale: torch.Tensor, n_quantiles: int) -> torch.Tensor:
    """[F, n_quantiles + 1] activation values at quantiles 0, 1/q, ..., 1 of the non-zero
    activations, read off the fine histogram by linear interpolation within a bin."""
    cdf = fine.cumsum(1)
    n = cdf[:, -1:].clamp_min(1)
    levels = torch.linspace(0, 1, n_quantiles + 1, dtype=torch.float64, device=fine.device)[1:-1]
    targets = levels[None, :] * n
    index = torch.searchsorted(cdf.contiguous(), targets.contiguous()).clamp_(max=FINE_BINS - 1)
    below = torch.where(index > 0, cdf.gather(1, (index - 1).clamp_min(0)), torch.zeros_like(targets))
    inside = fine.gather(1, index).clamp_min(1e-12)
    position = (index + ((targets - below) / inside).clamp(0, 1)) / FINE_BINS
    inner = (position * scale.double()[:, None]).float()
    zeros = torch.zeros_like(scale)[:, None]
    return torch.cat([zeros, inner, scale[:, None]], dim=1)


def _chosen_examples(top_values: torch.Tensor, top_rows: torch.Tensor, keys: list[torch.Tensor],
                     kept: list[torch.Tensor], n_quantiles: int) -> pd.DataFrame:
    F = top_values.shape[1]
    parts = []
    k = top_values.shape[0]
    if k:
        parts.append(pd.DataFrame({
            "feature": np.tile(np.arange(F), k), "kind": "top",
            "rank": np.repeat(np.arange(1, k + 1), F), "quantile": np.nan,
            "row": top_rows.reshape(-1).cpu().numpy(), "activation": top_values.reshape(-1).cpu().numpy(),
            "valid": (top_values > 0).reshape(-1).cpu().numpy(),
        }))
    for j in range(n_quantiles):
        m = keys[j].shape[0]
        if not m:
            continue
        parts.append(pd.DataFrame({
            "feature": np.tile(np.arange(F), m), "kind": "quantile",
            "rank": np.repeat(np.arange(1, m + 1), F), "quantile": (j + 1) / n_quantiles,
            "row": kept[j].reshape(-1).cpu().numpy(), "activation": np.nan,
            "valid": (keys[j] >= 0).reshape(-1).cpu().numpy(),
        }))
    examples = pd.concat(parts, ignore_index=True)
    examples = examples[examples.pop("valid")].sort_values(["feature", "kind", "quantile", "rank"])
    return examples.reset_index(drop=True)


@torch.no_grad()
def context_windows(examples: pd.DataFrame, sae: SparseAutoencoder, activations: ActivationSet, layer: int,
                    before: int, after: int, batch_rows: int, decode: Callable[[int], str]) -> pd.DataFrame:
    """Add to `examples` (feature, row, ...) each example's readable context: text_id, position,
    token_ids, tokens, activations (the feature's code on every token of the window), peak_index (where
    the example's own token sits in the window), max_activation (its code there). Windows stay inside
    the example's text."""
    index = activations.index
    text_ids = index["text_id"].to_numpy()
    positions = index["position"].to_numpy()
    token_ids = index["token_id"].to_numpy()
    n = len(index)
    # The rows of a text are contiguous: its first row is row - position, its last precedes the next text.
    starts_of_text = np.flatnonzero(np.r_[True, text_ids[1:] != text_ids[:-1]])
    ends_of_text = np.r_[starts_of_text[1:], n] - 1
    text_of_row = np.searchsorted(starts_of_text, np.arange(n), side="right") - 1

    rows = examples["row"].to_numpy()
    first = np.maximum(rows - before, starts_of_text[text_of_row[rows]])
    last = np.minimum(rows + after, ends_of_text[text_of_row[rows]])
    lengths = last - first + 1
    pair_rows = np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last)]) if len(rows) else np.zeros(0, int)
    pair_feats = np.repeat(examples["feature"].to_numpy(), lengths)
    values = np.zeros(len(pair_rows), dtype=np.float32)
    unique = np.unique(pair_rows)
    device = sae.W_enc.device
    for s in range(0, len(unique), batch_rows):
        chunk = unique[s:s + batch_rows]
        z = sae.encode(activations.gather(layer, chunk).to(device)).cpu()
        inside = (pair_rows >= chunk[0]) & (pair_rows <= chunk[-1])
        where = np.searchsorted(chunk, pair_rows[inside])
        values[inside] = z[torch.as_tensor(where), torch.as_tensor(pair_feats[inside])].numpy()
    splits = np.cumsum(lengths)[:-1]
    out = examples.copy()
    out["text_id"] = text_ids[rows]
    out["position"] = positions[rows].astype(np.int64)
    out["peak_index"] = (rows - first).astype(np.int64)
    windows = [token_ids[a:b + 1] for a, b in zip(first, last)]
    out["token_ids"] = [w.astype(np.int64).tolist() for w in windows]
    out["tokens"] = [[decode(int(t)) for t in w] for w in windows]
    out["activations"] = [v.astype(np.float64).tolist() for v in np.split(values, splits)] if len(rows) else []
    out["max_activation"] = values[np.cumsum(np.r_[0, lengths[:-1]]) + (rows - first)].astype(np.float64) \
        if len(rows) else []
    return out


@torch.no_grad()
def direct_logit_effects(model: nn.Module, directions: torch.Tensor, k: int,
                         chunk: int = 256) -> pd.DataFrame:
    """The k tokens each direction ([F, d_model]) most boosts and most suppresses:
    feature, direction ('boost'/'suppress'), rank, token_id, effect. See the module docstring."""
    norm = final_norm(model)
    unembed = model.get_output_embeddings().weight
    device, dtype = unembed.device, unembed.dtype
    k = min(k, unembed.shape[0])
    zero = norm(torch.zeros(1, directions.shape[1], device=device, dtype=dtype))
    frames = []
    for start in range(0, directions.shape[0], chunk):
        d = directions[start:start + chunk].to(device, dtype)
        effects = ((norm(d) - zero) @ unembed.T).float()
        for name, sign in (("boost", 1.0), ("suppress", -1.0)):
            top = (sign * effects).topk(k, dim=1)
            n = d.shape[0]
            frames.append(pd.DataFrame({
                "feature": np.repeat(np.arange(start, start + n), k),
                "direction": name,
                "rank": np.tile(np.arange(1, k + 1), n),
                "token_id": top.indices.reshape(-1).cpu().numpy().astype(np.int64),
                "effect": (sign * top.values).reshape(-1).cpu().double().numpy(),
            }))
    return pd.concat(frames, ignore_index=True)
