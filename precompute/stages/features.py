"""Stage `features`: per-feature statistics, examples, logit effects, neighbours and shared features.

For every model with dictionaries (column `model`: 'tuned', and 'base' for the baselines), the
tables of `lfp_engine.sae.feature_tables` over its training activations; `features` gets the
explanation columns empty, for the `explain` stage to fill (docs/store.md lists every column).
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


def features_of(ctx: StageContext, model: str, vocab: list[str]) -> dict[str, pd.DataFrame]:
    train = ActivationSet(ctx.paths.activations_of(model) / "train")
    saes = load_saes_by_layer(ctx.paths.saes_of(model), train.layers, ctx.device)
    return feature_tables(model, load_model(ctx, model), saes, train, vocab, ctx.config.features, ctx.seed,
                          ctx.device)


def run(ctx: StageContext) -> StageResult:
    models = ctx.outputs_of(SaeOutputs).models
    vocab = token_strings(load_tokenizer_of(ctx))
    parts = [features_of(ctx, model, vocab) for model in models]
    out = {name: pd.concat([p[name] for p in parts], ignore_index=True) for name in TABLES}
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


STAGE = Stage(name="features", run=run, sections=("features",), tables=TABLES, needs=("sae",))
