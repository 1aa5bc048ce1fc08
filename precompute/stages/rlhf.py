"""Stage `rlhf`: tune the policy (RLOO or DPO), or take the user's tuned model, then measure
what tuning changed: reward of base vs tuned on held-out prompts, KL to the base, and for DPO
tasks the preference margin on held-out pairs. With several processes, TRL trains data-parallel
(`tune`) and the evaluation's sampling is dealt out among them; rank 0 writes the model."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd
from torch import nn

from lfp_engine.run.atomic import atomic_path
from lfp_engine.models.hub import DTYPES, is_local, load_causal_lm
from lfp_engine.tuning.reward import RewardFunction, build_reward
from lfp_engine.tuning.rlhf import evaluate_tuning, train_dpo, train_rloo, training_log_frame
from lfp_engine.run.tasks import task_spec
from lfp_engine.worlds import PREFERENCES, PROMPTS, WorldRecord, read_world_table

from ..models import load_base, load_tokenizer_of
from ..outputs import RlhfOutputs
from ..stage import Stage, StageContext, StageResult

log = logging.getLogger("lfp")

LOCAL_TUNED = "./models/tuned"


def tune(ctx: StageContext, base_model: str, tokenizer, reward: RewardFunction | None, prompts: pd.DataFrame,
         pairs: pd.DataFrame | None) -> tuple[nn.Module, pd.DataFrame]:
    """Tune the base model with the task's method and write it to `models/tuned/`; (tuned model,
    training log). With several processes TRL trains data-parallel through accelerate, each process
    on its share of every global batch, and rank 0 writes the model."""
    c, processes = ctx.config, ctx.ranks.size
    work = ctx.paths.work / "rlhf"
    if ctx.ranks.is_main:
        shutil.rmtree(work, ignore_errors=True)
    ctx.ranks.barrier()
    dtype = DTYPES[c.world.dtype]
    if task_spec(c.task).method == "rloo":
        rl_prompts = prompts.loc[prompts["purpose"] == "rl", "prompt"].tolist()
        tuned, training_log = train_rloo(base_model, tokenizer, rl_prompts, reward, c.rlhf, c.reward.score_prefix,
                                         ctx.seed, ctx.device, work, dtype, processes)
    else:
        tuned, training_log = train_dpo(base_model, tokenizer, pairs[pairs["split"] == "train"], c.dpo, ctx.seed,
                                        ctx.device, work, dtype, processes)
    if ctx.ranks.is_main:
        with atomic_path(ctx.paths.tuned_model) as folder:
            tuned.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        shutil.rmtree(work, ignore_errors=True)
        log.info("tuned model written to %s", ctx.paths.tuned_model)
    return tuned, training_log


def run(ctx: StageContext) -> StageResult | None:
    c = ctx.config
    spec = task_spec(c.task)
    world = WorldRecord.load(ctx.paths.world)
    tokenizer = load_tokenizer_of(ctx)
    reward = build_reward(spec, c.reward, ctx.device)
    prompts = read_world_table(ctx.paths.world, PROMPTS)
    pairs = read_world_table(ctx.paths.world, PREFERENCES) if spec.method == "dpo" else None
    training_log = training_log_frame([])

    if c.tuned_model:
        source = c.tuned_model
        source = str(Path(source).expanduser().resolve()) if is_local(source) else source
        log.info("using the tuned model %s as given; no fine-tuning", source)
        tuned = load_causal_lm(source, ctx.device, c.world.dtype)
    else:
        tuned, training_log = tune(ctx, world.base_model, tokenizer, reward, prompts, pairs)
        source = LOCAL_TUNED

    base = load_base(ctx)
    eval_prompts = prompts.loc[prompts["purpose"] == "eval", "prompt"].head(c.evaluation.n_prompts).tolist()
    test_pairs = pairs[pairs["split"] == "test"].head(c.evaluation.n_prompts) if pairs is not None else None
    evaluation = evaluate_tuning(base, tuned, tokenizer, eval_prompts, reward, c.evaluation, c.reward.score_prefix,
                                 ctx.seed, c.world.max_length, preference_pairs=test_pairs, ranks=ctx.ranks)
    if not ctx.ranks.is_main:
        return None
    table = evaluation.table()
    outputs = RlhfOutputs(tuned_model=source, method="given" if c.tuned_model else spec.method,
                          kl_to_base=evaluation.kl_to_base,
                          mean_rewards={f"{row.metric}_{row.model}": row.mean for row in table.itertuples()},
                          p_values={comparison.metric: comparison.p_value for comparison in evaluation.comparisons})
    return StageResult(
        outputs=outputs,
        tables={"rlhf_rewards": table, "rlhf_samples": evaluation.samples, "rlhf_training_log": training_log},
        inputs={"base_model": world.base_model, "n_eval_prompts": len(eval_prompts)},
    )


STAGE = Stage(
    name="rlhf",
    run=run,
    version=2,  # 2: evaluation samples through Gumbel-max with a private generator
    sections=("task", "tuned_model", "rlhf", "dpo", "reward", "evaluation"),
    tables=("rlhf_rewards", "rlhf_samples", "rlhf_training_log"),
    needs=("world",),
    derived=lambda config: {"dtype": config.world.dtype, "max_length": config.world.max_length},
    artifacts=lambda paths, config: [] if config.tuned_model else [paths.tuned_model / "config.json"],
    distributed=True,
)
