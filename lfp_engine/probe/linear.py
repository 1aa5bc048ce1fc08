"""Probes on the implicit reward, and how far it diverges from the true one (paper 3.3, 4.1).

Data: for each triple, A(x) is the concatenated SAE code of the element (see `deltas.py`);
the target of A(x+) is Delta+ = ||A(x+) - A(x0)|| and of A(x-) is Delta- = -||A(x-) - A(x0)||,
rescaled into the reward's range so that probe values and lexicon values can be compared on
one axis.

VADER task: a ridge regression from A(x) to the target; its strength is chosen by
cross-validation in which the folds are groups of *words* (a fold never contains a word the
model was fit on), so the chosen strength is the one that generalises to unseen words, which
is what the test split then measures. A word's implicit value is the mean of the probe's
predictions over the triples that contain it; against the lexicon we report Kendall's tau
(on the values: the authors' notebook once ranked token strings alphabetically), its p-value
and a bootstrap interval over words, per polarity too, and sign agreement.

Preference tasks: logistic regression separating A(x+) from A(x-), accuracy on held-out texts.

Baselines, all measured on the same test words: an untrained probe with Xavier-uniform weights
(the paper's), a probe fit to shuffled targets, and the same probe on the raw MLP activations
or on the base model (built by the probe stage from other inputs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GroupKFold

from lfp_engine.run.errors import InputError

DEFAULT_ALPHAS = tuple(10.0 ** np.arange(-3, 4.5, 0.5))


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

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature share of each prediction: weight * input (the intercept aside)."""
        return np.asarray(X, dtype=np.float64) * self.weights


