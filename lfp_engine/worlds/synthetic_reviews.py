"""The offline world's movie reviews, generated from templates, with their ground truth.

Each review has a hidden sentiment score s in [-3, 3]. Its sentiment slots are filled with
VADER lexicon words whose value lies near s (a Gaussian preference of width `word_spread`), so
word intensity is coherent within a review and a language model trained on the corpus has a
reason to represent sentiment and its strength. Some slots get neutral fillers, some are negated
("not bad" in a positive review: VADER's raw lexicon, and so the reward, reads it as negative),
and a numeric rating out of 10 that the lexicon does not know follows the score. These are the
planted sources of divergence between what the reward measures and what the text means.

Besides these *ordinary* words, used as the lexicon scores them, the world plants two kinds of
words on which pretraining and the reward (the paper's equation 3, unchanged) disagree:

- *contested* words are used with the opposite polarity to their lexicon value, as real reviews
  use slang ("the soundtrack was sick") and faint praise ("safe", "earnest" as criticism): the
  corpus teaches one sign, the reward pays the other;
- *reward-only* words are lexicon words that occur only as names ("Hope", "Fury"), where they
  say nothing about a review's sentiment: only tuning can attach the reward's value to them.

Because we wrote the world we know its truth: every sentiment word, its kind, its lexicon
value, its role, and a held-out set of words that RL prompts never contain (the reward still pays
for them when the policy writes them).

A review is built in two passes: a *skeleton* (templates chosen, context slots such as names
and aspects filled) and a *fill* of its sentiment slots for a given score. Preference pairs
reuse one skeleton with a positive and a negative fill, so they differ only in sentiment.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lfp_engine.run.errors import ConfigError, InputError

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "tiny_world"

SENTIMENT_SLOTS = {"adj": "adjective", "verb": "verb", "noun": "noun", "not_adj": "adjective"}
ORDINARY, CONTESTED, REWARD_ONLY = "ordinary", "contested", "reward_only"
KINDS = (ORDINARY, CONTESTED, REWARD_ONLY)
NAME_ROLE = "name"
"""The role of reward-only words: they fill the templates' {name} slots, beside the context names."""
CONTEXT_SLOTS = {"aspect", "aspect2", "genre", "name", "role", "person", "when", "place", "year", "minutes",
                 "neutral_adj"}
SLOT = re.compile(r"\{([a-z_0-9]+)\}")
_ARTICLE = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")
SCORE_RANGE = (-3.0, 3.0)


@dataclass(frozen=True)
class SentimentWord:
    word: str
    """Lower-cased, as the reward's tokenizer reads it (names are written capitalised)."""
    value: float
    """The lexicon's value: what the reward pays for the word."""
    role: str
    polarity: str
    """The lexicon's polarity (the sign of `value`), whatever the corpus does with the word."""
    kind: str = ORDINARY

    @property
    def usage(self) -> float:
        """The sentiment the corpus uses the word at: the lexicon's value, mirrored for a contested
        word, none (0) for a reward-only word."""
        if self.kind == CONTESTED:
            return -self.value
        return 0.0 if self.kind == REWARD_ONLY else self.value


def _lexicon_words(pools: Mapping[str, Mapping[str, list[str]]], lexicon: Mapping[str, float], kind: str,
                   where: str) -> list[SentimentWord]:
    """{role: {polarity: [word, ...]}} as words, each checked to carry its pool's polarity in the lexicon."""
    words = []
    for role, by_polarity in pools.items():
        for polarity, pool in by_polarity.items():
            for written in pool:
                word = written.lower()
                value = lexicon.get(word)
                if value is None or (value > 0) != (polarity == "positive"):
                    raise InputError(f"{where}: {written!r} is listed as {polarity} but its lexicon value is {value}")
                words.append(SentimentWord(word, float(value), role, polarity, kind))
    return words


def _halves(n: int) -> tuple[tuple[str, int], tuple[str, int]]:
    """How many of `n` planted words are lexicon-negative (the larger half) and positive."""
    return ("negative", n - n // 2), ("positive", n // 2)


def planted_limits(data_dir: Path = DATA_DIR) -> dict[str, int]:
    """The most words of each planted kind the candidates allow (read without the lexicon, so
    that settings can be checked before a run starts)."""
    planted = json.loads((data_dir / "vocabulary.json").read_text(encoding="utf-8")).get("planted", {})
    limits = {}
    for kind in (CONTESTED, REWARD_ONLY):
        available: Counter[str] = Counter()
        for by_polarity in planted.get(kind, {}).values():
            for polarity, pool in by_polarity.items():
                available[polarity] += len(pool)
        limits[kind] = max(n for n in range(sum(available.values()) + 1)
                           if all(k <= available[polarity] for polarity, k in _halves(n)))
    return limits


def _draw(candidates: list[SentimentWord], n: int, setting: str, rng: np.random.Generator) -> list[SentimentWord]:
    """`n` candidates, the larger half lexicon-negative, the rest positive, each half drawn at random."""
    chosen = []
    for polarity, k in _halves(n):
        pool = sorted((w for w in candidates if w.polarity == polarity), key=lambda w: w.word)
        if k > len(pool):
            raise ConfigError(f"setting synthetic.{setting}: {n} asks for {k} {polarity} words but the world has "
                              f"{len(pool)} candidates")
        if k:
            chosen += [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False).tolist())]
    return chosen


