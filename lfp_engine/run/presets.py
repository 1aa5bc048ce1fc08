"""Named starting points for a run.

The defaults of `RunConfig` are the paper's hyperparameters, so a hub preset only names the
model; the synthetic presets resize the world and the training budget to the machine they are
meant for: `micro` for tests (seconds), `tiny` for this project's 2-core CPU default (minutes),
`small` for a GPU box (Pythia-70m's exact architecture, trained on the synthetic world).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lfp_engine.run.errors import ConfigError

IMDB = "stanfordnlp/imdb"


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    overrides: dict[str, Any]


def _hub(model_id: str, **extra: Any) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "world": {"kind": "hub", "base_model": model_id, "corpus": IMDB},
        # The paper's PPO budget (section 3.1: batch 64, mini-batch 16, the rest TRL's defaults, so
        # ppo_epochs 4), over one pass of IMDb's 25,000 training reviews (TRL's PPO loop makes one
        # pass over its dataloader): 25,000 / 64 = 390.6 rollouts, each used for 4 epochs x 64 / 16
        # = 16 optimizer steps, 390.6 x 16 = 6,250 optimizer steps (6,240 with TRL's drop_last).
        # In RLOO: rollouts of 64 (`generation_batch_size`), mini-batches of 16, `num_iterations` 4
        # (PPO's epochs), so max_steps 6,250 samples the same 25,000 completions and takes the same
        # 6,250 updates. (RLOO's 4 completions per prompt make those 6,250 distinct prompts.)
        "rlhf": {"steps": 6250, "num_iterations": 4},
    }
    for section, values in extra.items():
        overrides.setdefault(section, {}).update(values)
    return overrides


# Pythia-70m's architecture (config of EleutherAI/pythia-70m); vocab comes from our tokenizer.
PYTHIA_70M_SHAPE = {
    "hidden_size": 512,
    "num_layers": 6,
    "num_heads": 8,
    "intermediate_size": 2048,
    "rotary_pct": 0.25,
}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "tiny",
            "offline default: synthetic movie reviews, 1.7M-parameter GPT-NeoX, CPU in minutes",
            {
                "world": {"kind": "synthetic", "n_rl_prompts": 4096, "eval_prefix_tokens": 8,
                          "n_eval_prompts": 400, "max_length": 128, "n_preference_pairs": 3000},
                # Six passes. The probe can only read a held-out word's value if the base model
                # already places words of one polarity on one side of a shared direction; on the
                # planted world, with word-grouped folds (benchmarks/bench_world.py), that
                # direction carries held-out words' polarity for 85-87% of them after three
                # passes (seeds 0-2) and for 99-100% after six.
                # Matrix products in bfloat16 (this CPU has AVX-512 BF16): pretraining steps 1.3-1.7x
                # faster, the same held-out loss and base-model criterion at seeds 0-2 (docs/benchmarks.md).
                "synthetic": {"n_reviews": 20000, "pretrain_epochs": 6.0, "pretrain_precision": "bfloat16"},
                "rlhf": {"steps": 480, "learning_rate": 3e-5, "beta": 0.5, "generation_batch_size": 64,
                         "mini_batch_size": 16},
                # DPO's beta 0.1 for 300 steps drifts far (KL 25 nats per completion, runs of
                # "......"); beta 0.5 for 150 steps: KL 3.0, reward 0.005 -> 0.372, fluent text.
                "dpo": {"steps": 150, "batch_size": 16, "learning_rate": 5e-5, "beta": 0.5, "max_length": 128},
                "evaluation": {"n_prompts": 400},
                "divergence": {"top_k": 3},
                # The synthetic model's MLP outputs are larger than Pythia's relative to what they
                # encode: the paper's alpha 0.001 leaves them dense (L0 ~90 of 128), so the tiny
                # world uses 0.1, and 4 epochs over its 75,000 captured tokens (MMCS 0.48 -> 0.68).
                "activations": {"batch_size": 128},
                "sae": {"l1_coefficient": 0.1, "n_train_examples": 300000, "eval_batch_size": 128},
                "contrastive": {"n_triples": 8000, "n_text_triples": 2000},
                "probe": {"n_generation_prompts": 400},
                "validate": {"n_prompts": 400},
                # One epoch over the 75,000 captured pairs in batches of 512 at lr 2e-3 (variance
                # explained ~0.95 per model in under a minute on 2 cores); a latent silent for 20,000
                # tokens counts as dead for AuxK (Gao et al.'s 10M is for LLM-sized runs).
                # bfloat16 products: training 1.5x faster, quality within the seed's spread (docs/benchmarks.md).
                "crosscoder": {"k": 16, "batch_size": 512, "learning_rate": 2e-3, "n_train_examples": 75_000,
                               "auxk_dead_tokens": 20_000, "precision": "bfloat16"},
            },
        ),
        Preset(
            "micro",
            "test world: the tiny world's code at toy size, whole pipeline in about a minute",
            {
                "world": {"kind": "synthetic", "n_rl_prompts": 256, "eval_prefix_tokens": 6,
                          "n_eval_prompts": 48, "max_length": 64, "n_preference_pairs": 64},
                "synthetic": {"n_reviews": 1500, "vocab_size": 400, "hidden_size": 32, "num_layers": 3,
                              "num_heads": 2, "intermediate_size": 128, "context_length": 64,
                              "pretrain_epochs": 2.0, "pretrain_batch_size": 16, "pretrain_warmup_steps": 10},
                "rlhf": {"steps": 8, "learning_rate": 1e-4, "generation_batch_size": 16, "mini_batch_size": 8},
                "dpo": {"steps": 8, "batch_size": 8, "learning_rate": 1e-4, "max_length": 64},
                "evaluation": {"n_prompts": 48, "batch_size": 48, "n_samples_stored": 8},
                "divergence": {"top_k": 2},
                "activations": {"n_train_tokens": 6000, "n_eval_tokens": 1500, "shard_rows": 2048},
                "sae": {"n_train_examples": 6000, "l1_coefficient": 0.01},
                # Toy dictionaries converge less: twins reach cosine ~0.55, not 0.9, so the
                # threshold is lowered to give the later stages shared features to work on.
                "features": {"n_top_examples": 5, "examples_per_quantile": 2, "histogram_bins": 10,
                             "n_logits": 5, "n_neighbors": 3, "shared_threshold": 0.45},
                "explain": {"n_windows": 40, "n_questions": 5},
                "validate": {"threshold": 0.2, "n_prompts": 48, "n_random_draws": 2, "n_samples_stored": 5},
                "contrastive": {"n_triples": 600, "n_text_triples": 60},
                "policy": {"n_bootstrap": 100, "n_permutations": 100},
                "probe": {"n_bootstrap": 100, "n_permutations": 100, "n_generation_prompts": 48,
                          "max_pca_rows": 200},
                "crosscoder": {"k": 8, "batch_size": 128, "n_train_examples": 12_000, "auxk_dead_tokens": 2_000,
                               "n_top": 4, "n_ablate": 2, "n_prompts": 24, "max_probe_triples": 300},
            },
        ),
        Preset(
            "small",
            "GPU world: Pythia-70m's architecture pretrained on a large synthetic corpus",
            {
                "world": {"kind": "synthetic", "eval_prefix_tokens": 10, "max_length": 256},
                "synthetic": {"n_reviews": 200000, "vocab_size": 8192, "context_length": 256,
                              "pretrain_batch_size": 64, "pretrain_lr": 1e-3, "pretrain_warmup_steps": 200,
                              **PYTHIA_70M_SHAPE},
                "rlhf": {"steps": 1600, "learning_rate": 1e-5},
                "dpo": {"steps": 2000, "batch_size": 32, "learning_rate": 3e-5, "max_length": 256},
                "evaluation": {"n_prompts": 1000},
            },
        ),
        Preset("pythia-70m", "EleutherAI/pythia-70m with the paper's settings (hub)",
               _hub("EleutherAI/pythia-70m")),
        Preset("pythia-160m", "EleutherAI/pythia-160m with the paper's settings (hub)",
               _hub("EleutherAI/pythia-160m")),
        Preset("gpt-neo-125m", "EleutherAI/gpt-neo-125m with the paper's settings (hub)",
               _hub("EleutherAI/gpt-neo-125m", sae={"l1_coefficient": 0.0015})),  # section 3.2: GPT-Neo's alpha
        Preset("gemma-2b-it", "google/gemma-2b-it, bf16, DPO with effective batch 16 and lr 5e-5 (hub)",
               _hub("google/gemma-2b-it", world={"dtype": "bfloat16"},
                    dpo={"batch_size": 8, "gradient_accumulation_steps": 2, "learning_rate": 5e-5})),
    ]
}


def preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
