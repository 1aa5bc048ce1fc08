"""Ablation (paper 4.2, table 6): does switching off the features judged relevant lower the reward?

The paper's check: generate completions with the relevant features zero-ablated
(`interventions.py`) and compare their reward with the unablated model's on the same prompts
under the same seed. The paper stops there; a reward drop could come from ablating *any*
features that fire about as often, so the control ablates random features matched in density to
the relevant ones (`matching.py`: for each relevant feature, one of the live non-relevant features
of its dictionary nearest to it in density), in several independent draws. Three questions, each
a paired test over the same prompts:

- relevant vs none (one-sided: ablating what carries the reward should lower it);
- random vs none (two-sided; the draws' rewards averaged per prompt);
- relevant vs random (one-sided), the test that says whether the *relevant* features matter more
  than features like them; and, because a paired t-test over prompts takes the random sets as
  given, the rank of the relevant set's mean reward among the draws' (a Monte Carlo p-value,
  (1 + draws at or below it) / (1 + draws)), which counts the variation from set to set.

The dashboard's ablation and steering lab draws its completions through the same function
(`intervened_completions`), so what it shows is the stage's method, request by request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from torch import nn

from lfp_engine.models.generation import Sampling, sample_completions
from lfp_engine.diffing.paired_forward import PairedModels
from lfp_engine.sae.autoencoder import SparseAutoencoder
from lfp_engine.sae.keys import DictionaryKey, FeatureKey
from lfp_engine.run.distributed import SINGLE, Ranks
from lfp_engine.statistics import PairedComparison, paired_comparison
from lfp_engine.tuning.reward import RewardFunction, scored_texts
from lfp_engine.validation.interventions import NO_INTERVENTION, Intervention, intervening, intervention_hooks
from lfp_engine.validation.matching import Pools, matched_draw, unmatched

NO_RELEVANT = ("no feature of the dictionaries the probe reads was judged relevant to the task: nothing to "
               "ablate, so there is no comparison")


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
    return {key: sorted(features) for key, features in relevant.items()}


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
        out = sample_completions(model, tokenizer, prompts, seed=seed, desc=desc, ranks=ranks, **sampling.draws())
    return ScoredCompletions(out.texts, reward(scored_texts(prompts, out.texts, sampling.score_prefix)))


def relevant_intervention(relevant: Mapping[DictionaryKey, Sequence[int]]) -> Intervention:
    return Intervention(ablate={k: tuple(sorted(v)) for k, v in relevant.items() if len(v)})


@dataclass(frozen=True)
class AblationDesign:
    """What the check switches off: the relevant features, and the density-matched random draws."""

    relevant: Intervention
    draws: tuple[Intervention, ...]
    """One intervention per random draw (none when nothing is relevant or nothing could be matched)."""
    density: Mapping[DictionaryKey, np.ndarray]
    """Each feature's firing rate on the held-out tokens, per dictionary (the matching's density)."""
    note: str | None = None
    """Why a comparison is missing or weaker than asked for; None when all is as designed."""

    def mean_density(self, interventions: Sequence[Intervention]) -> float:
        values = [self.density[key][f] for i in interventions for key, fs in i.ablate.items() for f in fs]
        return float(np.mean(values)) if values else float("nan")


def ablation_design(relevant: Mapping[DictionaryKey, Sequence[int]], pools: Pools,
                    density: Mapping[DictionaryKey, np.ndarray], n_draws: int,
                    rng: np.random.Generator) -> AblationDesign:
    """The relevant intervention and `n_draws` random ones from the density-matched `pools`."""
    chosen = relevant_intervention(relevant)
    if chosen.empty:
        return AblationDesign(chosen, (), density, NO_RELEVANT)
    draws = tuple(Intervention(ablate=matched_draw(pools, rng)) for _ in range(n_draws))
    missing = unmatched(pools)
    n_relevant = sum(len(v) for v in chosen.ablate.values())
    note = None
    if missing == n_relevant:
        draws, note = (), "no live non-relevant feature was left to match any relevant feature: no random control"
    elif missing:
        note = (f"{missing} of {n_relevant} relevant features had no live non-relevant feature of their dictionary "
                "left to match: each random draw ablates fewer features than the relevant set")
    return AblationDesign(chosen, draws, density, note)


@dataclass
class ConditionRewards:
    """Per-prompt rewards of each condition, prompts in the same order."""

    none: np.ndarray
    relevant: np.ndarray | None = None
    draws: list[np.ndarray] = field(default_factory=list)

    @property
    def random(self) -> np.ndarray | None:
        """The random draws' rewards averaged per prompt."""
        return np.mean(self.draws, axis=0) if self.draws else None


def draw_rank(relevant_mean: float, draw_means: Sequence[float]) -> tuple[int, float]:
    """How many random draws score at or below the relevant set, and the one-sided Monte Carlo
    p-value (1 + that count) / (1 + draws): small when ablating the relevant features costs more
    reward than ablating any matched random set."""
    at_or_below = int(np.sum(np.asarray(draw_means) <= relevant_mean))
    return at_or_below, (1 + at_or_below) / (1 + len(draw_means))


def _labels(interventions: Sequence[Intervention]) -> list[str]:
    return [k.label for k in sorted({FeatureKey("tuned", layer, size, f)
                                     for i in interventions for (layer, size), fs in i.ablate.items() for f in fs})]


