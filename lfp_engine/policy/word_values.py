"""Per-word policy values and how they measure up against the lexicon (docs/method.md, "The policy lens").

A word's policy value is the mean, over the triples that substitute it, of beta [log pi/pi_base
(x_word) - log pi/pi_base (x_neutral)] (`triples.py`), with a 95% percentile bootstrap interval over
those triples. Nothing is fit: the reading is the two models' own probabilities, so the interval
over a word's contexts is the whole of its uncertainty given the models (unlike the probe's, whose
fit adds its own, `lfp_engine.probe.crossfit`). Beside it, the reward's own difference on the same
triples, and the slope between the two over words: the share of the reward the policy absorbed (1 at
the optimum of the KL-regularised objective, 0 where tuning taught nothing).

Measured against the lexicon as the probe is (paper 4.1, tables 4, 5, 10; `lfp_engine.probe.agreement`)
on the held-out words: Kendall's tau pooled, per polarity and within polarity, with bootstrap
intervals over words (resampled within polarity), and sign agreement. The null differs from the
probe's: there is no fit to refit, so the null is the lexicon's values permuted among the held-out
words (within each polarity for the within-polarity measures, across all words for the pooled one):
how often a reading unrelated to the lexicon orders the words this well. The base model's policy
value is 0 by definition, so every reading is already tuned minus base.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import stats

from lfp_engine.probe.agreement import agreement_rows, measure_agreement
from lfp_engine.probe.kendall import word_taus
from lfp_engine.probe.measures import MetricRow
from lfp_engine.probe.nulls import NullDistribution
from lfp_engine.probe.words import WordSet, stratified_resamples
from lfp_engine.run.errors import InputError
from lfp_engine.statistics import mean_and_interval, percentile_interval, proportion

VARIANT = "policy"
"""The `variant` of the policy lens's rows in `policy_metrics` (its columns are `probe_metrics`')."""
LABEL_PERMUTATION = "label_permutation"
BINOMIAL = "binomial"
VALUE_COLUMNS = ["word", "kind", "split", "polarity", "lexicon_value", "policy_value", "ci_low", "ci_high", "n_triples",
                 "reward_difference"]
"""The table `policy_values` (docs/store.md)."""


def policy_value_table(rows: pd.DataFrame, kinds: Mapping[str, str] | None, n_bootstrap: int,
                       rng: np.random.Generator) -> pd.DataFrame:
    """One row per word of `rows` (`triples.ELEMENT_COLUMNS` of word triples): its mean policy value
    with a bootstrap interval over its triples, and the reward's mean difference on the same triples.
    Triples the model's window cut before the word are left out."""
    read = rows[np.isfinite(rows["policy"].to_numpy(dtype=float))]
    if read.empty:
        raise InputError("no triple could be read by the policy lens (every text was cut before its word)")
    out = []
    for word, group in read.groupby("word", sort=True):
        value, low, high = mean_and_interval(group["policy"].to_numpy(), n_bootstrap, rng)
        first = group.iloc[0]
        out.append((word, (kinds or {}).get(word, "ordinary" if kinds else None), first["split"], first["element"],
                    float(first["lexicon_value"]), value, low, high, len(group), float(group["reward"].mean())))
    return pd.DataFrame(out, columns=VALUE_COLUMNS)


def absorbed_share(policy: np.ndarray, reward: np.ndarray) -> float:
    """The least-squares slope through 0 of the words' policy values on the reward's differences: the
    share of the reward the policy absorbed (NaN when the reward never differs)."""
    power = float(reward @ reward)
    return float(policy @ reward) / power if power > 0 else float("nan")


def absorbed_rows(values: pd.DataFrame, n_bootstrap: int, rng: np.random.Generator) -> list[MetricRow]:
    """The absorbed share over all words and over each planted kind, with a bootstrap over words."""
    groups = [("all", values)] + ([(str(k), g) for k, g in values.groupby("kind", sort=True)]
                                  if values["kind"].notna().any() else [])
    rows = []
    for subset, group in groups:
        policy, reward = group["policy_value"].to_numpy(float), group["reward_difference"].to_numpy(float)
        keep = np.isfinite(policy) & np.isfinite(reward)
        policy, reward = policy[keep], reward[keep]
        if len(policy) < 2:
            continue
        picks = rng.integers(0, len(policy), size=(n_bootstrap, len(policy)))
        resampled = np.array([absorbed_share(policy[p], reward[p]) for p in picks])
        low, high = percentile_interval(resampled)
        rows.append(MetricRow(VARIANT, subset, "absorbed_share", absorbed_share(policy, reward), len(policy),
                              ci_low=low, ci_high=high))
    return rows


