"""Stage `contrastive`: the (positive, neutral, negative) triples the probe is trained on.

Word-substitution triples for the reward tasks (from the world's held-out corpus texts, with
the synthetic world's held-out words as test words); for preference tasks, template triples on
the synthetic world, or LLM-written rewrites through the configured endpoint on hub worlds.
"""

from __future__ import annotations

import logging

import numpy as np

from lfp_engine.run.config import RunConfig
from lfp_engine.probe.contrastive import (corpus_pools, llm_text_triples, synthetic_pools, synthetic_text_triples,
                                    word_triples)
from lfp_engine.run.errors import ConfigError, InputError
from lfp_engine.tuning.lexicon import vader_lexicon
from lfp_engine.explain.llm import ResponseCache, Usage, endpoint_from_settings
from lfp_engine.run.tasks import task_spec
from lfp_engine.worlds import CORPUS, GROUND_TRUTH, WorldRecord, read_world_table
from lfp_engine.worlds.synthetic_reviews import ReviewGenerator, Vocabulary

from ..pipeline import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def uses_llm(config: RunConfig) -> bool:
    return task_spec(config.task).method == "dpo" and config.world.kind == "hub"


def run(ctx: StageContext) -> StageResult:
    c, k = ctx.config, ctx.config.contrastive
    spec = task_spec(c.task)
    world = WorldRecord.load(ctx.paths.world)
    corpus = read_world_table(ctx.paths.world, CORPUS)
    rng = np.random.default_rng(ctx.seed)
    vocab = Vocabulary.load(vader_lexicon())
    tables, outputs = {}, {}
    if spec.method == "rloo":
        held_out = corpus[corpus["split"] == "test"]
        if world.has_ground_truth:
            pools = synthetic_pools(read_world_table(ctx.paths.world, GROUND_TRUTH), vocab.neutral)
        else:
            pools = corpus_pools(held_out["text"].tolist(), vader_lexicon(), vocab.neutral["adjective"],
                                 min_count=k.min_word_count, min_abs_value=k.min_abs_value,
                                 test_fraction=k.test_fraction, rng=rng)
        triples = word_triples(held_out, pools, k.n_triples, rng, k.max_context_chars, k.skip_negated)
        tables["contrastive_words"] = pools.words
        outputs["n_words"] = {s: int(n) for s, n in pools.words["split"].value_counts().items()}
    elif world.kind == "synthetic":
        gen = ReviewGenerator(vocab, rng, c.synthetic.neutral_slot_prob, c.synthetic.negation_prob,
                              c.synthetic.word_spread)
        triples = synthetic_text_triples(gen, k.n_text_triples, k.test_fraction, rng)
    else:
        endpoint = endpoint_from_settings(c.llm)
        if endpoint is None:
            raise ConfigError(f"task {spec.name!r} needs an LLM to write contrastive rewrites: set llm.base_url "
                              f"(any OpenAI-compatible server) or the {c.llm.api_key_env} environment variable")
        entries = corpus.sample(n=min(k.n_text_triples, len(corpus)), random_state=int(ctx.seed % 2**31))
        entries = entries.rename(columns={"text_id": "source_id"})
        usage = Usage()
        triples, failed = llm_text_triples(entries, endpoint, ResponseCache(ctx.store), spec.polarity_swapped, usage)
        outputs |= {"llm": endpoint.describe(), "llm_failed": failed, "llm_requests": usage.requests,
                    "llm_cached": usage.cached, "llm_prompt_tokens": usage.prompt_tokens,
                    "llm_completion_tokens": usage.completion_tokens}
        if failed:
            log.warning("%d of %d rewrites failed or did not parse; a re-run asks again", failed, len(entries))
    if triples.empty or triples["split"].nunique() < 2:
        raise InputError("the contrastive triples need both a train and a test split; enlarge the corpus or n_triples")
    outputs |= {"n_triples": len(triples), "kind": str(triples["kind"].iloc[0]),
                "n_by_split": {s: int(n) for s, n in triples["split"].value_counts().items()}}
    log.info("%d contrastive triples (%s)", len(triples), outputs["n_by_split"])
    return StageResult(tables={"triples": triples, **tables}, outputs=outputs)


STAGE = Stage(
    name="contrastive",
    run=run,
    sections=("task", "contrastive"),
    needs=("world",),
    derived=lambda config: config.section("llm") if uses_llm(config) else None,
)
