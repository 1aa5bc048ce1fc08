"""Settings of fine-tuning (paper 3.1, appendix A) and of what tuning changed (3.2, appendix C).

The defaults are the paper's hyperparameters; `lfp_engine/tuning/rlhf.py` maps its PPO settings
onto TRL's RLOO trainer. Learning rates are held constant, without warm-up, in both trainers.
"""

from __future__ import annotations

from dataclasses import dataclass

from lfp_engine.run.fields import require


@dataclass
class RlhfSettings:
    """Online RL (TRL's RLOO), with the paper's PPO settings mapped onto it (see lfp_engine/tuning/rlhf.py)."""

    steps: int = 1000
    """Optimizer steps (the hub presets: 6250, the paper's PPO updates; tiny: 480)."""
    generation_batch_size: int = 64
    """Completions sampled per rollout phase (PPO's batch size; the paper: 64)."""
    mini_batch_size: int = 16
    """Completions per optimizer step (PPO's mini-batch size; the paper: 16)."""
    num_generations: int = 4
    """Completions per prompt; the leave-one-out baseline needs at least 2 (replaces PPO's value head)."""
    num_iterations: int = 1
    """Passes over each rollout batch (PPO's epochs; the hub presets: 4, TRL's PPO default the paper kept)."""
    beta: float = 0.5
    """KL coefficient to the base model (the paper: 0.5, fixed here where PPO's was adaptive)."""
    epsilon: float = 0.2
    """Clip range of the policy ratio (TRL's PPO default, which the paper kept)."""
    learning_rate: float = 1e-6
    """AdamW learning rate (the paper: 1e-6; the tiny preset: 3e-5)."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global norm (the paper: 1)."""
    min_new_tokens: int = 8
    """Shortest completion, in tokens (the paper: 8)."""
    max_new_tokens: int = 19
    """Longest completion, in tokens (the paper: 19)."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""

    def __post_init__(self) -> None:
        require(self.steps >= 1, "setting rlhf.steps: must be at least 1")
        require(self.num_generations >= 2, "setting rlhf.num_generations: RLOO's leave-one-out baseline needs >= 2")
        require(self.mini_batch_size >= 1 and self.generation_batch_size >= self.mini_batch_size,
                "settings rlhf.generation_batch_size must be >= rlhf.mini_batch_size >= 1")
        require(self.generation_batch_size % self.mini_batch_size == 0,
                "setting rlhf.generation_batch_size must be a multiple of rlhf.mini_batch_size")
        require(self.generation_batch_size % self.num_generations == 0,
                "setting rlhf.generation_batch_size must be a multiple of rlhf.num_generations")
        require(self.beta >= 0, "setting rlhf.beta: the KL coefficient cannot be negative")
        require(0 < self.epsilon < 1, "setting rlhf.epsilon: clip range must be in (0, 1)")
        require(0 < self.learning_rate < 1, "setting rlhf.learning_rate: must be in (0, 1)")
        require(self.max_grad_norm > 0, "setting rlhf.max_grad_norm: must be positive")
        require(1 <= self.min_new_tokens <= self.max_new_tokens,
                "settings rlhf.min_new_tokens/max_new_tokens: need 1 <= min <= max")
        require(self.temperature > 0, "setting rlhf.temperature: must be positive")
        require(self.num_iterations >= 1, "setting rlhf.num_iterations: must be at least 1")


@dataclass
class DpoSettings:
    """DPO on preference pairs (TRL's DPOTrainer) with the paper's settings (section 3.1)."""

    steps: int = 5000
    """Optimizer steps (the paper: 5000)."""
    batch_size: int = 8
    """Preference pairs per device and forward pass (the paper: 8; Gemma: 8 x 2 accumulated = 16)."""
    gradient_accumulation_steps: int = 1
    """Batches whose gradients are summed per optimizer step (the Gemma preset: 2)."""
    learning_rate: float = 3e-5
    """AdamW learning rate (the paper: 3e-5; Gemma: 5e-5)."""
    beta: float = 0.1
    """DPO's beta: how strongly the policy is held to the base model (the paper: 0.1; tiny: 0.5)."""
    adam_epsilon: float = 1e-8
    """AdamW's epsilon (the paper: 1e-8)."""
    max_length: int = 512
    """Longest prompt + response fed to the trainer, in tokens; longer pairs are truncated."""

    def __post_init__(self) -> None:
        require(self.steps >= 1 and self.batch_size >= 1 and self.gradient_accumulation_steps >= 1,
                "settings dpo.steps/batch_size/gradient_accumulation_steps: must be at least 1")
        require(0 < self.learning_rate < 1, "setting dpo.learning_rate: must be in (0, 1)")
        require(self.beta > 0, "setting dpo.beta: must be positive")
        require(self.adam_epsilon > 0, "setting dpo.adam_epsilon: must be positive")
        require(self.max_length >= 8, "setting dpo.max_length: must be at least 8")


@dataclass
class RewardSettings:
    """The reward that tunes (RL tasks) or evaluates (DPO) the policy: paper equation 3, appendix B."""

    score_prefix: bool = True
    """Score prefix + completion, as the authors' trained models did; False scores the completion only."""
    scale: float = 0.2
    """Factor on the summed lexicon values of the text's tokens (equation 3: 1/5)."""
    clip: float = 10.0
    """The reward is clipped to [-clip, clip] (equation 3: 10)."""
    classifier: str = "lvwerra/distilbert-imdb"
    """Hub id or path of the sentiment classifier for task 'classifier' (paper appendix B)."""
    classifier_positive_label: str = ""
    """Label whose logit is the reward; '' finds the label that reads as positive."""
    batch_size: int = 64
    """Texts per forward pass of the classifier."""

    def __post_init__(self) -> None:
        require(self.scale > 0, "setting reward.scale: must be positive")
        require(self.clip > 0, "setting reward.clip: must be positive")
        require(self.batch_size >= 1, "setting reward.batch_size: must be at least 1")


@dataclass
class EvaluationSettings:
    """Base-vs-tuned reward comparison (earlier paper version, table 7)."""

    n_prompts: int = 1000
    """Held-out prefixes both models complete (the paper: 1000); at most `world.n_eval_prompts`."""
    max_new_tokens: int = 19
    """Longest completion, in tokens (as in tuning)."""
    min_new_tokens: int = 8
    """Shortest completion, in tokens (as in tuning)."""
    temperature: float = 1.0
    """Sampling temperature; both models sample under the same seed."""
    batch_size: int = 64
    """Prompts per forward pass when sampling and scoring."""
    n_samples_stored: int = 40
    """Completions of each model stored for reading (table `rlhf_samples`)."""

    def __post_init__(self) -> None:
        require(self.n_prompts >= 2, "setting evaluation.n_prompts: a significance test needs at least 2 prompts")
        require(1 <= self.min_new_tokens <= self.max_new_tokens,
                "settings evaluation.min_new_tokens/max_new_tokens: need 1 <= min <= max")
        require(self.temperature > 0, "setting evaluation.temperature: must be positive")
        require(self.batch_size >= 1 and self.n_samples_stored >= 0,
                "settings evaluation.batch_size >= 1 and evaluation.n_samples_stored >= 0")


@dataclass
class DivergenceSettings:
    """Which layers tuning changed most (paper 3.2, appendix C)."""

    top_k: int = 5
    """Layers with the largest base-vs-tuned parameter distance that get SAEs (the paper: 5)."""

    def __post_init__(self) -> None:
        require(self.top_k >= 1, "setting divergence.top_k: must be at least 1")
