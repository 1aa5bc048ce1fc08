"""Settings of the world stage: where the base model, tokenizer and corpora come from.

`WorldSettings` applies to every world (hub or synthetic); `SyntheticSettings` sizes the
offline world: its generated reviews, its tokenizer and the GPT-NeoX pretrained on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lfp_engine.run.fields import one_of, require
from lfp_engine.run.precision import Precision

WorldKind = Literal["synthetic", "hub"]
Dtype = Literal["float32", "bfloat16", "float16"]


@dataclass
class WorldSettings:
    """Where the base model, tokenizer and corpora come from (paper 3.1)."""

    kind: WorldKind = "synthetic"
    """'synthetic' builds the offline movie-review world; 'hub' loads models and data by id or path."""
    base_model: str = ""
    """Hub id or local checkpoint path of the base model (hub worlds)."""
    corpus: str = ""
    """Hub dataset id or local path (file or `save_to_disk` folder) of the review corpus (the paper: IMDb)."""
    corpus_text_field: str = "text"
    """Column of the corpus that holds the text."""
    preference_dataset: str = ""
    """Hub id or path of DPO preference pairs; '' takes the task's default (synthetic worlds: their own)."""
    n_preference_pairs: int = 40000
    """At most this many preference pairs (the paper's 5000 DPO steps x batch 8)."""
    n_corpus_texts: int = 25000
    """At most this many corpus texts are kept (prompts, activations and triples draw on them)."""
    prompt_min_tokens: int = 2
    """Shortest RL prompt, in tokens: a prompt is the first 2-9 tokens of a training text (the paper's)."""
    prompt_max_tokens: int = 9
    """Longest RL prompt, in tokens."""
    n_rl_prompts: int = 4096
    """RL prompts cut from the training split (the paper drew them from IMDb's 25,000 training reviews)."""
    eval_prefix_tokens: int = 30
    """Length in tokens of the held-out prefixes the evaluation and the ablation complete (the paper: 30)."""
    n_eval_prompts: int = 1000
    """Held-out prefixes cut from the test split (the paper: 1000 completions per model)."""
    max_length: int = 512
    """Longest sequence (prompt + completion) any stage feeds the model, in tokens."""
    dtype: Dtype = "float32"
    """Weights' floating-point type when a stage loads the models (the Gemma preset: bfloat16)."""

    def __post_init__(self) -> None:
        one_of("world.kind", self.kind, WorldKind)
        if self.kind == "hub":
            require(bool(self.base_model), "setting world.base_model: a hub world needs a model id or local path")
        require(bool(self.corpus_text_field), "setting world.corpus_text_field: name the column that holds the text")
        require(1 <= self.prompt_min_tokens <= self.prompt_max_tokens,
                "settings world.prompt_min_tokens/prompt_max_tokens: need 1 <= min <= max")
        require(self.n_rl_prompts >= 1, "setting world.n_rl_prompts: must be at least 1")
        require(self.eval_prefix_tokens >= 1, "setting world.eval_prefix_tokens: must be at least 1")
        require(self.n_eval_prompts >= 2, "setting world.n_eval_prompts: must be at least 2")
        require(self.n_corpus_texts >= 10, "setting world.n_corpus_texts: must be at least 10")
        require(self.max_length >= 8, "setting world.max_length: must be at least 8")
        require(self.n_preference_pairs >= 10, "setting world.n_preference_pairs: must be at least 10")
        one_of("world.dtype", self.dtype, Dtype)


