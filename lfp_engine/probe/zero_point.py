"""The probe's zero point: tokens of the neutral element at target 0 (paper 3.3).

A token's activation delta is the distance between its codes in two elements of a triple. The
neutral word's is 0 by definition (Delta of x0 against itself). So is that of every token the
model reads *before* the substituted word: the three elements share that text, and the model is
causal, so those tokens' codes are identical in all three and their delta is exactly 0. The
paper fits the probe at the substituted word only; this tool also reads it at every token of a
text (`implicit_reward.py`), where a probe that never saw an ordinary token extrapolates from
features that are weak at substituted words and strong elsewhere (the tiny run's "was" read
+8.9 with the neutral word alone as anchor: docs/benchmarks.md). These shared tokens are what
the paper's own deltas say about ordinary tokens, so a sample of them joins the probe's rows at
target 0.

Tokens of the words the triples substitute (the positive and negative pools, train and test)
are left out: a test word must never reach the probe, and a training word's target is its own
triples' delta, its value against the neutral word, not the null contrast of a text it merely
appears in. No other word is looked up: the rest of the text is taken as it comes.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lfp_engine.probe.encoding import TokenizedText
from lfp_engine.tuning.lexicon import iter_word_spans


@dataclass(frozen=True)
class ContextTokens:
    """Tokens drawn from the neutral elements' shared text: one row per token."""

    texts: list[TokenizedText]
    """Each triple's neutral text up to its neutral word, with the drawn tokens as positions."""
    triple: np.ndarray
    """Per row: the index of its triple in the triples frame."""
    word: np.ndarray
    """Per row: the word (lower-cased) the token belongs to: its cross-validation group."""

    @classmethod
    def none(cls) -> ContextTokens:
        """No shared tokens: the neutral word alone anchors the probe (for a probe only ever read at
        substituted words)."""
        return cls(texts=[], triple=np.zeros(0, dtype=np.int64), word=np.zeros(0, dtype=object))


def _shared_tokens(text: str, offsets: list[tuple[int, int]], slot: tuple[int, int], window: int,
                   words: list[tuple[str, int, int]], substituted: Collection[str]) -> tuple[int, int, dict[int, str]]:
    """(first, cut, {token index: word}): the window of tokens the model reads up to the slot's
    last token, and the tokens before the slot that belong to a word other than a substituted one."""
    start, end = slot
    inside = [j for j, (a, b) in enumerate(offsets) if a < end and b > start]
    cut = inside[-1] + 1
    first = max(0, cut - window)
    shared = {}
    for j in range(first, inside[0]):
        a, b = offsets[j]
        word = next((w for w, ws, we in words if ws < b and we > a), None)
        if word is not None and word not in substituted:
            shared[j] = word
    return first, cut, shared


def context_tokens(triples: pd.DataFrame, tokenizer, max_tokens: int, substituted: Collection[str],
                   per_triple: int, rng: np.random.Generator) -> ContextTokens:
    """Up to `per_triple` tokens of each neutral text before its neutral word, drawn at random
    (seeded) among those outside the substituted words, in the window the probe reads."""
    texts = triples["text_neutral"].tolist()
    slots = list(zip(triples["start_neutral"].astype(int), triples["end_neutral"].astype(int), strict=True))
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    out, rows, groups = [], [], []
    for i, (words, slot) in enumerate(zip(iter_word_spans(texts), slots, strict=True)):
        ids = encoded["input_ids"][i]
        first, cut, shared = _shared_tokens(texts[i], encoded["offset_mapping"][i], slot, max_tokens, words,
                                            substituted)
        drawn = sorted(rng.permutation(sorted(shared))[:per_triple].tolist()) if per_triple else []
        out.append(TokenizedText(ids[first:cut], [j - first for j in drawn]))
        rows += [i] * len(drawn)
        groups += [shared[j] for j in drawn]
    return ContextTokens(texts=out, triple=np.array(rows, dtype=np.int64), word=np.array(groups, dtype=object))
