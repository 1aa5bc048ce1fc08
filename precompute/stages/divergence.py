"""Stage `divergence`: per-layer parameter distance between base and tuned; the top-k layers."""

from __future__ import annotations

import logging

from lfp_engine.tuning.layer_divergence import layer_divergence, top_layers

from ..models import load_base, load_tuned, tuned_source
from ..pipeline import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def run(ctx: StageContext) -> StageResult:
    base, tuned = load_base(ctx), load_tuned(ctx)
    table = layer_divergence(base, tuned)
    chosen = top_layers(table, ctx.config.divergence.top_k)
    table["rank"] = table["divergence"].rank(ascending=False, method="first").astype(int)
    table["chosen"] = table["layer"].isin(chosen)
    log.info("most divergent layers: %s", chosen)
    return StageResult(
        tables={"layer_divergence": table},
        outputs={"layers": chosen, "n_layers": len(table), "max_divergence": float(table["divergence"].max())},
        inputs={"tuned_model": tuned_source(ctx)},
    )


STAGE = Stage(name="divergence", run=run, sections=("divergence",), needs=("world", "rlhf"))
