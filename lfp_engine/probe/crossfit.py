"""Per-word implicit values for every word, cross-fitted (paper 4.1, tables 2 and 9, for all words).

The probe is measured on the test words only, a fifth of the lexicon words. To ask *which* words
the model learned differently from the reward, every word needs a value read by a probe that was
never fit on it: the words are split into word-grouped folds, and each fold's words are predicted
by the probe refit (with the probe's regularisation strength) on the rows of all other words. Rows
that carry no lexicon word (the probe's zero point: neutral elements and shared tokens) are fitted
on in every fold. A word's value is the mean of its rows' predictions.

**Its uncertainty has two parts** (issue 21): the word's contexts (which triples it was read in),
and the probe's fit (which words the probe happened to be fit on). Only the first is a bootstrap
over the word's triples; a word whose value is near 0 would otherwise be flagged far more often
than the report's nominal error rate says. The second is the variance of the word's value under
resampling the fold's *training words* with replacement and refitting, computed by the
infinitesimal jackknife (Efron 2014; Jaeckel 1972): for ridge with an unpenalised intercept, the
derivative of the word's value with respect to the weight of training word w is

    I_w = (x_h - m)' (Xc'Xc + alpha I)^-1 Xc_w' r_w + (1/n) 1' r_w,

x_h the held-out word's mean code, m the fit's mean code, r_w the residuals of word w's rows; a
multinomial resample of W words has Cov(c) = I - 11'/W, so the fit's variance is
sum_w I_w^2 - (sum_w I_w)^2 / W. One decomposition per fold serves every word (a brute-force
bootstrap of refits agrees, tests/test_probe_controls.py). The interval is value +- 1.96 x
sqrt(se_contexts^2 + se_fit^2 + se_word^2) (the last below). Both models read the same triples and are cross-fitted on the same
folds, so a word's tuned-minus-base value is the mean of the row-by-row differences, its context
part resamples those rows paired, and its fit part is the jackknife of the difference
(I_w tuned - I_w base), the same training words resampled for both.

**The reading of a word has an error of its own** (`se_word`). The neutral words of the triples
are, by the world's construction, words the model attaches no value to (target 0). Held out whole
in their own word-grouped folds and read the same way (`null_crossfit`), they are *null words*: on
the seed-0 tiny run their readings strayed from 0 more than their contexts and the fit explain (the
flag fired on 22% of them, nominal 5%: docs/results.md). That excess is the probe's error on a word
as such: its codes read along the probe's weights for reasons of that word alone. Its size is
estimated on the null words (`word_error`, an empirical null, Efron 2004) and added to every word's
interval. The null words' own intervals take it from the other half of them
(`cross_validated_word_error`), so the report's calibration on them
(`lfp_engine.report.divergence.calibration_table`) checks the rule out of sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse, stats
from sklearn.model_selection import GroupKFold

from lfp_engine.probe.dataset import ProbeDataset
from lfp_engine.probe.ridge import RidgeSolver
from lfp_engine.run.errors import InputError
from lfp_engine.statistics import MIN_RESAMPLED, resampled_means

Z = float(stats.norm.ppf(0.975))
WORD_VALUE_COLUMNS = ["word", "model", "split", "polarity", "lexicon_value", "value", "ci_low", "ci_high",
                      "n_examples", "se_contexts", "se_fit", "se_word"]
"""The `word_values` table (docs/store.md); `null_word_values` has the same columns."""
NULL_ELEMENT = "neutral"
"""The rows whose words make the calibration's null words."""


