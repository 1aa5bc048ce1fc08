"""Ablation (paper 4.2, table 6): does switching off the features judged relevant lower the reward?

The paper's check: generate completions with the relevant features zero-ablated
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
from torch import nn

from lfp_engine.models.generation import Sampling, sample_completions
from lfp_engine.run.distributed import SINGLE, Ranks
from lfp_engine.validation.interventions import NO_INTERVENTION, Intervention, intervening, intervention_hooks
from lfp_engine.validation.paired_forward import PairedModels
from lfp_engine.tuning.reward import RewardFunction, scored_texts
from lfp_engine.statistics import PairedComparison, paired_comparison
from lfp_engine.sae.autoencoder import SparseAutoencoder
from lfp_engine.sae.keys import DictionaryKey, FeatureKey


def relevant_features(explanations: pd.DataFrame, probed: Iterable[DictionaryKey]) -> dict[DictionaryKey, list[int]]:
    """The features labelled relevant to the tuning task, per dictionary, from `feature_explanations`
    rows of one model (a missing label counts as not relevant), in the dictionaries the probe reads
    only: a feature and its twin in the layer's other dictionary write nearly the same direction, so
    ablating both would remove it twice. The paper's relevant features are the probe's too."""
    keep = set(probed)
    relevant: dict[DictionaryKey, list[int]] = {}
    for r in explanations[explanations["relevance"].fillna(False).astype(bool)].itertuples():
        key = DictionaryKey(int(r.layer), int(r.dict_size))
        if key in keep:
            relevant.setdefault(key, []).append(int(r.feature))
    return relevant


@dataclass
class ScoredCompletions:
    texts: list[str]
    rewards: np.ndarray


def intervened_completions(model: nn.Module, tokenizer, prompts: Sequence[str], intervention: Intervention,
                           saes: Mapping[DictionaryKey, SparseAutoencoder], reward: RewardFunction, sampling: Sampling,
                           seed: int, desc: str = "generate", paired: PairedModels | None = None,
                           ranks: Ranks = SINGLE) -> ScoredCompletions:
    """One completion per prompt under `intervention` (the model carries `intervention_hooks`),
    scored by the task's reward. Under one seed every intervention draws the same noise, so the
    rewards of two interventions pair prompt by prompt, and no intervention is the model itself.
    `paired`: the base model and crosscoders, for interventions on crosscoder latents. With several
    processes (`ranks`) the generation batches are dealt out (`sample_completions`)."""
    with intervening(intervention, saes, paired):
        out = sample_completions(model, tokenizer, prompts, max_new_tokens=sampling.max_new_tokens,
                                 min_new_tokens=sampling.min_new_tokens, temperature=sampling.temperature,
                                 batch_size=sampling.batch_size, seed=seed, max_length=sampling.max_length,
                                 desc=desc, ranks=ranks)
    return ScoredCompletions(out.texts, reward(scored_texts(prompts, out.texts, sampling.score_prefix)))


def relevant_intervention(relevant: Mapping[DictionaryKey, list[int]]) -> Intervention:
    return Intervention(ablate={k: tuple(sorted(v)) for k, v in relevant.items() if v})


def random_intervention(relevant: Mapping[DictionaryKey, list[int]], sizes: Mapping[DictionaryKey, int],
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
        features = [FeatureKey("tuned", layer, size, f).label
                    for (layer, size), fs in interventions[condition].ablate.items() for f in fs]
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


@dataclass
class AblationResults:
    table: pd.DataFrame
    """`ablation_results`: one row per condition, each compared with 'none' (`ablation_table`)."""
    samples: pd.DataFrame
    """`ablation_samples`: the first completions of each condition (its first draw), with rewards."""


def ablation_conditions(model: nn.Module, tokenizer, prompts: Sequence[str], relevant: Mapping[DictionaryKey, list[int]],
                        saes: Mapping[DictionaryKey, SparseAutoencoder], reward: RewardFunction, sampling: Sampling,
                        seed: int, n_random_draws: int, rng: np.random.Generator,
                        n_samples_stored: int, ranks: Ranks = SINGLE) -> AblationResults:
    """Completions of `prompts` with nothing ablated, the relevant features ablated, and as many
    random features ablated (`n_random_draws` draws, rewards averaged per prompt), all under `seed`;
    with several processes (`ranks`), generated by all of them, the results on each."""
    sizes = {key: sae.d_sae for key, sae in saes.items()}
    conditions: dict[str, list[Intervention]] = {
        "none": [NO_INTERVENTION], "relevant": [relevant_intervention(relevant)],
        "random": [random_intervention(relevant, sizes, rng) for _ in range(n_random_draws)],
    }
    rewards, samples = {}, []
    with intervention_hooks(model, saes):
        for condition, draws in conditions.items():
            per_draw = []
            for i, intervention in enumerate(draws):
                out = intervened_completions(model, tokenizer, prompts, intervention, saes, reward, sampling, seed,
                                             f"generate ({condition} ablated)", ranks=ranks)
                per_draw.append(out.rewards)
                if i == 0:
                    samples.append(pd.DataFrame({"condition": condition, "prompt": prompts[:n_samples_stored],
                                                 "completion": out.texts[:n_samples_stored],
                                                 "reward": out.rewards[:n_samples_stored]}))
            rewards[condition] = np.mean(per_draw, axis=0)
    shown = {k: d[0] for k, d in conditions.items()}
    return AblationResults(ablation_table(rewards, shown, seed), pd.concat(samples, ignore_index=True))
