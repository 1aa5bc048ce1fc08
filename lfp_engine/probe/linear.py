"""The linear probe on the implicit reward, and its untrained and shuffled baselines (paper 3.3, 4.1).

VADER task: a ridge regression from A(x) to the activation delta (`dataset.py`), its zero point
(the neutral elements and tokens the elements share, at 0) among its rows; its strength is chosen
by cross-validation in which a lexicon word's rows form one group (a fold never contains a word
the model was fit on), so the chosen strength is the one that generalises to unseen words, which
is what the test split then measures. The zero point's rows are grouped by their text
(`ProbeDataset.cv_groups` says why). The tuned and the base model's probes share one strength,
chosen on both models' held-out errors together: their per-word values are compared word by
word (`crossfit.py`), and two strengths would shrink the two models' values by different factors,
a difference no tuning made (on the tiny world at seed 0, 10^4 against 10^1.5 read as a shift of
+0.48 on contested words and -0.29 on ordinary ones). Preference tasks: logistic regression
separating A(x+) from A(x-), its strength chosen with a text's two rewrites kept in one fold.

Baselines on the same data: an untrained probe with Xavier-uniform weights (the paper's) and the
probe refit to targets shuffled between words (what fitting alone can find). How the predictions are measured
against the lexicon is `measures.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GroupKFold

from lfp_engine.probe.dataset import ProbeDataset
from lfp_engine.probe.nulls import word_shuffles
from lfp_engine.probe.strength import DEFAULT_ALPHAS, check_data, cv_errors
from lfp_engine.run.errors import InputError



@dataclass
class LinearProbe:
    """y = X @ weights + intercept (regression) or its sigmoid (logistic)."""

    weights: np.ndarray
    intercept: float
    kind: str = "regression"
    alpha: float = 0.0
    """Regularisation strength the cross-validation chose (0 for untrained probes)."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.weights + self.intercept

    def on_codes(self, code_scale: float) -> LinearProbe:
        """The same probe reading inputs `code_scale` times larger (`ProbeDataset.code_scale`): the
        raw codes the dashboard feeds it."""
        return replace(self, weights=self.weights / code_scale)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature share of each prediction: weight * input (the intercept aside)."""
        return np.asarray(X, dtype=np.float64) * self.weights


def fit_ridge(X: np.ndarray, y: np.ndarray, alpha: float) -> LinearProbe:
    """The ridge probe at a given strength."""
    model = Ridge(alpha=alpha).fit(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return LinearProbe(weights=model.coef_.astype(np.float64), intercept=float(model.intercept_), alpha=float(alpha))


def fit_regression(X: np.ndarray, y: np.ndarray, groups: Sequence[str], alphas: Sequence[float] = DEFAULT_ALPHAS,
                   n_folds: int = 5, anchor: np.ndarray | None = None) -> LinearProbe:
    """Ridge regression, its alpha chosen by cross-validation over `groups` (`cv_errors`)."""
    errors = cv_errors(X, y, groups, alphas, n_folds, anchor)
    return fit_ridge(X, y, float(alphas[int(np.argmin(errors))]))


def fit_logistic(X: np.ndarray, labels: np.ndarray, Cs: Sequence[float] = tuple(10.0 ** np.arange(-3, 3.5, 1.0)),
                 groups: Sequence[int] | None = None, n_folds: int = 5) -> LinearProbe:
    """Logistic regression positive-vs-negative; C chosen by grouped cross-validation (a text's
    positive and negative rewrites stay in one fold)."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    check_data(X, labels)
    if len(np.unique(labels)) < 2:
        raise InputError("the logistic probe needs both positive and negative examples")
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    folds = min(n_folds, len(np.unique(groups)))
    scores = []
    for C in Cs:
        hits = 0
        for train, held in GroupKFold(n_splits=folds).split(X, labels, groups):
            model = LogisticRegression(C=C, max_iter=2000).fit(X[train], labels[train])
            hits += int((model.predict(X[held]) == labels[held]).sum())
        scores.append(hits)
    best = float(Cs[int(np.argmax(scores))])
    model = LogisticRegression(C=best, max_iter=2000).fit(X, labels)
    return LinearProbe(weights=model.coef_[0].astype(np.float64), intercept=float(model.intercept_[0]),
                       kind="logistic", alpha=1.0 / best)


def xavier_probe(n_inputs: int, rng: np.random.Generator) -> LinearProbe:
    """The paper's untrained baseline: Xavier-uniform weights of a 1-output linear layer, zero bias."""
    bound = math.sqrt(6.0 / (n_inputs + 1))
    return LinearProbe(weights=rng.uniform(-bound, bound, size=n_inputs), intercept=0.0)


def shuffled_probe(data: ProbeDataset, rng: np.random.Generator, folds: int) -> LinearProbe:
    """The same probe refit, its strength chosen again, to targets shuffled between words: one draw of
    the permutation null's shuffle (`nulls.word_shuffles`: each training word's mean target handed to
    another word, each row keeping its deviation from its word's mean, the zero point's rows at 0).
    What fitting alone can find."""
    train = data.fitted
    y = word_shuffles(data.target[train], data.word[train], data.scored[train], 1, rng)[:, 0]
    return fit_regression(data.X[train], y, data.cv_groups[train], anchor=~data.scored[train], n_folds=folds)


def fit(data: ProbeDataset, folds: int) -> LinearProbe:
    """The regression probe (word- and text-grouped folds, `ProbeDataset.cv_groups`, neutral anchors
    included) or the logistic probe (grouped by triple)."""
    return fit_sharing_strength([data], folds)[0]


def fit_sharing_strength(datasets: Sequence[ProbeDataset], folds: int) -> list[LinearProbe]:
    """Regression probes on several models' codes of the same triples, at the one strength whose
    held-out errors summed over all of them is least: their predictions are then comparable row by
    row (the tuned and the base model). Logistic probes are fit each on its own, a text's two
    rewrites kept in one fold."""
    if any(data.kind == "text" for data in datasets):
        return [fit_logistic(data.X[data.fitted], data.target[data.fitted], groups=data.triple_id[data.fitted],
                             n_folds=folds) for data in datasets]
    errors = sum(cv_errors(data.X[data.fitted], data.target[data.fitted], data.cv_groups[data.fitted],
                           DEFAULT_ALPHAS, folds, ~data.scored[data.fitted]) for data in datasets)
    alpha = float(DEFAULT_ALPHAS[int(np.argmin(errors))])
    return [fit_ridge(data.X[data.fitted], data.target[data.fitted], alpha) for data in datasets]


def baselines(data: ProbeDataset, rng: np.random.Generator, folds: int) -> dict[str, LinearProbe]:
    """The paper's untrained Xavier probe, and the probe refit, on the same rows, to shuffled targets
    (word triples: shuffled between words, `shuffled_probe`; text triples: the classes shuffled
    between texts)."""
    train = data.fitted
    if data.kind == "text":
        shuffled = fit_logistic(data.X[train], rng.permutation(data.target[train]), groups=data.triple_id[train],
                                n_folds=folds)
    else:
        shuffled = shuffled_probe(data, rng, folds)
    return {"xavier": xavier_probe(data.X.shape[1], rng), "shuffled": shuffled}
