"""Stage `world`: base model, tokenizer, corpus, prompts (and preference pairs for DPO tasks).

Builds the world folder (`lfp_engine.worlds.build`) under a temporary name and renames it into
place when complete; synthetic worlds also write their planted ground truth, `world_lexicon`.
"""

from __future__ import annotations

import logging

from lfp_engine.run.atomic import atomic_path
from lfp_engine.run.config import RunConfig
from lfp_engine.run.tasks import task_spec
from lfp_engine.worlds import CORPUS, PROMPTS
from lfp_engine.worlds.build import build_hub, build_synthetic, world_task_effect

from ..outputs import WorldOutputs
from ..stage import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def run(ctx: StageContext) -> StageResult:
    spec = task_spec(ctx.config.task)
    with atomic_path(ctx.paths.world) as folder:
        folder.mkdir(parents=True)
        if ctx.config.world.kind == "synthetic":
            world = build_synthetic(ctx.config, spec, folder, ctx.seed, ctx.device)
        else:
            world = build_hub(ctx.config, spec, folder, ctx.seed)
        world.record.save(folder)
    log.info("world written to %s", ctx.paths.world)
    tables = {"world_lexicon": world.ground_truth} if world.ground_truth is not None else {}
    return StageResult(outputs=WorldOutputs(folder=str(ctx.paths.world), **world.summary), tables=tables,
                       inputs={"base_model": world.record.base_model, "task": spec.name})


def task_effect(config: RunConfig) -> dict:
    return world_task_effect(config, task_spec(config.task))


STAGE = Stage(
    name="world",
    run=run,
    sections=("world", "synthetic"),
    tables=("world_lexicon",),
    derived=task_effect,
    artifacts=lambda paths, config: [paths.world / "world.json", paths.world / CORPUS, paths.world / PROMPTS],
)