def label_null(words: WordSet, values: np.ndarray, n_permutations: int, rng: np.random.Generator) -> NullDistribution:
    """Kendall taus of `values` against the lexicon values permuted among `words`: within each polarity
    for the per-polarity and within-polarity measures, across all words for the pooled one."""
    n = len(words.words)
    within = np.tile(np.arange(n), (n_permutations, 1))
    for group in (words.positive, ~words.positive):
        members = np.flatnonzero(group)
        within[:, members] = rng.permuted(np.tile(members, (n_permutations, 1)), axis=1)
    across = rng.permuted(np.tile(np.arange(n), (n_permutations, 1)), axis=1)
    taus = word_taus(words.truth[within], np.broadcast_to(values, (n_permutations, n)), words.positive)
    taus["pooled"] = word_taus(words.truth[across], np.broadcast_to(values, (n_permutations, n)),
                               words.positive)["pooled"]
    return NullDistribution(taus)


def sign_row(subset: str, truth: np.ndarray, values: np.ndarray) -> MetricRow:
    """Sign agreement with its Clopper-Pearson interval and a one-sided binomial test against 50%."""
    hits, n = int(np.sum(np.sign(values) == np.sign(truth))), len(truth)
    share, low, high = proportion(hits, n)
    p = stats.binomtest(hits, n, 0.5, alternative="greater").pvalue if n else float("nan")
    return MetricRow(VARIANT, subset, "sign_agreement", share, n, p_value=float(p), ci_low=low, ci_high=high,
                     test=BINOMIAL)


def spearman_row(subset: str, truth: np.ndarray, values: np.ndarray, n_bootstrap: int,
                 rng: np.random.Generator) -> MetricRow | None:
    """Spearman's rho of the values with the lexicon, with a bootstrap interval over words."""
    if len(truth) < 3:
        return None
    picks = rng.integers(0, len(truth), size=(n_bootstrap, len(truth)))
    resampled = np.array([stats.spearmanr(truth[p], values[p]).statistic for p in picks])
    low, high = percentile_interval(resampled)
    return MetricRow(VARIANT, subset, "spearman", float(stats.spearmanr(truth, values).statistic), len(truth),
                     ci_low=low, ci_high=high)


def held_out_words(values: pd.DataFrame) -> tuple[WordSet, np.ndarray]:
    """The test words as a `WordSet` (sorted, as the probe's) and their policy values."""
    test = values[(values["split"] == "test") & np.isfinite(values["policy_value"].to_numpy(float))]
    test = test.sort_values("word")
    if test.empty:
        raise InputError("the policy lens has no held-out word to be measured on")
    truth = test["lexicon_value"].to_numpy(float)
    eye = np.eye(len(test))
    words = WordSet(words=test["word"].to_numpy(), truth=truth, positive=truth > 0, rows=np.arange(len(test)),
                    members=eye)
    return words, test["policy_value"].to_numpy(float)


def policy_metrics(values: pd.DataFrame, n_bootstrap: int, n_permutations: int, seed: int) -> list[MetricRow]:
    """The policy lens against the lexicon on the held-out words (taus with nulls, sign agreement,
    Spearman; per planted kind where the world has kinds) and the share of the reward absorbed."""
    words, policy = held_out_words(values)
    resamples = stratified_resamples(words.positive, n_bootstrap, np.random.default_rng([seed, 1]))
    null = label_null(words, policy, n_permutations, np.random.default_rng([seed, 2])) if n_permutations else None
    rows = [replace(r, test=LABEL_PERMUTATION) if r.test else r
            for r in agreement_rows(measure_agreement(VARIANT, words, policy, resamples, null))]
    rows.append(sign_row("test", words.truth, policy))
    rng = np.random.default_rng([seed, 3])
    test = values[values["split"] == "test"]
    parts = [("test", test)] + ([(f"test_{k}", g) for k, g in test.groupby("kind", sort=True)]
                                if values["kind"].notna().any() else [])
    for subset, group in parts:
        keep = np.isfinite(group["policy_value"].to_numpy(float))
        row = spearman_row(subset, group["lexicon_value"].to_numpy(float)[keep],
                           group["policy_value"].to_numpy(float)[keep], n_bootstrap, rng)
        rows += [row] if row is not None else []
    return rows + absorbed_rows(values, n_bootstrap, rng)
