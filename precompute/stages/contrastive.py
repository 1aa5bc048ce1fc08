"""Stage `contrastive`: the (positive, neutral, negative) triples the probe is trained on.

`lfp_engine.probe.contrastive.build_triples` picks the triples the task calls for; the stage
records them (`triples`, and `contrastive_words` for word triples) and what an LLM cost.
"""

from __future__ import annotations

import logging

from lfp_engine.probe.contrastive import build_triples, uses_llm
from lfp_engine.worlds import CORPUS, GROUND_TRUTH, WorldRecord, read_world_table

from ..outputs import ContrastiveOutputs, LlmUse
from ..stage import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def run(ctx: StageContext) -> StageResult:
    world = WorldRecord.load(ctx.paths.world)
    truth = read_world_table(ctx.paths.world, GROUND_TRUTH) if world.has_ground_truth else None
    made = build_triples(ctx.config, read_world_table(ctx.paths.world, CORPUS), truth, ctx.store, ctx.seed)
    n_by_split = {s: int(n) for s, n in made.triples["split"].value_counts().items()}
    log.info("%d contrastive triples (%s)", len(made.triples), n_by_split)
    outputs = ContrastiveOutputs(
        kind=made.kind, n_triples=len(made.triples), n_by_split=n_by_split,
        n_words=({s: int(n) for s, n in made.words["split"].value_counts().items()}
                 if made.words is not None else None),
        llm=LlmUse(made.endpoint.describe(), made.usage) if made.endpoint is not None else None,
        llm_failed=made.n_failed)
    tables = {"triples": made.triples}
    if made.words is not None:
        tables["contrastive_words"] = made.words
    return StageResult(outputs=outputs, tables=tables)


STAGE = Stage(
    name="contrastive",
    run=run,
    sections=("task", "contrastive"),
    tables=("triples", "contrastive_words", "explanation_cache"),
    needs=("world",),
    derived=lambda config: config.section("llm") if uses_llm(config) else None,
)
