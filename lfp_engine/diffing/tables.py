"""Every latent of a crosscoder in one table row, and the examples of the latents worth reading.

Per latent: its geometry and tag (`tags.py`), how often and how strongly it fires on the
training pairs (the feature statistics of `sae/features.py`, which stream over the paired rows exactly
as over one model's), Latent Scaling's ratios on the held-out pairs, and its correlation with the
reward of the held-out texts (`reward_correlation.py`). Examples (top and quantile windows, with the
latent's activation on every token) come from the same streaming passes, for the latents a reader
will open: the tuned-only and base-only ones, and the ones most tied to the reward.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import torch

from lfp_engine.diffing.crosscoder import Crosscoder
from lfp_engine.diffing.inputs import DiffingInputs
from lfp_engine.diffing.paired_activations import PairedActivations
from lfp_engine.diffing.settings import CrosscoderSettings
from lfp_engine.diffing.tags import latent_geometry, latent_scaling, specific, tag_latents
from lfp_engine.run.seeding import derive_seed
from lfp_engine.sae.autoencoder import SparseAutoencoder
from lfp_engine.sae.features import FeatureStatistics, context_windows, feature_statistics
from lfp_engine.sae.metrics import EVAL_BATCH_ROWS
from lfp_engine.sae.settings import FeatureSettings

KEYS = ["layer", "feature"]
READ_TAGS = ("tuned-only", "base-only")
"""Latents whose examples are stored, besides the top ones by reward: those tuning created or removed."""


def latent_statistics(crosscoder: Crosscoder, train: PairedActivations, settings: FeatureSettings, seed: int,
                      device: torch.device | str) -> FeatureStatistics:
    """Density, activation and example rows of every latent over the training pairs (three passes)."""
    def rows():
        return ((start, x[0]) for start, x in train.iter_rows([crosscoder.layer], settings.batch_rows, device))

    return feature_statistics(crosscoder.module.to(device), rows, n_top=settings.n_top_examples,
                              n_quantiles=settings.n_quantiles, per_quantile=settings.examples_per_quantile,
                              histogram_bins=settings.histogram_bins,
                              seed=derive_seed(seed, "crosscoder", str(crosscoder.layer)))


def latent_table(crosscoder: Crosscoder, statistics: FeatureStatistics, evaluation: PairedActivations,
                 settings: CrosscoderSettings, device: torch.device | str) -> pd.DataFrame:
    """layer, dict_size, feature, tag, geometry, Latent Scaling, specific, and the firing statistics."""
    frame = latent_geometry(crosscoder).merge(statistics.frame, on="feature")
    frame["tag"] = tag_latents(frame["relative_norm"].to_numpy(), frame["n_firing"].to_numpy() > 0, settings)
    rows = (x[0] for _, x in evaluation.iter_rows([crosscoder.layer], EVAL_BATCH_ROWS, device))
    frame = frame.merge(latent_scaling(crosscoder, rows, frame["tag"].to_numpy()), on="feature")
    frame["specific"] = specific(frame["tag"].to_numpy(), frame["scaling_error_ratio"].to_numpy(),
                                 frame["scaling_reconstruction_ratio"].to_numpy(), settings)
    frame.insert(0, "dict_size", crosscoder.module.d_sae)
    frame.insert(0, "layer", crosscoder.layer)
    return frame


def tagged_latents(inputs: DiffingInputs) -> tuple[pd.DataFrame, dict[int, FeatureStatistics]]:
    """Every latent's row of every layer (geometry, tag, Latent Scaling, statistics), and each layer's
    statistics (kept for the examples, which come from the same passes)."""
    stats = {c.layer: latent_statistics(c, inputs.train, inputs.features, inputs.seed, inputs.device)
             for c in inputs.crosscoders}
    tables = [latent_table(c, stats[c.layer], inputs.evaluation, inputs.settings, inputs.device)
              for c in inputs.crosscoders]
    return pd.concat(tables, ignore_index=True), stats


def latent_examples(crosscoder: Crosscoder, statistics: FeatureStatistics, features: np.ndarray,
                    train: PairedActivations, settings: FeatureSettings, decode: Callable[[int], str]) -> pd.DataFrame:
    """`crosscoder_examples` rows (the `feature_examples` columns, without `model`) of `features`."""
    chosen = statistics.examples[statistics.examples["feature"].isin(features)]
    examples = context_windows(chosen, crosscoder.module, train, crosscoder.layer, settings.context_before,
                               settings.context_after, settings.batch_rows, decode)
    examples = examples.drop(columns=["row", "activation"])
    examples.insert(0, "dict_size", crosscoder.module.d_sae)
    examples.insert(0, "layer", crosscoder.layer)
    return examples


def examples_to_read(inputs: DiffingInputs, stats: Mapping[int, FeatureStatistics],
                     latents: pd.DataFrame) -> pd.DataFrame:
    """`crosscoder_examples`: the examples of the tuned-only and base-only latents and of the top ones
    by reward (`latents` ranked by `linked_latents`)."""
    wanted = latents["tag"].isin(READ_TAGS) | latents["top_rank"].notna()
    return pd.concat([latent_examples(c, stats[c.layer], latents.loc[wanted & (latents["layer"] == c.layer), "feature"]
                                      .to_numpy(), inputs.train, inputs.features, inputs.vocab.__getitem__)
                      for c in inputs.crosscoders], ignore_index=True)


def rank_by_reward(latents: pd.DataFrame) -> pd.Series:
    """reward_rank of the live latents (1 = the strongest link to the reward, all layers together):
    by |reward correlation|, then by the probe's |weight|; NULL for dead latents."""
    live = latents[latents["tag"] != "dead"]
    order = live.assign(strength=live["reward_r"].abs().fillna(-1.0), weight=live["probe_weight"].abs().fillna(-1.0))
    order = order.sort_values(["strength", "weight", "layer", "feature"], ascending=[False, False, True, True])
    rank = pd.Series(pd.NA, index=latents.index, dtype="Int64")
    rank.loc[order.index] = np.arange(1, len(order) + 1)
    return rank


