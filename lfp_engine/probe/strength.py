"""Choosing the probe's strength: cross-validated held-out error at every strength of a grid (paper 3.3).

The probe (`linear.py`) and the permutation null's probes (`nulls.py`) choose their ridge strength
the same way: held-out error over folds that keep a lexicon word's rows together (a fold never holds
a word the fit saw), the zero point's rows counted once as a kind of their own. One decomposition
per fold serves every strength and every target column (`ridge.held_out_predictions`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import GroupKFold

from lfp_engine.probe.ridge import held_out_predictions
from lfp_engine.run.errors import InputError

DEFAULT_ALPHAS = tuple(10.0 ** np.arange(-3, 4.5, 0.5))
"""The strengths cross-validation chooses among."""


def check_data(X: np.ndarray, y: np.ndarray) -> None:
    if X.ndim != 2 or len(X) != len(y) or len(y) == 0:
        raise InputError(f"probe data must be X [n, d] and y [n] with n > 0, got {X.shape} and {y.shape}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise InputError("probe data contains NaN or infinite values")


def cv_errors(X: np.ndarray, y: np.ndarray, groups: Sequence[str], alphas: Sequence[float] = DEFAULT_ALPHAS,
              n_folds: int = 5, anchor: np.ndarray | None = None) -> np.ndarray:
    """Held-out error of a ridge at each of `alphas`, folds by `groups`: [alphas] for y [n], or
    [k, alphas] for k target columns y [n, k] (the permutation null's). With `anchor` (the zero
    point's rows) it is the mean squared error of the lexicon-word rows plus that of the anchor
    rows: each kind counts once however many anchor rows there are, so the zero point cannot buy a
    strength that reads every word as 0."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    check_data(X, y if y.ndim == 1 else y[:, 0])
    groups = np.asarray(groups)
    kinds = np.zeros(len(y), dtype=np.int64) if anchor is None else np.asarray(anchor, dtype=bool).astype(np.int64)
    folds = min(n_folds, len(np.unique(groups)))
    if folds < 2:
        raise InputError("cross-validating the probe needs triples of at least two different words")
    counts = np.bincount(kinds, minlength=2)
    sse = np.zeros((2, *y.shape[1:], len(alphas)))
    for train, held in GroupKFold(n_splits=folds).split(X, y, groups):
        truth = y[held][..., None]
        squared = (held_out_predictions(X[train], y[train], X[held], alphas) - truth) ** 2
        for kind in (0, 1):
            sse[kind] += squared[kinds[held] == kind].sum(axis=0)
    return sum(sse[kind] / counts[kind] for kind in (0, 1) if counts[kind] > 0)


