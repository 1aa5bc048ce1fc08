"""Every table of one model's dictionaries, feature by feature (paper section 3.4).

For each chosen layer: shared features across the layer's n and 2n dictionaries
(`shared_features.py`), and for each dictionary the per-feature statistics, top and quantile
examples with their context, logit effects and histograms (`features.py`), and nearest
neighbours. Rows carry (model, layer, dict_size) so both models' tables stack into the store's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pandas as pd
import torch
from torch import nn

from lfp_engine.sae.settings import FeatureSettings
from lfp_engine.run.seeding import derive_seed
from lfp_engine.sae.activations import ActivationSet
from lfp_engine.sae.autoencoder import SparseAutoencoder
from lfp_engine.sae.features import context_windows, direct_logit_effects, feature_statistics
from lfp_engine.sae.shared_features import nearest_neighbors, shared_features

log = logging.getLogger(__name__)

TABLES = ("features", "feature_examples", "feature_logits", "feature_neighbors", "feature_histograms",
          "shared_features_summary")

EXPLANATION_COLUMNS = {"explanation": "string", "explanation_source": "string", "relevance": "boolean",
                       "simulation_score": "Float64", "detection_score": "Float64"}
"""Columns of `features` that the `explain` stage fills, created NULL with their final types."""


def _keyed(frame: pd.DataFrame, model: str, layer: int, dict_size: int) -> pd.DataFrame:
    frame = frame.copy()
    frame.insert(0, "dict_size", dict_size)
    frame.insert(0, "layer", layer)
    frame.insert(0, "model", model)
    return frame


def feature_tables(model_name: str, model: nn.Module, saes: Mapping[int, Mapping[int, SparseAutoencoder]],
                   train: ActivationSet, vocab: list[str], settings: FeatureSettings, seed: int,
                   device: torch.device) -> dict[str, pd.DataFrame]:
    """The tables of `TABLES` for `model`'s dictionaries (`saes`: layer -> dict_size -> SAE), over its
    training activations `train`; `vocab` is every token id decoded on its own."""
    f = settings
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES}
    for layer, by_size in saes.items():
        twins, summary = shared_features(dict(by_size), f.shared_threshold)
        summary.insert(0, "layer", layer)
        summary.insert(0, "model", model_name)
        tables["shared_features_summary"].append(summary)
        for size, sae in by_size.items():
            def rows(layer: int = layer):
                return ((start, x[0]) for start, x in train.iter_rows([layer], f.batch_rows, device))

            stats = feature_statistics(sae, rows, n_top=f.n_top_examples, n_quantiles=f.n_quantiles,
                                       per_quantile=f.examples_per_quantile, histogram_bins=f.histogram_bins,
                                       seed=derive_seed(seed, str(layer), str(size)))
            frame = twins[twins["dict_size"] == size].drop(columns="dict_size").merge(stats.frame, on="feature")
            tables["features"].append(_keyed(frame, model_name, layer, size))
            examples = context_windows(stats.examples, sae, train, layer, f.context_before, f.context_after,
                                       f.batch_rows, vocab.__getitem__)
            tables["feature_examples"].append(_keyed(examples.drop(columns=["row", "activation"]), model_name,
                                                     layer, size))
            logits = direct_logit_effects(model, sae.W_dec.detach(), f.n_logits)
            logits.insert(4, "token", [vocab[t] for t in logits["token_id"]])
            tables["feature_logits"].append(_keyed(logits, model_name, layer, size))
            tables["feature_neighbors"].append(_keyed(nearest_neighbors(sae, f.n_neighbors), model_name, layer, size))
            tables["feature_histograms"].append(_keyed(stats.histogram, model_name, layer, size))
            log.info("%s features of layer %d, %d features: %d dead, %d shared (cosine > %.2f)", model_name, layer,
                     size, int((stats.frame["n_firing"] == 0).sum()), int(frame["is_shared"].sum()),
                     f.shared_threshold)
    return {name: pd.concat(parts, ignore_index=True) for name, parts in tables.items()}


def with_explanation_columns(features: pd.DataFrame) -> pd.DataFrame:
    """`features` with the explain stage's columns added, empty."""
    features = features.copy()
    for column, dtype in EXPLANATION_COLUMNS.items():
        features[column] = pd.Series(pd.NA, index=features.index, dtype=dtype)
    return features
