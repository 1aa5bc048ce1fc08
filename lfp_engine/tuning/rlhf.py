"""Fine-tuning the policy (paper section 3.1, appendix A) and measuring what tuning changed.

Online RL for the reward tasks uses TRL's `RLOOTrainer`; TRL no longer ships the PPO trainer
the paper used. The paper's PPO settings map onto RLOO as follows:

=========================  ==========================================================
PPO (paper, TRL 0.x)       RLOO here
=========================  ==========================================================
batch size 64              `generation_batch_size` 64: completions sampled per rollout
mini-batch size 16         `per_device_train_batch_size` 16, so 4 optimizer steps per rollout
ppo_epochs (default 4)     `num_iterations` (default 1: each rollout used once; the hub
                           presets: 4, so 6,250 steps are the paper's 6,250 updates on
                           25,000 completions, lfp_engine/run/presets.py)
KL coefficient 0.5         `beta` 0.5: the same per-sequence KL penalty subtracted from the
                           reward (fixed, where TRL 0.x adapted it towards a target KL)
cliprange 0.2              `epsilon` 0.2: clipped policy ratio
max grad norm 1, lr 1e-6   `max_grad_norm` 1, `learning_rate` 1e-6 (constant)
value head + GAE           leave-one-out baseline over `num_generations` completions per
                           prompt (4 here: 16 prompts per rollout); no value model
LengthSampler(8, 19)       `min_new_tokens` 8, `max_completion_length` 19
=========================  ==========================================================

The DPO tasks use TRL's `DPOTrainer` with the paper's settings (AdamW eps 1e-8, DPO beta 0.1).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lfp_engine.run.distributed import SINGLE, Ranks
from lfp_engine.run.errors import ConfigError
from lfp_engine.tuning.settings import DpoSettings, EvaluationSettings, RlhfSettings
from lfp_engine.models.generation import completion_logprobs, sample_completions, text_logprobs
from lfp_engine.tuning.reward import RewardFunction, scored_texts
from lfp_engine.statistics import PairedComparison, paired_comparison

log = logging.getLogger(__name__)

# Metrics from TRL's log history worth keeping for the dashboard's training curve.
LOG_KEYS = ("loss", "reward", "reward_std", "kl", "entropy", "rewards/chosen", "rewards/rejected",
            "rewards/accuracies", "rewards/margins", "learning_rate", "grad_norm")


def _trainer_common(out_dir: Path, seed: int, device: torch.device, steps: int, dtype: torch.dtype) -> dict:
    return dict(
        output_dir=str(out_dir),
        max_steps=steps,
        seed=seed,
        data_seed=seed,
        use_cpu=device.type == "cpu",
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        activation_checkpointing=False,
        report_to=[],
        save_strategy="no",
        logging_steps=max(1, steps // 50),
        lr_scheduler_type="constant",
        warmup_steps=0,
        disable_tqdm=False,
        dataloader_num_workers=0,
    )


def training_log_frame(history: list[dict]) -> pd.DataFrame:
    """TRL's log history as a table (step + the metrics in LOG_KEYS); typed even when empty."""
    rows = [{"step": h["step"], **{k: h[k] for k in LOG_KEYS if k in h}} for h in history if "step" in h]
    frame = pd.DataFrame(rows, columns=["step", *sorted({k for r in rows for k in r} - {"step"})])
    return frame.astype({"step": "int64"}).rename(columns=lambda c: c.replace("/", "_"))


def _prepare(trainer) -> None:
    """Keep the Trainer's progress bar but not its printing of every metrics dict (they are kept in
    the log history and stored as a table instead); say how accelerate spreads the training."""
    state = trainer.accelerator.state
    log.info("%s trains on %d process(es) (accelerate: %s), %d example(s) per process and step",
             type(trainer).__name__, state.num_processes, state.distributed_type,
             trainer.args.per_device_train_batch_size)
    from transformers.trainer_callback import ProgressCallback

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN003
            return None

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(BarOnly)


