"""Synthetic probe data with a planted answer, for the controls' tests.

Each word has a polarity and a lexicon value. The "model" believes b_w = sign_w * (1 + magnitude *
|value_w|): with magnitude 0 it knows polarity only, with magnitude 1 it knows how strong each word
is. Its codes hold that belief along one direction, plus a per-word offset (what a word's rows share
whatever their context) and per-row noise; the probe's target is the belief plus noise, as an
activation delta is a function of the codes.
"""

from __future__ import annotations

import numpy as np

from lfp_engine.probe.dataset import ProbeDataset


def planted_words(rng: np.random.Generator, n_per_polarity: int = 40, test_fraction: float = 0.25
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Words, their lexicon values (one decimal, ties as in a real lexicon) and their split."""
    n = 2 * n_per_polarity
    words = np.array([f"w{i:03d}" for i in range(n)])
    sign = np.repeat([1.0, -1.0], n_per_polarity)
    values = np.round(sign * rng.uniform(0.5, 3.5, n), 1)
    split = np.full(n, "train", dtype=object)
    n_test = round(test_fraction * n_per_polarity)
    for start in (0, n_per_polarity):
        split[start + rng.permutation(n_per_polarity)[:n_test]] = "test"
    return words, values, split


def planted_dataset(rng: np.random.Generator, words: np.ndarray, values: np.ndarray, split: np.ndarray,
                    magnitude: float, rows_per_word: int = 6, dim: int = 12, word_noise: float = 0.3,
                    row_noise: float = 0.3, direction_seed: int = 99) -> ProbeDataset:
    """Rows of every word (element = its polarity); the codes' belief direction is fixed by
    `direction_seed`, so datasets drawn with other `rng`s read the same way."""
    direction = np.random.default_rng(direction_seed).normal(size=dim)
    direction /= np.linalg.norm(direction)
    belief = np.sign(values) * (1 + magnitude * np.abs(values))
    index = np.repeat(np.arange(len(words)), rows_per_word)
    offsets = rng.normal(0, word_noise, (len(words), dim))
    X = belief[index, None] * direction + offsets[index] + rng.normal(0, row_noise, (len(index), dim))
    target = belief[index] + rng.normal(0, 0.2, len(index))
    return ProbeDataset(kind="word", X=X, target=target, split=split[index].astype(str),
                        element=np.where(values[index] > 0, "positive", "negative"), triple_id=np.arange(len(index)),
                        word=words[index], lexicon_value=values[index].astype(float), scale=1.0)