def top_by_reward(latents: pd.DataFrame, n_top: int) -> pd.Series:
    """top_rank of the latents described in full: the tuned-only latents by reward rank; when tuning
    created none, the live latents most tied to the reward (whatever their tag). NULL for the others."""
    candidates = latents[latents["tag"] == "tuned-only"]
    if candidates.empty:
        candidates = latents[latents["tag"] != "dead"]
    chosen = candidates[candidates["reward_rank"].notna()].sort_values("reward_rank").head(n_top)
    rank = pd.Series(pd.NA, index=latents.index, dtype="Int64")
    rank.loc[chosen.index] = np.arange(1, len(chosen) + 1)
    return rank


@torch.no_grad()
def nearest_sae_features(crosscoder: Crosscoder, sae: SparseAutoencoder) -> pd.DataFrame:
    """feature, nearest_sae_feature, nearest_sae_cosine: for each latent, the feature of the tuned
    model's SAE (the paper's dictionary at the same layer) whose decoder direction is closest to the
    latent's tuned decoder direction, so a latent can be read beside what the paper's method found."""
    tuned = torch.nn.functional.normalize(crosscoder.decoders()[1].double(), dim=-1)
    features = torch.nn.functional.normalize(sae.W_dec.detach().double().cpu(), dim=-1)
    best = (tuned.cpu() @ features.T).max(dim=1)
    return pd.DataFrame({"feature": np.arange(crosscoder.module.d_sae), "nearest_sae_feature": best.indices.numpy(),
                         "nearest_sae_cosine": best.values.numpy()})


def paper_links(crosscoders: list[Crosscoder], saes: Mapping[int, SparseAutoencoder],
                probe_weights: pd.DataFrame) -> pd.DataFrame:
    """layer, feature, nearest_sae_feature, nearest_sae_cosine, nearest_sae_dict_size, nearest_sae_probe_rank:
    each latent's closest feature in the dictionary the paper's probe reads (`saes`, by layer), and that
    feature's rank by the probe's |weight| (`probe_weights`: the probe stage's layer, feature, weight)."""
    parts = [nearest_sae_features(c, saes[c.layer]).assign(layer=c.layer, nearest_sae_dict_size=saes[c.layer].d_sae)
             for c in crosscoders]
    weights = probe_weights.copy()
    weights["nearest_sae_probe_rank"] = weights["weight"].abs().rank(ascending=False, method="min").astype(int)
    ranks = weights.rename(columns={"feature": "nearest_sae_feature"})[["layer", "nearest_sae_feature",
                                                                         "nearest_sae_probe_rank"]]
    return pd.concat(parts, ignore_index=True).merge(ranks, on=["layer", "nearest_sae_feature"], how="left")


def linked_latents(latents: pd.DataFrame, correlations: pd.DataFrame, probe_weights: pd.DataFrame,
                   nearest: pd.DataFrame, n_top: int) -> pd.DataFrame:
    """The latents with their three links (reward correlation, weight in the probe on crosscoder codes,
    nearest feature of the paper's SAE) and their ranks by reward (`rank_by_reward`, `top_by_reward`)."""
    links = correlations.merge(probe_weights, on=KEYS, how="outer")
    latents = latents.merge(links, on=KEYS, how="left").merge(nearest, on=KEYS, how="left")
    latents["reward_rank"] = rank_by_reward(latents)
    latents["top_rank"] = top_by_reward(latents, n_top)
    return latents
