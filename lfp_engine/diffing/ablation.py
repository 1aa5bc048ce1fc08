"""Does switching off a crosscoder latent in the tuned model change the reward? (model diffing)

The validate stage's ablation (paper 4.2, table 6), latent by latent: completions of held-out
openings by the tuned model with one latent's contribution removed at its layer (its code reads the
base model too, which runs alongside: `paired_forward.py`), against the unmodified model on the same
openings with the same random draws (`validation.ablation.intervened_completions`), compared by a paired test.
Removing *anything* that fires often may move the reward, so each latent is set beside a control:
the live latent of the same layer, neither tuned-only nor itself chosen, whose firing density is
closest to its own, ablated the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from torch import nn

from lfp_engine.diffing.inputs import DiffingInputs
from lfp_engine.diffing.paired_forward import PairedModels
from lfp_engine.models.generation import Sampling
from lfp_engine.sae.keys import DictionaryKey
from lfp_engine.statistics import paired_comparison
from lfp_engine.tuning.reward import RewardFunction
from lfp_engine.validation.ablation import intervened_completions
from lfp_engine.validation.interventions import NO_INTERVENTION, Intervention, intervention_hooks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatentAblation:
    """One latent to switch off: which crosscoder, which latent, and why ('top': among the latents most
    tied to the reward, tuned-only ones first; 'control')."""

    key: DictionaryKey
    feature: int
    group: str
    control_for: int | None = None
    """A control's top latent (same crosscoder)."""


def density_matched_controls(latents: pd.DataFrame, chosen: pd.DataFrame) -> list[LatentAblation]:
    """For each chosen latent (layer, dict_size, feature, density), the live latent of its crosscoder,
    neither tuned-only nor chosen, that fires at the closest density (`latents`: every latent, with tag)."""
    controls = []
    taken = set(zip(chosen["layer"], chosen["feature"]))
    free = latents[~latents["tag"].isin(["tuned-only", "dead"]) &
                   ~pd.Series(list(zip(latents["layer"], latents["feature"])), index=latents.index).isin(taken)]
    for row in chosen.itertuples():
        pool = free[free["layer"] == row.layer]
        if pool.empty:
            continue
        nearest = pool.iloc[int(np.argmin(np.abs(pool["density"].to_numpy() - row.density)))]
        controls.append(LatentAblation(DictionaryKey(int(row.layer), int(row.dict_size)), int(nearest["feature"]),
                                       "control", int(row.feature)))
    return controls


def latent_ablations(model: nn.Module, tokenizer, prompts: Sequence[str], paired: PairedModels,
                     ablations: Sequence[LatentAblation], reward: RewardFunction, sampling: Sampling,
                     seed: int) -> pd.DataFrame:
    """`crosscoder_ablation`: the unmodified tuned model ('none'), then each latent ablated alone,
    compared with 'none' prompt by prompt (two-sided: a latent may carry reward or penalty)."""
    rows = []
    with intervention_hooks(model, {}, paired):
        none = intervened_completions(model, tokenizer, prompts, NO_INTERVENTION, {}, reward, sampling, seed,
                                      "generate (nothing ablated)", paired)
        rows.append({"layer": None, "dict_size": None, "feature": None, "group": "none", "control_for": None,
                     "n_prompts": len(prompts),
                     "mean_reward": float(np.mean(none.rewards)), "mean_difference": 0.0, "ci_low": np.nan,
                     "ci_high": np.nan, "test": None, "statistic": np.nan, "p_value": np.nan})
        for ablation in ablations:
            intervention = Intervention(ablate_crosscoder={ablation.key: (ablation.feature,)})
            out = intervened_completions(model, tokenizer, prompts, intervention, {}, reward, sampling, seed,
                                         f"generate (latent {ablation.key.layer}/{ablation.feature} ablated)", paired)
            result = paired_comparison(none.rewards, out.rewards, "reward", alternative="two-sided", seed=seed)
            rows.append({"layer": ablation.key.layer, "dict_size": ablation.key.dict_size, "feature": ablation.feature,
                         "group": ablation.group, "control_for": ablation.control_for, "n_prompts": len(prompts),
                         "mean_reward": float(np.mean(out.rewards)),
                         "mean_difference": result.mean_difference, "ci_low": result.ci_low, "ci_high": result.ci_high,
                         "test": f"{result.test}, {result.alternative}", "statistic": result.statistic,
                         "p_value": result.p_value})
    table = pd.DataFrame(rows)
    for column in ("layer", "dict_size", "feature", "control_for"):
        table[column] = table[column].astype("Int64")
    return table


def ablate_top_latents(inputs: DiffingInputs, latents: pd.DataFrame, prompts: Sequence[str],
                       reward: RewardFunction | None, sampling: Sampling) -> pd.DataFrame | None:
    """`crosscoder_ablation` for the first `crosscoder.n_ablate` latents by top_rank (tuned-only ones
    first), each switched off in the tuned model on the held-out `prompts`, and their density-matched
    controls; None (and a warning) when the task has no reward function or no latent is ranked."""
    top = latents[latents["top_rank"] <= inputs.settings.n_ablate].sort_values("top_rank")
    if reward is None or top.empty:
        log.warning("crosscoder ablation skipped: %s", "the task has no reward function" if reward is None else
                    "no latent to ablate")
        return None
    by_layer = inputs.by_layer
    chosen = [LatentAblation(by_layer[int(r.layer)].key, int(r.feature), "top") for r in top.itertuples()]
    return latent_ablations(inputs.models["tuned"], inputs.tokenizer, prompts, inputs.paired(),
                            chosen + density_matched_controls(latents, top), reward, sampling, inputs.seed)
