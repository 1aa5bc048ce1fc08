"""Contrastive triples (x+, x0, x-): the inputs whose activation differences the probe learns
(paper section 3.3). Which triples a run gets depends on its task and world:

- reward tasks (VADER, classifier): word-substitution triples (`word_triples.py`) from the
  held-out corpus texts; the synthetic world's held-out words are the test words, a hub corpus's
  frequent lexicon words are split at random;
- preference tasks on the synthetic world: template rewrites from its own generator, offline;
- preference tasks on a hub world: LLM-written rewrites through the configured endpoint
  (`text_triples.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lfp_engine.explain.llm import Endpoint, ResponseCache, Usage, endpoint_from_settings
from lfp_engine.probe.text_triples import llm_text_triples, synthetic_text_triples
from lfp_engine.probe.word_triples import corpus_pools, synthetic_pools, word_triples
from lfp_engine.run.config import RunConfig
from lfp_engine.run.errors import ConfigError, InputError
from lfp_engine.run.store import RunStore
from lfp_engine.run.tasks import task_spec
from lfp_engine.tuning.lexicon import vader_lexicon
from lfp_engine.worlds.synthetic_reviews import ReviewGenerator, Vocabulary

log = logging.getLogger(__name__)


@dataclass
class ContrastiveSet:
    triples: pd.DataFrame
    """The `triples` table (`triples.py`)."""
    kind: str
    """'word' or 'text': how the probe reads a triple (at the substituted word, or over the text)."""
    words: pd.DataFrame | None = None
    """Word triples: the substituted words with their split (table `contrastive_words`)."""
    endpoint: Endpoint | None = None
    """The LLM that wrote the rewrites, if one did."""
    usage: Usage | None = None
    n_failed: int = 0
    """Rewrites that failed or did not parse (asked again on the next run)."""


def uses_llm(config: RunConfig) -> bool:
    return task_spec(config.task).method == "dpo" and config.world.kind == "hub"


def _word_set(config: RunConfig, corpus: pd.DataFrame, ground_truth: pd.DataFrame | None,
              rng: np.random.Generator) -> ContrastiveSet:
    k = config.contrastive
    held_out = corpus[corpus["split"] == "test"]
    neutral = Vocabulary.load(vader_lexicon()).neutral
    if ground_truth is not None:
        pools = synthetic_pools(ground_truth, neutral)
    else:
        pools = corpus_pools(held_out["text"].tolist(), vader_lexicon(), neutral["adjective"],
                             min_count=k.min_word_count, min_abs_value=k.min_abs_value,
                             test_fraction=k.test_fraction, rng=rng)
    triples = word_triples(held_out, pools, k.n_triples, rng, k.max_context_chars, k.skip_negated)
    return ContrastiveSet(triples, "word", words=pools.words)


def _llm_set(config: RunConfig, corpus: pd.DataFrame, store: RunStore, seed: int) -> ContrastiveSet:
    spec = task_spec(config.task)
    endpoint = endpoint_from_settings(config.llm)
    if endpoint is None:
        raise ConfigError(f"task {spec.name!r} needs an LLM to write contrastive rewrites: set llm.base_url "
                          f"(any OpenAI-compatible server) or the {config.llm.api_key_env} environment variable")
    entries = corpus.sample(n=min(config.contrastive.n_text_triples, len(corpus)), random_state=int(seed % 2**31))
    entries = entries.rename(columns={"text_id": "source_id"})
    usage = Usage()
    triples, failed = llm_text_triples(entries, endpoint, ResponseCache(store), spec.polarity_swapped, usage)
    if failed:
        log.warning("%d of %d rewrites failed or did not parse; a re-run asks again", failed, len(entries))
    return ContrastiveSet(triples, "text", endpoint=endpoint, usage=usage, n_failed=failed)


def build_triples(config: RunConfig, corpus: pd.DataFrame, ground_truth: pd.DataFrame | None, store: RunStore,
                  seed: int) -> ContrastiveSet:
    """The run's triples. `ground_truth`: the synthetic world's lexicon (None for hub worlds); `store`
    caches LLM answers."""
    rng = np.random.default_rng(seed)
    if task_spec(config.task).method == "rloo":
        made = _word_set(config, corpus, ground_truth, rng)
    elif uses_llm(config):
        made = _llm_set(config, corpus, store, seed)
    else:
        s = config.synthetic
        gen = ReviewGenerator(Vocabulary.load(vader_lexicon()), rng, s.neutral_slot_prob, s.negation_prob,
                              s.word_spread)
        made = ContrastiveSet(synthetic_text_triples(gen, config.contrastive.n_text_triples,
                                                     config.contrastive.test_fraction, rng), "text")
    if made.triples.empty or made.triples["split"].nunique() < 2:
        raise InputError("the contrastive triples need both a train and a test split; enlarge the corpus or n_triples")
    return made
