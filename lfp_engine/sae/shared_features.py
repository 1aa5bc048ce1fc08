"""Comparing dictionaries by their decoder directions: shared features and nearest neighbours.

Paper section 3.4 (after Sharkey et al.): the two SAEs of a layer (hidden n and 2n) are trained
independently; a feature whose decoder direction has a near-identical twin in the other
dictionary was found twice, so it is more likely a real feature of the model than an artefact of
one training run. Similarity is the cosine of decoder rows. For every feature of each dictionary:
its best twin in the other one and their cosine; per dictionary the mean max cosine similarity
(MMCS); and a ranking of features by twin cosine, whose top k the paper explains (10 per layer).
"""

from __future__ import annotations

import pandas as pd
import torch

from lfp_engine.run.errors import InputError
from lfp_engine.sae.autoencoder import SparseAutoencoder


def unit_directions(sae: SparseAutoencoder) -> torch.Tensor:
    """Decoder rows scaled to unit norm, float64 on the CPU: [d_sae, d_in]."""
    directions = sae.W_dec.detach().to("cpu", torch.float64)
    norms = directions.norm(dim=-1, keepdim=True)
    return directions / norms.clamp_min(torch.finfo(torch.float64).tiny)


def decoder_cosines(a: SparseAutoencoder, b: SparseAutoencoder) -> torch.Tensor:
    """Cosine similarity of every decoder direction of `a` with every one of `b`: [a.d_sae, b.d_sae]."""
    if a.d_in != b.d_in:
        raise InputError(f"cannot compare dictionaries of different input widths ({a.d_in} and {b.d_in})")
    return unit_directions(a) @ unit_directions(b).T


def shared_features(saes: dict[int, SparseAutoencoder], threshold: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Twins across the two dictionaries of one layer ({dict_size: sae}, exactly two).

    Returns (features, summary):
    - features: dict_size, feature, twin_feature, twin_cosine, is_shared (twin_cosine > threshold),
      shared_rank (1 = the closest twin within its dictionary; ties by feature index);
    - summary: dict_size, twin_dict_size, mean_max_cosine, n_shared, shared_fraction.
    """
    if len(saes) != 2:
        raise InputError(f"shared features compare two dictionaries of a layer, got {len(saes)}")
    (small_size, small), (large_size, large) = sorted(saes.items())
    cosines = decoder_cosines(small, large)
    frames, summary = [], []
    for size, other_size, matrix in ((small_size, large_size, cosines), (large_size, small_size, cosines.T)):
        best, twin = matrix.max(dim=1)
        frame = pd.DataFrame({"dict_size": size, "feature": range(len(best)), "twin_feature": twin.numpy(),
                              "twin_cosine": best.numpy()})
        frame["is_shared"] = frame["twin_cosine"] > threshold
        order = frame.sort_values(["twin_cosine", "feature"], ascending=[False, True]).index
        frame.loc[order, "shared_rank"] = range(1, len(frame) + 1)
        frames.append(frame.astype({"shared_rank": "int64", "twin_feature": "int64"}))
        summary.append({"dict_size": size, "twin_dict_size": other_size, "mean_max_cosine": float(best.mean()),
                        "n_shared": int(frame["is_shared"].sum()), "shared_fraction": float(frame["is_shared"].mean())})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(summary)


def top_shared(features: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k features with the closest twins per (layer, dict_size): the ones the paper explains."""
    return (features[features["shared_rank"] <= k]
            .sort_values(["layer", "dict_size", "shared_rank"]).reset_index(drop=True))


def nearest_neighbors(sae: SparseAutoencoder, k: int) -> pd.DataFrame:
    """Per feature its k most similar other features of the same dictionary: feature, rank, neighbor, cosine."""
    cosines = decoder_cosines(sae, sae)
    cosines.fill_diagonal_(-torch.inf)
    k = min(k, sae.d_sae - 1)
    if k < 1:
        return pd.DataFrame({"feature": [], "rank": [], "neighbor": [], "cosine": []})
    values, indices = cosines.topk(k, dim=1)
    n = sae.d_sae
    return pd.DataFrame({
        "feature": torch.arange(n).repeat_interleave(k).numpy(),
        "rank": torch.arange(1, k + 1).repeat(n).numpy(),
        "neighbor": indices.reshape(-1).numpy(),
        "cosine": values.reshape(-1).numpy(),
    })
