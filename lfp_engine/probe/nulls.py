"""What a probe's agreement with the lexicon must beat (paper 4.1, beyond its single baseline).

The paper compares its probe with one untrained (Xavier) probe, and tests tau against 0. One draw
is not a null distribution, and tau = 0 is not what a fitted readout of these codes gives by
chance: word values share structure (activation norm, frequency) that any readout picks up. Two
controls instead:

- The permutation null: the probe is refit, with the regularisation its cross-validation chose,
  to training targets shuffled between words. (Keeping the real probe's strength, rather than
  choosing it again for each shuffle, makes the null probes no better than a re-chosen strength
  would: the null can only be the harder to beat for it. `rechosen_null` chooses it again, by the
  probe's own cross-validation on each shuffle's targets; on the tiny world the two nulls'
  p-values and critical values are compared in docs/results.md, "The permutation null's strength".) Each training word's mean target is handed to
  another training word (of either polarity); each row keeps its deviation from its word's mean,
  and rows that carry no lexicon word keep their targets. A null probe so learns a word-level
  structure of the real size from the same codes, just not the real one. The p-value of a
  measure is the share of null probes that score at least as well on the test words (one-sided,
  the observed probe counted among them: (1 + hits) / (1 + n)).
- The polarity-only baseline: every word valued at its polarity's mean lexicon value over the
  training words (sign x mean magnitude): what knowing polarity alone scores. The null says
  whether the probe learned anything from its targets; the within-polarity measures and this
  baseline say whether that is more than polarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lfp_engine.probe.dataset import ProbeDataset
from lfp_engine.probe.kendall import word_taus
from lfp_engine.probe.ridge import RidgeSolver
from lfp_engine.probe.strength import DEFAULT_ALPHAS, cv_errors
from lfp_engine.probe.words import WordSet

NULL_BATCH = 200
"""Shuffled target vectors solved at once (bounds memory: rows x batch floats)."""
RECHOSEN_CHUNK = 25
"""Shuffled target vectors cross-validated at once (bounds memory: held-out rows x chunk x strengths)."""


@dataclass(frozen=True)
class NullDistribution:
    """Each measure's values (`kendall.SUBSETS` keys) for every probe refit to shuffled targets."""

    taus: dict[str, np.ndarray]

    def p_value(self, measure: str, observed: float) -> float:
        """Share of the null at or above `observed`, the observed probe counted in: (1 + hits) / (1 + n)."""
        null = self.taus[measure][np.isfinite(self.taus[measure])]
        if not np.isfinite(observed) or len(null) == 0:
            return float("nan")
        return float((1 + np.sum(null >= observed - 1e-12)) / (1 + len(null)))

    def mean(self, measure: str) -> float:
        null = self.taus[measure]
        return float(np.nanmean(null)) if np.isfinite(null).any() else float("nan")

    def upper(self, measure: str, level: float = 0.95) -> float:
        """The value the null reaches at `level` (one-sided critical value)."""
        null = self.taus[measure]
        return float(np.nanquantile(null, level)) if np.isfinite(null).any() else float("nan")


def word_shuffles(target: np.ndarray, word: np.ndarray, carries_word: np.ndarray, n_shuffles: int,
                  rng: np.random.Generator) -> np.ndarray:
    """[rows, n_shuffles] targets: each word's mean target given to another word, each row keeping its
    deviation from its word's mean; rows not `carries_word` unchanged."""
    target = np.asarray(target, dtype=np.float64)
    out = np.repeat(target[:, None], n_shuffles, axis=1)
    rows = np.flatnonzero(carries_word)
    if len(rows) == 0:
        return out
    words, index = np.unique(word[rows].astype(str), return_inverse=True)
    means = np.bincount(index, weights=target[rows]) / np.bincount(index)
    order = rng.permuted(np.tile(np.arange(len(words))[:, None], (1, n_shuffles)), axis=0)
    out[rows] += means[order[index]] - means[index][:, None]
    return out


def permutation_null(data: ProbeDataset, alpha: float, words: WordSet, n_permutations: int,
                     rng: np.random.Generator) -> NullDistribution:
    """The measures of `words` (the test words) for `n_permutations` probes refit, at `alpha`, to
    training targets shuffled between words."""
    fit_rows = np.flatnonzero(data.fitted)
    solver = RidgeSolver(data.X[fit_rows], alpha)
    carries_word = data.scored[fit_rows]
    test_inputs = data.X[words.rows]
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_permutations, NULL_BATCH):
        size = min(NULL_BATCH, n_permutations - start)
        targets = word_shuffles(data.target[fit_rows], data.word[fit_rows], carries_word, size, rng)
        values = words.average(solver.fit(targets).predict(test_inputs))
        for measure, taus in word_taus(words.truth, values, words.positive).items():
            parts.setdefault(measure, []).append(taus)
    return NullDistribution({measure: np.concatenate(chunks) for measure, chunks in parts.items()})


def rechosen_null(data: ProbeDataset, words: WordSet, n_permutations: int, rng: np.random.Generator,
                  folds: int, alphas: Sequence[float] = DEFAULT_ALPHAS) -> NullDistribution:
    """As `permutation_null` (the same shuffles for the same `rng`), but each null probe's strength is
    chosen again, by the probe's own cross-validation (`strength.cv_errors`) on its shuffled targets."""
    fit_rows = np.flatnonzero(data.fitted)
    X, carries_word = data.X[fit_rows], data.scored[fit_rows]
    test_inputs = data.X[words.rows]
    solvers: dict[int, RidgeSolver] = {}
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_permutations, NULL_BATCH):
        size = min(NULL_BATCH, n_permutations - start)
        targets = word_shuffles(data.target[fit_rows], data.word[fit_rows], carries_word, size, rng)
        chosen = np.concatenate([np.argmin(cv_errors(X, targets[:, k:k + RECHOSEN_CHUNK], data.cv_groups[fit_rows],
                                                     alphas, folds, ~carries_word), axis=1)
                                 for k in range(0, size, RECHOSEN_CHUNK)])
        predictions = np.empty((len(words.rows), size))
        for a in np.unique(chosen):
            solver = solvers.setdefault(int(a), RidgeSolver(X, alphas[int(a)]))
            predictions[:, chosen == a] = solver.fit(targets[:, chosen == a]).predict(test_inputs)
        for measure, taus in word_taus(words.truth, words.average(predictions), words.positive).items():
            parts.setdefault(measure, []).append(taus)
    return NullDistribution({measure: np.concatenate(chunks) for measure, chunks in parts.items()})


def polarity_only_values(data: ProbeDataset, words: WordSet) -> np.ndarray:
    """Each word of `words` valued at the mean lexicon value of the training words of its polarity."""
    train = WordSet.of(data, data.train)
    means = {polarity: float(train.truth[train.positive == polarity].mean()) if (train.positive == polarity).any()
             else 0.0 for polarity in (True, False)}
    return np.where(words.positive, means[True], means[False])
