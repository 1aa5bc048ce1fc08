"""Stage `divergence`: per-layer parameter distance between base and tuned; the top-k layers."""

from __future__ import annotations

import logging

from lfp_engine.tuning.layer_divergence import layer_divergence, mark_chosen

from ..models import load_base, load_tuned, tuned_source
from ..outputs import DivergenceOutputs
from ..stage import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def run(ctx: StageContext) -> StageResult:
    base, tuned = load_base(ctx), load_tuned(ctx)
    table, chosen = mark_chosen(layer_divergence(base, tuned), ctx.config.divergence.top_k)
    log.info("most divergent layers: %s", chosen)
    return StageResult(
        tables={"layer_divergence": table},
        outputs=DivergenceOutputs(layers=chosen, n_layers=len(table), max_divergence=float(table["divergence"].max())),
        inputs={"tuned_model": tuned_source(ctx)},
    )


STAGE = Stage(name="divergence", run=run, sections=("divergence",), tables=("layer_divergence",),
              needs=("world", "rlhf"))