def make_trl_reward(reward: RewardFunction, score_prefix: bool):
    """Adapt a batch reward to TRL's signature; the function name becomes TRL's metric name."""

    def reward_fn(prompts: list[str], completions: list[str], **_: object) -> list[float]:
        return reward(scored_texts(prompts, completions, score_prefix)).tolist()

    reward_fn.__name__ = f"{reward.name}_reward"
    return reward_fn


def per_process(batch_size: int, processes: int, setting: str) -> int:
    """Each process's share of a global batch: with N processes, TRL's per-device batch is the
    setting's batch over N, so the global batch (and so every optimizer step) stays the paper's."""
    if batch_size % processes:
        raise ConfigError(f"setting {setting}: {batch_size} does not split evenly over {processes} processes; "
                          f"choose a multiple of {processes}")
    return batch_size // processes


def train_rloo(base_path: str, tokenizer, prompts: Sequence[str], reward: RewardFunction,
               settings: RlhfSettings, score_prefix: bool, seed: int, device: torch.device,
               work_dir: Path, dtype: torch.dtype = torch.float32, processes: int = 1):
    """Tune the model at `base_path` towards `reward`. Returns (tuned model, training log). Under a
    launcher with several processes, TRL (through accelerate) trains data-parallel over them, the
    global batch unchanged (`per_process`)."""
    import datasets
    from trl import RLOOConfig, RLOOTrainer

    args = RLOOConfig(
        **_trainer_common(work_dir, seed, device, settings.steps, dtype),
        per_device_train_batch_size=per_process(settings.mini_batch_size, processes, "rlhf.mini_batch_size"),
        steps_per_generation=settings.generation_batch_size // settings.mini_batch_size,
        num_generations=settings.num_generations,
        num_iterations=settings.num_iterations,
        beta=settings.beta,
        epsilon=settings.epsilon,
        learning_rate=settings.learning_rate,
        max_grad_norm=settings.max_grad_norm,
        max_completion_length=settings.max_new_tokens,
        temperature=settings.temperature,
        generation_kwargs={"min_new_tokens": settings.min_new_tokens},
        disable_dropout=True,
        model_init_kwargs={"dtype": dtype},
    )
    train = datasets.Dataset.from_dict({"prompt": list(prompts)})
    trainer = RLOOTrainer(model=base_path, reward_funcs=make_trl_reward(reward, score_prefix), args=args,
                          train_dataset=train, processing_class=tokenizer)
    _prepare(trainer)
    trainer.train()
    return trainer.model.eval(), training_log_frame(trainer.state.log_history)


def train_dpo(base_path: str, tokenizer, pairs: pd.DataFrame, settings: DpoSettings, seed: int,
              device: torch.device, work_dir: Path, dtype: torch.dtype = torch.float32, processes: int = 1):
    """DPO on (prompt, chosen, rejected) pairs. Returns (tuned model, training log); data-parallel
    over several processes as `train_rloo`."""
    import datasets
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        **_trainer_common(work_dir, seed, device, settings.steps, dtype),
        per_device_train_batch_size=per_process(settings.batch_size, processes, "dpo.batch_size"),
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        adam_epsilon=settings.adam_epsilon,
        beta=settings.beta,
        max_length=settings.max_length,
        model_init_kwargs={"dtype": dtype},
    )
    train = datasets.Dataset.from_pandas(pairs[["prompt", "chosen", "rejected"]].reset_index(drop=True))
    trainer = DPOTrainer(model=base_path, args=args, train_dataset=train, processing_class=tokenizer)
    _prepare(trainer)
    trainer.train()
    return trainer.model.eval(), training_log_frame(trainer.state.log_history)


# ---------------------------------------------------------------------------------------
# What tuning changed


