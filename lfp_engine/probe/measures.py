"""How far the learned feedback patterns diverge from the feedback: the probe's measures.

From the A(x) of every triple element (`deltas.py`) this module builds the probe's dataset,
fits the probe and its baselines (`probe.py`), and turns predictions into the tables of the
paper's section 4.1: per-word implicit values against the lexicon (tables 2, 9; figure 4),
Kendall's tau overall and per polarity (tables 4, 10), sign agreement (table 5), and for the
preference tasks the held-out accuracy of a logistic probe (table 3) and a PCA of its inputs
(figure 5). Every measure is computed on the test split: words (or texts) whose triples the
probe never saw.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.decomposition import PCA

from lfp_engine.probe.encoding import activation_deltas
from lfp_engine.run.errors import InputError
from lfp_engine.tuning.lexicon import word_tokens
from lfp_engine.probe.linear import (LinearProbe, fit_logistic, fit_regression, kendall_agreement, shuffled_probe, sign_agreement,
                    target_scale, word_values, xavier_probe)

ELEMENTS = ("positive", "neutral", "negative")


@dataclass
class ProbeDataset:
    """Rows = the positive then the negative element of every triple."""

    X: np.ndarray
    target: np.ndarray
    """Scaled activation delta (regression) or class 1/0 (logistic)."""
    split: np.ndarray
    element: np.ndarray
    triple_id: np.ndarray
    word: np.ndarray
    lexicon_value: np.ndarray
    scale: float

    @property
    def train(self) -> np.ndarray:
        return self.split == "train"

    @property
    def test(self) -> np.ndarray:
        return self.split == "test"


def build_dataset(reps: Mapping[str, np.ndarray], triples: pd.DataFrame, reward_max: float) -> ProbeDataset:
    """The probe's data from A(x) of each element; deltas scaled into reward units on the train rows."""
    d_pos, d_neg = activation_deltas(reps["positive"], reps["neutral"], reps["negative"])
    n = len(triples)
    word = triples["kind"].iloc[0] == "word"
    split = np.concatenate([triples["split"].to_numpy()] * 2)
    if word:
        delta = np.concatenate([d_pos, d_neg])
        scale = target_scale(delta[split == "train"], reward_max)
        target = delta * scale
        words = np.concatenate([triples["word_positive"].to_numpy(), triples["word_negative"].to_numpy()])
        values = np.concatenate([triples["value_positive"].to_numpy(dtype=float),
                                 triples["value_negative"].to_numpy(dtype=float)])
    else:
        scale = 1.0
        target = np.concatenate([np.ones(n), np.zeros(n)])
        words = np.full(2 * n, None, dtype=object)
        values = np.full(2 * n, np.nan)
    return ProbeDataset(
        X=np.vstack([reps["positive"], reps["negative"]]), target=target, split=split,
        element=np.array(["positive"] * n + ["negative"] * n),
        triple_id=np.concatenate([triples["triple_id"].to_numpy()] * 2), word=words, lexicon_value=values,
        scale=scale,
    )


def fit(data: ProbeDataset, folds: int) -> LinearProbe:
    """The regression probe (grouped by word) or the logistic probe (grouped by triple)."""
    train = data.train
    if data.word[0] is None:
        return fit_logistic(data.X[train], data.target[train], groups=data.triple_id[train], n_folds=folds)
    return fit_regression(data.X[train], data.target[train], data.word[train], n_folds=folds)


def baselines(data: ProbeDataset, rng: np.random.Generator, folds: int) -> dict[str, LinearProbe]:
    """The paper's untrained Xavier probe, and the probe refit to shuffled targets."""
    train = data.train
    if data.word[0] is None:
        shuffled = fit_logistic(data.X[train], rng.permutation(data.target[train]), groups=data.triple_id[train],
                                n_folds=folds)
    else:
        shuffled = shuffled_probe(data.X[train], data.target[train], data.word[train], rng)
    return {"xavier": xavier_probe(data.X.shape[1], rng), "shuffled": shuffled}


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
    if data.word[0] is None:
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


def word_counts(texts: Iterable[str]) -> Counter[str]:
    """How often each lower-cased spaCy token occurs in `texts` (generation frequency, figure 4)."""
    counts: Counter[str] = Counter()
    for tokens in word_tokens(texts):
        counts.update(tokens)
    return counts


def lexicon_comparison(data: ProbeDataset, prediction: np.ndarray, words: pd.DataFrame, tuned_counts: Counter[str],
                       base_counts: Counter[str]) -> pd.DataFrame:
    """One row per word of the triples: the reconstructed lexicon (tables 2 and 9, figure 4)."""
    table = lexicon_values(data, prediction, np.ones(len(prediction), bool))
    table = table.merge(words[["word", "split", "polarity", "role"]], on="word", how="left")
    table["abs_error"] = (table["probe_value"] - table["lexicon_value"]).abs()
    table["generation_count"] = [tuned_counts.get(w, 0) for w in table["word"]]
    table["base_generation_count"] = [base_counts.get(w, 0) for w in table["word"]]
    return table[["word", "split", "polarity", "role", "lexicon_value", "probe_value", "abs_error", "n_examples",
                  "generation_count", "base_generation_count"]].sort_values("lexicon_value", ignore_index=True)


def pca_frame(data: ProbeDataset, max_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """Two principal components of the probe's inputs (figure 5), on a seeded sample of rows."""
    if len(data.X) < 3:
        raise InputError("too few probe inputs for a PCA")
    keep = np.sort(rng.permutation(len(data.X))[:max_rows])
    pcs = PCA(n_components=2, random_state=0).fit_transform(data.X[keep])
    return pd.DataFrame({"triple_id": data.triple_id[keep], "element": data.element[keep],
                         "split": data.split[keep], "label": data.target[keep] if data.word[0] is None else
                         np.sign(data.target[keep]), "pc1": pcs[:, 0], "pc2": pcs[:, 1]})
