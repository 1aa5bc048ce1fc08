"""How far the learned feedback patterns diverge from the feedback: the probe's measures.

Predictions of a fitted probe (`linear.py`) on its dataset (`dataset.py`) become the tables of
the paper's section 4.1: per-word implicit values against the lexicon (tables 2, 9; figure 4),
sign agreement (table 5), error, and for the preference tasks the held-out accuracy of a logistic
probe (table 3) and a PCA of its inputs (figure 5). Every measure is computed on the test split:
words (or texts) whose triples the probe never saw, and on the positive and negative elements
only (neutral rows are the probe's zero point, not lexicon words). A word's implicit value is the mean of the
probe's predictions over the triples that contain it. Kendall's tau on the test words (tables 4
and 10), with its intervals, nulls and the tuned-minus-base difference, is `agreement.py`'s; it
correlates values (the authors' notebook once ranked token strings alphabetically).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.decomposition import PCA
from torch import nn

from lfp_engine.models.generation import Sampling, sample_completions
from lfp_engine.probe.dataset import ProbeDataset
from lfp_engine.probe.kendall import tau_b
from lfp_engine.run.errors import InputError
from lfp_engine.tuning.lexicon import word_tokens


def word_values(predictions: np.ndarray, words: Sequence[str]) -> pd.Series:
    """A word's implicit value: the mean prediction over the examples that contain it."""
    return pd.Series(np.asarray(predictions, dtype=np.float64)).groupby(np.asarray(words)).mean()


@dataclass(frozen=True)
class MetricRow:
    """One row of `probe_metrics` (docs/store.md says which rows carry which test)."""

    variant: str
    subset: str
    metric: str
    value: float
    n: int
    p_value: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    test: str | None = None
    """What `p_value` tests: 'permutation', 'paired_bootstrap', 'binomial', or None (no p-value)."""
    null_mean: float = float("nan")
    """Permutation rows: the mean of the null distribution."""
    null_q95: float = float("nan")
    """Permutation rows: the value 5% of null probes reach (the one-sided critical value)."""


def metrics_frame(rows: Sequence[MetricRow]) -> pd.DataFrame:
    """`probe_metrics` from its rows, columns in the documented order even when empty."""
    return pd.DataFrame([asdict(r) for r in rows], columns=[f.name for f in fields(MetricRow)])


def sign_agreement(truth: np.ndarray, estimate: np.ndarray) -> float:
    """Share of words whose estimate has the sign of their true value (paper table 5)."""
    truth = np.asarray(truth)
    if len(truth) == 0:
        return float("nan")
    return float(np.mean(np.sign(np.asarray(estimate)) == np.sign(truth)))


def lexicon_values(data: ProbeDataset, prediction: np.ndarray, mask: np.ndarray) -> pd.DataFrame:
    """word, lexicon_value, probe_value (mean prediction over its examples), n_examples, of the
    lexicon words among the rows `mask` selects."""
    mask = mask & data.scored
    values = word_values(prediction[mask], data.word[mask])
    counts = pd.Series(data.word[mask]).value_counts()
    truth = pd.Series(data.lexicon_value[mask], index=data.word[mask]).groupby(level=0).first()
    return pd.DataFrame({"word": values.index, "lexicon_value": truth.loc[values.index].to_numpy(),
                         "probe_value": values.to_numpy(), "n_examples": counts.loc[values.index].to_numpy()})


def accuracy_rows(variant: str, data: ProbeDataset, prediction: np.ndarray) -> list[MetricRow]:
    """Preference tasks (table 3): held-out and training accuracy, one-sided binomial test against
    50%, Clopper-Pearson interval."""
    rows = []
    for subset, mask in (("test", data.test), ("train", data.train)):
        correct = (prediction[mask] > 0) == (data.target[mask] == 1)
        test = stats.binomtest(int(correct.sum()), int(mask.sum()), 0.5, alternative="greater")
        interval = test.proportion_ci(0.95)
        rows.append(MetricRow(variant, subset, "accuracy", float(correct.mean()), int(mask.sum()),
                              p_value=test.pvalue, ci_low=interval.low, ci_high=interval.high, test="binomial"))
    return rows


