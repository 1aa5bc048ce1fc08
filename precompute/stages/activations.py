"""Stage `activations`: the MLP outputs of the most divergent layers over the corpus, per model.

Two activation sets per model (`lfp_engine.sae.activations.capture_sets`): `train/` for the SAEs
and `eval/` for every SAE metric. The tuned model's are the method's subject (the authors took them
from the base model by mistake); the base model's feed the baselines (`activations.models`).
With several processes each captures the shards it owns into the same folders, and rank 0 writes
their index (`capture_activations`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from lfp_engine.run.distributed import shared_atomic_path
from lfp_engine.sae.activations import SETS, CapturedSets, capture_sets
from lfp_engine.worlds import CORPUS, read_world_table

from ..models import load_model, load_tokenizer_of, model_source, run_relative
from ..outputs import ActivationsOutputs, DivergenceOutputs
from ..stage import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def capture(ctx: StageContext, layers: list[int], model: str, folder) -> CapturedSets:
    """One model's train and eval sets of `layers` into `folder`."""
    return capture_sets(load_model(ctx, model), load_tokenizer_of(ctx), read_world_table(ctx.paths.world, CORPUS),
                        layers, folder, ctx.config.activations, ctx.config.world.max_length, ctx.seed,
                        model_name=run_relative(ctx, model_source(ctx, model)), ranks=ctx.ranks)


def run(ctx: StageContext) -> StageResult:
    layers = ctx.outputs_of(DivergenceOutputs).layers
    models = list(ctx.config.activations.models)
    captured: dict[str, CapturedSets] = {}
    for model in models:
        with shared_atomic_path(ctx.paths.activations_of(model), ctx.ranks) as folder:
            captured[model] = capture(ctx, layers, model, folder)
        log.info("%s model: activations of layers %s written to %s", model, layers, ctx.paths.activations_of(model))
    tuned = captured["tuned"]
    return StageResult(outputs=ActivationsOutputs(folder=str(ctx.paths.activations), models=models, **asdict(tuned)),
                       inputs={m: model_source(ctx, m) for m in models})


STAGE = Stage(
    name="activations",
    run=run,
    sections=("activations",),
    needs=("world", "rlhf", "divergence"),
    distributed=True,
    derived=lambda config: {"dtype": config.world.dtype, "max_length": config.world.max_length},
    artifacts=lambda paths, config: [paths.activations_of(m) / name / "activations.json"
                                     for m in config.activations.models for name, _, _ in SETS],
)
