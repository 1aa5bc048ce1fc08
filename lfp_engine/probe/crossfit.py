"""Per-word implicit values for every word, cross-fitted (paper 4.1, tables 2 and 9, for all words).

The probe is measured on the test words only, a fifth of the lexicon words. To ask *which* words
the model learned differently from the reward, every word needs a value read by a probe that was
never fit on it: the words are split into word-grouped folds, and each fold's words are predicted
by the probe refit (with the probe's regularisation strength) on the rows of all other words. Rows
that carry no lexicon word (the neutral element, where the dataset has it) are fitted on in every
fold. A word's value is the mean of its rows' predictions, with a percentile bootstrap interval
over its triples; the interval covers the word's contexts, not the uncertainty of the fit. Both
models read the same triples, so a word's tuned-minus-base value is the mean of the row-by-row
differences, and its interval resamples those rows paired.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from lfp_engine.probe.dataset import ProbeDataset
from lfp_engine.probe.ridge import RidgeSolver
from lfp_engine.run.errors import InputError
from lfp_engine.statistics import percentile_interval, resampled_means

WORD_VALUE_COLUMNS = ["word", "model", "split", "polarity", "lexicon_value", "value", "ci_low", "ci_high",
                      "n_examples"]
"""The `word_values` table (docs/store.md)."""


def crossfit_predictions(data: ProbeDataset, alpha: float, n_folds: int) -> np.ndarray:
    """Each lexicon-word row predicted by a ridge (at `alpha`) fit without any row of its word; NaN
    on rows that carry no lexicon word."""
    rows = np.flatnonzero(data.scored)
    words = data.word[rows].astype(str)
    folds = min(n_folds, len(np.unique(words)))
    if folds < 2:
        raise InputError("cross-fitting per-word values needs at least two different words")
    always = np.flatnonzero(~data.scored)
    out = np.full(len(data.target), np.nan)
    for keep, held in GroupKFold(n_splits=folds).split(rows, groups=words):
        fit_rows = np.concatenate([rows[keep], always])
        solver = RidgeSolver(data.X[fit_rows], alpha)
        out[rows[held]] = solver.fit(data.target[fit_rows]).predict(data.X[rows[held]])
    return out


def prediction_rows(data: ProbeDataset, predictions: np.ndarray) -> pd.DataFrame:
    """The lexicon-word rows of `data` with their cross-fitted prediction, keyed by (triple_id, element)."""
    rows = np.flatnonzero(data.scored)
    return pd.DataFrame({"triple_id": data.triple_id[rows], "element": data.element[rows],
                         "word": data.word[rows].astype(str), "split": data.split[rows],
                         "polarity": data.element[rows], "lexicon_value": data.lexicon_value[rows],
                         "prediction": predictions[rows]})


def paired_difference_rows(tuned: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Row by row, the tuned model's prediction minus the base model's on the same triple element
    (both models read the same triples), so a word's bootstrap of these rows is paired."""
    keys = ["triple_id", "element"]
    both = tuned.merge(base[[*keys, "prediction"]], on=keys, suffixes=("", "_base"), validate="one_to_one")
    if len(both) != len(tuned) or len(both) != len(base):
        raise InputError(f"tuned and base probe data hold different triples ({len(tuned)} and {len(base)} word rows, "
                         f"{len(both)} shared): the paired difference needs the same rows")
    return both.assign(prediction=both["prediction"] - both.pop("prediction_base"))


def word_value_table(rows: pd.DataFrame, model: str, n_bootstrap: int, rng: np.random.Generator) -> pd.DataFrame:
    """One row per lexicon word of `rows` (`prediction_rows`): its mean prediction and a 95% percentile
    bootstrap interval over its rows."""
    out = []
    for word, group in rows.groupby("word", sort=True):
        values = group["prediction"].to_numpy()
        if n_bootstrap > 0 and len(values) > 1:
            low, high = percentile_interval(resampled_means(values, n_bootstrap, rng))
        else:
            low = high = float("nan")
        first = group.iloc[0]
        out.append((word, model, first["split"], first["polarity"], float(first["lexicon_value"]),
                    float(values.mean()), float(low), float(high), len(values)))
    return pd.DataFrame(out, columns=WORD_VALUE_COLUMNS)
