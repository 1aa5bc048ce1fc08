"""The policy's implicit reward of one text, per token, per word and in all (the playground).

Per token: beta log pi_tuned/pi_base of the token given everything before it (`log_ratio.py`); per
word: the sum over its tokens (a word's log-probability is the sum of its tokens'), words as the
reward's tokenizer finds them; the text: the sum over its tokens, which is the sequence's implicit
reward r(x, y) - beta log Z(x) when the policy is at its optimum. Z(x) depends on the prompt, so a
text's sum is only comparable with another text's read under the same prompt; alone it also
carries how much more or less likely the tuned model finds the whole text, which is large and noisy
for a text the policy would never write (docs/method.md, "The policy lens", caveats).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lfp_engine.policy.log_ratio import PolicyPair
from lfp_engine.probe.implicit_reward import MAX_CHARS, word_rewards
from lfp_engine.run.errors import InputError


@dataclass(frozen=True)
class PolicyReading:
    """A text as the policy lens reads it."""

    tokens: pd.DataFrame
    """position, token, start, end (characters of `text_read`), reward (beta log pi_tuned/pi_base)."""
    words: pd.DataFrame
    """word, start, end, value (the sum over its tokens), n_tokens."""
    total: float
    """The sum over the text's tokens: its implicit reward, up to beta log Z of the prompt."""
    truncated: bool
    """True when the model's window (or `MAX_CHARS`) cut the text; the sums are of the part read."""
    text_read: str


def read_text(pair: PolicyPair, text: str, prompt: str | None = None) -> PolicyReading:
    """`text` read by the policy lens, conditioned on `prompt` (none: the document separator)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("the text is empty: type something to score")
    clipped = text[:MAX_CHARS]
    (encoded,) = pair.encode([clipped], None if prompt is None else [prompt])
    if not encoded.ids:
        raise InputError("the text has no tokens the model can read")
    (values,) = pair.token_values([encoded])
    tokens = pd.DataFrame({"position": np.arange(len(encoded.ids)),
                           "token": [clipped[a:b] or pair.tokenizer.decode([i])
                                     for i, (a, b) in zip(encoded.ids, encoded.offsets, strict=True)],
                           "start": [a for a, _ in encoded.offsets], "end": [b for _, b in encoded.offsets],
                           "reward": values})
    truncated = encoded.truncated or len(text) > MAX_CHARS
    text_read = clipped[: int(tokens["end"].max())] if truncated else text
    return PolicyReading(tokens, word_rewards(tokens, text_read, combine="sum"), float(values.sum()), truncated,
                         text_read)
