"""The offline explainer, for runs without an LLM endpoint.

It reads a feature's top tokens off its examples, judges relevance to a sentiment task by the
correlation between the feature's activation and the lexicon value of the token it fires on, and
is scored by a keyword judge through the same detection scorer as an LLM's explanation. Its
records say 'offline' wherever they are shown, so nothing offline passes for an LLM's work.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from lfp_engine.explain.prompts import Example
from lfp_engine.explain.scoring import Judge

OFFLINE_SOURCE = "offline"


def _word(token: str) -> str:
    return token.strip().lower()


def top_tokens(examples: Sequence[Example], k: int = 5) -> list[str]:
    """The tokens the feature fires on most, weighted by activation at each example's peak."""
    weight: Counter[str] = Counter()
    for e in examples:
        if e.max_activation > 0:
            peak = int(np.argmax(e.activations))
            word = _word(e.tokens[peak])
            if word:
                weight[word] += e.max_activation
    return [w for w, _ in weight.most_common(k)]


def offline_explanation(examples: Sequence[Example], lexicon: Mapping[str, float], k: int = 5) -> str:
    """'fires on «great», «superb», ...' plus what the lexicon says of those words."""
    words = top_tokens(examples, k)
    if not words:
        return "never fires on these examples"
    text = "fires on " + ", ".join(f"'{w}'" for w in words)
    rated = [lexicon[w] for w in words if w in lexicon]
    if len(rated) * 2 >= len(words):
        mean = float(np.mean(rated))
        tone = "positive" if mean > 0 else "negative"
        text += f" (words the VADER lexicon rates {tone}, mean {mean:+.1f})"
    return text


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