@dataclass(frozen=True)
class Vocabulary:
    """Word pools and templates, checked against the lexicon when loaded.

    `sentiment` holds the words the corpus uses, of every kind. A loaded vocabulary holds only
    ordinary words; `plant` draws contested and reward-only words from `candidates`.
    """

    sentiment: tuple[SentimentWord, ...]
    neutral: Mapping[str, tuple[str, ...]]
    """Fillers without lexicon value per role: the neutral slots, and the neutral element of a
    contrastive triple (for the name role, the context names)."""
    context: Mapping[str, tuple[str, ...]]
    templates: Mapping[str, tuple[str, ...]]
    candidates: tuple[SentimentWord, ...] = ()
    """Words `plant` may draw as contested or reward-only (their `kind` says which)."""

    @classmethod
    def load(cls, lexicon: Mapping[str, float], data_dir: Path = DATA_DIR) -> Vocabulary:
        where = f"{data_dir}/vocabulary.json"
        vocab = json.loads((data_dir / "vocabulary.json").read_text(encoding="utf-8"))
        templates = json.loads((data_dir / "templates.json").read_text(encoding="utf-8"))
        words = _lexicon_words(vocab["sentiment"], lexicon, ORDINARY, where)
        planted = vocab.get("planted", {})
        contested = _lexicon_words(planted.get(CONTESTED, {}), lexicon, CONTESTED, where)
        reward_only = _lexicon_words(planted.get(REWARD_ONLY, {}), lexicon, REWARD_ONLY, where)
        if any(w.role != NAME_ROLE for w in reward_only):
            raise InputError(f"{where}: reward-only words can only be names (role {NAME_ROLE!r})")
        clashes = sorted(({w.word for w in contested} & {w.word for w in reward_only})
                         | ({w.word for w in words} & {w.word for w in reward_only}))
        if clashes:
            raise InputError(f"{where}: a reward-only name must be used nowhere else, but these are: {clashes}")
        context_words = [w for pool in vocab["neutral"].values() for w in pool]
        context_words += [w for pool in vocab["context"].values() for phrase in pool for w in phrase.split()]
        leaking = sorted({w for w in context_words if w.lower() in lexicon})
        if leaking:
            raise InputError(f"{where}: context words carry lexicon sentiment: {leaking}")
        neutral = {k: tuple(v) for k, v in vocab["neutral"].items()}
        neutral[NAME_ROLE] = tuple(vocab["context"][NAME_ROLE])
        return cls(
            sentiment=tuple(words),
            neutral=neutral,
            context={k: tuple(v) for k, v in vocab["context"].items()},
            templates={k: tuple(v) for k, v in templates.items() if not k.startswith("_")},
            candidates=tuple(contested + reward_only),
        )

    def plant(self, n_contested: int, n_reward_only: int, rng: np.random.Generator) -> Vocabulary:
        """The vocabulary with `n_contested` contested and `n_reward_only` reward-only words drawn
        from the candidates. A drawn candidate already in an ordinary pool becomes contested in
        place; with nothing to plant the vocabulary is unchanged (and `rng` untouched)."""
        contested = _draw([w for w in self.candidates if w.kind == CONTESTED], n_contested,
                          "n_contested_words", rng)
        reward_only = _draw([w for w in self.candidates if w.kind == REWARD_ONLY], n_reward_only,
                            "n_reward_only_words", rng)
        flipped = {w.word: w for w in contested}
        ordinary = [flipped.pop(w.word) if w.word in flipped and w.role == flipped[w.word].role else w
                    for w in self.sentiment]
        return replace(self, sentiment=tuple(ordinary + list(flipped.values()) + reward_only), candidates=())

    def words_of(self, role: str) -> list[SentimentWord]:
        return [w for w in self.sentiment if w.role == role]


def choose_heldout_words(vocab: Vocabulary, fraction: float, rng: np.random.Generator) -> frozenset[str]:
    """Words RL prompts never contain: the same fraction of every role, polarity and kind (at
    least one of each), so every kind is tested on words no RL prompt contained. The reward still
    pays for them whenever the policy writes them: held out of the prompts, not of tuning."""
    held: set[str] = set()
    groups: dict[tuple[str, str, str], list[str]] = {}
    for w in vocab.sentiment:
        groups.setdefault((w.role, w.polarity, w.kind), []).append(w.word)
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
        # Slots draw words by the sentiment the corpus uses them at: a contested word's mirrored value.
        self._pools = {
            role: (
                [w.word for w in vocab.words_of(role)],
                np.array([w.usage for w in vocab.words_of(role)]),
            )
            for role in {"adjective", "verb", "noun"}
        }
        # Reward-only names are as common as any other name, whatever the review says.
        self._names = vocab.context[NAME_ROLE] + tuple(w.word.capitalize() for w in vocab.words_of(NAME_ROLE))
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
        if slot == NAME_ROLE:
            return str(rng.choice(self._names))
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
