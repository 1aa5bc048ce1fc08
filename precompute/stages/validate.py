"""Stage `validate`: the paper's two checks of the probe against the explanations (tables 6, 7).

Relevant features are those of the dictionaries the probe reads (the smaller one of each chosen
layer) that the explain stage judged related to the task. Feature frequency
(`lfp_engine.validation.frequency`): how often they fire on held-out tokens the probe scores above
the threshold, against the others. Ablation (`lfp_engine.validation.ablation`): the reward of
completions with them zero-ablated, against as many random features ablated and against nothing.
With several processes every one runs the stage and the generation batches are dealt out among them;
the rest is small and repeated in each, and only rank 0's tables reach the store.
"""

from __future__ import annotations

import logging

import numpy as np

from lfp_engine.models.generation import Sampling
from lfp_engine.probe.reader import ProbeReader
from lfp_engine.run.seeding import derive_seed
from lfp_engine.run.tasks import task_spec
from lfp_engine.sae.activations import ActivationSet
from lfp_engine.sae.keys import FeatureKey
from lfp_engine.tuning.reward import build_reward
from lfp_engine.validation.ablation import ablation_conditions, relevant_features
from lfp_engine.validation.frequency import count_firing, feature_frequency
from lfp_engine.worlds import PROMPTS, read_world_table

from ..models import load_tokenizer_of, load_tuned
from ..outputs import ValidateOutputs
from ..stage import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def run(ctx: StageContext) -> StageResult:
    c, v = ctx.config, ctx.config.validate
    explanations = ctx.store.read("feature_explanations", where="model = ?", params=["tuned"])
    model, tokenizer = load_tuned(ctx), load_tokenizer_of(ctx)
    reader = ProbeReader.load(ctx.paths, "tuned", model, tokenizer, ctx.device)
    relevant = relevant_features(explanations, reader.dictionaries)

    counter, values = count_firing(ActivationSet(ctx.paths.activations / "eval"), reader, v.threshold, ctx.device)
    keys = {FeatureKey("tuned", layer, size, f) for (layer, size), fs in relevant.items() for f in fs}
    frequency = feature_frequency(counter.rates(), keys, v.threshold, counter.n_strong)
    if counter.n_strong < 10:
        log.warning("only %d of %d held-out tokens score above validate.threshold=%g (probe values: 99th percentile "
                    "%.2f); lower the threshold for a meaningful feature-frequency check", counter.n_strong,
                    counter.n_inputs, v.threshold, float(np.percentile(values, 99)))
    tables = {"feature_frequency": frequency}
    mean_rewards, p_values = {}, {}
    reward = build_reward(task_spec(c.task), c.reward, ctx.device)
    if reward is None:
        log.warning("task %s has no reward function: the ablation check is skipped", c.task)
    else:
        prompts = read_world_table(ctx.paths.world, PROMPTS)
        prompts = prompts.loc[prompts["purpose"] == "eval", "prompt"].head(v.n_prompts).tolist()
        rng = np.random.default_rng(derive_seed(ctx.seed, "random features"))
        ablation = ablation_conditions(model, tokenizer, prompts, relevant, reader.saes, reward, Sampling.of(c),
                                       ctx.seed, v.n_random_draws, rng, v.n_samples_stored, ctx.ranks)
        tables |= {"ablation_results": ablation.table, "ablation_samples": ablation.samples}
        mean_rewards = {r.condition: r.mean_reward for r in ablation.table.itertuples()}
        p_values = {r.condition: r.p_value for r in ablation.table.itertuples() if r.condition != "none"}
    outputs = ValidateOutputs(
        n_relevant_features=len(keys), n_strong_inputs=counter.n_strong, n_inputs=counter.n_inputs,
        probe_value_p99=float(np.percentile(values, 99)),
        firing_rates={r.group: r.firing_rate for r in frequency.itertuples()},
        frequency_p_value=float(frequency["p_value"].iloc[0]), mean_rewards=mean_rewards, p_values=p_values)
    return StageResult(outputs=outputs, tables=tables, inputs={"n_explained": len(explanations)})


STAGE = Stage(
    name="validate",
    run=run,
    sections=("validate",),
    tables=("feature_frequency", "ablation_results", "ablation_samples"),
    needs=("probe", "explain"),
    version=3,  # 2: relevant features only from the dictionaries the probe reads; 3: so are the others
    distributed=True,
    derived=lambda config: {"task": config.task, "reward": config.section("reward"),
                            "evaluation": config.section("evaluation"), "max_length": config.world.max_length},
)
