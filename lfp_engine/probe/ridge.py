"""Ridge regression with an intercept, solved in closed form for many targets at once.

The controls of the probe (paper 3.3, 4.1) refit it hundreds of times with its regularisation
strength fixed: once per shuffled target vector for the permutation null, once per word-grouped
fold for the cross-fitted per-word values. With alpha fixed the normal equations share one matrix,
so it is decomposed once (eigenvectors) and every target column is solved against it:

    w = (Xc' Xc + alpha I)^-1 Xc' y,   b = mean(y) - mean(X) w,   Xc = X - mean(X)

which is scikit-learn's `Ridge(alpha)` with `fit_intercept=True` (the intercept is not penalised).
When there are more features than rows the same solution is computed in its dual form,
w = Xc' (Xc Xc' + alpha I)^-1 yc, which needs an n x n system instead of d x d.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lfp_engine.run.errors import InputError


@dataclass(frozen=True)
class RidgeFit:
    """Weights [d, k] and intercepts [k] of k ridge regressions on the same inputs."""

    weights: np.ndarray
    intercepts: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions [n, k] (or [n] for a fit of one target)."""
        return np.asarray(X, dtype=np.float64) @ self.weights + self.intercepts


def held_out_predictions(X: np.ndarray, Y: np.ndarray, X_held: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    """A ridge fit on (X, Y) at each of `alphas`, predicting `X_held`: [held rows, alphas] for Y [n], or
    [held rows, k, alphas] for k target columns Y [n, k].

    Cross-validation fits the same rows at every strength, so the normal equations are decomposed
    once without alpha (gram = V diag(lam) V') and each strength only shifts the eigenvalues: every
    strength costs one product with the held-out rows' projections, where a fit per strength
    decomposes anew (scikit-learn's `Ridge` in a loop: the probe stage's cost before)."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    alphas = np.asarray(alphas, dtype=np.float64)
    x_mean, y_mean = X.mean(axis=0), Y.mean(axis=0)
    centered = X - x_mean
    held = np.asarray(X_held, dtype=np.float64) - x_mean
    if X.shape[1] > X.shape[0]:  # dual: w = Xc' (Xc Xc' + alpha I)^-1 yc
        eigenvalues, vectors = np.linalg.eigh(centered @ centered.T)
        projected, target = held @ centered.T @ vectors, vectors.T @ (Y - y_mean)
    else:  # primal: w = (Xc' Xc + alpha I)^-1 Xc' yc
        eigenvalues, vectors = np.linalg.eigh(centered.T @ centered)
        projected, target = held @ vectors, vectors.T @ (centered.T @ (Y - y_mean))
    shrink = 1.0 / (np.maximum(eigenvalues, 0.0)[:, None] + alphas[None, :])  # [d, alphas]
    if Y.ndim == 1:
        return projected @ (target[:, None] * shrink) + y_mean
    scaled = target[:, :, None] * shrink[:, None, :]  # [d, k, alphas]
    return np.einsum("hd,dka->hka", projected, scaled) + y_mean[None, :, None]


class RidgeSolver:
    """The factorised normal equations of one design matrix and one alpha; `fit` solves any targets."""

    def __init__(self, X: np.ndarray, alpha: float):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) == 0 or not np.isfinite(X).all():
            raise InputError(f"ridge inputs must be a finite [n, d] matrix with n > 0, got shape {X.shape}")
        if not alpha > 0:
            raise InputError(f"the closed-form ridge needs alpha > 0, got {alpha}")
        self.x_mean = X.mean(axis=0)
        self.centered = X - self.x_mean
        self.dual = X.shape[1] > X.shape[0]
        gram = self.centered @ self.centered.T if self.dual else self.centered.T @ self.centered
        gram[np.diag_indices_from(gram)] += alpha
        # gram = V diag(lam) V' (lam >= alpha > 0): every solve is then two matrix products
        self.eigenvalues, self.eigenvectors = np.linalg.eigh(gram)

    def _solve(self, rhs: np.ndarray) -> np.ndarray:
        """(gram + alpha I)^-1 rhs, for rhs [m] or [m, k]."""
        scaled = (self.eigenvectors.T @ rhs) / (self.eigenvalues[:, None] if rhs.ndim == 2 else self.eigenvalues)
        return self.eigenvectors @ scaled

    def inverse_times_design(self, R: np.ndarray) -> np.ndarray:
        """(Xc' Xc + alpha I)^-1 Xc' R for R [n] or [n, k] (weights of rows): in the dual form
        Xc' (Xc Xc' + alpha I)^-1 R, the same matrix."""
        R = np.asarray(R, dtype=np.float64)
        return self.centered.T @ self._solve(R) if self.dual else self._solve(self.centered.T @ R)

    def fit(self, Y: np.ndarray) -> RidgeFit:
        """Solve every column of Y [n] or [n, k] (targets of the rows of X)."""
        Y = np.asarray(Y, dtype=np.float64)
        if len(Y) != len(self.centered) or not np.isfinite(Y).all():
            raise InputError(f"ridge targets must be finite with {len(self.centered)} rows, got shape {Y.shape}")
        y_mean = Y.mean(axis=0)
        if self.dual:
            weights = self.centered.T @ self._solve(Y - y_mean)
        else:
            weights = self._solve(self.centered.T @ Y)
        return RidgeFit(weights=weights, intercepts=y_mean - self.x_mean @ weights)
