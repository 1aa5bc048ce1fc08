"""Stage `validate`: the paper's two checks of the probe against the explanations (tables 6, 7),
each against a density-matched control.

Relevant features are those of the dictionaries the probe reads (the smaller one of each chosen
layer) that the explain stage judged related to the task. Feature frequency
(`lfp_engine.validation.frequency`): how much more often they fire on held-out tokens the probe
scores above the threshold than on all held-out tokens, against shared features matched to them in
density. Ablation (`lfp_engine.validation.ablation`): the reward of completions with them
zero-ablated, against nothing ablated and against density-matched random features
(`lfp_engine.validation.matching` holds the matching rule).
With several processes every one runs the stage and the generation batches are dealt out among them;
the rest is small and repeated in each, and only rank 0's tables reach the store.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from lfp_engine.models.generation import Sampling
from lfp_engine.probe.reader import ProbeReader
from lfp_engine.run.seeding import derive_seed
from lfp_engine.run.tasks import task_spec
from lfp_engine.sae.activations import ActivationSet
from lfp_engine.sae.keys import FeatureKey
from lfp_engine.tuning.reward import build_reward
from lfp_engine.validation.ablation import ablation_conditions, ablation_design, relevant_features
from lfp_engine.validation.frequency import count_firing, feature_frequency
from lfp_engine.validation.matching import shared_masks, validation_controls
from lfp_engine.worlds import PROMPTS, read_world_table

from ..models import load_tokenizer_of, load_tuned
from ..outputs import ValidateOutputs
from ..stage import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def summary(frequency: pd.DataFrame, ablation: pd.DataFrame | None, n_relevant: int, n_inputs: int,
            probe_value_p99: float) -> ValidateOutputs:
    """The manifest's figures: each group's firing rate and enrichment, each test's p-value."""
    groups = frequency[frequency["compared_with"].isna()]
    test = frequency[frequency["compared_with"].notna()].iloc[0]
    comparisons = [] if ablation is None else ablation[ablation["compared_with"].notna()].itertuples()
    return ValidateOutputs(
        n_relevant_features=n_relevant, n_strong_inputs=int(test["n_inputs"]), n_inputs=n_inputs,
        probe_value_p99=probe_value_p99, firing_rates=dict(zip(groups["group"], groups["firing_rate"])),
        enrichment=dict(zip(groups["group"], groups["enrichment"])) | {"relevant_vs_matched": test["enrichment"]},
        frequency_p_value=float(test["p_value"]),
        mean_rewards={} if ablation is None else dict(zip(ablation["condition"], ablation["mean_reward"])),
        p_values={f"{r.condition}_vs_{r.compared_with}".replace(" ", "_"): r.p_value for r in comparisons},
        notes=sorted(set(frequency["note"].dropna()) | (set() if ablation is None else set(ablation["note"].dropna()))))


def run(ctx: StageContext) -> StageResult:
    c, v = ctx.config, ctx.config.validate
    explanations = ctx.store.read("feature_explanations", where="model = ?", params=["tuned"])
    model, tokenizer = load_tuned(ctx), load_tokenizer_of(ctx)
    reader = ProbeReader.load(ctx.paths, "tuned", model, tokenizer, ctx.device)
    relevant = relevant_features(explanations, reader.dictionaries)

    counter, values = count_firing(ActivationSet(ctx.paths.activations / "eval"), reader, v.threshold, ctx.device)
    densities = counter.densities()
    shared = shared_masks(ctx.store.read("features", where="model = ?", params=["tuned"]),
                          {key: len(d) for key, d in densities.items()})
    controls = validation_controls(relevant, densities, shared, counter.n_inputs, v.match_pool)
    keys = {FeatureKey("tuned", layer, size, f) for (layer, size), fs in relevant.items() for f in fs}
    frequency = feature_frequency(counter.rates(), keys, controls.frequency, v.threshold, counter.n_strong,
                                  v.n_bootstrap, derive_seed(ctx.seed, "enrichment"))
    if counter.n_strong < 10:
        log.warning("only %d of %d held-out tokens score above validate.threshold=%g (probe values: 99th percentile "
                    "%.2f); lower the threshold for a meaningful feature-frequency check", counter.n_strong,
                    counter.n_inputs, v.threshold, float(np.percentile(values, 99)))
    tables = {"feature_frequency": frequency}
    ablation = None
    reward = build_reward(task_spec(c.task), c.reward, ctx.device)
    if reward is None:
        log.warning("task %s has no reward function: the ablation check is skipped", c.task)
    else:
        prompts = read_world_table(ctx.paths.world, PROMPTS)
        prompts = prompts.loc[prompts["purpose"] == "eval", "prompt"].head(v.n_prompts).tolist()
        design = ablation_design(relevant, controls.ablation, densities, v.n_random_draws,
                                 np.random.default_rng(derive_seed(ctx.seed, "random features")))
        ablation = ablation_conditions(model, tokenizer, prompts, design, reader.saes, reward, Sampling.of(c),
                                       ctx.seed, v.n_samples_stored, ctx.ranks)
        tables |= {"ablation_results": ablation.table, "ablation_draws": ablation.draws,
                   "ablation_samples": ablation.samples}
    outputs = summary(frequency, None if ablation is None else ablation.table, n_relevant=len(keys),
                      n_inputs=counter.n_inputs, probe_value_p99=float(np.percentile(values, 99)))
    return StageResult(outputs=outputs, tables=tables, inputs={"n_explained": len(explanations)})


STAGE = Stage(
    name="validate",
    run=run,
    sections=("validate",),
    tables=("feature_frequency", "ablation_results", "ablation_draws", "ablation_samples"),
    needs=("probe", "explain"),
    # 2: relevant features only from the dictionaries the probe reads; 3: so are the others;
    # 4: density-matched controls, enrichment, relevant vs random, draws stored
    version=4,
    distributed=True,
    derived=lambda config: {"task": config.task, "reward": config.section("reward"),
                            "evaluation": config.section("evaluation"), "max_length": config.world.max_length},
)
