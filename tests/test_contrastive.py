"""Contrastive triples: a clean word split, spans on the substituted words, LLM rewrites parsed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lfp_engine.explain.settings import LlmSettings
from lfp_engine.probe.text_triples import llm_text_triples, parse_rewrite, synthetic_text_triples
from lfp_engine.probe.word_triples import corpus_pools, find_occurrences, synthetic_pools, word_triples
from lfp_engine.tuning.lexicon import vader_lexicon
from lfp_engine.explain.llm import ResponseCache, Usage, endpoint_from_settings
from lfp_engine.tuning.reward import VaderReward
from lfp_engine.run.store import RunStore
from lfp_engine.worlds.synthetic_reviews import ReviewGenerator, Vocabulary, choose_heldout_words
from lfp_engine.worlds.synthetic_world import generate_corpus, ground_truth_table

from .fake_llm import FakeLLM


@pytest.fixture(scope="module")
def world():
    vocab = Vocabulary.load(vader_lexicon())
    corpus = generate_corpus(ReviewGenerator(vocab, np.random.default_rng(0)), 400, 0.5, np.random.default_rng(1))
    truth = ground_truth_table(vocab, choose_heldout_words(vocab, 0.2, np.random.default_rng(2)), corpus)
    return vocab, corpus, synthetic_pools(truth, vocab.neutral)


def _words(triples: pd.DataFrame, split: str) -> set[str]:
    part = triples[triples["split"] == split]
    return set(part["word_positive"]) | set(part["word_negative"])


def test_train_and_test_never_share_a_word(world):
    vocab, corpus, pools = world
    triples = word_triples(corpus, pools, 1500, np.random.default_rng(3))
    assert not _words(triples, "train") & _words(triples, "test")
    assert _words(triples, "test") <= set(pools.words.loc[pools.words["split"] == "test", "word"])
    assert {"train", "test"} == set(triples["split"])
    assert (triples["value_positive"] > 0).all() and (triples["value_negative"] < 0).all()
    assert not set(triples["word_neutral"]) & set(vader_lexicon())


def test_spans_point_at_the_substituted_words_in_a_shared_context(world):
    _, corpus, pools = world
    triples = word_triples(corpus, pools, 300, np.random.default_rng(4))
    for row in triples.itertuples():
        for kind in ("positive", "neutral", "negative"):
            text, start, end = getattr(row, f"text_{kind}"), getattr(row, f"start_{kind}"), getattr(row, f"end_{kind}")
            assert text[start:end].lower() == getattr(row, f"word_{kind}")
        # the three versions differ only in the word and its article
        contexts = {getattr(row, f"text_{k}")[: getattr(row, f"start_{k}")].removesuffix("an ").removesuffix("a ")
                    for k in ("positive", "neutral", "negative")}
        assert len(contexts) == 1
        for kind in ("positive", "neutral", "negative"):
            before = getattr(row, f"text_{kind}")[: getattr(row, f"start_{kind}")].lower()
            vowel = getattr(row, f"word_{kind}")[0] in "aeiou"
            assert not before.endswith(" a " if vowel else " an ")


def test_roles_are_respected_and_every_word_is_used(world):
    vocab, corpus, pools = world
    triples = word_triples(corpus, pools, 3000, np.random.default_rng(5))
    role = dict(zip(pools.words["word"], pools.words["role"]))
    for row in triples.itertuples():
        assert role[row.word_positive] == role[row.word_negative] == row.role
        assert row.word_neutral in vocab.neutral[row.role]
    assert _words(triples, "train") | _words(triples, "test") == set(pools.words["word"])


def test_negated_occurrences_are_skipped():
    truth = pd.DataFrame({"word": ["bad", "good"], "lexicon_value": [-2.5, 1.9], "role": ["adjective"] * 2,
                          "polarity": ["negative", "positive"], "heldout": [False, False]})
    pools = synthetic_pools(truth, {"adjective": ("long",)})
    corpus = pd.DataFrame({"text_id": [0, 1], "text": ["The plot was not bad.", "The plot was bad."]})
    assert find_occurrences(corpus, pools)["text_id"].tolist() == [1]
    assert find_occurrences(corpus, pools, skip_negated=False)["text_id"].tolist() == [0, 1]


def test_corpus_pools_keep_frequent_strong_words():
    texts = ["great great great film", "awful awful awful plot", "okay okay okay", "superb once"]
    pools = corpus_pools(texts, vader_lexicon(), ["long", "great"], min_count=3, min_abs_value=1.0,
                         test_fraction=0.5, rng=np.random.default_rng(0))
    assert set(pools.words["word"]) == {"great", "awful"}  # okay is too weak, superb too rare
    assert pools.neutral == {"any": ("long",)}  # lexicon words are never neutral


def test_synthetic_text_triples_order_the_reward():
    vocab = Vocabulary.load(vader_lexicon())
    triples = synthetic_text_triples(ReviewGenerator(vocab, np.random.default_rng(0)), 40, 0.25,
                                     np.random.default_rng(1))
    reward = VaderReward()
    pos, neu, neg = (reward(triples[f"text_{k}"].tolist()) for k in ("positive", "neutral", "negative"))
    assert (pos > neg).all() and np.allclose(neu, 0.0)
    assert set(triples["split"]) == {"train", "test"} and (triples["kind"] == "text").all()


def rewriter(messages):
    entry = messages[-1]["content"]
    if "broken" in entry:
        return "I cannot comply."
    return "Here you go: " + json.dumps({"grade": 2, "positive": f"kind {entry}", "neutral": f"flat {entry}",
                                         "negative": f"rude {entry}"})


@pytest.mark.parametrize("swap", [False, True])
def test_llm_rewrites_are_parsed_and_failures_counted(tmp_path, swap):
    entries = pd.DataFrame({"source_id": [1, 2, 3], "text": ["hi", "broken", "bye"], "split": ["train", "test", "test"]})
    with FakeLLM(rewriter) as server:
        endpoint = endpoint_from_settings(LlmSettings(base_url=server.base_url, model="m"), env={})
        triples, failed = llm_text_triples(entries, endpoint, ResponseCache(RunStore(tmp_path)), swap, Usage())
    assert failed == 1 and triples["source_id"].tolist() == [1, 3]
    first = triples.iloc[0]
    assert (first.text_positive, first.text_negative) == (("rude hi", "kind hi") if swap else ("kind hi", "rude hi"))
    assert first.grade == 2 and first.generator == "llm:m"


@pytest.mark.parametrize("answer", ['{"grade": 7, "positive": "a", "neutral": "b", "negative": "c"}',
                                    '{"grade": 2, "positive": "", "neutral": "b", "negative": "c"}',
                                    '{"grade": "two", "positive": "a", "neutral": "b", "negative": "c"}',
                                    '{"positive": "a"}', "nothing"])
def test_malformed_rewrites_are_refused(answer):
    assert parse_rewrite(answer) is None
