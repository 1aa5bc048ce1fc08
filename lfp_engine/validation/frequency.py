"""Feature frequency (paper 4.2, table 7): do the features judged relevant fire where the probe
predicts a strong implicit reward, more than features like them?

The paper counts, among held-out tokens where the probe predicts an implicit reward above a
threshold (3 in the paper), how often the relevant features fire, against the average feature.
A feature that fires often fires often on any subset of tokens, and a dead one never does, so a
raw firing rate mostly measures density. Here each feature's rate on the strong tokens is divided
by its rate on all held-out tokens: its *enrichment* (1 when the strong tokens are no different
for it). The relevant features' enrichment is compared with that of shared, non-relevant
features matched to them in density (`matching.py`), with a one-sided Mann-Whitney U test over
features and a bootstrap interval (features resampled within each group) for the ratio of the
two groups' mean enrichment. The paper's firing rate on strong tokens stays beside it.

The strong tokens are chosen by the probe, a linear function of these same codes, so a feature
with a large probe weight is enriched by construction: the comparison says which features the
probe leans on, not that they carry the reward independently of it.
The probe is applied to the stored held-out activations through the SAEs, no forward pass.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd
import torch
from scipy import stats

from lfp_engine.probe.reader import ProbeReader
from lfp_engine.sae.activations import ActivationSet
from lfp_engine.sae.keys import DictionaryKey, FeatureKey
from lfp_engine.statistics import percentile_interval, resampled_means

EVAL_BATCH_ROWS = 4096
COLUMNS = ["group", "compared_with", "n_features", "n_live", "n_inputs", "threshold", "firing_rate", "density",
           "enrichment", "ci_low", "ci_high", "test", "statistic", "p_value", "note"]
NO_STRONG = "no held-out token scored above the threshold: no firing rate on strong tokens"
NO_RELEVANT = "no feature of the dictionaries the probe reads was judged relevant to the task: no comparison"
NO_LIVE = "the relevant features never fire on the held-out tokens: no enrichment, no comparison"
NO_CONTROL = "no live shared non-relevant feature was left to match the relevant ones: no comparison"


class FiringCounter:
    """Counts, chunk by chunk, how often each feature fires on all inputs and on the strong ones:
    held-out activations of a hub model are too many to hold as codes all at once."""

    def __init__(self) -> None:
        self.strong: dict[DictionaryKey, np.ndarray] = {}
        self.all: dict[DictionaryKey, np.ndarray] = {}
        self.n_inputs = 0
        self.n_strong = 0

    def add(self, codes: Mapping[DictionaryKey, np.ndarray], strong: np.ndarray) -> None:
        self.n_inputs += len(strong)
        self.n_strong += int(strong.sum())
        for key, z in codes.items():
            fired = z > 0
            self.strong[key] = self.strong.get(key, 0) + fired[strong].sum(axis=0)
            self.all[key] = self.all.get(key, 0) + fired.sum(axis=0)

    def densities(self) -> dict[DictionaryKey, np.ndarray]:
        """Each feature's firing rate on all held-out inputs, per dictionary."""
        return {key: counts / max(self.n_inputs, 1) for key, counts in self.all.items()}

    def rates(self) -> pd.DataFrame:
        """layer, dict_size, feature, firing_rate (share of the strong inputs where the feature is > 0;
        NaN when there are none), density (share of all inputs), enrichment (firing_rate / density;
        NaN for a feature that never fires)."""
        densities = self.densities()
        frames = []
        for (layer, size), counts in sorted(self.strong.items()):
            rate = counts / self.n_strong if self.n_strong else np.full(len(counts), np.nan)
            density = densities[DictionaryKey(layer, size)]
            with np.errstate(divide="ignore", invalid="ignore"):
                enrichment = np.where(density > 0, rate / density, np.nan)
            frames.append(pd.DataFrame({"layer": layer, "dict_size": size, "feature": np.arange(len(counts)),
                                        "firing_rate": rate, "density": density, "enrichment": enrichment}))
        return pd.concat(frames, ignore_index=True)


