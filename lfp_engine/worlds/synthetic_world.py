"""Building the offline world end to end: corpus, ground truth, tokenizer, base model, preferences."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import GPTNeoXForCausalLM, PreTrainedTokenizerFast

from lfp_engine.worlds.settings import SyntheticSettings
from lfp_engine.tuning.lexicon import vader_lexicon, word_tokens
from lfp_engine.worlds.pretraining import PretrainResult, pretrain
from lfp_engine.worlds.synthetic_reviews import ReviewGenerator, Vocabulary, choose_heldout_words
from lfp_engine.worlds.tokenizer import train_bpe_tokenizer

log = logging.getLogger(__name__)


@dataclass
class SyntheticWorld:
    corpus: pd.DataFrame
    """text_id, text, split ('train'/'test'), score (hidden sentiment), rating (1-10)."""
    ground_truth: pd.DataFrame
    """word, lexicon_value, role, polarity, heldout, corpus_count, kind, corpus_value: what the
    pipeline should recover (`ground_truth_table`)."""
    preferences: pd.DataFrame
    """pair_id, prompt, chosen, rejected, split: the offline DPO task (positive preferred)."""
    tokenizer: PreTrainedTokenizerFast
    model: GPTNeoXForCausalLM
    pretraining: PretrainResult


def generate_corpus(gen: ReviewGenerator, n_reviews: int, test_fraction: float,
                    rng: np.random.Generator) -> pd.DataFrame:
    reviews = [gen.review() for _ in tqdm(range(n_reviews), desc="generate reviews", unit="review", mininterval=1)]
    test = rng.random(n_reviews) < test_fraction
    return pd.DataFrame({
        "text_id": np.arange(n_reviews),
        "text": [r.text for r in reviews],
        "split": np.where(test, "test", "train"),
        "score": [r.score for r in reviews],
        "rating": [r.rating for r in reviews],
    })


def ground_truth_table(vocab: Vocabulary, heldout: frozenset[str], corpus: pd.DataFrame) -> pd.DataFrame:
    """One row per sentiment word: its lexicon value and polarity (what the reward pays and the
    probe's target), its kind, whether RL prompts exclude it, how often the corpus uses it, and
    `corpus_value`, the mean hidden sentiment score of the reviews it appears in (NaN if none):
    what pretraining can learn of it. A contested word's corpus value has the opposite sign to
    its lexicon value; a reward-only word's is near 0."""
    counts: Counter[str] = Counter()
    n_reviews: Counter[str] = Counter()
    score_sums: defaultdict[str, float] = defaultdict(float)
    for tokens, score in zip(word_tokens(corpus["text"].tolist()), corpus["score"], strict=True):
        counts.update(tokens)
        present = set(tokens)
        n_reviews.update(present)
        for token in present:
            score_sums[token] += float(score)
    return pd.DataFrame([
        {"word": w.word, "lexicon_value": w.value, "role": w.role, "polarity": w.polarity,
         "heldout": w.word in heldout, "corpus_count": counts.get(w.word, 0), "kind": w.kind,
         "corpus_value": score_sums[w.word] / n_reviews[w.word] if n_reviews[w.word] else np.nan}
        for w in vocab.sentiment
    ])


def preference_pairs(gen: ReviewGenerator, n_pairs: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = [gen.preference_pair() for _ in range(n_pairs)]
    frame = pd.DataFrame(rows, columns=["prompt", "chosen", "rejected"])
    frame.insert(0, "pair_id", np.arange(n_pairs))
    frame["split"] = np.where(rng.random(n_pairs) < 0.1, "test", "train")
    return frame


def build_synthetic_world(settings: SyntheticSettings, n_preference_pairs: int, seed: int,
                          device: torch.device) -> SyntheticWorld:
    """Every random choice descends from `seed` through independent streams, so changing, say,
    the number of preference pairs leaves the corpus and the model unchanged. Which words are
    planted has a stream of its own (spawned after the others, which stay as they were)."""
    streams = np.random.SeedSequence(seed).spawn(6)
    corpus_rng, split_rng, heldout_rng, pref_rng, pref_split_rng, plant_rng = (np.random.default_rng(s)
                                                                               for s in streams)
    vocab = Vocabulary.load(vader_lexicon()).plant(settings.n_contested_words, settings.n_reward_only_words,
                                                   plant_rng)
    gen_args = dict(neutral_slot_prob=settings.neutral_slot_prob, negation_prob=settings.negation_prob,
                    word_spread=settings.word_spread)
    corpus = generate_corpus(ReviewGenerator(vocab, corpus_rng, **gen_args), settings.n_reviews,
                             settings.test_fraction, split_rng)
    heldout = choose_heldout_words(vocab, settings.heldout_word_fraction, heldout_rng)
    truth = ground_truth_table(vocab, heldout, corpus)
    preferences = preference_pairs(ReviewGenerator(vocab, pref_rng, **gen_args), n_preference_pairs, pref_split_rng)

    train_texts = corpus.loc[corpus["split"] == "train", "text"].tolist()
    test_texts = corpus.loc[corpus["split"] == "test", "text"].tolist()
    log.info("training a %d-token byte-level BPE tokenizer on %d reviews", settings.vocab_size, len(train_texts))
    tokenizer = train_bpe_tokenizer(train_texts, settings.vocab_size)
    result = pretrain(settings, tokenizer, train_texts, test_texts, seed, device)
    return SyntheticWorld(corpus=corpus, ground_truth=truth, preferences=preferences, tokenizer=tokenizer,
                          model=result.model, pretraining=result)
