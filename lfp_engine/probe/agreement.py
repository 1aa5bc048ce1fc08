"""The probe's headline measures on the test words, against their controls (paper 4.1, tables 4, 10).

For each variant (the probe and its baselines) on the test words: Kendall's tau pooled, per
polarity and within polarity (`kendall.py`), each with a percentile bootstrap interval over words
(resampled within polarity) and, for readouts of a model's codes, a p-value against that model's
permutation null (`nulls.py`). Then the question the paper leaves open, *did tuning teach the
model this?*, as a paired difference: the probe on the tuned model minus the same probe on the
base model, on the same words, computed on the same bootstrap resamples, with the two-sided test
that its interval inverts. Preference tasks get the same difference for held-out accuracy,
resampling texts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lfp_engine.probe.kendall import SUBSETS, word_taus
from lfp_engine.probe.measures import MetricRow
from lfp_engine.probe.nulls import NullDistribution
from lfp_engine.probe.words import WordSet
from lfp_engine.statistics import percentile_interval

DIFFERENCE = "tuned_minus_base"
"""The variant name of the paired differences."""
PERMUTATION_TEST = "permutation"
BOOTSTRAP_TEST = "paired_bootstrap"


@dataclass(frozen=True)
class Agreement:
    """One variant's word-level measures on the test words: observed, and on each bootstrap resample."""

    variant: str
    observed: Mapping[str, float]
    resampled: Mapping[str, np.ndarray]
    null: NullDistribution | None
    n_words: Mapping[str, int]


def measure_agreement(variant: str, words: WordSet, values: np.ndarray, resamples: np.ndarray,
                      null: NullDistribution | None, random_ties: bool = False) -> Agreement:
    """`values`: the variant's value of each of `words`; `resamples` [k, words] from
    `words.stratified_resamples`, shared by every variant so that differences are paired."""
    observed = {m: float(t[0]) for m, t in word_taus(words.truth, values, words.positive, random_ties).items()}
    resampled = word_taus(words.truth[resamples], values[resamples], words.positive, random_ties, resamples)
    n_positive = int(words.positive.sum())
    counts = {"pooled": len(words.words), "within": len(words.words), "positive": n_positive,
              "negative": len(words.words) - n_positive}
    return Agreement(variant, observed, resampled, null, counts)


def agreement_rows(agreement: Agreement) -> list[MetricRow]:
    """Kendall-tau rows of one variant; p-values only where the variant reads codes with a null."""
    rows = []
    for measure, subset in SUBSETS.items():
        value = agreement.observed[measure]
        if not np.isfinite(value):
            continue
        low, high = percentile_interval(agreement.resampled[measure])
        null = agreement.null
        rows.append(MetricRow(
            variant=agreement.variant, subset=subset, metric="kendall_tau", value=value, n=agreement.n_words[measure],
            ci_low=low, ci_high=high, p_value=null.p_value(measure, value) if null else float("nan"),
            test=PERMUTATION_TEST if null else None, null_mean=null.mean(measure) if null else float("nan"),
            null_q95=null.upper(measure) if null else float("nan")))
    return rows


def bootstrap_p(differences: np.ndarray) -> float:
    """Two-sided p of a difference of 0, from its bootstrap distribution: twice the smaller tail,
    each tail counted with the observed-like resample included ((1 + hits) / (1 + k))."""
    finite = differences[np.isfinite(differences)]
    if len(finite) == 0:
        return float("nan")
    tails = [(1 + np.sum(finite <= 0)) / (1 + len(finite)), (1 + np.sum(finite >= 0)) / (1 + len(finite))]
    return float(min(1.0, 2 * min(tails)))


def difference_rows(tuned: Agreement, base: Agreement) -> list[MetricRow]:
    """`tuned_minus_base` rows: tuned tau minus base tau per measure, paired over the same resamples."""
    rows = []
    for measure, subset in SUBSETS.items():
        value = tuned.observed[measure] - base.observed[measure]
        if not np.isfinite(value):
            continue
        differences = tuned.resampled[measure] - base.resampled[measure]
        low, high = percentile_interval(differences)
        rows.append(MetricRow(variant=DIFFERENCE, subset=subset, metric="kendall_tau", value=value,
                              n=tuned.n_words[measure], ci_low=low, ci_high=high, p_value=bootstrap_p(differences),
                              test=BOOTSTRAP_TEST))
    return rows


def accuracy_difference_row(tuned_correct: np.ndarray, base_correct: np.ndarray, text_id: np.ndarray,
                            n_resamples: int, rng: np.random.Generator) -> MetricRow:
    """Preference tasks: tuned minus base held-out accuracy, texts (a rewrite pair) resampled together."""
    texts, index = np.unique(text_id, return_inverse=True)
    counts = np.bincount(index).astype(np.float64)
    hits = {name: np.bincount(index, weights=np.asarray(correct, np.float64))
            for name, correct in (("tuned", tuned_correct), ("base", base_correct))}
    picks = rng.integers(0, len(texts), size=(n_resamples, len(texts)))
    totals = counts[picks].sum(axis=1)
    differences = (hits["tuned"][picks].sum(axis=1) - hits["base"][picks].sum(axis=1)) / totals
    low, high = percentile_interval(differences)
    value = (hits["tuned"].sum() - hits["base"].sum()) / counts.sum()
    return MetricRow(variant=DIFFERENCE, subset="test", metric="accuracy", value=float(value), n=int(counts.sum()),
                     ci_low=low, ci_high=high, p_value=bootstrap_p(differences), test=BOOTSTRAP_TEST)
