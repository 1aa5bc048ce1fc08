"""Stage `features`: per-feature statistics, examples, logit effects, neighbours and shared features.

Reads the run's SAEs and training activations and writes, identifying each feature by the
integer columns (layer, dict_size, feature):
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

from lfp_engine.activations import ActivationSet
from lfp_engine.dictionaries import nearest_neighbors, shared_features
from lfp_engine.features import context_windows, direct_logit_effects, feature_statistics
from lfp_engine.saelens_format import find_saes, load_sae
from lfp_engine.seeding import derive_seed

from ..models import load_tokenizer_of, load_tuned
from ..pipeline import Stage, StageContext, StageResult

log = logging.getLogger("lfp")

EXPLANATION_COLUMNS = {"explanation": "string", "explanation_source": "string", "relevance": "boolean",
                       "simulation_score": "Float64", "detection_score": "Float64"}
"""Columns the `explain` stage fills, created here NULL with their final types."""


def token_strings(tokenizer) -> list[str]:
    """Every token id decoded on its own (' great', not 'Ġgreat'), for showing examples and logits."""
    return tokenizer.batch_decode([[i] for i in range(len(tokenizer))])


def _keyed(frame: pd.DataFrame, layer: int, dict_size: int) -> pd.DataFrame:
    frame = frame.copy()
    frame.insert(0, "dict_size", dict_size)
    frame.insert(0, "layer", layer)
    return frame


def run(ctx: StageContext) -> StageResult:
    f = ctx.config.features
    ctx.outputs_of("sae")
    train = ActivationSet(ctx.paths.activations / "train")
    found = find_saes(ctx.paths.saes)
    model = load_tuned(ctx)
    vocab = token_strings(load_tokenizer_of(ctx))
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in (
        "features", "feature_examples", "feature_logits", "feature_neighbors", "feature_histograms",
        "shared_features_summary")}
    for layer in train.layers:
        saes = {size: load_sae(path, ctx.device) for (l, size), path in sorted(found.items()) if l == layer}
        twins, summary = shared_features(saes, f.shared_threshold)
        tables["shared_features_summary"].append(summary.assign(layer=layer))
        for size, sae in saes.items():
            def rows(layer: int = layer):
                return ((start, x[0]) for start, x in train.iter_rows([layer], f.batch_rows, ctx.device))

            stats = feature_statistics(sae, rows, n_top=f.n_top_examples, n_quantiles=f.n_quantiles,
                                       per_quantile=f.examples_per_quantile, histogram_bins=f.histogram_bins,
                                       seed=derive_seed(ctx.seed, str(layer), str(size)))
            frame = twins[twins["dict_size"] == size].drop(columns="dict_size").merge(stats.frame, on="feature")
            tables["features"].append(_keyed(frame, layer, size))
            examples = context_windows(stats.examples, sae, train, layer, f.context_before, f.context_after,
                                       f.batch_rows, vocab.__getitem__)
            tables["feature_examples"].append(_keyed(examples.drop(columns=["row", "activation"]), layer, size))
            logits = direct_logit_effects(model, sae.W_dec.detach(), f.n_logits)
            logits.insert(4, "token", [vocab[t] for t in logits["token_id"]])
            tables["feature_logits"].append(_keyed(logits, layer, size))
            tables["feature_neighbors"].append(_keyed(nearest_neighbors(sae, f.n_neighbors), layer, size))
            tables["feature_histograms"].append(_keyed(stats.histogram, layer, size))
            log.info("features of layer %d, %d features: %d dead, %d shared (cosine > %.2f)", layer, size,
                     int((stats.frame["n_firing"] == 0).sum()), int(frame["is_shared"].sum()), f.shared_threshold)
    out = {name: pd.concat(parts, ignore_index=True) for name, parts in tables.items()}
    for column, dtype in EXPLANATION_COLUMNS.items():
        out["features"][column] = pd.Series(pd.NA, index=out["features"].index, dtype=dtype)
    summary = out["shared_features_summary"]
    out["shared_features_summary"] = summary[["layer"] + [c for c in summary.columns if c != "layer"]]
    small = summary[summary["dict_size"] < summary["twin_dict_size"]]
    return StageResult(
        tables=out,
        outputs={"n_features": len(out["features"]), "n_shared": int(out["features"]["is_shared"].sum()),
                 "mean_max_cosine": {str(r.layer): r.mean_max_cosine for r in small.itertuples()}},
        inputs={"n_rows": train.n_rows},
    )


STAGE = Stage(name="features", run=run, sections=("features",), needs=("sae",))