def measure(variant: str, data: ProbeDataset, prediction: np.ndarray) -> list[MetricRow]:
    """The measures of one probe's predictions that need no resampling: sign agreement (table 5),
    mean absolute error and R^2 on test and training words, the in-sample tau on training words
    (value only). The test words' Kendall taus, with intervals and nulls, are `agreement.py`'s."""
    if data.kind == "text":
        return accuracy_rows(variant, data, prediction)
    rows = []
    for subset, mask in (("test", data.test), ("train", data.train)):
        table = lexicon_values(data, prediction, mask)
        truth, estimate = table["lexicon_value"].to_numpy(), table["probe_value"].to_numpy()
        parts = [(subset, truth != 0)] + ([("test_positive", truth > 0), ("test_negative", truth < 0)]
                                          if subset == "test" else [])
        for part, keep in parts:
            rows.append(MetricRow(variant, part, "sign_agreement", sign_agreement(truth[keep], estimate[keep]),
                                  int(keep.sum())))
        rows.append(MetricRow(variant, subset, "mae", float(np.abs(estimate - truth).mean()), len(table)))
        if subset == "train":
            rows.append(MetricRow(variant, subset, "kendall_tau", float(tau_b(truth, estimate)[0]), len(table)))
        fitted = mask & data.scored
        residual = data.target[fitted] - prediction[fitted]
        spread = data.target[fitted] - data.target[fitted].mean()
        rows.append(MetricRow(variant, subset, "r2", float(1 - (residual @ residual) / (spread @ spread)),
                              int(fitted.sum())))
    return rows


def generation_counts(model: nn.Module, tokenizer, prompts: Sequence[str], sampling: Sampling, seed: int,
                      desc: str = "sample") -> Counter[str]:
    """How often a model writes each word when it completes `prompts` (figure 4's x axis)."""
    completions = sample_completions(model, tokenizer, prompts, seed=seed, desc=desc, **sampling.draws())
    return word_counts(completions.texts)


def word_counts(texts: Iterable[str]) -> Counter[str]:
    """How often each lower-cased spaCy token occurs in `texts` (generation frequency, figure 4)."""
    counts: Counter[str] = Counter()
    for tokens in word_tokens(texts):
        counts.update(tokens)
    return counts


def lexicon_comparison(values: pd.DataFrame, words: pd.DataFrame, tuned_counts: Counter[str],
                       base_counts: Counter[str]) -> pd.DataFrame:
    """One row per word of the triples: the reconstructed lexicon (tables 2 and 9, figure 4). Each word's
    probe value is its cross-fitted value in the tuned model (`word_values`: read by a probe never fit
    on it), so training and test words alike are out of sample; with how often each model writes it."""
    table = values[values["model"] == "tuned"].rename(columns={"value": "probe_value", "n_examples": "n_examples"})
    table = table[["word", "lexicon_value", "probe_value", "n_examples"]].merge(
        words[["word", "split", "polarity", "role"]], on="word", how="left")
    table["abs_error"] = (table["probe_value"] - table["lexicon_value"]).abs()
    table["generation_count"] = [tuned_counts.get(w, 0) for w in table["word"]]
    table["base_generation_count"] = [base_counts.get(w, 0) for w in table["word"]]
    return table[["word", "split", "polarity", "role", "lexicon_value", "probe_value", "abs_error", "n_examples",
                  "generation_count", "base_generation_count"]].sort_values("lexicon_value", ignore_index=True)


def headline(metrics: pd.DataFrame) -> dict[str, float]:
    """'<variant>_<metric>[_within]' -> value (and '_p' its p-value) of the test rows of `probe_metrics`:
    Kendall tau pooled and within polarity, or accuracy (kept in the manifest)."""
    rows = metrics[metrics["subset"].isin(["test", "test_within"]) & metrics["metric"].isin(["kendall_tau", "accuracy"])]
    values = {}
    for r in rows.itertuples():
        key = f"{r.variant}_{r.metric}" + ("_within" if r.subset == "test_within" else "")
        values[key] = float(r.value)
        if r.test is not None and not pd.isna(r.test):
            values[f"{key}_p"] = float(r.p_value)
    return values


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
