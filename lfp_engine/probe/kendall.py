"""Kendall's tau-b between the lexicon and a probe's per-word values, batched (paper 4.1, table 10).

The paper ranks words by the probe's value and correlates that order with the lexicon's (table 4,
all words; table 10, negative words only). Because the probe's target takes its sign from the
triple's element, a readout that knows only each word's polarity already orders every
positive/negative pair correctly, so the pooled tau mostly measures polarity. The agreement on
*magnitudes* is measured within one polarity:

- 'positive', 'negative': tau-b on the words of one polarity (table 10 for the negative ones);
- 'within': one tau-b over the pairs of words of the same polarity only (pairs of different
  polarity excluded): S / sqrt(Tx * Ty), where over those pairs S counts concordant minus
  discordant pairs, Tx the pairs not tied in the lexicon and Ty those not tied in the estimate.
  Without ties it is (concordant - discordant) / pairs, the pair-weighted mean of the two
  per-polarity taus.

Everything is computed for a whole batch of estimates at once (bootstrap resamples, probes refit
to shuffled targets), as tau-b with scipy's tie handling; tests check it against scipy. In a
bootstrap resample, a word drawn twice is not compared with its own copy.
"""

from __future__ import annotations

import numpy as np

from lfp_engine.run.errors import InputError

SUBSETS = {"pooled": "test", "positive": "test_positive", "negative": "test_negative", "within": "test_within"}
"""Each word-level measure and the `probe_metrics` subset it is stored under (test words)."""

_CHUNK_CELLS = 1_000_000
"""Pair-matrix cells computed at once: bounds memory for long batches of many words."""


def pair_taus(truth: np.ndarray, estimate: np.ndarray, pair_sets: dict[str, np.ndarray], random_ties: bool = False,
              ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Kendall's tau-b of each row of `estimate` [k, n] against `truth` ([n] or [k, n]), once over
    each set of word pairs in `pair_sets` (name -> [n, n] booleans). NaN where no pair of a set is
    untied in either.

    `random_ties`: the estimate's ties are broken at random, in expectation: a tied pair counts 0
    in S, as it does anyway, but as untied in Ty. That is the tau a continuous readout gets on
    average when all it knows is the estimate's classes (the polarity-only baseline).
    `ids` [k, n]: which word each position is (bootstrap resamples draw words more than once); a
    word paired with its own copy says nothing about order and is left out, as in the original
    sample, instead of counting as a tie that would shrink the denominator."""
    truth, estimate = np.broadcast_arrays(np.atleast_2d(np.asarray(truth, np.float64)),
                                          np.atleast_2d(np.asarray(estimate, np.float64)))
    if truth.ndim != 2:
        raise InputError(f"Kendall's tau needs [n] or [k, n] arrays, got {truth.shape}")
    n = truth.shape[-1]
    weights = {name: (pairs & ~np.eye(n, dtype=bool)).astype(np.float64) for name, pairs in pair_sets.items()}
    sums = {name: np.empty((3, len(truth))) for name in weights}
    step = max(1, _CHUNK_CELLS // max(1, n * n))
    for start in range(0, len(truth), step):
        t, e = truth[start:start + step], estimate[start:start + step]
        dx = np.sign(t[:, :, None] - t[:, None, :])
        dy = np.sign(e[:, :, None] - e[:, None, :])
        distinct = np.ones_like(dx)
        if ids is not None:
            chunk = ids[start:start + step]
            distinct = (chunk[:, :, None] != chunk[:, None, :]).astype(np.float64)
        parts = (dx * dy * distinct, np.abs(dx) * distinct, distinct if random_ties else np.abs(dy) * distinct)
        for name, weight in weights.items():
            sums[name][:, start:start + step] = [np.einsum("kij,ij->k", part, weight) for part in parts]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {name: np.where(tx * ty > 0, s / np.sqrt(tx * ty), np.nan) for name, (s, tx, ty) in sums.items()}


def tau_b(truth: np.ndarray, estimate: np.ndarray, pairs: np.ndarray | None = None, random_ties: bool = False,
          ids: np.ndarray | None = None) -> np.ndarray:
    """Kendall's tau-b of each row of `estimate` over the pairs `pairs` marks (default: all); see `pair_taus`."""
    n = np.shape(truth)[-1]
    return pair_taus(truth, estimate, {"tau": np.ones((n, n), bool) if pairs is None else pairs}, random_ties,
                     ids)["tau"]


def word_taus(truth: np.ndarray, estimate: np.ndarray, positive: np.ndarray, random_ties: bool = False,
              ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The four measures of `SUBSETS` for each row of `estimate` [k, n]; `positive` [n] marks the
    positive words (lexicon value > 0); `ids` as for `pair_taus`. A polarity with fewer than 3 words
    gives NaN for its own tau."""
    positive = np.asarray(positive, dtype=bool)
    n = len(positive)
    pair_sets = {"pooled": np.ones((n, n), bool), "within": positive[:, None] == positive[None, :],
                 "positive": np.outer(positive, positive), "negative": np.outer(~positive, ~positive)}
    out = pair_taus(truth, estimate, pair_sets, random_ties, ids)
    for name, members in (("positive", positive), ("negative", ~positive)):
        if members.sum() < 3:
            out[name] = np.full_like(out[name], np.nan)
    return out
