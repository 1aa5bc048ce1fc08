"""The offline world's movie reviews, generated from templates, with their ground truth.

Each review has a hidden sentiment score s in [-3, 3]. Its sentiment slots are filled with
VADER lexicon words whose value lies near s (a Gaussian preference of width `word_spread`), so
word intensity is coherent within a review and a language model trained on the corpus has a
reason to represent sentiment and its strength. Some slots get neutral fillers, some are negated
("not bad" in a positive review: VADER's raw lexicon, and so the reward, reads it as negative),
and a numeric rating out of 10 that the lexicon does not know follows the score. These are the
planted sources of divergence between what the reward measures and what the text means.

Because we wrote the world we know its truth: every sentiment word, its lexicon value, its
role, and a held-out set of words that RL prompts never contain.

A review is built in two passes: a *skeleton* (templates chosen, context slots such as names
and aspects filled) and a *fill* of its sentiment slots for a given score. Preference pairs
reuse one skeleton with a positive and a negative fill, so they differ only in sentiment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lfp_engine.run.errors import InputError

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "tiny_world"

SENTIMENT_SLOTS = {"adj": "adjective", "verb": "verb", "noun": "noun", "not_adj": "adjective"}
CONTEXT_SLOTS = {"aspect", "aspect2", "genre", "name", "role", "person", "when", "place", "year", "minutes",
                 "neutral_adj"}
SLOT = re.compile(r"\{([a-z_0-9]+)\}")
_ARTICLE = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")
SCORE_RANGE = (-3.0, 3.0)


@dataclass(frozen=True)
class SentimentWord:
    word: str
    value: float
    role: str
    polarity: str


@dataclass(frozen=True)
class Vocabulary:
    """Word pools and templates, checked against the lexicon when loaded."""

    sentiment: tuple[SentimentWord, ...]
    neutral: Mapping[str, tuple[str, ...]]
    context: Mapping[str, tuple[str, ...]]
    templates: Mapping[str, tuple[str, ...]]

    @classmethod
    def load(cls, lexicon: Mapping[str, float], data_dir: Path = DATA_DIR) -> Vocabulary:
        vocab = json.loads((data_dir / "vocabulary.json").read_text(encoding="utf-8"))
        templates = json.loads((data_dir / "templates.json").read_text(encoding="utf-8"))
        words = []
        for role, pools in vocab["sentiment"].items():
            for polarity, pool in pools.items():
                for word in pool:
                    value = lexicon.get(word)
                    if value is None or (value > 0) != (polarity == "positive"):
                        raise InputError(
                            f"{data_dir}/vocabulary.json: {word!r} is listed as {polarity} but its lexicon "
                            f"value is {value}"
                        )
                    words.append(SentimentWord(word, float(value), role, polarity))
        context_words = [w for pool in vocab["neutral"].values() for w in pool]
        context_words += [w for pool in vocab["context"].values() for phrase in pool for w in phrase.split()]
        leaking = sorted({w for w in context_words if w.lower() in lexicon})
        if leaking:
            raise InputError(f"{data_dir}/vocabulary.json: context words carry lexicon sentiment: {leaking}")
        return cls(
            sentiment=tuple(words),
            neutral={k: tuple(v) for k, v in vocab["neutral"].items()},
            context={k: tuple(v) for k, v in vocab["context"].items()},
            templates={k: tuple(v) for k, v in templates.items() if not k.startswith("_")},
        )

    def words_of(self, role: str) -> list[SentimentWord]:
        return [w for w in self.sentiment if w.role == role]


def choose_heldout_words(vocab: Vocabulary, fraction: float, rng: np.random.Generator) -> frozenset[str]:
    """Words RL prompts never contain: the same fraction of every role and polarity."""
    held: set[str] = set()
    groups: dict[tuple[str, str], list[str]] = {}
    for w in vocab.sentiment:
        groups.setdefault((w.role, w.polarity), []).append(w.word)
    for key in sorted(groups):
        pool = sorted(groups[key])
        n = max(1, round(fraction * len(pool)))
        held.update(rng.choice(pool, size=n, replace=False).tolist())
    return frozenset(held)


@dataclass(frozen=True)
class Review:
    text: str
    score: float
    rating: int


class ReviewGenerator:
    """Seeded generator of reviews and preference pairs over one vocabulary."""

    def __init__(self, vocab: Vocabulary, rng: np.random.Generator, neutral_slot_prob: float = 0.12,
                 negation_prob: float = 0.08, word_spread: float = 0.7):
        self.vocab = vocab
        self.rng = rng
        self.neutral_slot_prob = neutral_slot_prob
        self.negation_prob = negation_prob
        self.word_spread = word_spread
        self._pools = {
            role: (
                [w.word for w in vocab.words_of(role)],
                np.array([w.value for w in vocab.words_of(role)]),
            )
            for role in {"adjective", "verb", "noun"}
        }
        self._negated = [t for t in vocab.templates["opinion"] if "{not_adj}" in t]
        self._plain = [t for t in vocab.templates["opinion"] if "{not_adj}" not in t]

    # -- skeleton: templates and context ---------------------------------------------------

    def _context_value(self, slot: str) -> str:
        rng = self.rng
        if slot in ("aspect", "aspect2"):
            return str(rng.choice(self.vocab.context["aspect"]))
        if slot == "year":
            return str(int(rng.integers(1950, 2024)))
        if slot == "minutes":
            return str(int(rng.integers(80, 180)))
        if slot == "neutral_adj":
            return str(rng.choice(self.vocab.neutral["adjective"]))
        return str(rng.choice(self.vocab.context[slot]))

    def _fill_context(self, template: str) -> str:
        def sub(match: re.Match[str]) -> str:
            slot = match.group(1)
            return self._context_value(slot) if slot in CONTEXT_SLOTS else match.group(0)

        return SLOT.sub(sub, template)

    def skeleton(self) -> list[str]:
        """Sentences with context filled and sentiment slots (and the rating) left open."""
        rng = self.rng
        t = self.vocab.templates
        sentences = [str(rng.choice(t["opening"]))]
        n_opinions = int(rng.integers(2, 5))
        for _ in range(n_opinions):
            pool = self._negated if rng.random() < self.negation_prob else self._plain
            sentences.append(str(rng.choice(pool)))
            if rng.random() < 0.25:
                sentences.append(str(rng.choice(t["fact"])))
        sentences.append(str(rng.choice(t["closing"])))
        return [self._fill_context(s) for s in sentences]

    # -- fill: sentiment slots for a score ---------------------------------------------------

    def _word(self, role: str, target: float, neutral: bool = False) -> str:
        if neutral or self.rng.random() < self.neutral_slot_prob:
            return str(self.rng.choice(self.vocab.neutral[role]))
        words, values = self._pools[role]
        weights = np.exp(-0.5 * ((values - target) / self.word_spread) ** 2) + 1e-12
        return words[int(self.rng.choice(len(words), p=weights / weights.sum()))]

    def fill(self, skeleton: list[str], score: float, neutral: bool = False) -> Review:
        """Fill the sentiment slots for `score`; `neutral` fills every one with a neutral word
        (the neutral element of a contrastive triple)."""
        rng = self.rng
        rating = int(np.clip(round(5.5 + 1.5 * score + rng.normal(0, 0.6)), 1, 10))

        def sub(match: re.Match[str]) -> str:
            slot = match.group(1)
            if slot == "rating":
                return str(rating)
            local = score + rng.normal(0, 0.5)
            if slot == "not_adj":
                return self._word("adjective", -0.6 * local, neutral)
            return self._word(SENTIMENT_SLOTS[slot], local, neutral)

        text = _ARTICLE.sub(r"\1n ", " ".join(SLOT.sub(sub, s) for s in skeleton))
        return Review(text=text, score=float(score), rating=rating)

    def review(self) -> Review:
        score = float(self.rng.uniform(*SCORE_RANGE))
        return self.fill(self.skeleton(), score)

    def preference_pair(self) -> tuple[str, str, str]:
        """(prompt, chosen, rejected): one skeleton, a positive fill preferred over a negative one.

        The prompt is the review's opening sentence, which carries no sentiment, so the pair
        differs in sentiment only: what DPO learns from it is the same preference the VADER
        reward expresses.
        """
        skeleton = self.skeleton()
        prompt = skeleton[0]
        positive = self.fill(skeleton[1:], float(self.rng.uniform(1.0, 3.0)))
        negative = self.fill(skeleton[1:], float(self.rng.uniform(-3.0, -1.0)))
        return prompt, " " + positive.text, " " + negative.text
