"""The probe's data: A(x) of every triple element, and the targets it is fit to (paper 3.3).

Delta+ = ||A(x+) - A(x0)|| and Delta- = -||A(x-) - A(x0)||: the distance of the positive element
from the neutral one, and minus that of the negative element, so the sign says reward or penalty.
For word triples the deltas are rescaled into the reward's units (the largest |delta| of the
training rows maps onto the largest |lexicon value|), so probe values and lexicon values share an
axis; for text triples (preference tasks) the target is the class, preferred (1) or not (0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lfp_engine.run.errors import InputError


def target_scale(targets: np.ndarray, reward_max: float) -> float:
    """Factor mapping the largest |delta| onto the reward's largest |value|: deltas in reward units."""
    peak = float(np.max(np.abs(targets))) if len(targets) else 0.0
    if peak == 0.0:
        raise InputError("every activation delta is zero: the SAE codes do not distinguish the triples")
    return reward_max / peak


def activation_deltas(positive: np.ndarray, neutral: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Delta+, Delta-): the distance of the positive element from the neutral one, and minus that
    of the negative element, so the sign says reward or penalty."""
    return np.linalg.norm(positive - neutral, axis=1), -np.linalg.norm(negative - neutral, axis=1)


@dataclass
class ProbeDataset:
    """Rows = the positive then the negative element of every triple."""

    kind: str
    """'word' (regression on deltas, per-word values) or 'text' (classification of the two rewrites)."""
    X: np.ndarray
    target: np.ndarray
    """Scaled activation delta (regression) or class 1/0 (logistic)."""
    split: np.ndarray
    element: np.ndarray
    triple_id: np.ndarray
    word: np.ndarray
    lexicon_value: np.ndarray
    scale: float

    @property
    def train(self) -> np.ndarray:
        return self.split == "train"

    @property
    def test(self) -> np.ndarray:
        return self.split == "test"


def build_dataset(reps: Mapping[str, np.ndarray], triples: pd.DataFrame, kind: str,
                  reward_max: float) -> ProbeDataset:
    """The probe's data from A(x) of each element of `kind` triples; deltas scaled into reward units on
    the train rows."""
    d_pos, d_neg = activation_deltas(reps["positive"], reps["neutral"], reps["negative"])
    n = len(triples)
    word = kind == "word"
    split = np.concatenate([triples["split"].to_numpy()] * 2)
    if word:
        delta = np.concatenate([d_pos, d_neg])
        scale = target_scale(delta[split == "train"], reward_max)
        target = delta * scale
        words = np.concatenate([triples["word_positive"].to_numpy(), triples["word_negative"].to_numpy()])
        values = np.concatenate([triples["value_positive"].to_numpy(dtype=float),
                                 triples["value_negative"].to_numpy(dtype=float)])
    else:
        scale = 1.0
        target = np.concatenate([np.ones(n), np.zeros(n)])
        words = np.full(2 * n, None, dtype=object)
        values = np.full(2 * n, np.nan)
    return ProbeDataset(
        kind=kind, X=np.vstack([reps["positive"], reps["negative"]]), target=target, split=split,
        element=np.array(["positive"] * n + ["negative"] * n),
        triple_id=np.concatenate([triples["triple_id"].to_numpy()] * 2), word=words, lexicon_value=values,
        scale=scale,
    )
