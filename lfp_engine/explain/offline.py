"""The offline explainer, for runs without an LLM endpoint.

It describes a feature in a short phrase built from its own statistics, with its top tokens
beside it, e.g. "positive adjectives, after 'was' in 6 of 9 examples: 'great', 'superb', 'lovely'":
the class of the tokens it fires on most (`word_classes.py` says where classes come from, and
which it cannot give), their polarity in the lexicon where the task has one (VADER), and the
token before its peak when one token stands there in most examples; a token that is only a piece
of a longer word ('l' of ' l' + 'ovely') has neither class nor polarity, and a feature firing on
such pieces says "word pieces". The phrase uses plain words ("numbers", "punctuation", "positive
adjectives") so a person can search for them in the feature browser. It judges relevance to a sentiment task by the correlation between the feature's
activation and the lexicon value of the token it fires on (not an LLM's judgement, and its detail
says so), and is scored by a keyword judge through the same detection scorer as an LLM's
explanation. Its records say 'offline' wherever they are shown, so nothing offline passes for an
LLM's work.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from lfp_engine.explain.prompts import Example
from lfp_engine.explain.scoring import Judge
from lfp_engine.explain.word_classes import FUNCTION_WORDS, NUMBERS, PUNCTUATION, WordClasses

OFFLINE_SOURCE = "offline"
NO_FIRING = "nothing in these examples"
"""The explanation of a feature none of whose examples fires (explanations complete 'it fires on ...')."""
WORD_PIECES = "word pieces"
"""The class of tokens that are pieces of longer words (`is_piece`)."""
WITHOUT_POLARITY = (NUMBERS, PUNCTUATION, FUNCTION_WORDS, WORD_PIECES)
"""Classes whose phrase never names a lexicon polarity."""
OFFLINE_RELEVANCE = "by lexicon correlation, not by an LLM (the activation against each token's VADER value)"
"""How an offline relevance label was reached, opening its stored detail (and shown with it)."""


def _word(token: str) -> str:
    return token.strip().lower()


@dataclass(frozen=True)
class Peak:
    """Where one example fires most: the token, the token before it ('' at the window's start),
    the activation there, and whether the token is only a piece of a longer word."""

    word: str
    previous: str
    activation: float
    piece: bool


def is_piece(tokens: Sequence[str], at: int) -> bool:
    """Whether token `at` continues the word before it or is continued by the next (' gr' + 'eat'),
    as byte-level BPE tokens (which keep their leading space) show. A piece has no word class or
    lexicon value of its own: 'l' of 'lovely' is not the VADER entry 'l'. Windows whose tokens
    carry no spaces at all (tokenizers that drop them when decoding one token) say nothing."""
    if not any(t[:1].isspace() for t in tokens):
        return False
    token = tokens[at]
    joins_previous = at > 0 and token[:1].isalnum() and tokens[at - 1][-1:].isalnum()
    joins_next = at + 1 < len(tokens) and token[-1:].isalnum() and tokens[at + 1][:1].isalnum()
    return joins_previous or joins_next


def peaks(examples: Sequence[Example]) -> list[Peak]:
    """The peak of every example that fires, its token lower-cased and stripped (empty tokens,
    such as a lone space, dropped)."""
    found = []
    for e in examples:
        if e.max_activation > 0:
            at = int(np.argmax(e.activations))
            word = _word(e.tokens[at])
            if word:
                found.append(Peak(word, _word(e.tokens[at - 1]) if at > 0 else "", e.max_activation,
                                  is_piece(e.tokens, at)))
    return found


@dataclass(frozen=True)
class TopToken:
    word: str
    weight: float
    """Summed activation at the peaks on this token."""
    piece: bool
    """Mostly (by weight) a piece of a longer word."""


def _top(found: Sequence[Peak], k: int) -> list[TopToken]:
    weight: Counter[str] = Counter()
    as_piece: Counter[str] = Counter()
    for p in found:
        weight[p.word] += p.activation
        as_piece[p.word] += p.activation if p.piece else 0.0
    return [TopToken(w, a, as_piece[w] > a / 2) for w, a in weight.most_common(k)]


def top_tokens(examples: Sequence[Example], k: int = 5) -> list[str]:
    """The tokens the feature fires on most, weighted by activation at each example's peak."""
    return [t.word for t in _top(peaks(examples), k)]


DOMINANT_SHARE = 0.6
"""A class describes the top tokens when it holds this share of their activation weight; two
classes together must hold `PAIR_SHARE`."""
PAIR_SHARE = 0.8
RATED_SHARE = 0.5
"""A polarity is named only when the lexicon rates at least this share of the top tokens' weight..."""
POLARITY_SHARE = 0.8
"""...and one polarity names them when it holds this share of the rated weight."""
CONTEXT_SHARE = 0.5
"""The token before the peak is named when it stands there in at least this share of the examples
(and in at least `CONTEXT_MIN` of them)."""
CONTEXT_MIN = 3


def word_class_phrase(top: Sequence[TopToken], classes: WordClasses) -> str:
    """'adjectives', 'adjectives and nouns', 'word pieces', or 'words' when no class (or pair)
    dominates."""
    weight: Counter[str | None] = Counter()
    for t in top:
        weight[WORD_PIECES if t.piece else classes.of(t.word)] += t.weight
    total = sum(weight.values())
    ranked = [(c, w) for c, w in weight.most_common() if c is not None]
    if ranked and ranked[0][1] >= DOMINANT_SHARE * total:
        return ranked[0][0]
    if len(ranked) >= 2 and ranked[0][1] + ranked[1][1] >= PAIR_SHARE * total:
        return f"{ranked[0][0]} and {ranked[1][0]}"
    return "words"


def polarity_phrase(top: Sequence[TopToken], lexicon: Mapping[str, float]) -> str:
    """'positive', 'negative', 'positive and negative' (by the lexicon's sign, weighted by
    activation; word pieces unrated), or '' when the lexicon rates less than half the weight."""
    total = sum(t.weight for t in top)
    positive = sum(t.weight for t in top if not t.piece and lexicon.get(t.word, 0.0) > 0)
    negative = sum(t.weight for t in top if not t.piece and lexicon.get(t.word, 0.0) < 0)
    if total <= 0 or positive + negative < RATED_SHARE * total:
        return ""
    if positive >= POLARITY_SHARE * (positive + negative):
        return "positive"
    if negative >= POLARITY_SHARE * (positive + negative):
        return "negative"
    return "positive and negative"


def context_phrase(found: Sequence[Peak]) -> str:
    """The token before the peak (", after 'was' in 6 of 9 examples") when one token stands there
    in enough examples, else ''."""
    before = Counter(p.previous for p in found if p.previous)
    if not before:
        return ""
    token, n = before.most_common(1)[0]
    if n < CONTEXT_MIN or n < CONTEXT_SHARE * len(found):
        return ""
    return f", after '{token}' in {n} of {len(found)} examples"


def offline_explanation(examples: Sequence[Example], lexicon: Mapping[str, float], classes: WordClasses,
                        k: int = 5) -> str:
    """The phrase of the module docstring from the feature's peaks: the class of its top tokens,
    their polarity in `lexicon` (empty: the task has no lexicon), the token before the peak, then
    the top tokens themselves."""
    found = peaks(examples)
    if not found:
        return NO_FIRING
    top = _top(found, k)
    kind = word_class_phrase(top, classes)
    polarity = "" if kind in WITHOUT_POLARITY else polarity_phrase(top, lexicon)
    head = f"{polarity} {kind}".strip()
    return f"{head}{context_phrase(found)}: " + ", ".join(f"'{t.word}'" for t in top)


def keyword_judge(explanation_words: Sequence[str]) -> Judge:
    """The offline detection judge: a text 'fires' when it contains one of the explanation's words."""
    wanted = {w.lower() for w in explanation_words}

    def judge(_: str, texts: Sequence[str]) -> list[bool]:
        return [bool(wanted & {_word(t) for t in text.replace(",", " ").replace(".", " ").split()}) for text in texts]

    return judge


@dataclass(frozen=True)
class LexiconCorrelation:
    r: float
    p_value: float
    n_tokens: int


def lexicon_correlation(examples: Sequence[Example], lexicon: Mapping[str, float]) -> LexiconCorrelation:
    """Pearson r between a feature's activation on a token and the lexicon value of that token
    (0 for words the lexicon does not rate), over every token of its examples: positive for a
    feature of positive sentiment, negative for one of negative sentiment, near 0 otherwise."""
    acts, values = [], []
    for e in examples:
        for token, a in zip(e.tokens, e.activations, strict=True):
            acts.append(float(a))
            values.append(lexicon.get(_word(token), 0.0))
    if len(acts) < 3 or np.ptp(acts) == 0 or np.ptp(values) == 0:
        return LexiconCorrelation(0.0, 1.0, len(acts))
    result = stats.pearsonr(acts, values)
    return LexiconCorrelation(float(result.statistic), float(result.pvalue), len(acts))


def offline_relevance(correlation: LexiconCorrelation, min_abs_r: float, max_p: float) -> bool:
    """Related to a sentiment task when the activation tracks the lexicon clearly and significantly."""
    return abs(correlation.r) >= min_abs_r and correlation.p_value < max_p