@dataclass(frozen=True)
class CrossFit:
    """Every held-out row's prediction, and each held-out word's sensitivity to the fit's words."""

    predictions: np.ndarray
    """Per row of the dataset; NaN on rows not held out (rows of no word of `words`)."""
    words: np.ndarray
    """The held-out words, sorted."""
    training_words: np.ndarray
    """The lexicon words the folds were fit on, sorted (the columns of `influence`)."""
    influence: np.ndarray
    """[words, training_words]: d value / d weight of each training word in the held-out word's fit (0
    for words that were not in the fit)."""
    fold_sizes: np.ndarray
    """[words]: the number of training words in the fit that read each word (W of the variance)."""

    def fit_variance(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The infinitesimal-jackknife variance of each word's value under resampling its fit's words
        (`rows`: an influence matrix to use instead, e.g. a difference of two models')."""
        influence = self.influence if rows is None else rows
        return np.maximum(0.0, (influence ** 2).sum(axis=1) - influence.sum(axis=1) ** 2 / self.fold_sizes)


def _fold_influence(solver: RidgeSolver, residuals: np.ndarray, word_index: np.ndarray, n_words: int,
                    held_means: np.ndarray) -> np.ndarray:
    """[held words, n_words]: each held word's value's derivative in the weight of each word of the
    fit (`word_index` per fit row, -1 for rows of no word), from one fit's solver and residuals."""
    carries = word_index >= 0
    R = sparse.csr_matrix((residuals[carries], (np.flatnonzero(carries), word_index[carries])),
                          shape=(len(residuals), n_words)).toarray()
    directions = solver.inverse_times_design(R)
    return (held_means - solver.x_mean) @ directions + R.sum(axis=0) / len(residuals)


def _fits(data: ProbeDataset, alpha: float, fit_rows: np.ndarray, held_rows: np.ndarray, held_words: np.ndarray,
          word_index: np.ndarray, n_words: int) -> tuple[np.ndarray, np.ndarray]:
    """One fold: predictions of `held_rows`, and the influence matrix of the held words (`held_words`
    per held row) on the fit's words."""
    solver = RidgeSolver(data.X[fit_rows], alpha)
    fit = solver.fit(data.target[fit_rows])
    residuals = data.target[fit_rows] - fit.predict(data.X[fit_rows])
    names, inverse = np.unique(held_words, return_inverse=True)
    means = np.zeros((len(names), data.X.shape[1]))
    np.add.at(means, inverse, data.X[held_rows])
    means /= np.bincount(inverse)[:, None]
    return fit.predict(data.X[held_rows]), _fold_influence(solver, residuals, word_index[fit_rows], n_words, means)


def crossfit(data: ProbeDataset, alpha: float, n_folds: int) -> CrossFit:
    """Each lexicon-word row predicted by a ridge (at `alpha`) fit without any row of its word, and the
    sensitivity of each word's value to the words its fit used."""
    rows = np.flatnonzero(data.scored)
    words = data.word[rows].astype(str)
    vocab, index = np.unique(words, return_inverse=True)
    folds = min(n_folds, len(vocab))
    if folds < 2:
        raise InputError("cross-fitting per-word values needs at least two different words")
    word_index = np.full(len(data.target), -1)
    word_index[rows] = index
    always = np.flatnonzero(~data.scored)
    predictions = np.full(len(data.target), np.nan)
    influence = np.zeros((len(vocab), len(vocab)))
    fold_sizes = np.zeros(len(vocab))
    for keep, held in GroupKFold(n_splits=folds).split(rows, groups=words):
        held_words = np.unique(index[held])
        predictions[rows[held]], part = _fits(data, alpha, np.concatenate([rows[keep], always]), rows[held],
                                              index[held], word_index, len(vocab))
        influence[held_words] = part
        fold_sizes[held_words] = len(np.unique(index[keep]))
    return CrossFit(predictions, vocab, vocab, influence, fold_sizes)


def null_crossfit(data: ProbeDataset, alpha: float, n_folds: int) -> CrossFit | None:
    """The neutral words read as the lexicon words are: each held out whole (its neutral rows, and the
    shared tokens that are the same word) in word-grouped folds of the neutral words, the fit on every
    other row; the fit's words (for the influence) are all the lexicon words. None when the data have
    fewer than two neutral words."""
    null_rows = np.flatnonzero(data.element == NULL_ELEMENT)
    names = data.word[null_rows].astype(str)
    if data.kind != "word" or len(np.unique(names)) < 2:
        return None
    scored = np.flatnonzero(data.scored)
    vocab, index = np.unique(data.word[scored].astype(str), return_inverse=True)
    word_index = np.full(len(data.target), -1)
    word_index[scored] = index
    nulls, null_index = np.unique(names, return_inverse=True)
    predictions = np.full(len(data.target), np.nan)
    influence = np.zeros((len(nulls), len(vocab)))
    all_words = data.word.astype(str)
    for _, held in GroupKFold(n_splits=min(n_folds, len(nulls))).split(null_rows, groups=names):
        out = np.isin(all_words, nulls[np.unique(null_index[held])]) & ~data.scored
        fit_rows = np.flatnonzero(~out)
        predictions[null_rows[held]], part = _fits(data, alpha, fit_rows, null_rows[held], null_index[held],
                                                   word_index, len(vocab))
        influence[np.unique(null_index[held])] = part
    return CrossFit(predictions, nulls, vocab, influence, np.full(len(nulls), float(len(vocab))))


def prediction_rows(data: ProbeDataset, predictions: np.ndarray, element: str | None = None) -> pd.DataFrame:
    """The rows of `data` with a (cross-fitted) prediction, keyed by (triple_id, element): the
    lexicon-word rows, or the rows of one `element` (the null words' neutral rows)."""
    rows = np.flatnonzero(data.scored if element is None else data.element == element)
    return pd.DataFrame({"triple_id": data.triple_id[rows], "element": data.element[rows],
                         "word": data.word[rows].astype(str), "split": data.split[rows] if element is None else "null",
                         "polarity": data.element[rows] if element is None else "null",
                         "lexicon_value": data.lexicon_value[rows], "prediction": predictions[rows]})


def paired_difference_rows(tuned: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Row by row, the tuned model's prediction minus the base model's on the same triple element
    (both models read the same triples), so a word's bootstrap of these rows is paired."""
    keys = ["triple_id", "element"]
    both = tuned.merge(base[[*keys, "prediction"]], on=keys, suffixes=("", "_base"), validate="one_to_one")
    if len(both) != len(tuned) or len(both) != len(base):
        raise InputError(f"tuned and base probe data hold different triples ({len(tuned)} and {len(base)} word rows, "
                         f"{len(both)} shared): the paired difference needs the same rows")
    return both.assign(prediction=both["prediction"] - both.pop("prediction_base"))


def word_value_table(rows: pd.DataFrame, model: str, fit_variance: pd.Series, n_bootstrap: int,
                     rng: np.random.Generator) -> pd.DataFrame:
    """One row per word of `rows` (`prediction_rows`): its mean prediction, the standard error of its
    contexts (a bootstrap over its rows; none under `MIN_RESAMPLED` rows), that of the fit
    (`fit_variance` by word, `CrossFit`), and the 95% interval of both."""
    out = []
    for word, group in rows.groupby("word", sort=True):
        values = group["prediction"].to_numpy(dtype=np.float64)
        contexts = (float(np.std(resampled_means(values, n_bootstrap, rng), ddof=1))
                    if n_bootstrap > 1 and len(values) >= MIN_RESAMPLED else float("nan"))
        fit = float(np.sqrt(fit_variance.get(word, np.nan)))
        half = Z * float(np.hypot(contexts, fit))
        first = group.iloc[0]
        mean = float(values.mean())
        out.append((word, model, first["split"], first["polarity"], float(first["lexicon_value"]), mean, mean - half,
                    mean + half, len(values), contexts, fit, 0.0))
    return pd.DataFrame(out, columns=WORD_VALUE_COLUMNS)


def word_error(nulls: pd.DataFrame) -> float:
    """The standard deviation of a word's reading around its true value that neither its contexts nor
    the fit explain: over null words (true value 0), the root of the mean of value^2 - se_contexts^2
    - se_fit^2 (0 when the two parts explain all of it). An empirical null (Efron 2004): how far the
    probe reads a word that carries nothing from 0, for reasons of that word alone."""
    excess = nulls["value"] ** 2 - nulls["se_contexts"] ** 2 - nulls["se_fit"] ** 2
    excess = excess[np.isfinite(excess)]
    return float(np.sqrt(max(0.0, excess.mean()))) if len(excess) else 0.0


def with_word_error(table: pd.DataFrame, se_word: float | pd.Series) -> pd.DataFrame:
    """`table` (`WORD_VALUE_COLUMNS`) with the word error added to every interval in quadrature."""
    half = Z * np.sqrt(table["se_contexts"] ** 2 + table["se_fit"] ** 2 + np.asarray(se_word) ** 2)
    return table.assign(se_word=se_word, ci_low=table["value"] - half, ci_high=table["value"] + half)


def split_halves(words: np.ndarray, rng: np.random.Generator) -> dict[str, int]:
    """Each null word's half (0 or 1), drawn at random, for the cross-validated word error."""
    order = rng.permutation(np.sort(np.asarray(words, dtype=str)))
    return {word: i % 2 for i, word in enumerate(order)}


def cross_validated_word_error(nulls: pd.DataFrame, halves: dict[str, int]) -> pd.DataFrame:
    """The null words' tables with each word's error estimated on the *other* half of the null words
    (per model), so their intervals, and the report's calibration read from them, do not fit the
    words they are checked on."""
    parts = []
    for model, group in nulls.groupby("model", sort=False):
        half = group["word"].map(halves)
        errors = {h: word_error(group[half != h]) for h in (0, 1)}
        parts.append(with_word_error(group, half.map(errors).to_numpy(float)))
    return pd.concat(parts, ignore_index=True)
