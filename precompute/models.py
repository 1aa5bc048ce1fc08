"""Loading a run's models for a stage: the base from the world, the tuned one from `rlhf`."""

from __future__ import annotations

from pathlib import Path

from lfp_engine.models.hub import load_causal_lm, load_tokenizer
from lfp_engine.worlds import WorldRecord

from .outputs import RlhfOutputs
from .stage import StageContext


def tuned_source(ctx: StageContext) -> str:
    """Path or hub id of the tuned model, as the rlhf stage recorded it ('./' = in the run folder)."""
    return ctx.paths.resolve(ctx.outputs_of(RlhfOutputs).tuned_model)


def run_relative(ctx: StageContext, source: str) -> str:
    """A model location as files should record it: './...' inside the run folder (which can then be
    moved or copied whole), else the path or hub id unchanged."""
    path = Path(source)
    if path.is_absolute() and path.is_relative_to(ctx.paths.root):
        return f"./{path.relative_to(ctx.paths.root)}"
    return source


def load_tokenizer_of(ctx: StageContext):
    return load_tokenizer(WorldRecord.load(ctx.paths.world).tokenizer)


def load_base(ctx: StageContext):
    return load_causal_lm(WorldRecord.load(ctx.paths.world).base_model, ctx.device, ctx.config.world.dtype)


def load_tuned(ctx: StageContext):
    return load_causal_lm(tuned_source(ctx), ctx.device, ctx.config.world.dtype)


def model_source(ctx: StageContext, model: str) -> str:
    """Path or hub id of the run's 'tuned' or 'base' model."""
    return tuned_source(ctx) if model == "tuned" else WorldRecord.load(ctx.paths.world).base_model


def load_model(ctx: StageContext, model: str):
    return load_tuned(ctx) if model == "tuned" else load_base(ctx)
