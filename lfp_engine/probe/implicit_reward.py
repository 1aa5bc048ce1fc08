"""The reward a tuned model implicitly assigns to each token of a text (the dashboard's playground).

Text -> the model's MLP outputs at the chosen layers -> their SAE codes -> the probe, token by
token. Each token's value is the probe's prediction on that token's codes (in reward units), and
its drivers are the features with the largest |probe weight x code|. Because the probe is
linear, averaging the values over a word's sub-tokens gives exactly the value the probe stage
computed for that word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lfp_engine.probe.encoding import Encoder, tokenize
from lfp_engine.run.errors import InputError
from lfp_engine.probe.linear import LinearProbe

MAX_CHARS = 20_000
"""Longer input is cut before tokenizing: the model's window holds far less anyway."""


@dataclass
class TokenRewards:
    tokens: pd.DataFrame
    """position, token, start, end (characters in the text), reward, drivers (list of
    (layer, dict_size, feature, contribution), largest |contribution| first)."""
    truncated: bool
    """True when the text was longer than the model's window and only its start was read."""
    n_tokens_read: int


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