@dataclass
class TuningEvaluation:
    comparisons: list[PairedComparison]
    kl_to_base: float
    """Mean over the tuned model's samples of log pi_tuned(y|x) - log pi_base(y|x): KL(tuned || base)."""
    samples: pd.DataFrame
    """prompt, base_completion, base_reward, tuned_completion, tuned_reward (a readable sample)."""

    def table(self) -> pd.DataFrame:
        """The `rlhf_rewards` rows: one per metric and model, the test's result on both."""
        rows = []
        for c in self.comparisons:
            for model, mean, std in (("base", c.control_mean, c.control_std), ("tuned", c.treatment_mean, c.treatment_std)):
                rows.append({
                    "metric": c.metric, "model": model, "n": c.n, "mean": mean, "std": std,
                    "mean_difference": c.mean_difference, "ci_low": c.ci_low, "ci_high": c.ci_high,
                    "test": c.test, "alternative": c.alternative, "statistic": c.statistic, "p_value": c.p_value,
                    "kl_to_base": self.kl_to_base if model == "tuned" else 0.0,
                })
        return pd.DataFrame(rows)


def evaluate_tuning(base, tuned, tokenizer, prompts: Sequence[str], reward: RewardFunction | None,
                    settings: EvaluationSettings, score_prefix: bool, seed: int, max_length: int,
                    preference_pairs: pd.DataFrame | None = None, ranks: Ranks = SINGLE) -> TuningEvaluation:
    """Sample both models on the same held-out prompts; compare rewards, KL, preference margins.

    Both models sample under the same seed, so differences come from the weights, not the dice.
    With several processes (`ranks`) the sampling is dealt out among them (`sample_completions`).
    """
    gen = dict(max_new_tokens=settings.max_new_tokens, min_new_tokens=settings.min_new_tokens,
               temperature=settings.temperature, batch_size=settings.batch_size, seed=seed, max_length=max_length,
               ranks=ranks)
    prompts = list(prompts)
    base_out = sample_completions(base, tokenizer, prompts, desc="sample base", **gen)
    tuned_out = sample_completions(tuned, tokenizer, prompts, desc="sample tuned", **gen)
    comparisons: list[PairedComparison] = []
    base_r = tuned_r = np.full(len(prompts), np.nan)
    if reward is not None:
        base_r = reward(scored_texts(prompts, base_out.texts, score_prefix))
        tuned_r = reward(scored_texts(prompts, tuned_out.texts, score_prefix))
        comparisons.append(paired_comparison(base_r, tuned_r, f"{reward.name}_reward", seed=seed))
    lp_tuned = completion_logprobs(tuned, tokenizer, tuned_out.prompt_ids, tuned_out.completion_ids, settings.batch_size)
    lp_base = completion_logprobs(base, tokenizer, tuned_out.prompt_ids, tuned_out.completion_ids, settings.batch_size)
    kl = float((lp_tuned - lp_base).mean())
    if preference_pairs is not None and len(preference_pairs) >= 2:
        margins = {}
        for name, model in (("base", base), ("tuned", tuned)):
            chosen = text_logprobs(model, tokenizer, preference_pairs["prompt"].tolist(),
                                   preference_pairs["chosen"].tolist(), max_length)
            rejected = text_logprobs(model, tokenizer, preference_pairs["prompt"].tolist(),
                                     preference_pairs["rejected"].tolist(), max_length)
            margins[name] = (chosen - rejected).numpy()
        comparisons.append(paired_comparison(margins["base"], margins["tuned"], "preference_margin", seed=seed))
    n = min(settings.n_samples_stored, len(prompts))
    samples = pd.DataFrame({
        "prompt": prompts[:n], "base_completion": base_out.texts[:n], "base_reward": base_r[:n],
        "tuned_completion": tuned_out.texts[:n], "tuned_reward": tuned_r[:n],
    })
    return TuningEvaluation(comparisons=comparisons, kl_to_base=kl, samples=samples)