def _check(X: np.ndarray, y: np.ndarray) -> None:
    if X.ndim != 2 or len(X) != len(y) or len(y) == 0:
        raise InputError(f"probe data must be X [n, d] and y [n] with n > 0, got {X.shape} and {y.shape}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise InputError("probe data contains NaN or infinite values")


def target_scale(targets: np.ndarray, reward_max: float) -> float:
    """Factor mapping the largest |delta| onto the reward's largest |value|: deltas in reward units."""
    peak = float(np.max(np.abs(targets))) if len(targets) else 0.0
    if peak == 0.0:
        raise InputError("every activation delta is zero: the SAE codes do not distinguish the triples")
    return reward_max / peak


def fit_regression(X: np.ndarray, y: np.ndarray, groups: Sequence[str], alphas: Sequence[float] = DEFAULT_ALPHAS,
                   n_folds: int = 5) -> LinearProbe:
    """Ridge regression, its alpha chosen by cross-validation over groups (words)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    _check(X, y)
    groups = np.asarray(groups)
    folds = min(n_folds, len(np.unique(groups)))
    if folds < 2:
        raise InputError("cross-validating the probe needs triples of at least two different words")
    errors = []
    for alpha in alphas:
        sse = 0.0
        for train, held in GroupKFold(n_splits=folds).split(X, y, groups):
            model = Ridge(alpha=alpha).fit(X[train], y[train])
            sse += float(np.sum((model.predict(X[held]) - y[held]) ** 2))
        errors.append(sse)
    best = float(alphas[int(np.argmin(errors))])
    model = Ridge(alpha=best).fit(X, y)
    return LinearProbe(weights=model.coef_.astype(np.float64), intercept=float(model.intercept_), alpha=best)


def fit_logistic(X: np.ndarray, labels: np.ndarray, Cs: Sequence[float] = tuple(10.0 ** np.arange(-3, 3.5, 1.0)),
                 groups: Sequence[int] | None = None, n_folds: int = 5) -> LinearProbe:
    """Logistic regression positive-vs-negative; C chosen by grouped cross-validation (a text's
    positive and negative rewrites stay in one fold)."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    _check(X, labels)
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


def shuffled_probe(X: np.ndarray, y: np.ndarray, groups: Sequence[str], rng: np.random.Generator) -> LinearProbe:
    """The same probe fit to targets shuffled across examples: what fitting alone can find."""
    return fit_regression(X, rng.permutation(np.asarray(y)), groups)


def word_values(predictions: np.ndarray, words: Sequence[str]) -> pd.Series:
    """A word's implicit value: the mean prediction over the examples that contain it."""
    return pd.Series(np.asarray(predictions, dtype=np.float64)).groupby(np.asarray(words)).mean()


@dataclass(frozen=True)
class RankAgreement:
    n: int
    tau: float
    p_value: float
    ci_low: float
    ci_high: float


def kendall_agreement(truth: np.ndarray, estimate: np.ndarray, n_bootstrap: int = 1000,
                      seed: int = 0) -> RankAgreement:
    """Kendall's tau-b between two value arrays, scipy's p-value, and a percentile bootstrap CI."""
    truth = np.asarray(truth, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    if truth.shape != estimate.shape or truth.ndim != 1:
        raise InputError("Kendall's tau needs two value arrays of equal length")
    if len(truth) < 3:
        return RankAgreement(len(truth), float("nan"), float("nan"), float("nan"), float("nan"))
    result = stats.kendalltau(truth, estimate)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, len(truth), len(truth))
        if np.ptp(truth[idx]) > 0 and np.ptp(estimate[idx]) > 0:
            boot.append(stats.kendalltau(truth[idx], estimate[idx]).statistic)
    low, high = (np.quantile(boot, [0.025, 0.975]) if boot else (float("nan"), float("nan")))
    return RankAgreement(len(truth), float(result.statistic), float(result.pvalue), float(low), float(high))


def sign_agreement(truth: np.ndarray, estimate: np.ndarray) -> float:
    """Share of words whose estimate has the sign of their true value (paper table 5)."""
    truth = np.asarray(truth)
    if len(truth) == 0:
        return float("nan")
    return float(np.mean(np.sign(np.asarray(estimate)) == np.sign(truth)))


# ---------------------------------------------------------------------------------------
# On disk: what the dashboard needs to apply a probe live


@dataclass(frozen=True)
class ProbeCard:
    """Everything that says how a saved probe reads the model: which model and dictionaries
    fed it, how texts were encoded, and the scale that maps deltas into reward units."""

    model: str
    """'tuned' or 'base': whose activations and SAEs the probe reads."""
    layers: tuple[int, ...]
    widths: tuple[int, ...]
    """Dictionary size per layer (the smaller dictionary of each chosen layer)."""
    kind: str
    target_scale: float
    bos_token_id: int | None
    max_tokens: int


def save_probe(probe: LinearProbe, card: ProbeCard, folder, name: str = "probe") -> None:
    """`name.safetensors` (weights, intercept) + `name.json` (the card), written atomically."""
    import json
    from dataclasses import asdict

    import torch
    from safetensors.torch import save_file

    from lfp_engine.run.atomic import atomic_path, write_text

    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"{name}.safetensors") as tmp:
        save_file({"weights": torch.from_numpy(np.ascontiguousarray(probe.weights)),
                   "intercept": torch.tensor([probe.intercept], dtype=torch.float64)}, str(tmp))
    write_text(json.dumps({**asdict(card), "alpha": probe.alpha}, indent=2), folder / f"{name}.json")


def load_probe(folder, name: str = "probe") -> tuple[LinearProbe, ProbeCard]:
    import json

    from safetensors.torch import load_file

    from lfp_engine.run.errors import StageOrderError

    path = folder / f"{name}.safetensors"
    if not path.exists():
        raise StageOrderError(f"{path} is missing: run the `probe` stage first")
    tensors = load_file(str(path))
    data = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    alpha = data.pop("alpha")
    card = ProbeCard(**{**data, "layers": tuple(data["layers"]), "widths": tuple(data["widths"])})
    probe = LinearProbe(weights=tensors["weights"].numpy().astype(np.float64),
                        intercept=float(tensors["intercept"][0]), kind=card.kind, alpha=alpha)
    return probe, card
