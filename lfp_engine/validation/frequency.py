"""Feature frequency (paper 4.2, table 7): do the features judged relevant fire where the probe
predicts a strong implicit reward?

Among inputs (held-out tokens) where the probe predicts a strong implicit reward (above a
threshold, 3 in the paper), how often do the features judged relevant to the tuning task fire,
against the other features of the dictionaries the probe reads? A one-sided Mann-Whitney U test
asks whether relevant features' firing rates exceed the others'. The probe is applied to the
stored held-out activations through the SAEs, no forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from scipy import stats

from lfp_engine.probe.reader import ProbeReader
from lfp_engine.sae.activations import ActivationSet
from lfp_engine.sae.keys import DictionaryKey, FeatureKey

EVAL_BATCH_ROWS = 4096


class FiringCounter:
    """Counts, chunk by chunk, how often each feature fires on the strong inputs: held-out
    activations of a hub model are too many to hold as codes all at once."""

    def __init__(self) -> None:
        self.counts: dict[DictionaryKey, np.ndarray] = {}
        self.n_inputs = 0
        self.n_strong = 0

    def add(self, codes: Mapping[DictionaryKey, np.ndarray], strong: np.ndarray) -> None:
        self.n_inputs += len(strong)
        self.n_strong += int(strong.sum())
        for key, z in codes.items():
            fired = (z[strong] > 0).sum(axis=0)
            self.counts[key] = self.counts.get(key, 0) + fired

    def rates(self) -> pd.DataFrame:
        """layer, dict_size, feature, firing_rate: share of the strong inputs where the feature is > 0."""
        frames = [pd.DataFrame({"layer": layer, "dict_size": size, "feature": np.arange(len(c)),
                                "firing_rate": c / self.n_strong if self.n_strong else np.full(len(c), np.nan)})
                  for (layer, size), c in sorted(self.counts.items())]
        return pd.concat(frames, ignore_index=True)


def feature_frequency(rates: pd.DataFrame, relevant: set[FeatureKey], threshold: float,
                      n_inputs: int) -> pd.DataFrame:
    """Rows 'relevant', 'other', 'all' with mean firing rates, and the test relevant > other."""
    is_relevant = np.array([FeatureKey("tuned", r.layer, r.dict_size, r.feature) in relevant
                            for r in rates.itertuples()], bool)
    groups = {"relevant": rates["firing_rate"][is_relevant], "other": rates["firing_rate"][~is_relevant],
              "all": rates["firing_rate"]}
    statistic = p_value = float("nan")
    if is_relevant.any() and (~is_relevant).any() and n_inputs > 0:
        result = stats.mannwhitneyu(groups["relevant"], groups["other"], alternative="greater")
        statistic, p_value = float(result.statistic), float(result.pvalue)
    return pd.DataFrame([{"group": name, "n_features": len(values), "n_inputs": n_inputs, "threshold": threshold,
                          "firing_rate": float(values.mean()) if len(values) and n_inputs else float("nan"),
                          "test": "Mann-Whitney U, relevant > other", "statistic": statistic, "p_value": p_value}
                         for name, values in groups.items()])


def count_firing(evaluation: ActivationSet, reader: ProbeReader, threshold: float,
                 device: torch.device) -> tuple[FiringCounter, np.ndarray]:
    """Stream the held-out activations: the probe's value on every token, and how often each of its
    features fires on the tokens it scores above `threshold`."""
    layers = evaluation.layers
    saes = reader.saes
    counter = FiringCounter()
    values = []
    for _, x in evaluation.iter_rows(layers, EVAL_BATCH_ROWS, device):
        codes = {key: sae.encode(x[layers.index(key.layer)]).detach().cpu().numpy() for key, sae in saes.items()}
        predicted = reader.probe.predict(np.concatenate([codes[key] for key in reader.dictionaries], axis=1))
        counter.add(codes, predicted > threshold)
        values.append(predicted)
    return counter, np.concatenate(values)
