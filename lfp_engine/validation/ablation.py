"""Validating the probe against the explanations (paper 4.2, tables 6 and 7).

Feature frequency (table 7): among inputs (held-out tokens) where the probe predicts a strong
implicit reward (above a threshold, 3 in the paper), how often do the features judged relevant
to the tuning task fire, against the average feature? A one-sided Mann-Whitney U test asks
whether relevant features' firing rates exceed the others'.

Ablation (table 6): generate completions with the relevant features zero-ablated
(`interventions.py`) and compare their reward with the unablated model's on the same prompts
under the same seed. The paper stops there; a reward drop could come from ablating *any*
features, so the same number of random features per dictionary is ablated as a control, and
each condition is compared to the unablated model with a paired test. The dashboard's ablation
and steering lab draws its completions through the same function (`intervened_completions`),
so what it shows is the stage's method, request by request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from torch import nn

from lfp_engine.run.config import RunConfig
from lfp_engine.models.generation import sample_completions
from lfp_engine.validation.interventions import Intervention, Key, intervening
from lfp_engine.tuning.reward import RewardFunction, scored_texts
from lfp_engine.statistics import PairedComparison, paired_comparison
from lfp_engine.sae.autoencoder import SparseAutoencoder


class FiringCounter:
    """Counts, chunk by chunk, how often each feature fires on the strong inputs: held-out
    activations of a hub model are too many to hold as codes all at once."""

    def __init__(self) -> None:
        self.counts: dict[Key, np.ndarray] = {}
        self.n_inputs = 0
        self.n_strong = 0

    def add(self, codes: Mapping[Key, np.ndarray], strong: np.ndarray) -> None:
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


def feature_frequency(rates: pd.DataFrame, relevant: set[tuple[int, int, int]], threshold: float,
                      n_inputs: int) -> pd.DataFrame:
    """Rows 'relevant', 'other', 'all' with mean firing rates, and the test relevant > other."""
    is_relevant = np.array([(r.layer, r.dict_size, r.feature) in relevant for r in rates.itertuples()], bool)
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


def relevant_features(explanations: pd.DataFrame, probed: Iterable[Key]) -> dict[Key, list[int]]:
    """The features labelled relevant to the tuning task, per dictionary, from `feature_explanations`
    rows of one model (a missing label counts as not relevant), in the dictionaries the probe reads
    only: a feature and its twin in the layer's other dictionary write nearly the same direction, so
    ablating both would remove it twice. The paper's relevant features are the probe's too."""
    keep = set(probed)
    relevant: dict[Key, list[int]] = {}
    for r in explanations[explanations["relevance"].fillna(False).astype(bool)].itertuples():
        key = (int(r.layer), int(r.dict_size))
        if key in keep:
            relevant.setdefault(key, []).append(int(r.feature))
    return relevant


@dataclass(frozen=True)
class Sampling:
    """How completions are drawn and scored: the run's `evaluation` and `reward` settings."""

    max_new_tokens: int
    min_new_tokens: int
    temperature: float
    batch_size: int
    max_length: int
    score_prefix: bool

    @classmethod
    def of(cls, config: RunConfig) -> Sampling:
        e = config.evaluation
        return cls(e.max_new_tokens, e.min_new_tokens, e.temperature, e.batch_size, config.world.max_length,
                   config.reward.score_prefix)


@dataclass
class ScoredCompletions:
    texts: list[str]
    rewards: np.ndarray


def intervened_completions(model: nn.Module, tokenizer, prompts: Sequence[str], intervention: Intervention,
                           saes: Mapping[Key, SparseAutoencoder], reward: RewardFunction, sampling: Sampling,
                           seed: int, desc: str = "generate") -> ScoredCompletions:
    """One completion per prompt under `intervention` (the model carries `intervention_hooks`),
    scored by the task's reward. Under one seed every intervention draws the same noise, so the
    rewards of two interventions pair prompt by prompt, and no intervention is the model itself."""
    with intervening(intervention, saes):
        out = sample_completions(model, tokenizer, prompts, max_new_tokens=sampling.max_new_tokens,
                                 min_new_tokens=sampling.min_new_tokens, temperature=sampling.temperature,
                                 batch_size=sampling.batch_size, seed=seed, max_length=sampling.max_length,
                                 desc=desc)
    return ScoredCompletions(out.texts, reward(scored_texts(prompts, out.texts, sampling.score_prefix)))


def relevant_intervention(relevant: Mapping[Key, list[int]]) -> Intervention:
    return Intervention(ablate={k: tuple(sorted(v)) for k, v in relevant.items() if v})


def random_intervention(relevant: Mapping[Key, list[int]], sizes: Mapping[Key, int],
                        rng: np.random.Generator) -> Intervention:
    """As many features per dictionary as the relevant set ablates, drawn from the other features."""
    ablate = {}
    for key, features in relevant.items():
        pool = np.setdiff1d(np.arange(sizes[key]), features)
        ablate[key] = tuple(sorted(int(f) for f in rng.choice(pool, size=min(len(features), len(pool)), replace=False)))
    return Intervention(ablate=ablate)


def ablation_table(rewards: Mapping[str, np.ndarray], interventions: Mapping[str, Intervention],
                   seed: int) -> pd.DataFrame:
    """One row per condition; each ablation compared with 'none' on the same prompts.

    Relevant features: one-sided (ablating what carries the reward should lower it). Random
    features: two-sided (no direction is expected)."""
    rows = []
    for condition, values in rewards.items():
        comparison: PairedComparison | None = None
        if condition != "none":
            alternative = "less" if condition == "relevant" else "two-sided"
            comparison = paired_comparison(rewards["none"], values, f"{condition} vs none", alternative=alternative,
                                           seed=seed)
        features = [f"{layer}/{size}/{f}" for (layer, size), fs in interventions[condition].ablate.items() for f in fs]
        rows.append({"condition": condition, "n_features": len(features), "features": features,
                     "n_prompts": len(values), "mean_reward": float(np.mean(values)),
                     "std": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                     "mean_difference": comparison.mean_difference if comparison else 0.0,
                     "ci_low": comparison.ci_low if comparison else float("nan"),
                     "ci_high": comparison.ci_high if comparison else float("nan"),
                     "test": f"{comparison.test}, {comparison.alternative}" if comparison else None,
                     "statistic": comparison.statistic if comparison else float("nan"),
                     "p_value": comparison.p_value if comparison else float("nan")})
    return pd.DataFrame(rows)
