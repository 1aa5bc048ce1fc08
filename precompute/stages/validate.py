"""Stage `validate`: the paper's two checks of the probe against the explanations (tables 6, 7).

Relevant features are those of the dictionaries the probe reads (the smaller one of each chosen
layer). Feature frequency: the probe is applied to every held-out token of the tuned model (its
codes from the stored activations, no forward pass); on the tokens it scores above the
threshold, the firing rate of each feature of those dictionaries is counted, and relevant
features are compared with the others. Ablation: completions of held-out prefixes with the relevant
features zero-ablated, with as many random features ablated (the control the paper lacks,
averaged over several draws), and with nothing ablated, all under one seed, scored with the
task's reward.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from lfp_engine.sae.activations import ActivationSet
from lfp_engine.validation.interventions import NO_INTERVENTION, Intervention, intervention_hooks
from lfp_engine.probe.linear import load_probe
from lfp_engine.tuning.reward import build_reward
from lfp_engine.sae.saelens_format import find_saes, load_sae
from lfp_engine.run.seeding import derive_seed
from lfp_engine.run.tasks import task_spec
from lfp_engine.validation.ablation import (FiringCounter, Sampling, ablation_table, feature_frequency, intervened_completions,
                                   random_intervention, relevant_features, relevant_intervention)
from lfp_engine.worlds import PROMPTS, read_world_table

from ..models import load_tokenizer_of, load_tuned
from ..pipeline import Stage, StageContext, StageResult

log = logging.getLogger("lfp")

EVAL_BATCH_ROWS = 4096


def count_firing(ctx: StageContext, saes: dict, probe, card, threshold: float) -> tuple[FiringCounter, np.ndarray]:
    """Stream the held-out activations: probe values per token, firing counts on strong tokens."""
    evaluation = ActivationSet(ctx.paths.activations / "eval")
    layers = evaluation.layers
    counter = FiringCounter()
    values = []
    for _, x in evaluation.iter_rows(layers, EVAL_BATCH_ROWS, ctx.device):
        codes = {key: sae.encode(x[layers.index(key[0])]).detach().cpu().numpy() for key, sae in saes.items()}
        inputs = np.concatenate([codes[(layer, width)] for layer, width in zip(card.layers, card.widths, strict=True)],
                                axis=1)
        predicted = probe.predict(inputs)
        counter.add(codes, predicted > threshold)
        values.append(predicted)
    return counter, np.concatenate(values)


def run(ctx: StageContext) -> StageResult:
    c, v = ctx.config, ctx.config.validate
    ctx.outputs_of("probe")
    explanations = ctx.store.read("feature_explanations", where="model = ?", params=["tuned"])
    probe, card = load_probe(ctx.paths.probe)
    probed = list(zip(card.layers, card.widths, strict=True))
    relevant = relevant_features(explanations, probed)
    found = find_saes(ctx.paths.saes)
    saes = {key: load_sae(found[key], ctx.device) for key in probed}

    counter, values = count_firing(ctx, saes, probe, card, v.threshold)
    keys = {(layer, size, f) for (layer, size), fs in relevant.items() for f in fs}
    frequency = feature_frequency(counter.rates(), keys, v.threshold, counter.n_strong)
    if counter.n_strong < 10:
        log.warning("only %d of %d held-out tokens score above validate.threshold=%g (probe values: 99th percentile "
                    "%.2f); lower the threshold for a meaningful feature-frequency check", counter.n_strong,
                    counter.n_inputs, v.threshold, float(np.percentile(values, 99)))
    outputs = {"n_relevant_features": len(keys), "n_strong_inputs": counter.n_strong, "n_inputs": counter.n_inputs,
               "probe_value_p99": float(np.percentile(values, 99)),
               **{f"firing_rate_{r.group}": r.firing_rate for r in frequency.itertuples()},
               "frequency_p_value": float(frequency["p_value"].iloc[0])}
    tables = {"feature_frequency": frequency}

    reward = build_reward(task_spec(c.task), c.reward, ctx.device)
    if reward is None:
        log.warning("task %s has no reward function: the ablation check is skipped", c.task)
    else:
        tables |= ablation(ctx, relevant, saes, reward)
        table = tables["ablation_results"]
        outputs |= {f"{r.condition}_mean_reward": r.mean_reward for r in table.itertuples()}
        outputs |= {f"{r.condition}_p_value": r.p_value for r in table.itertuples() if r.condition != "none"}
    return StageResult(tables=tables, outputs=outputs, inputs={"n_explained": len(explanations)})


def ablation(ctx: StageContext, relevant: dict, saes: dict, reward) -> dict[str, pd.DataFrame]:
    v = ctx.config.validate
    prompts = read_world_table(ctx.paths.world, PROMPTS)
    prompts = prompts.loc[prompts["purpose"] == "eval", "prompt"].head(v.n_prompts).tolist()
    model, tokenizer = load_tuned(ctx), load_tokenizer_of(ctx)
    sizes = {key: sae.d_sae for key, sae in saes.items()}
    rng = np.random.default_rng(derive_seed(ctx.seed, "random features"))
    conditions: dict[str, list[Intervention]] = {
        "none": [NO_INTERVENTION], "relevant": [relevant_intervention(relevant)],
        "random": [random_intervention(relevant, sizes, rng) for _ in range(v.n_random_draws)],
    }
    rewards, samples = {}, []
    with intervention_hooks(model, saes):
        for condition, draws in conditions.items():
            per_draw = []
            for i, intervention in enumerate(draws):
                out = intervened_completions(model, tokenizer, prompts, intervention, saes, reward,
                                             Sampling.of(ctx.config), ctx.seed, f"generate ({condition} ablated)")
                per_draw.append(out.rewards)
                if i == 0:
                    samples.append(pd.DataFrame({"condition": condition, "prompt": prompts[:v.n_samples_stored],
                                                 "completion": out.texts[:v.n_samples_stored],
                                                 "reward": out.rewards[:v.n_samples_stored]}))
            rewards[condition] = np.mean(per_draw, axis=0)
    shown = {k: d[0] for k, d in conditions.items()}
    return {"ablation_results": ablation_table(rewards, shown, ctx.seed),
            "ablation_samples": pd.concat(samples, ignore_index=True)}


STAGE = Stage(
    name="validate",
    run=run,
    sections=("validate",),
    needs=("probe", "explain"),
    version=3,  # 2: relevant features only from the dictionaries the probe reads; 3: so are the others
    derived=lambda config: {"task": config.task, "reward": config.section("reward"),
                            "evaluation": config.section("evaluation"), "max_length": config.world.max_length},
)
