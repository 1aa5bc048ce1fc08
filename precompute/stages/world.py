"""Stage `world`: base model, tokenizer, corpus, prompts (and preference pairs for DPO tasks).

Synthetic worlds are built and pretrained here; hub worlds are checked (the tokenizer and
config load, so a wrong id fails now, not an hour into RL) and their corpora sampled. The whole
`world/` folder is written under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lfp_engine.run.atomic import atomic_path
from lfp_engine.run.config import RunConfig
from lfp_engine.run.errors import ConfigError
from lfp_engine.models.hub import from_hub_or_path, is_local, load_tokenizer
from lfp_engine.run.tasks import TaskSpec, task_spec
from lfp_engine.worlds import CORPUS, GROUND_TRUTH, PREFERENCES, PROMPTS, WorldRecord
from lfp_engine.worlds.hub_corpora import load_preference_pairs, load_review_corpus
from lfp_engine.worlds.prompts import make_prompts
from lfp_engine.worlds.synthetic_world import build_synthetic_world

from ..pipeline import Stage, StageContext, StageResult

log = logging.getLogger("lfp")

LOCAL_BASE = "./base"


def preference_source(config: RunConfig, spec: TaskSpec) -> str | None:
    """Where DPO pairs come from: the setting, the task's hub default, or the synthetic world's own."""
    if spec.method != "dpo":
        return None
    source = config.world.preference_dataset or spec.default_preference_dataset
    if source:
        return source
    if config.world.kind == "synthetic":
        return ""  # the synthetic world's own sentiment preference pairs
    raise ConfigError(f"task {spec.name!r} on a hub world needs world.preference_dataset (hub id or path)")


def _prompts(ctx: StageContext, corpus: pd.DataFrame, tokenizer, excluded: set[str]) -> pd.DataFrame:
    w = ctx.config.world
    return make_prompts(corpus, tokenizer, min_tokens=w.prompt_min_tokens, max_tokens=w.prompt_max_tokens,
                        n_rl=w.n_rl_prompts, eval_tokens=w.eval_prefix_tokens, n_eval=w.n_eval_prompts,
                        rng=np.random.default_rng(ctx.seed + 1), excluded_words=excluded)


def _synthetic(ctx: StageContext, spec: TaskSpec, folder: Path) -> tuple[WorldRecord, dict, dict]:
    c = ctx.config
    world = build_synthetic_world(c.synthetic, c.world.n_preference_pairs, ctx.seed, ctx.device)
    # The world's own sentiment pairs are kept whatever the task (they cost nothing), so a
    # later switch to task=dpo reuses this world; a named preference dataset replaces them.
    source = preference_source(c, spec)
    preferences = (load_preference_pairs(source, c.world.n_preference_pairs, np.random.default_rng(ctx.seed))
                   if source else world.preferences)
    heldout = set(world.ground_truth.loc[world.ground_truth["heldout"], "word"])
    prompts = _prompts(ctx, world.corpus, world.tokenizer, heldout)

    world.model.save_pretrained(folder / LOCAL_BASE)
    world.tokenizer.save_pretrained(folder / LOCAL_BASE)
    world.corpus.to_parquet(folder / CORPUS, index=False)
    world.ground_truth.to_parquet(folder / GROUND_TRUTH, index=False)
    prompts.to_parquet(folder / PROMPTS, index=False)
    if preferences is not None:
        preferences.to_parquet(folder / PREFERENCES, index=False)
    record = WorldRecord(kind="synthetic", base_model=LOCAL_BASE, tokenizer=LOCAL_BASE, has_ground_truth=True,
                         has_preferences=preferences is not None)
    p = world.pretraining
    outputs = {
        "n_reviews": len(world.corpus), "vocab_size": len(world.tokenizer),
        "n_parameters": sum(t.numel() for t in world.model.parameters()),
        "pretrain_steps": p.steps, "pretrain_tokens": p.tokens_seen,
        "pretrain_train_loss": p.train_loss, "pretrain_test_loss": p.test_loss,
        "n_sentiment_words": len(world.ground_truth), "n_heldout_words": len(heldout),
    }
    tables = {"world_lexicon": world.ground_truth}
    return record, outputs | {"n_rl_prompts": int((prompts["purpose"] == "rl").sum()),
                              "n_eval_prompts": int((prompts["purpose"] == "eval").sum())}, tables


def _hub(ctx: StageContext, spec: TaskSpec, folder: Path) -> tuple[WorldRecord, dict, dict]:
    from transformers import AutoConfig

    c = ctx.config
    base = c.world.base_model
    base = str(Path(base).expanduser().resolve()) if is_local(base) else base
    from_hub_or_path(AutoConfig.from_pretrained, base)  # fail now on an unknown or unreachable model
    tokenizer = load_tokenizer(base)
    rng = np.random.default_rng(ctx.seed)
    source = preference_source(c, spec)
    preferences = load_preference_pairs(source, c.world.n_preference_pairs, rng) if source else None
    if spec.method == "dpo":
        # DPO worlds study the preference data itself: its prompts with the preferred answers.
        corpus = pd.DataFrame({"text_id": preferences["pair_id"],
                               "text": preferences["prompt"] + preferences["chosen"],
                               "split": preferences["split"]})
        test = preferences[preferences["split"] == "test"].head(c.world.n_eval_prompts)
        prompts = pd.DataFrame({"text_id": test["pair_id"], "split": "test", "purpose": "eval",
                                "prompt": test["prompt"]})
    else:
        if not c.world.corpus:
            raise ConfigError("a hub world with an RL task needs world.corpus (e.g. stanfordnlp/imdb)")
        corpus = load_review_corpus(c.world.corpus, c.world.corpus_text_field, c.world.n_corpus_texts, rng)
        prompts = _prompts(ctx, corpus, tokenizer, set())
    corpus.to_parquet(folder / CORPUS, index=False)
    prompts.to_parquet(folder / PROMPTS, index=False)
    if preferences is not None:
        preferences.to_parquet(folder / PREFERENCES, index=False)
    record = WorldRecord(kind="hub", base_model=base, tokenizer=base, has_ground_truth=False,
                         has_preferences=preferences is not None)
    outputs = {"n_corpus_texts": len(corpus), "vocab_size": len(tokenizer),
               "n_rl_prompts": int((prompts["purpose"] == "rl").sum()),
               "n_eval_prompts": int((prompts["purpose"] == "eval").sum())}
    return record, outputs, {}


def run(ctx: StageContext) -> StageResult:
    spec = task_spec(ctx.config.task)
    with atomic_path(ctx.paths.world) as folder:
        folder.mkdir(parents=True)
        build = _synthetic if ctx.config.world.kind == "synthetic" else _hub
        record, outputs, tables = build(ctx, spec, folder)
        record.save(folder)
    log.info("world written to %s", ctx.paths.world)
    return StageResult(tables=tables, outputs={"folder": str(ctx.paths.world), **outputs},
                       inputs={"base_model": record.base_model, "task": spec.name})


def task_effect(config: RunConfig) -> dict:
    """What of the task reaches the world: a hub world's corpus depends on the method, any
    world's preference pairs on their source; a synthetic world is otherwise task-free, so
    switching vader <-> dpo reuses the pretrained base."""
    spec = task_spec(config.task)
    return {"method": spec.method if config.world.kind == "hub" else None,
            "preferences": preference_source(config, spec) or None}


STAGE = Stage(
    name="world",
    run=run,
    sections=("world", "synthetic"),
    derived=task_effect,
    artifacts=lambda paths, config: [paths.world / "world.json", paths.world / CORPUS, paths.world / PROMPTS],
)
