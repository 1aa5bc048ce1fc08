"""Building a run's world folder: base model, tokenizer, corpus, prompts, preference pairs.

Synthetic worlds are generated and pretrained here (`synthetic_world.py`); hub worlds are checked
(the config and tokenizer load, so a wrong id fails now, not an hour into RL) and their corpora
sampled. Either way the folder ends up with the files `WorldRecord` describes, which every later
stage reads; the caller writes it under a temporary name (`run.atomic`) so a world is whole or absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lfp_engine.models.hub import check_reachable, from_hub_or_path, is_local, load_tokenizer
from lfp_engine.run.config import RunConfig
from lfp_engine.run.errors import ConfigError
from lfp_engine.run.tasks import TaskSpec
from lfp_engine.worlds import CORPUS, GROUND_TRUTH, PREFERENCES, PROMPTS, WorldRecord
from lfp_engine.worlds.hub_corpora import load_preference_pairs, load_review_corpus
from lfp_engine.worlds.prompts import make_prompts
from lfp_engine.worlds.synthetic_world import build_synthetic_world

LOCAL_BASE = "./base"
"""Where a synthetic world keeps its pretrained base model, relative to the world folder."""


@dataclass
class BuiltWorld:
    record: WorldRecord
    summary: dict[str, int | float | str]
    """Counts and pretraining figures for the manifest (the fields of the world stage's outputs)."""
    ground_truth: pd.DataFrame | None = field(default=None)
    """Synthetic worlds: the planted lexicon (table `world_lexicon`)."""


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


def world_sources(config: RunConfig, spec: TaskSpec) -> list[tuple[str, str]]:
    """What the world is built from that may live on the hub: (id or path, 'model' or 'dataset')."""
    sources = []
    if config.world.kind == "hub":
        sources.append((config.world.base_model, "model"))
        if spec.method != "dpo" and config.world.corpus:
            sources.append((config.world.corpus, "dataset"))
    preferences = preference_source(config, spec)
    if preferences:
        sources.append((preferences, "dataset"))
    return sources


def check_world_sources(config: RunConfig, spec: TaskSpec) -> None:
    """Raise (`HubUnreachableError`, `UnknownModelError`) unless every source of the world can be
    loaded, before the run folder is made (README: bad input touches nothing)."""
    for name, kind in world_sources(config, spec):
        check_reachable(name, kind)


def _prompts(config: RunConfig, corpus: pd.DataFrame, tokenizer, excluded: set[str], seed: int) -> pd.DataFrame:
    w = config.world
    return make_prompts(corpus, tokenizer, min_tokens=w.prompt_min_tokens, max_tokens=w.prompt_max_tokens,
                        n_rl=w.n_rl_prompts, eval_tokens=w.eval_prefix_tokens, n_eval=w.n_eval_prompts,
                        rng=np.random.default_rng(seed + 1), excluded_words=excluded)


def _prompt_counts(prompts: pd.DataFrame) -> dict[str, int]:
    return {"n_rl_prompts": int((prompts["purpose"] == "rl").sum()),
            "n_eval_prompts": int((prompts["purpose"] == "eval").sum())}


def build_synthetic(config: RunConfig, spec: TaskSpec, folder: Path, seed: int, device: torch.device) -> BuiltWorld:
    """Generate the offline world, pretrain its base model, and write everything into `folder`."""
    world = build_synthetic_world(config.synthetic, config.world.n_preference_pairs, seed, device)
    # The world's own sentiment pairs are kept whatever the task (they cost nothing), so a
    # later switch to task=dpo reuses this world; a named preference dataset replaces them.
    source = preference_source(config, spec)
    preferences = (load_preference_pairs(source, config.world.n_preference_pairs, np.random.default_rng(seed))
                   if source else world.preferences)
    heldout = set(world.ground_truth.loc[world.ground_truth["heldout"], "word"])
    prompts = _prompts(config, world.corpus, world.tokenizer, heldout, seed)

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
    summary = {
        "n_reviews": len(world.corpus), "vocab_size": len(world.tokenizer),
        "n_parameters": sum(t.numel() for t in world.model.parameters()),
        "pretrain_steps": p.steps, "pretrain_tokens": p.tokens_seen,
        "pretrain_train_loss": p.train_loss, "pretrain_test_loss": p.test_loss, "pretrain_precision": p.precision,
        "n_sentiment_words": len(world.ground_truth), "n_heldout_words": len(heldout),
        **_prompt_counts(prompts),
    }
    return BuiltWorld(record, summary, world.ground_truth)


def build_hub(config: RunConfig, spec: TaskSpec, folder: Path, seed: int) -> BuiltWorld:
    """Check a hub (or local) base model and sample its corpora into `folder`."""
    from transformers import AutoConfig

    base = config.world.base_model
    base = str(Path(base).expanduser().resolve()) if is_local(base) else base
    from_hub_or_path(AutoConfig.from_pretrained, base)  # fail now on an unknown or unreachable model
    tokenizer = load_tokenizer(base)
    rng = np.random.default_rng(seed)
    source = preference_source(config, spec)
    preferences = load_preference_pairs(source, config.world.n_preference_pairs, rng) if source else None
    if spec.method == "dpo":
        # DPO worlds study the preference data itself: its prompts with the preferred answers.
        corpus = pd.DataFrame({"text_id": preferences["pair_id"],
                               "text": preferences["prompt"] + preferences["chosen"],
                               "split": preferences["split"]})
        test = preferences[preferences["split"] == "test"].head(config.world.n_eval_prompts)
        prompts = pd.DataFrame({"text_id": test["pair_id"], "split": "test", "purpose": "eval",
                                "prompt": test["prompt"]})
    else:
        if not config.world.corpus:
            raise ConfigError("a hub world with an RL task needs world.corpus (e.g. stanfordnlp/imdb)")
        corpus = load_review_corpus(config.world.corpus, config.world.corpus_text_field,
                                    config.world.n_corpus_texts, rng)
        prompts = _prompts(config, corpus, tokenizer, set(), seed)
    corpus.to_parquet(folder / CORPUS, index=False)
    prompts.to_parquet(folder / PROMPTS, index=False)
    if preferences is not None:
        preferences.to_parquet(folder / PREFERENCES, index=False)
    record = WorldRecord(kind="hub", base_model=base, tokenizer=base, has_ground_truth=False,
                         has_preferences=preferences is not None)
    return BuiltWorld(record, {"n_corpus_texts": len(corpus), "vocab_size": len(tokenizer), **_prompt_counts(prompts)})


def world_task_effect(config: RunConfig, spec: TaskSpec) -> dict:
    """What of the task reaches the world: a hub world's corpus depends on the method, any
    world's preference pairs on their source; a synthetic world is otherwise task-free, so
    switching vader <-> dpo reuses the pretrained base."""
    return {"method": spec.method if config.world.kind == "hub" else None,
            "preferences": preference_source(config, spec) or None}