def _notes(n_strong: int, n_relevant: int, n_relevant_live: int, n_control: int) -> dict[str, str | None]:
    """Why a row of `feature_frequency` holds no figure, per group (None: nothing missing)."""
    missing = NO_STRONG if not n_strong else NO_RELEVANT if not n_relevant else NO_LIVE if not n_relevant_live else None
    control = missing or (None if n_control else NO_CONTROL)
    return {"relevant": missing, "matched_shared": control, "all": NO_STRONG if not n_strong else None,
            "test": control}


def _group_row(group: str, frame: pd.DataFrame, n_bootstrap: int, rng: np.random.Generator) -> dict:
    """A group's mean firing rate, density and enrichment (over its live features, with an interval)."""
    enrichment = frame["enrichment"].dropna().to_numpy(dtype=np.float64)
    interval = percentile_interval(resampled_means(enrichment, n_bootstrap, rng)) if len(enrichment) else (np.nan,) * 2
    nan = float("nan")
    return {"group": group, "compared_with": None, "n_features": len(frame), "n_live": int((frame["density"] > 0).sum()),
            "firing_rate": float(frame["firing_rate"].mean()) if len(frame) else nan,
            "density": float(frame["density"].mean()) if len(frame) else nan,
            "enrichment": float(enrichment.mean()) if len(enrichment) else nan,
            "ci_low": interval[0], "ci_high": interval[1], "test": None, "statistic": nan, "p_value": nan}


def feature_frequency(rates: pd.DataFrame, relevant: Collection[FeatureKey], controls: Collection[FeatureKey],
                      threshold: float, n_strong: int, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """`feature_frequency` from `FiringCounter.rates`: rows 'relevant', 'matched_shared' (the
    density-matched controls) and 'all' (every feature of the probe's dictionaries, the paper's
    average feature), then the test of 'relevant' against 'matched_shared': enrichment = the ratio
    of the two groups' mean enrichment, its bootstrap interval, a one-sided Mann-Whitney U test
    (relevant > matched). A row without figures says why in `note`."""
    index = pd.MultiIndex.from_frame(rates[["layer", "dict_size", "feature"]].astype("int64"))
    rng = np.random.default_rng(seed)
    groups = {"relevant": rates[index.isin([(k.layer, k.dict_size, k.feature) for k in relevant])],
              "matched_shared": rates[index.isin([(k.layer, k.dict_size, k.feature) for k in controls])],
              "all": rates}
    rows = [_group_row(name, frame, n_bootstrap, rng) for name, frame in groups.items()]
    a, b = (groups[g]["enrichment"].dropna().to_numpy(dtype=np.float64) for g in ("relevant", "matched_shared"))
    notes = _notes(n_strong, len(groups["relevant"]), len(a), len(b))
    test = {**rows[0], "compared_with": "matched_shared", "enrichment": float("nan"), "ci_low": float("nan"),
            "ci_high": float("nan"), "test": "Mann-Whitney U on enrichment, relevant > matched_shared"}
    if notes["test"] is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            test["enrichment"] = float(a.mean() / b.mean())
            test["ci_low"], test["ci_high"] = percentile_interval(resampled_means(a, n_bootstrap, rng)
                                                                  / resampled_means(b, n_bootstrap, rng))
        result = stats.mannwhitneyu(a, b, alternative="greater")
        test["statistic"], test["p_value"] = float(result.statistic), float(result.pvalue)
    for row in rows:
        row["note"] = notes[row["group"]]
    test["note"] = notes["test"]
    frame = pd.DataFrame(rows + [test]).assign(n_inputs=n_strong, threshold=threshold)
    return frame[COLUMNS].astype({"compared_with": "string", "test": "string", "note": "string"})


def count_firing(evaluation: ActivationSet, reader: ProbeReader, threshold: float,
                 device: torch.device) -> tuple[FiringCounter, np.ndarray]:
    """Stream the held-out activations: the probe's value on every token, and how often each of its
    features fires on all tokens and on the tokens it scores above `threshold`."""
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
