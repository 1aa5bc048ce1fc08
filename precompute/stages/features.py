"""Stage `features`: per-feature statistics, examples, logit effects, neighbours and shared features.

For every model with dictionaries (column `model`: 'tuned', and 'base' for the baselines), the
tables of `lfp_engine.sae.feature_tables` over its training activations; `features` gets the
explanation columns empty, for the `explain` stage to fill (docs/store.md lists every column).
With several processes the (model, layer) units are dealt out and rank 0 merges their tables.
"""

from __future__ import annotations

import pandas as pd

from lfp_engine.models.hub import token_strings
from lfp_engine.sae.activations import ActivationSet
from lfp_engine.sae.feature_tables import TABLES, feature_tables, with_explanation_columns
from lfp_engine.sae.saelens_format import load_saes_by_layer

from ..models import load_model, load_tokenizer_of
from ..outputs import FeaturesOutputs, SaeOutputs
from ..stage import Stage, StageContext, StageResult


def features_of(ctx: StageContext, model: str, layers: list[int], vocab: list[str]) -> dict[str, pd.DataFrame]:
    """The tables of `model`'s dictionaries at `layers`."""
    train = ActivationSet(ctx.paths.activations_of(model) / "train")
    saes = load_saes_by_layer(ctx.paths.saes_of(model), layers, ctx.device)
    return feature_tables(model, load_model(ctx, model), saes, train, vocab, ctx.config.features, ctx.seed,
                          ctx.device)


def shared_tables(ctx: StageContext, models: list[str], vocab: list[str]) -> dict[str, pd.DataFrame]:
    """Every model's tables, one layer of one model at a time: with several processes the units are
    dealt out and merged in order, the rows one process would produce in the order it would."""
    units = [(model, layer) for model in models for layer in ActivationSet(ctx.paths.activations_of(model)
                                                                          / "train").layers]
    mine = [i for i in range(len(units)) if ctx.ranks.owns(i)]
    local = {}
    for model in models:
        layers = [units[i][1] for i in mine if units[i][0] == model]
        if layers:
            made = features_of(ctx, model, layers, vocab)
            local |= {i: {name: t[t["layer"] == units[i][1]] for name, t in made.items()} for i in mine
                      if units[i][0] == model}
    parts = ctx.ranks.merged(local)
    return {name: pd.concat([p[name] for p in parts], ignore_index=True) for name in TABLES}


def run(ctx: StageContext) -> StageResult | None:
    models = ctx.outputs_of(SaeOutputs).models
    out = shared_tables(ctx, models, token_strings(load_tokenizer_of(ctx)))
    if not ctx.ranks.is_main:
        return None
    out["features"] = with_explanation_columns(out["features"])
    tuned = out["features"][out["features"]["model"] == "tuned"]
    summary = out["shared_features_summary"]
    small = summary[(summary["model"] == "tuned") & (summary["dict_size"] < summary["twin_dict_size"])]
    return StageResult(
        outputs=FeaturesOutputs(n_features=len(tuned), n_shared=int(tuned["is_shared"].sum()),
                                mean_max_cosine={str(r.layer): r.mean_max_cosine for r in small.itertuples()}),
        tables=out,
        inputs={"models": models},
    )


STAGE = Stage(name="features", run=run, sections=("features",), tables=TABLES, needs=("sae",), distributed=True)
