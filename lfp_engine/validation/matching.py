"""Control features matched in density to the relevant ones (a control the paper's section 4.2 lacks).

A feature's effect on the reward (table 6) and how often it fires where the probe expects reward
(table 7) both grow with how often it fires at all: a dead feature ablates nothing and fires
nowhere. So the features the relevant ones are compared with must fire about as often.

The rule, per dictionary. Density is a feature's firing rate on the held-out tokens (the
validation's own tokens), compared on a log scale, floored at half a token's share so that a
relevant feature that never fires is matched to the rarest live ones. Candidates are the live
features (density > 0) of the same dictionary that are not relevant, further restricted by the
caller (feature frequency: shared features only). Each relevant feature, in the order given,
takes the `k` candidates nearest to it in log density (ties: lower index) that no earlier
relevant feature took: k-nearest matching without replacement, so no control stands for two
relevant features. The ablation draws one feature uniformly from each relevant feature's pool per
draw (`matched_draw`); feature frequency compares with the pools' union.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lfp_engine.sae.keys import DictionaryKey, FeatureKey

Pools = dict[DictionaryKey, dict[int, tuple[int, ...]]]
"""Per dictionary, each relevant feature's matched candidates (an empty tuple: none was left)."""


def log_density(density: np.ndarray, n_tokens: int) -> np.ndarray:
    """log(density), floored at half of one token's share (a dead feature sits below every live one)."""
    return np.log(np.maximum(np.asarray(density, dtype=np.float64), 0.5 / max(n_tokens, 1)))


def nearest_pools(log_densities: np.ndarray, targets: Sequence[int], candidates: Sequence[int],
                  k: int) -> dict[int, tuple[int, ...]]:
    """Each target's `k` candidates nearest in log density, none given to two targets (greedy, in
    the targets' order; a stable sort breaks ties towards the lower index)."""
    left = np.array(sorted(set(int(c) for c in candidates) - set(int(t) for t in targets)), dtype=np.int64)
    pools: dict[int, tuple[int, ...]] = {}
    for target in targets:
        distance = np.abs(log_densities[left] - log_densities[int(target)])
        chosen = left[np.argsort(distance, kind="stable")[:k]]
        pools[int(target)] = tuple(sorted(int(c) for c in chosen))
        left = np.setdiff1d(left, chosen)
    return pools


def density_matched_pools(relevant: Mapping[DictionaryKey, Sequence[int]], densities: Mapping[DictionaryKey, np.ndarray],
                          eligible: Mapping[DictionaryKey, np.ndarray], n_tokens: int, k: int) -> Pools:
    """`nearest_pools` in every dictionary with relevant features; the candidates are the live
    features that `eligible` (a boolean mask per dictionary) allows."""
    pools: Pools = {}
    for key, targets in relevant.items():
        if not len(targets):
            continue
        live = np.flatnonzero((densities[key] > 0) & eligible[key])
        pools[key] = nearest_pools(log_density(densities[key], n_tokens), sorted(targets), live, k)
    return pools


def matched_draw(pools: Pools, rng: np.random.Generator) -> dict[DictionaryKey, tuple[int, ...]]:
    """One random control set: a feature drawn uniformly from each relevant feature's pool (pools
    are disjoint, so the set never holds a feature twice); an empty pool contributes nothing."""
    return {key: tuple(sorted(int(rng.choice(pool)) for pool in by_target.values() if pool))
            for key, by_target in pools.items()}


def pooled(pools: Pools) -> dict[DictionaryKey, tuple[int, ...]]:
    """Every matched candidate of each dictionary, as one control group."""
    return {key: tuple(sorted(f for pool in by_target.values() for f in pool)) for key, by_target in pools.items()}


def unmatched(pools: Pools) -> int:
    """Relevant features for which no candidate was left."""
    return sum(1 for by_target in pools.values() for pool in by_target.values() if not pool)


def shared_masks(features: pd.DataFrame, sizes: Mapping[DictionaryKey, int]) -> dict[DictionaryKey, np.ndarray]:
    """Per dictionary, which features are shared (paper 3.4; `features.is_shared` of one model's rows)."""
    masks = {key: np.zeros(size, dtype=bool) for key, size in sizes.items()}
    for r in features[features["is_shared"].fillna(False).astype(bool)].itertuples():
        key = DictionaryKey(int(r.layer), int(r.dict_size))
        if key in masks:
            masks[key][int(r.feature)] = True
    return masks


@dataclass(frozen=True)
class Controls:
    """The validation's density-matched controls (module docstring)."""

    ablation: Pools
    """Ablation: each relevant feature's pool among the live non-relevant features of its dictionary."""
    frequency: frozenset[FeatureKey]
    """Feature frequency: the pooled matches among the live *shared* non-relevant features."""


def validation_controls(relevant: Mapping[DictionaryKey, Sequence[int]], densities: Mapping[DictionaryKey, np.ndarray],
                        shared: Mapping[DictionaryKey, np.ndarray], n_tokens: int, k: int) -> Controls:
    """Both controls, from the same densities and the same rule."""
    everyone = {key: np.ones(len(d), dtype=bool) for key, d in densities.items()}
    frequency = pooled(density_matched_pools(relevant, densities, shared, n_tokens, k))
    return Controls(ablation=density_matched_pools(relevant, densities, everyone, n_tokens, k),
                    frequency=frozenset(FeatureKey("tuned", key.layer, key.dict_size, f)
                                        for key, fs in frequency.items() for f in fs))