def _row(condition: str, compared_with: str | None, interventions: Sequence[Intervention], design: AblationDesign,
         values: np.ndarray | None, comparison: PairedComparison | None, note: str | None = None) -> dict:
    n_features = len(_labels(interventions[:1])) if interventions else 0
    nan = float("nan")
    return {"condition": condition, "compared_with": compared_with, "n_features": n_features,
            "features": _labels(interventions), "mean_density": design.mean_density(interventions),
            "n_draws": len(interventions) if condition == "random" else int(values is not None),
            "n_prompts": len(values) if values is not None else 0,
            "mean_reward": float(np.mean(values)) if values is not None else nan,
            "std": float(np.std(values, ddof=1)) if values is not None and len(values) > 1 else nan,
            "mean_difference": comparison.mean_difference if comparison else (0.0 if condition == "none" else nan),
            "ci_low": comparison.ci_low if comparison else nan, "ci_high": comparison.ci_high if comparison else nan,
            "test": f"{comparison.test}, {comparison.alternative}" if comparison else None,
            "statistic": comparison.statistic if comparison else nan,
            "p_value": comparison.p_value if comparison else nan, "note": note}


def ablation_table(rewards: ConditionRewards, design: AblationDesign, seed: int) -> pd.DataFrame:
    """`ablation_results`: nothing ablated; relevant and random each against none; relevant against
    random, paired over prompts and as a rank among the draws. Missing comparisons keep their row,
    with NaN figures and a note that says why."""
    rows = [_row("none", None, [NO_INTERVENTION], design, rewards.none, None)]
    relevant, random = rewards.relevant, rewards.random
    rows.append(_row("relevant", "none", [design.relevant], design, relevant, None if relevant is None else
                     paired_comparison(rewards.none, relevant, "relevant vs none", alternative="less", seed=seed),
                     design.note if relevant is None else None))
    rows.append(_row("random", "none", design.draws, design, random, None if random is None else
                     paired_comparison(rewards.none, random, "random vs none", alternative="two-sided", seed=seed),
                     design.note))
    versus = None if relevant is None or random is None else paired_comparison(
        random, relevant, "relevant vs random", alternative="less", seed=seed)
    rows.append(_row("relevant", "random", [design.relevant], design, relevant, versus, design.note))
    rank = _row("relevant", "random draws", [design.relevant], design, relevant, None, design.note)
    if relevant is not None and rewards.draws:
        draw_means = [float(np.mean(d)) for d in rewards.draws]
        count, p = draw_rank(float(np.mean(relevant)), draw_means)
        rank |= {"mean_difference": float(np.mean(relevant) - np.mean(draw_means)), "statistic": float(count),
                 "p_value": p, "test": f"rank among {len(draw_means)} matched draws, less"}
    return pd.DataFrame(rows + [rank]).astype({"compared_with": "string", "test": "string", "note": "string"})


def draw_table(rewards: ConditionRewards, design: AblationDesign) -> pd.DataFrame:
    """`ablation_draws`: each random draw's features, their mean density, and its mean reward
    against nothing ablated (typed even when there are no draws)."""
    rows = [{"draw": i, "n_features": len(_labels([d])), "features": _labels([d]), "mean_density": design.mean_density([d]),
             "mean_reward": float(np.mean(r)), "mean_difference": float(np.mean(r - rewards.none))}
            for i, (d, r) in enumerate(zip(design.draws, rewards.draws, strict=True))]
    columns = ["draw", "n_features", "features", "mean_density", "mean_reward", "mean_difference"]
    return pd.DataFrame(rows, columns=columns).astype({"draw": "int64", "n_features": "int64"})


@dataclass
class AblationResults:
    table: pd.DataFrame
    """`ablation_results` (`ablation_table`)."""
    draws: pd.DataFrame
    """`ablation_draws` (`draw_table`)."""
    samples: pd.DataFrame
    """`ablation_samples`: the first completions of each condition (its first draw), with rewards."""


def ablation_conditions(model: nn.Module, tokenizer, prompts: Sequence[str], design: AblationDesign,
                        saes: Mapping[DictionaryKey, SparseAutoencoder], reward: RewardFunction, sampling: Sampling,
                        seed: int, n_samples_stored: int, ranks: Ranks = SINGLE) -> AblationResults:
    """Completions of `prompts` with nothing ablated, the relevant features ablated, and each
    random draw ablated, all under `seed` (conditions with nothing to ablate are not generated);
    with several processes (`ranks`), generated by all of them, the results on each."""
    runs = [("none", NO_INTERVENTION)]
    runs += [("relevant", design.relevant)] if not design.relevant.empty else []
    runs += [("random", d) for d in design.draws]
    rewards: ConditionRewards | None = None
    samples = []
    with intervention_hooks(model, saes):
        for condition, intervention in runs:
            out = intervened_completions(model, tokenizer, prompts, intervention, saes, reward, sampling, seed,
                                         f"generate ({condition} ablated)", ranks=ranks)
            if rewards is None:
                rewards = ConditionRewards(out.rewards)
            elif condition == "relevant":
                rewards.relevant = out.rewards
            else:
                rewards.draws.append(out.rewards)
            if condition != "random" or len(rewards.draws) == 1:
                samples.append(pd.DataFrame({"condition": condition, "prompt": prompts[:n_samples_stored],
                                             "completion": out.texts[:n_samples_stored],
                                             "reward": out.rewards[:n_samples_stored]}))
    return AblationResults(ablation_table(rewards, design, seed), draw_table(rewards, design),
                           pd.concat(samples, ignore_index=True))