@dataclass
class SyntheticSettings:
    """The offline world: corpus generator, tokenizer and the GPT-NeoX pretrained on them.

    Not in the paper, which used IMDb and pretrained hub models; the `small` preset gives this
    model Pythia-70m's exact shape.
    """

    n_reviews: int = 20000
    """Reviews generated (train and test splits together)."""
    test_fraction: float = 0.1
    """Share of reviews in the test split (evaluation prefixes, held-out activations, triples)."""
    heldout_word_fraction: float = 0.2
    """Share of sentiment words never shown in RL prompts, so the probe can be tested on unseen words."""
    neutral_slot_prob: float = 0.12
    """Chance that a sentiment slot takes a neutral filler word instead of a lexicon word."""
    negation_prob: float = 0.08
    """Chance that a sentiment slot is negated ("not bad"), which the raw lexicon reads wrongly."""
    word_spread: float = 0.7
    """Std-dev (lexicon units) of a slot's word around the review's sentiment: lower = more coherent."""
    n_contested_words: int = 16
    """Planted contested words: lexicon adjectives the corpus uses with the opposite polarity (slang
    praise such as "sick", faint praise such as "safe" as criticism), half of each lexicon polarity
    (the odd one negative); 0 plants none."""
    n_reward_only_words: int = 16
    """Planted reward-only words: lexicon words used only as names ("Hope", "Fury"), where they say
    nothing about a review's sentiment, half of each polarity; 0, or at least 4 so that each side
    of the probe's word split has a positive and a negative one."""
    vocab_size: int = 2048
    """Tokens of the byte-level BPE tokenizer trained on the reviews (256 bytes + specials + merges)."""
    hidden_size: int = 128
    """Width of the residual stream (d_model); Pythia-70m: 512."""
    num_layers: int = 6
    """Transformer layers; Pythia-70m: 6."""
    num_heads: int = 4
    """Attention heads per layer; must divide `hidden_size`. Pythia-70m: 8."""
    intermediate_size: int = 512
    """Width of each MLP's hidden layer; Pythia-70m: 2048."""
    context_length: int = 128
    """Tokens per pretraining block, and the model's longest context."""
    rotary_pct: float = 0.25
    """Share of each head's dimensions that get rotary position embeddings (Pythia's 0.25)."""
    pretrain_epochs: float = 1.0
    """Passes over the training reviews (fractions allowed); the tiny preset uses 6."""
    pretrain_batch_size: int = 32
    """Blocks of `context_length` tokens per optimizer step."""
    pretrain_lr: float = 3e-3
    """Peak AdamW learning rate, after linear warm-up, decaying on a cosine to a tenth."""
    pretrain_warmup_steps: int = 50
    """Optimizer steps of linear warm-up (at most half of all steps)."""
    pretrain_weight_decay: float = 0.01
    """AdamW weight decay of the weight matrices (biases and norms get none)."""
    pretrain_precision: Precision = "float32"
    """'float32', or 'bfloat16': the model's matrix products under bfloat16 autocast (weights, Adam,
    attention and the loss stay float32), 1.3-1.7x faster on this project's CPU (AVX-512 BF16);
    where the device lacks native bfloat16, float32 is used and the log says so. The tiny preset
    uses bfloat16 (docs/benchmarks.md: same held-out loss and base-model criterion)."""

    def __post_init__(self) -> None:
        require(self.n_reviews >= 50, "setting synthetic.n_reviews: must be at least 50")
        for name in ("test_fraction", "heldout_word_fraction"):
            value = getattr(self, name)
            require(0 < value < 1, f"setting synthetic.{name}: must be strictly between 0 and 1, got {value}")
        for name in ("neutral_slot_prob", "negation_prob"):
            value = getattr(self, name)
            require(0 <= value < 1, f"setting synthetic.{name}: must be in [0, 1), got {value}")
        require(self.word_spread > 0, "setting synthetic.word_spread: must be positive")
        from lfp_engine.worlds.synthetic_reviews import planted_limits  # the candidates are data, read on demand

        limits = planted_limits()
        require(0 <= self.n_contested_words <= limits["contested"],
                f"setting synthetic.n_contested_words: expected 0 to {limits['contested']} (the candidates), "
                f"got {self.n_contested_words}")
        require(self.n_reward_only_words == 0 or 4 <= self.n_reward_only_words <= limits["reward_only"],
                f"setting synthetic.n_reward_only_words: expected 0, or 4 (a positive and a negative name on each "
                f"side of the held-out split) to {limits['reward_only']}, got {self.n_reward_only_words}")
        require(self.vocab_size >= 300, "setting synthetic.vocab_size: must be at least 300 (256 bytes + specials)")
        require(self.hidden_size >= 8 and self.num_layers >= 1 and self.num_heads >= 1 and self.intermediate_size >= 8,
                "settings synthetic.hidden_size/num_layers/num_heads/intermediate_size: must be positive")
        require(self.hidden_size % self.num_heads == 0,
                f"settings synthetic.hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        require(self.context_length >= 16, "setting synthetic.context_length: must be at least 16")
        require(0 < self.rotary_pct <= 1, "setting synthetic.rotary_pct: must be in (0, 1]")
        require(self.pretrain_epochs > 0 and self.pretrain_lr > 0 and self.pretrain_batch_size >= 1,
                "settings synthetic.pretrain_*: epochs, lr and batch size must be positive")
        require(self.pretrain_warmup_steps >= 0, "setting synthetic.pretrain_warmup_steps: cannot be negative")
        require(self.pretrain_weight_decay >= 0, "setting synthetic.pretrain_weight_decay: cannot be negative")
        one_of("synthetic.pretrain_precision", self.pretrain_precision, Precision)
