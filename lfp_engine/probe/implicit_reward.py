"""The reward a model implicitly assigns to each token, word and text (the dashboard's playground).

Text -> the model's MLP outputs at the chosen layers -> their SAE codes -> the probe, token by
token. Each token's value is the probe's prediction on that token's codes (in the lexicon's
units, `dataset.py`), and its drivers are the features with the largest |probe weight x code|.

The paper reads the probe only at the substituted word of a contrastive triple (section 3.3);
reading it at every token is this tool's extension, which the probe's zero point (the neutral
elements at target 0) makes meaningful: a token the model treats as neutral reads about 0.

A word's implicit value is the mean of its tokens' values, the paper's own rule for a word split
into several tokens; since the probe is linear, this is exactly the probe's prediction on the
word's A(x), the value the probe stage computes. The text's implicit reward aggregates the
values of *every* word as the task's reward aggregates lexicon values (equation 3: scale x sum,
clipped), so the two numbers share units. Words come from the reward's word tokenizer, never
from the lexicon: which tokens count is decided by the text alone, or the lexicon would be read
into the implicit reward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from lfp_engine.probe.encoding import Encoder, tokenize
from lfp_engine.probe.linear import LinearProbe
from lfp_engine.run.errors import InputError
from lfp_engine.tuning.lexicon import word_spans

MAX_CHARS = 20_000
"""Longer input is cut before tokenizing: the model's window holds far less anyway."""

Aggregate = Callable[[Iterable[float]], float]
"""The task's reward as a function of its words' values (`VaderReward.aggregate`)."""


@dataclass
class TokenRewards:
    tokens: pd.DataFrame
    """position, token, start, end (characters in the text), reward, drivers (list of
    (layer, dict_size, feature, contribution), largest |contribution| first)."""
    truncated: bool
    """True when the text was longer than the model's window and only its start was read."""
    n_tokens_read: int


@dataclass
class TextReading:
    """A text as one model's probe reads it: per token, per word and as a whole."""

    tokens: pd.DataFrame
    """Per token, see `TokenRewards.tokens`."""
    words: pd.DataFrame
    """Per word of `text_read`: word, start, end (characters), value (mean of its tokens' values),
    n_tokens."""
    text_reward: float | None
    """The task's aggregation of the words' values (None without one, e.g. a logistic probe)."""
    truncated: bool
    text_read: str
    """The part of the text the model read (all of it unless `truncated`)."""


def token_rewards(encoder: Encoder, probe: LinearProbe, text: str, top_k: int = 5) -> TokenRewards:
    """Implicit reward of every token of `text` (up to the encoder's window)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("the text is empty: type something to score")
    clipped = text[:MAX_CHARS]
    (tokenized,) = tokenize(encoder.tokenizer, [clipped], None, encoder.max_tokens)
    full = len(encoder.tokenizer(clipped, add_special_tokens=False)["input_ids"])
    codes = encoder.token_codes(tokenized)
    values = probe.predict(codes)
    contributions = probe.contributions(codes)
    offsets = encoder.tokenizer(clipped, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    rows = []
    for pos, token_id in enumerate(tokenized.ids):
        order = np.argsort(-np.abs(contributions[pos]))[:top_k]
        drivers = [(*encoder.layout.feature_of(int(c)), float(contributions[pos, c]))
                   for c in order if contributions[pos, c] != 0]
        start, end = offsets[pos]
        rows.append({"position": pos, "token": clipped[start:end] or encoder.tokenizer.decode([token_id]),
                     "start": start, "end": end, "reward": float(values[pos]), "drivers": drivers})
    return TokenRewards(tokens=pd.DataFrame(rows), truncated=len(text) > MAX_CHARS or full > len(tokenized.ids),
                        n_tokens_read=len(tokenized.ids))


def word_rewards(tokens: pd.DataFrame, text: str, combine: Literal["mean", "sum"] = "mean") -> pd.DataFrame:
    """Every word of `text` (the reward's word tokenizer; whitespace is no word) with the values of
    the tokens whose characters overlap it (column `reward` of `tokens`) combined: their mean, the
    probe's rule (paper 3.3: a word's tokens are averaged), or their sum, the policy lens's rule (a
    word's log-probability is the sum of its tokens'). A token that straddles two words counts in
    both, as it would in either word's triple."""
    spans = [(word, start, end) for word, start, end in word_spans(text) if not word.isspace()]
    words = pd.DataFrame(spans, columns=["word", "start", "end"])
    starts, ends = tokens["start"].to_numpy(), tokens["end"].to_numpy()
    overlap = (starts[None, :] < words["end"].to_numpy()[:, None]) & (ends[None, :] > words["start"].to_numpy()[:, None])
    counts = overlap.sum(axis=1)
    read = counts > 0  # a word past the model's window was not read: not scored
    totals = overlap[read] @ tokens["reward"].to_numpy(dtype=np.float64)
    words = words[read].assign(value=totals / counts[read] if combine == "mean" else totals, n_tokens=counts[read])
    return words.reset_index(drop=True)


def read_text(encoder: Encoder, probe: LinearProbe, text: str, aggregate: Aggregate | None,
              top_k: int = 5) -> TextReading:
    """`text` read by the probe token by token, word by word, and (with the task's `aggregate`) as a
    whole, in the reward's units."""
    result = token_rewards(encoder, probe, text, top_k)
    text_read = text[: int(result.tokens["end"].max())] if result.truncated else text
    words = word_rewards(result.tokens, text_read)
    text_reward = aggregate(words["value"]) if aggregate is not None else None
    return TextReading(result.tokens, words, text_reward, result.truncated, text_read)
