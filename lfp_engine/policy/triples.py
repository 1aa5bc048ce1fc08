"""The policy lens on the contrastive triples: each element against the neutral one.

A triple is one text in three versions (paper 3.3). Read under the same context (the document
separator), the prompt's term beta log Z cancels between versions, and so does every token before the
substituted word (identical tokens, identical context): beta [log pi/pi_base (x+) - log pi/pi_base
(x0)] is what tuning taught the policy about writing the positive word rather than the neutral one in
that sentence, including what it expects after it, in the reward's units. Its slope against the
reward's own difference r(x+) - r(x0) is the share of the reward the policy absorbed (docs/method.md, "The policy lens"): 1 at the optimum of the KL-regularised objective.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lfp_engine.policy.log_ratio import PolicyPair
from lfp_engine.probe.triples import ELEMENTS
from lfp_engine.run.errors import InputError
from lfp_engine.tuning.reward import RewardFunction

SCORED = ("positive", "negative")
"""The elements read against the neutral one."""
ELEMENT_COLUMNS = ["triple_id", "element", "word", "split", "lexicon_value", "policy", "reward"]
"""One row per triple and scored element: `policy` = beta log-ratio of the element's text minus the
neutral text's, `reward` = the reward of the element's text minus the neutral text's (NaN where the
task has no reward function, or where the model's window cut the text before the word)."""


def text_sums(pair: PolicyPair, triples: pd.DataFrame, kind: str) -> dict[str, np.ndarray]:
    """Each element's whole-text sum of beta log pi_tuned/pi_base ([triples] per element); NaN where
    the window cut the text before the end of a word triple's substituted word."""
    sums = {}
    for element in ELEMENTS:
        texts = triples[f"text_{element}"].astype(str).tolist()
        encoded = pair.encode(texts)
        values = pair.token_values(encoded, desc=f"policy {element}")
        sums[element] = np.array([v.sum() for v in values], dtype=np.float64)
        if kind == "word":
            ends = triples[f"end_{element}"].to_numpy(dtype=np.int64)
            last = np.array([e.offsets[-1][1] if e.offsets else 0 for e in encoded])
            sums[element][last < ends] = np.nan
    return sums


def element_differences(pair: PolicyPair, triples: pd.DataFrame, kind: str,
                        reward: RewardFunction | None) -> pd.DataFrame:
    """`ELEMENT_COLUMNS` for every triple's positive and negative element (word triples name the
    substituted word and its lexicon value; text triples have none)."""
    if triples.empty:
        raise InputError("there are no contrastive triples to read the policy on")
    sums = text_sums(pair, triples, kind)
    rewards = ({e: reward(triples[f"text_{e}"].astype(str).tolist()) for e in ELEMENTS} if reward is not None
               else None)
    frames = []
    for element in SCORED:
        word = kind == "word"
        frames.append(pd.DataFrame({
            "triple_id": triples["triple_id"].to_numpy(), "element": element,
            "word": triples[f"word_{element}"].to_numpy() if word else None,
            "split": triples["split"].to_numpy(),
            "lexicon_value": triples[f"value_{element}"].to_numpy(dtype=float) if word else np.nan,
            "policy": sums[element] - sums["neutral"],
            "reward": rewards[element] - rewards["neutral"] if rewards is not None else np.nan}))
    return pd.concat(frames, ignore_index=True)[ELEMENT_COLUMNS]
