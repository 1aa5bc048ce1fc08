"""Stage `features`: per-feature statistics, examples, logit effects, neighbours and shared features.

Reads the run's SAEs and training activations and writes, for every model that has them
(column `model`: 'tuned', and 'base' for the baselines), identifying each feature by
(model, layer, dict_size, feature):
- `features`: twin_feature, twin_cosine, is_shared, shared_rank (shared features across the n and
  2n dictionaries, paper 3.4), density, max_activation, mean_activation (over the tokens where it
  fires), n_firing, and explanation, explanation_source, relevance, simulation_score,
  detection_score: NULL here, filled by the later `explain` stage;
- `feature_examples`: top-activating and quantile-band examples with their context;
- `feature_logits`: the tokens each decoder direction most boosts and suppresses;
- `feature_neighbors`: the closest features of the same dictionary by decoder cosine;
- `feature_histograms`: each feature's histogram of non-zero activations;
- `shared_features_summary`: per dictionary, the mean max cosine similarity to the other one.
"""

from __future__ import annotations

import logging

import pandas as pd

from lfp_engine.sae.activations import ActivationSet
from lfp_engine.sae.shared_features import nearest_neighbors, shared_features
from lfp_engine.sae.features import context_windows, direct_logit_effects, feature_statistics
from lfp_engine.sae.saelens_format import find_saes, load_sae
from lfp_engine.run.seeding import derive_seed

from ..models import load_model, load_tokenizer_of
from ..pipeline import Stage, StageContext, StageResult

log = logging.getLogger("lfp")

EXPLANATION_COLUMNS = {"explanation": "string", "explanation_source": "string", "relevance": "boolean",
                       "simulation_score": "Float64", "detection_score": "Float64"}
"""Columns the `explain` stage fills, created here NULL with their final types."""


def token_strings(tokenizer) -> list[str]:
    """Every token id decoded on its own (' great', not 'Ġgreat'), for showing examples and logits."""
    return tokenizer.batch_decode([[i] for i in range(len(tokenizer))])


TABLES = ("features", "feature_examples", "feature_logits", "feature_neighbors", "feature_histograms",
          "shared_features_summary")


def _keyed(frame: pd.DataFrame, model: str, layer: int, dict_size: int) -> pd.DataFrame:
    frame = frame.copy()
    frame.insert(0, "dict_size", dict_size)
    frame.insert(0, "layer", layer)
    frame.insert(0, "model", model)
    return frame


def features_of(ctx: StageContext, model_name: str, vocab: list[str]) -> dict[str, pd.DataFrame]:
    """Every table of one model's dictionaries."""
    f = ctx.config.features
    train = ActivationSet(ctx.paths.activations_of(model_name) / "train")
    found = find_saes(ctx.paths.saes_of(model_name))
    model = load_model(ctx, model_name)
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES}
    for layer in train.layers:
        saes = {size: load_sae(path, ctx.device) for (l, size), path in sorted(found.items()) if l == layer}
        twins, summary = shared_features(saes, f.shared_threshold)
        summary.insert(0, "layer", layer)
        summary.insert(0, "model", model_name)
        tables["shared_features_summary"].append(summary)
        for size, sae in saes.items():
            def rows(layer: int = layer):
                return ((start, x[0]) for start, x in train.iter_rows([layer], f.batch_rows, ctx.device))

            stats = feature_statistics(sae, rows, n_top=f.n_top_examples, n_quantiles=f.n_quantiles,
                                       per_quantile=f.examples_per_quantile, histogram_bins=f.histogram_bins,
                                       seed=derive_seed(ctx.seed, str(layer), str(size)))
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


def run(ctx: StageContext) -> StageResult:
    models = ctx.outputs_of("sae")["models"]
    vocab = token_strings(load_tokenizer_of(ctx))
    parts = [features_of(ctx, model, vocab) for model in models]
    out = {name: pd.concat([p[name] for p in parts], ignore_index=True) for name in TABLES}
    for column, dtype in EXPLANATION_COLUMNS.items():
        out["features"][column] = pd.Series(pd.NA, index=out["features"].index, dtype=dtype)
    summary = out["shared_features_summary"]
    small = summary[(summary["model"] == "tuned") & (summary["dict_size"] < summary["twin_dict_size"])]
    return StageResult(
        tables=out,
        outputs={"n_features": int((out["features"]["model"] == "tuned").sum()),
                 "n_shared": int(out["features"].loc[out["features"]["model"] == "tuned", "is_shared"].sum()),
                 "mean_max_cosine": {str(r.layer): r.mean_max_cosine for r in small.itertuples()}},
        inputs={"models": models},
    )


STAGE = Stage(name="features", run=run, sections=("features",), needs=("sae",))
