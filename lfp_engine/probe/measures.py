"""How far the learned feedback patterns diverge from the feedback: the probe's measures.

Predictions of a fitted probe (`linear.py`) on its dataset (`dataset.py`) become the tables of
the paper's section 4.1: per-word implicit values against the lexicon (tables 2, 9; figure 4),
Kendall's tau overall and per polarity (tables 4, 10), sign agreement (table 5), and for the
preference tasks the held-out accuracy of a logistic probe (table 3) and a PCA of its inputs
(figure 5). Every measure is computed on the test split: words (or texts) whose triples the
probe never saw, and on positive and negative elements only (the neutral ones are the probe's
zero point, not words of the lexicon). A word's implicit value is the mean of the probe's
predictions over the triples that contain it; against the lexicon we report Kendall's tau (on the
values: the authors' notebook once ranked token strings alphabetically), its p-value and a
bootstrap interval over words.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.decomposition import PCA
from torch import nn

from lfp_engine.models.generation import Sampling, sample_completions
from lfp_engine.probe.dataset import ProbeDataset
from lfp_engine.run.errors import InputError
from lfp_engine.tuning.lexicon import word_tokens


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


def _row(variant: str, subset: str, metric: str, value: float, n: int, p: float = np.nan,
         low: float = np.nan, high: float = np.nan) -> dict:
    return {"variant": variant, "subset": subset, "metric": metric, "value": float(value), "p_value": float(p),
            "ci_low": float(low), "ci_high": float(high), "n": int(n)}


def lexicon_values(data: ProbeDataset, prediction: np.ndarray, mask: np.ndarray) -> pd.DataFrame:
    """word, lexicon_value, probe_value (mean prediction over its examples), n_examples."""
    values = word_values(prediction[mask], data.word[mask])
    counts = pd.Series(data.word[mask]).value_counts()
    truth = pd.Series(data.lexicon_value[mask], index=data.word[mask]).groupby(level=0).first()
    return pd.DataFrame({"word": values.index, "lexicon_value": truth.loc[values.index].to_numpy(),
                         "probe_value": values.to_numpy(), "n_examples": counts.loc[values.index].to_numpy()})


def measure(variant: str, data: ProbeDataset, prediction: np.ndarray, n_bootstrap: int, seed: int) -> list[dict]:
    """Every metric of one probe's predictions, as rows of `probe_metrics`."""
    rows = []
    if data.kind == "text":
        for subset, mask in (("test", data.test), ("train", data.train)):
            correct = (prediction[mask] > 0) == (data.target[mask] == 1)
            test = stats.binomtest(int(correct.sum()), int(mask.sum()), 0.5, alternative="greater")
            interval = test.proportion_ci(0.95)
            rows.append(_row(variant, subset, "accuracy", correct.mean(), mask.sum(), test.pvalue, interval.low,
                             interval.high))
        return rows
    for subset, mask in (("test", data.test), ("train", data.train)):
        table = lexicon_values(data, prediction, mask)
        for part, words in ((subset, table),
                            (f"{subset}_positive", table[table["lexicon_value"] > 0]),
                            (f"{subset}_negative", table[table["lexicon_value"] < 0])):
            if subset == "train" and part != "train":
                continue
            r = kendall_agreement(words["lexicon_value"].to_numpy(), words["probe_value"].to_numpy(),
                                  n_bootstrap, seed)
            rows.append(_row(variant, part, "kendall_tau", r.tau, r.n, r.p_value, r.ci_low, r.ci_high))
            if part != subset:
                rows.append(_row(variant, part, "sign_agreement",
                                 sign_agreement(words["lexicon_value"].to_numpy(), words["probe_value"].to_numpy()),
                                 len(words)))
        rows.append(_row(variant, subset, "mae", np.abs(table["probe_value"] - table["lexicon_value"]).mean(),
                         len(table)))
        residual = data.target[mask] - prediction[mask]
        spread = data.target[mask] - data.target[mask].mean()
        rows.append(_row(variant, subset, "r2", 1 - (residual @ residual) / (spread @ spread), mask.sum()))
    return rows


def generation_counts(model: nn.Module, tokenizer, prompts: Sequence[str], sampling: Sampling, seed: int,
                      desc: str = "sample") -> Counter[str]:
    """How often a model writes each word when it completes `prompts` (figure 4's x axis)."""
    completions = sample_completions(model, tokenizer, prompts, max_new_tokens=sampling.max_new_tokens,
                                     min_new_tokens=sampling.min_new_tokens, temperature=sampling.temperature,
                                     batch_size=sampling.batch_size, seed=seed, max_length=sampling.max_length,
                                     desc=desc)
    return word_counts(completions.texts)


def word_counts(texts: Iterable[str]) -> Counter[str]:
    """How often each lower-cased spaCy token occurs in `texts` (generation frequency, figure 4)."""
    counts: Counter[str] = Counter()
    for tokens in word_tokens(texts):
        counts.update(tokens)
    return counts


def lexicon_comparison(data: ProbeDataset, prediction: np.ndarray, words: pd.DataFrame, tuned_counts: Counter[str],
                       base_counts: Counter[str]) -> pd.DataFrame:
    """One row per word of the triples: the reconstructed lexicon (tables 2 and 9, figure 4)."""
    table = lexicon_values(data, prediction, data.scored)
    table = table.merge(words[["word", "split", "polarity", "role"]], on="word", how="left")
    table["abs_error"] = (table["probe_value"] - table["lexicon_value"]).abs()
    table["generation_count"] = [tuned_counts.get(w, 0) for w in table["word"]]
    table["base_generation_count"] = [base_counts.get(w, 0) for w in table["word"]]
    return table[["word", "split", "polarity", "role", "lexicon_value", "probe_value", "abs_error", "n_examples",
                  "generation_count", "base_generation_count"]].sort_values("lexicon_value", ignore_index=True)


def pca_frame(data: ProbeDataset, max_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """Two principal components of the probe's positive and negative inputs (figure 5), on a seeded
    sample of rows."""
    rows = np.flatnonzero(data.scored)
    if len(rows) < 3:
        raise InputError("too few probe inputs for a PCA")
    keep = np.sort(rng.permutation(rows)[:max_rows])
    pcs = PCA(n_components=2, random_state=0).fit_transform(data.X[keep])
    return pd.DataFrame({"triple_id": data.triple_id[keep], "element": data.element[keep],
                         "split": data.split[keep], "label": data.target[keep] if data.kind == "text" else
                         np.sign(data.target[keep]), "pc1": pcs[:, 0], "pc2": pcs[:, 1]})
