"""Prompts cut from a corpus: short RL queries and held-out evaluation prefixes (paper 3.1).

RL queries are the first 2-9 tokens of training texts (the paper's PPO setup); evaluation
prefixes are the first N tokens (30 for hub models) of held-out texts. Prefixes are cut in
the model's own tokens and decoded back to text, which is what TRL's trainers consume.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from lfp_engine.run.errors import InputError
from lfp_engine.tuning.lexicon import word_tokens


def token_prefixes(texts: list[str], tokenizer, lengths: np.ndarray) -> list[str]:
    """Decode the first lengths[i] tokens of texts[i] (or all, when shorter)."""
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [tokenizer.decode(ids[: int(n)]) for ids, n in zip(encoded, lengths)]


def make_prompts(corpus: pd.DataFrame, tokenizer, *, min_tokens: int, max_tokens: int, n_rl: int,
                 eval_tokens: int, n_eval: int, rng: np.random.Generator,
                 excluded_words: Collection[str] = ()) -> pd.DataFrame:
    """RL prompts from the 'train' split and evaluation prefixes from the 'test' split.

    `excluded_words` (the world's held-out sentiment words) never appear in RL prompts, so a
    later probe can be tested on words no RL prompt contained. They are held out of the prompts,
    not of tuning: the reward still pays for them whenever the policy writes them.
    Columns: text_id, split, purpose ('rl' or 'eval'), prompt.
    """
    frames = []
    for split, purpose, n in (("train", "rl", n_rl), ("test", "eval", n_eval)):
        pool = corpus[corpus["split"] == split]
        if pool.empty:
            raise InputError(f"the corpus has no {split!r} texts to cut {purpose} prompts from")
        # Draw extra candidates so that filtering out held-out words still leaves n prompts.
        take = min(len(pool), n * 2 if excluded_words and purpose == "rl" else n)
        rows = pool.iloc[rng.permutation(len(pool))[:take]]
        if purpose == "rl":
            lengths = rng.integers(min_tokens, max_tokens + 1, size=len(rows))
        else:
            lengths = np.full(len(rows), eval_tokens)
        prompts = token_prefixes(rows["text"].tolist(), tokenizer, lengths)
        frame = pd.DataFrame({"text_id": rows["text_id"].to_numpy(), "split": split, "purpose": purpose,
                              "prompt": prompts})
        frame = frame[frame["prompt"].str.strip().str.len() > 0]
        if purpose == "rl" and excluded_words:
            excluded = set(excluded_words)
            keep = [not excluded.intersection(tokens) for tokens in word_tokens(frame["prompt"].tolist())]
            frame = frame[keep]
        frames.append(frame.head(n))
    return pd.concat(frames, ignore_index=True)
