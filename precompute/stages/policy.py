"""Stage `policy`: the policy lens, what tuning taught the model to prefer to write (docs/method.md, "The policy lens").

Reads the contrastive triples with the tuned and the base model's own probabilities,
beta log pi_tuned/pi_base (`lfp_engine.policy`), element against neutral; no SAE, no probe, so it
needs only the tuned model and the triples. Writes each read triple element (`policy_triples`),
every word's value with its interval (`policy_values`, word triples), and the lens's measures
against the lexicon beside the reward's (`policy_metrics`, the columns of `probe_metrics`); for DPO
tasks also the implicit reward's preference accuracy on held-out pairs.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from lfp_engine.policy.log_ratio import PolicyPair, task_beta
from lfp_engine.policy.preference import accuracy_row, pair_rewards
from lfp_engine.policy.triples import element_differences
from lfp_engine.policy.word_values import policy_metrics, policy_value_table
from lfp_engine.probe.measures import metrics_frame
from lfp_engine.run.tasks import task_spec
from lfp_engine.tuning.reward import build_reward
from lfp_engine.worlds import GROUND_TRUTH, PREFERENCES, WorldRecord, read_world_table

from ..models import load_model, load_tokenizer_of
from ..outputs import ContrastiveOutputs, PolicyOutputs
from ..stage import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def planted_kinds(ctx: StageContext) -> dict[str, str] | None:
    """word -> planted kind, where the world planted kinds."""
    if not WorldRecord.load(ctx.paths.world).has_ground_truth:
        return None
    truth = read_world_table(ctx.paths.world, GROUND_TRUTH)
    return dict(zip(truth["word"], truth["kind"], strict=True)) if "kind" in truth else None


def held_out_pairs(ctx: StageContext, pair: PolicyPair) -> list:
    """DPO tasks: the preference accuracy of the implicit reward on the world's held-out pairs."""
    if task_spec(ctx.config.task).method != "dpo":
        return []
    pairs = read_world_table(ctx.paths.world, PREFERENCES)
    test = pairs[pairs["split"] == "test"].head(ctx.config.evaluation.n_prompts)
    if test.empty:
        return []
    chosen, rejected = pair_rewards(pair, test["prompt"].tolist(), test["chosen"].tolist(), test["rejected"].tolist())
    return [accuracy_row(chosen, rejected)]


def run(ctx: StageContext) -> StageResult:
    p, c = ctx.config.policy, ctx.config
    kind = ctx.outputs_of(ContrastiveOutputs).kind
    beta = task_beta(c)
    pair = PolicyPair(load_model(ctx, "tuned"), load_model(ctx, "base"), load_tokenizer_of(ctx), beta,
                      c.world.max_length, p.batch_size)
    triples = ctx.store.read("triples", order_by="triple_id")
    reward = build_reward(task_spec(c.task), c.reward, ctx.device)
    elements = element_differences(pair, triples, kind, reward)
    rows = held_out_pairs(ctx, pair)
    tables: dict[str, pd.DataFrame] = {"policy_triples": elements}
    values = None
    if kind == "word":
        values = policy_value_table(elements, planted_kinds(ctx), p.n_bootstrap, np.random.default_rng([ctx.seed, 0]))
        rows = policy_metrics(values, p.n_bootstrap, p.n_permutations, ctx.seed) + rows
        tables["policy_values"] = values
    else:
        test = elements[elements["split"] == "test"]
        positive = test[test["element"] == "positive"].set_index("triple_id")["policy"]
        negative = test[test["element"] == "negative"].set_index("triple_id")["policy"]
        rows.append(accuracy_row(positive.to_numpy(), negative.loc[positive.index].to_numpy(), "test_triples"))
    metrics = metrics_frame(rows)
    tables["policy_metrics"] = metrics
    headline = {f"{r.metric}_{r.subset}": float(r.value) for r in metrics.itertuples()
                if r.metric in ("kendall_tau", "preference_accuracy", "absorbed_share")}
    log.info("policy lens (beta %.3g) on %d triple elements: %s", beta, len(elements),
             {k: round(v, 3) for k, v in headline.items() if k.endswith(("test_within", "all", "test"))})
    return StageResult(outputs=PolicyOutputs(beta=beta, n_elements=len(elements),
                                             n_words=0 if values is None else len(values), headline=headline),
                       tables=tables, inputs={"n_triples": len(triples)})


STAGE = Stage(
    name="policy",
    run=run,
    sections=("policy", "task", "reward"),
    tables=("policy_triples", "policy_values", "policy_metrics"),
    needs=("rlhf", "contrastive"),
    derived=lambda config: {"beta": task_beta(config), "max_length": config.world.max_length,
                            "evaluation": config.evaluation.n_prompts},
)
