"""Stage `behaviour`: what tuning taught the model to write, word by word (issue 12; beside paper figure 4).

Base and tuned models complete the same held-out openings (the first tokens of the world's test
reviews) under one seed, and every word of the world's ground truth is counted in both
(`lfp_engine.report.behaviour`). Needs the planted ground truth (`world_lexicon`): other worlds
write nothing here.
"""

from __future__ import annotations

import logging

import numpy as np

from lfp_engine.models.generation import Sampling, sample_completions
from lfp_engine.report.behaviour import behaviour_tables, count_usage
from lfp_engine.report.divergence import FALSE_DISCOVERY_RATE
from lfp_engine.tuning.lexicon import vader_lexicon
from lfp_engine.worlds import CORPUS, read_world_table
from lfp_engine.worlds.prompts import token_prefixes
from lfp_engine.worlds.synthetic_reviews import Vocabulary

from ..models import load_base, load_tokenizer_of, load_tuned
from ..outputs import BehaviourOutputs
from ..stage import Stage, StageContext, StageResult

log = logging.getLogger("lfp")
TABLES = ("behaviour_words", "behaviour_kinds")


def run(ctx: StageContext) -> StageResult:
    c = ctx.config
    if "world_lexicon" not in ctx.store.tables():
        log.info("behaviour: the world has no planted ground truth (world_lexicon); nothing to count")
        return StageResult(outputs=BehaviourOutputs(n_openings=0, n_words=0, n_changed=0))
    truth = ctx.store.read("world_lexicon")
    corpus = read_world_table(ctx.paths.world, CORPUS)
    reviews = corpus.loc[corpus["split"] == "test", "text"].head(c.behaviour.n_openings).tolist()
    tokenizer = load_tokenizer_of(ctx)
    openings = token_prefixes(reviews, tokenizer, np.full(len(reviews), c.behaviour.opening_tokens))
    generation = Sampling.of(c).draws()
    base = sample_completions(load_base(ctx), tokenizer, openings, seed=ctx.seed, desc="behaviour base",
                              **generation).texts
    tuned = sample_completions(load_tuned(ctx), tokenizer, openings, seed=ctx.seed, desc="behaviour tuned",
                               **generation).texts
    names = Vocabulary.load(vader_lexicon()).neutral["name"]
    usage = count_usage(base, tuned, [*truth["word"], *names])
    tables = behaviour_tables(usage, truth, names, n_bootstrap=c.behaviour.n_bootstrap, seed=ctx.seed)
    n_changed = int((tables.words["q_value"] < FALSE_DISCOVERY_RATE).sum())
    log.info("behaviour: %d openings, %d of %d words changed in use (q < %s)", len(openings), n_changed,
             len(tables.words), FALSE_DISCOVERY_RATE)
    outputs = BehaviourOutputs(n_openings=len(openings), n_words=len(tables.words), n_changed=n_changed)
    return StageResult(outputs=outputs,
                       tables={"behaviour_words": tables.words, "behaviour_kinds": tables.kinds},
                       inputs={"n_openings": len(openings)})


STAGE = Stage(
    name="behaviour",
    run=run,
    sections=("behaviour", "evaluation"),
    tables=TABLES,
    needs=("world", "rlhf"),
    derived=lambda config: {"max_length": config.world.max_length},
    version=2,  # 2: behaviour_kinds.q_value (Benjamini-Hochberg over the kinds x polarities tested)
)
