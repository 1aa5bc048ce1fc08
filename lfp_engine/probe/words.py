"""The words a probe is measured on, and how its predictions become per-word values (paper 4.1).

A word's implicit value is the mean of the probe's predictions over the triple elements that
substitute it (tables 2 and 9). Only the positive and negative elements carry a lexicon word; a
dataset also holds rows at target 0, the probe's zero point (the neutral element and tokens the
elements share, `dataset.py`), which are fitted on but never measured. Intervals come from resampling words, within each
polarity separately, so every resample keeps the same numbers of positive and negative words and
the within-polarity measures stay defined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lfp_engine.probe.dataset import ProbeDataset
from lfp_engine.run.errors import InputError


@dataclass(frozen=True)
class WordSet:
    """Words in a fixed order, with their lexicon values, and the rows that substitute them."""

    words: np.ndarray
    truth: np.ndarray
    """Lexicon value of each word."""
    positive: np.ndarray
    """Lexicon value > 0."""
    rows: np.ndarray
    """Indices of the dataset's rows of these words."""
    members: np.ndarray
    """[words, rows] averaging matrix: row i holds 1/n_i on the rows of word i."""

    @classmethod
    def of(cls, data: ProbeDataset, mask: np.ndarray) -> WordSet:
        """The words of the scored rows selected by `mask` (e.g. `data.test`), sorted."""
        rows = np.flatnonzero(mask & data.scored)
        if len(rows) == 0:
            raise InputError("no lexicon-word rows to measure the probe on")
        words, index = np.unique(data.word[rows].astype(str), return_inverse=True)
        members = np.zeros((len(words), len(rows)))
        members[index, np.arange(len(rows))] = 1.0
        members /= members.sum(axis=1, keepdims=True)
        truth = members @ data.lexicon_value[rows].astype(np.float64)
        return cls(words=words, truth=truth, positive=truth > 0, rows=rows, members=members)

    def values(self, predictions: np.ndarray) -> np.ndarray:
        """Per-word mean of predictions over all the dataset's rows: [rows] -> [words], or
        [rows, k] (k probes) -> [k, words]."""
        return self.average(np.asarray(predictions, dtype=np.float64)[self.rows])

    def average(self, picked: np.ndarray) -> np.ndarray:
        """The same from predictions on `rows` only: [rows] -> [words], [rows, k] -> [k, words]."""
        return (self.members @ picked).T if picked.ndim == 2 else self.members @ picked


def stratified_resamples(positive: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """[n_resamples, words] indices: each position redrawn (with replacement) among the words of its
    own polarity, so every resample has the original counts of positive and negative words."""
    positive = np.asarray(positive, dtype=bool)
    out = np.empty((n_resamples, len(positive)), dtype=np.int64)
    for group in (positive, ~positive):
        members = np.flatnonzero(group)
        if len(members):
            out[:, members] = members[rng.integers(0, len(members), size=(n_resamples, len(members)))]
    return out
