"""Settings of a run: typed sections, preset defaults, `--set key=value` overrides, validation.

A run's behaviour is fully determined by one `RunConfig`. Each pipeline stage fingerprints
the sections it reads, so changing a setting re-runs exactly the stages it affects. Values are
checked when the config is built, so an out-of-range setting fails before any work starts and
before anything in the run folder is touched.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from lfp_engine.run.errors import ConfigError
from lfp_engine.run.tasks import TASKS

SAE_ARCHITECTURES = ("tied", "untied", "topk")


@dataclass
class WorldSettings:
    """Where the base model, tokenizer and corpora come from."""

    kind: str = "synthetic"
    """'synthetic' builds the offline movie-review world; 'hub' loads models and data by id or path."""
    base_model: str = ""
    """Hub id or local checkpoint path of the base model (hub worlds)."""
    corpus: str = ""
    """Hub dataset id or local path (file or `save_to_disk` folder) of the review corpus."""
    corpus_text_field: str = "text"
    preference_dataset: str = ""
    """Hub id or path of DPO preference pairs; '' takes the task's default (synthetic worlds: their own)."""
    n_preference_pairs: int = 40000
    """At most this many preference pairs (the paper's 5000 DPO steps x batch 8)."""
    n_corpus_texts: int = 25000
    """At most this many corpus texts are kept (prompts, activations and triples draw on them)."""
    prompt_min_tokens: int = 2
    prompt_max_tokens: int = 9
    n_rl_prompts: int = 4096
    eval_prefix_tokens: int = 30
    n_eval_prompts: int = 1000
    max_length: int = 512
    """Longest sequence (prompt + completion) any stage feeds the model."""
    dtype: str = "float32"


@dataclass
class SyntheticSettings:
    """The offline world: corpus generator, tokenizer and the GPT-NeoX pretrained on them."""

    n_reviews: int = 20000
    test_fraction: float = 0.1
    heldout_word_fraction: float = 0.2
    neutral_slot_prob: float = 0.12
    negation_prob: float = 0.08
    word_spread: float = 0.7
    """Std-dev (lexicon units) of a slot's word around the review's sentiment: lower = more coherent."""
    vocab_size: int = 2048
    hidden_size: int = 128
    num_layers: int = 6
    num_heads: int = 4
    intermediate_size: int = 512
    context_length: int = 128
    rotary_pct: float = 0.25
    pretrain_epochs: float = 1.0
    pretrain_batch_size: int = 32
    pretrain_lr: float = 3e-3
    pretrain_warmup_steps: int = 50
    pretrain_weight_decay: float = 0.01


@dataclass
class RlhfSettings:
    """Online RL (TRL's RLOO), with the paper's PPO settings mapped onto it (see lfp_engine/rlhf.py)."""

    steps: int = 1000
    """Optimizer steps."""
    generation_batch_size: int = 64
    """Completions sampled per rollout phase (PPO's batch size)."""
    mini_batch_size: int = 16
    """Completions per optimizer step (PPO's mini-batch size)."""
    num_generations: int = 4
    """Completions per prompt; the leave-one-out baseline needs at least 2."""
    num_iterations: int = 1
    """Passes over each rollout batch (PPO's epochs)."""
    beta: float = 0.5
    """KL coefficient to the base model."""
    epsilon: float = 0.2
    """Clip range of the policy ratio."""
    learning_rate: float = 1e-6
    max_grad_norm: float = 1.0
    min_new_tokens: int = 8
    max_new_tokens: int = 19
    temperature: float = 1.0


@dataclass
class DpoSettings:
    steps: int = 5000
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 3e-5
    beta: float = 0.1
    adam_epsilon: float = 1e-8
    max_length: int = 512


@dataclass
class RewardSettings:
    score_prefix: bool = True
    """Score prefix + completion, as the authors' trained models did; False scores the completion only."""
    scale: float = 0.2
    clip: float = 10.0
    classifier: str = "lvwerra/distilbert-imdb"
    """Hub id or path of the sentiment classifier for task 'classifier' (paper appendix B)."""
    classifier_positive_label: str = ""
    """Label whose logit is the reward; '' finds the label that reads as positive."""
    batch_size: int = 64


@dataclass
class EvaluationSettings:
    """Base-vs-tuned reward comparison (earlier paper version, table 7)."""

    n_prompts: int = 1000
    max_new_tokens: int = 19
    min_new_tokens: int = 8
    temperature: float = 1.0
    batch_size: int = 64
    n_samples_stored: int = 40


@dataclass
class DivergenceSettings:
    top_k: int = 5


@dataclass
class ActivationSettings:
    """Which tokens' MLP outputs are captured for the SAEs (paper section 3.2)."""

    n_train_tokens: int = 75000
    """Token rows captured for SAE training: the paper's 75,000 training examples per SAE."""
    n_eval_tokens: int = 20000
    """Held-out token rows (corpus test split) on which every quality metric is measured."""
    max_tokens_per_text: int = 128
    """Each text is cut to this many tokens (and to the model's context) before capture."""
    batch_size: int = 64
    """Texts per forward pass."""
    shard_rows: int = 16384
    """Rows per shard file; a shard is the unit held in memory, so capture stays bounded."""
    prepend_bos: bool = True
    """Feed the document separator before each text, as in pretraining (its row is not stored)."""
    models: list[str] = field(default_factory=lambda: ["tuned", "base"])
    """Whose MLP outputs get captured, and so SAEs and feature statistics: the tuned model (the
    method's subject) and the base model (the probe's base-model baseline, appendix B's comparison)."""


@dataclass
class SaeSettings:
    """The sparse autoencoders: the paper's tied ReLU SAE by default (section 3.2, appendix F)."""

    architecture: str = "tied"
    """'tied' (decoder = encoder transposed, the paper's), 'untied', or 'topk' (k largest codes kept)."""
    dict_multipliers: list[int] = field(default_factory=lambda: [1, 2])
    """Hidden sizes as multiples of the input width: the paper's two dictionaries n and 2n."""
    l1_coefficient: float = 1e-3
    learning_rate: float = 1e-3
    batch_size: int = 32
    n_train_examples: int = 75000
    """Activation rows seen in training; more than the captured rows means several epochs."""
    topk: int = 32
    """k of the 'topk' architecture (unused by the others)."""
    dense_threshold: float = 0.1
    """A feature firing on more than this fraction of tokens counts as dense."""
    eval_batch_size: int = 32
    """Texts per forward pass when measuring the spliced-in language-model loss."""


@dataclass
class FeatureSettings:
    """Per-feature statistics and what a feature page shows (paper section 3.4)."""

    shared_threshold: float = 0.7
    """A feature whose best twin in the other dictionary has a higher decoder cosine is 'shared'."""
    n_top_examples: int = 20
    n_quantiles: int = 5
    """Bands of equal probability mass over a feature's non-zero activations, sampled for examples."""
    examples_per_quantile: int = 4
    context_before: int = 16
    context_after: int = 7
    """Tokens shown before and after the activating token (24 tokens with the defaults)."""
    histogram_bins: int = 40
    n_logits: int = 10
    """Tokens listed per feature in each direction (boosted, suppressed)."""
    n_neighbors: int = 10
    batch_rows: int = 8192
    """Activation rows encoded at once while streaming over the shards."""


@dataclass
class ContrastiveSettings:
    """Contrastive triples (paper 3.3)."""

    n_triples: int = 10000
    """Word-substitution triples (VADER task), shared between the word splits by their sizes."""
    max_context_chars: int = 600
    """Preceding context kept before the substituted word."""
    skip_negated: bool = True
    min_word_count: int = 5
    """Hub corpora: a lexicon word must occur this often to be substituted."""
    min_abs_value: float = 0.5
    """Hub corpora: words rated closer to zero than this are too weak to substitute."""
    test_fraction: float = 0.2
    """Share of words (hub) or texts (preference tasks) held out for testing the probe."""
    n_text_triples: int = 1000
    """Preference tasks: entries rewritten (by the LLM, or the synthetic generator)."""


@dataclass
class ProbeSettings:
    """Probes on the implicit reward (paper 3.3, 4.1)."""

    cv_folds: int = 5
    """Word-grouped folds that choose the regularisation strength."""
    n_bootstrap: int = 1000
    """Resamples of words for the confidence interval of Kendall's tau."""
    batch_size: int = 32
    """Texts per forward pass when encoding the triples."""
    n_generation_prompts: int = 1000
    """Held-out prompts the tuned and base models complete to count how often they write each word."""
    max_pca_rows: int = 4000
    """Points kept in the stored PCA of the probe's inputs (figure 5)."""


@dataclass
class ExplainSettings:
    """Explanations, relevance labels and scores of the shared features (paper 3.4, 4.2, appendix G)."""

    max_llm_features: int = 10
    """With an LLM: the most-shared features explained per model, layer and dictionary (the paper: 10)."""
    shown_fraction: float = 0.6
    """Share of a feature's top examples the explainer sees; the rest are held out for scoring."""
    n_windows: int = 200
    """Random held-out text windows per dictionary, from which quiet examples are drawn."""
    n_quiet: int = 5
    """Quiet examples per feature in the detection task: the windows where it is weakest. For a
    sparse feature they are silent ones, as in the paper; a dense feature (active on a tenth of all
    tokens or more) is silent almost nowhere, and is scored on separating its strong examples from
    its weakest windows rather than left without a score."""
    relevance_min_r: float = 0.3
    """Offline relevance: |r| between activation and lexicon value must reach this..."""
    relevance_max_p: float = 0.01
    """...with a p-value below this."""
    n_questions: int = 20
    """Multiple-choice questions for the human check (appendix G)."""
    task_description: str = ""
    """What the tuning aimed at, for relevance labels; '' takes the task's description."""


@dataclass
class ValidateSettings:
    """The probe's validation against the explanations (paper tables 6 and 7)."""

    threshold: float = 3.0
    """Inputs whose implicit reward the probe puts above this (reward units) count as strong."""
    n_prompts: int = 1000
    """Held-out prefixes completed with and without ablation (the paper: 1000)."""
    n_random_draws: int = 3
    """Random feature sets ablated as the control; their rewards are averaged per prompt."""
    n_samples_stored: int = 20


@dataclass
class LlmSettings:
    """An OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, Ollama) for rewrites and explanations.

    The key is read from the environment variable named here, never from settings, so it can
    never end up in a stored config. With neither a base URL (here or $OPENAI_BASE_URL) nor a
    key, stages fall back to their offline generators and say so in their data.
    """

    base_url: str = ""
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 4
    max_retries: int = 4
    timeout_s: float = 60.0
    temperature: float = 0.0
    max_tokens: int = 600


@dataclass
class RunConfig:
    preset: str = "tiny"
    seed: int = 0
    task: str = "vader"
    device: str = "auto"
    tuned_model: str = ""
    """Hub id or path of an already tuned model (yours): the rlhf stage then only evaluates it."""
    world: WorldSettings = field(default_factory=WorldSettings)
    synthetic: SyntheticSettings = field(default_factory=SyntheticSettings)
    rlhf: RlhfSettings = field(default_factory=RlhfSettings)
    dpo: DpoSettings = field(default_factory=DpoSettings)
    reward: RewardSettings = field(default_factory=RewardSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    divergence: DivergenceSettings = field(default_factory=DivergenceSettings)
    activations: ActivationSettings = field(default_factory=ActivationSettings)
    sae: SaeSettings = field(default_factory=SaeSettings)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    contrastive: ContrastiveSettings = field(default_factory=ContrastiveSettings)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    explain: ExplainSettings = field(default_factory=ExplainSettings)
    validate: ValidateSettings = field(default_factory=ValidateSettings)
    llm: LlmSettings = field(default_factory=LlmSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section(self, name: str) -> dict[str, Any]:
        """One section (or top-level value) as plain data, for stage fingerprints."""
        value = getattr(self, name)
        return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


# ---------------------------------------------------------------------------------------
# Building a config from layers of overrides


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a parsed override to the field's declared type, or explain why it cannot be."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ConfigError(f"setting {key}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            raise ConfigError(f"setting {key}: expected a whole number, got {value!r}")
        return int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"setting {key}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"setting {key}: expected a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"setting {key}: expected text, got {value!r}")
        return str(value)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"setting {key}: expected a list, got {value!r}")
        (inner,) = typing.get_args(annotation) or (Any,)
        return value if inner is Any else [_coerce(v, inner, key) for v in value]
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """Split 'a.b=value'; the value is read as JSON when it parses (numbers, true, lists), else text."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def _apply(target: Any, data: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(target))
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in hints:
            valid = ", ".join(sorted(f"{prefix}{k}" for k in hints))
            raise ConfigError(f"unknown setting {full!r}; valid settings here: {valid}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"setting {full!r} is a section; set its fields, e.g. {full}.<field>=...")
            _apply(current, value, prefix=f"{full}.")
        else:
            setattr(target, key, _coerce(value, hints[key], full))


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{'a.b': 1} -> {'a': {'b': 1}}: dotted override keys to the nested shape of the config."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"setting {key!r} conflicts with a plain value set for {part!r}")
        node[parts[-1]] = value
    return out


def build_config(layers: list[dict[str, Any]]) -> RunConfig:
    """Apply nested override layers in order (preset, config file, --set) and validate."""
    config = RunConfig()
    for layer in layers:
        _apply(config, layer)
    validate(config)
    return config


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a stored config (as written by `RunConfig.to_dict`)."""
    return build_config([data])


def known_settings(data: dict[str, Any], target: Any = None) -> dict[str, Any]:
    """The settings of a stored config that this version knows. A run made by another version of
    LFP Explorer (settings added or retired since) still opens in the dashboard, which reads only
    a few sections; the pipeline itself refuses unknown settings."""
    target = RunConfig() if target is None else target
    hints = typing.get_type_hints(type(target))
    out = {}
    for key, value in data.items():
        if key not in hints:
            continue
        current = getattr(target, key)
        out[key] = known_settings(value, current) if dataclasses.is_dataclass(current) and isinstance(value, dict) \
            else value
    return out


# ---------------------------------------------------------------------------------------
# Validation: every range a user can get wrong, with the setting's name in the message


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(c: RunConfig) -> None:
    _require(c.task in TASKS, f"setting task: unknown task {c.task!r}; choose one of: {', '.join(TASKS)}")
    _require(c.device in {"auto", "cpu", "cuda"} or c.device.startswith("cuda:"),
             f"setting device: expected auto, cpu or cuda[:N], got {c.device!r}")
    _require(0 <= c.seed < 2**32, f"setting seed: expected 0 <= seed < 2**32, got {c.seed}")

    w = c.world
    _require(w.kind in {"synthetic", "hub"}, f"setting world.kind: expected synthetic or hub, got {w.kind!r}")
    if w.kind == "hub":
        _require(bool(w.base_model), "setting world.base_model: a hub world needs a model id or local path")
    _require(1 <= w.prompt_min_tokens <= w.prompt_max_tokens,
             "settings world.prompt_min_tokens/prompt_max_tokens: need 1 <= min <= max")
    _require(w.n_rl_prompts >= 1, "setting world.n_rl_prompts: must be at least 1")
    _require(w.eval_prefix_tokens >= 1, "setting world.eval_prefix_tokens: must be at least 1")
    _require(w.n_eval_prompts >= 2, "setting world.n_eval_prompts: must be at least 2")
    _require(w.n_corpus_texts >= 10, "setting world.n_corpus_texts: must be at least 10")
    _require(w.max_length >= 8, "setting world.max_length: must be at least 8")
    _require(w.n_preference_pairs >= 10, "setting world.n_preference_pairs: must be at least 10")
    _require(w.dtype in {"float32", "bfloat16", "float16"},
             f"setting world.dtype: expected float32, bfloat16 or float16, got {w.dtype!r}")

    s = c.synthetic
    _require(s.n_reviews >= 50, "setting synthetic.n_reviews: must be at least 50")
    for name in ("test_fraction", "heldout_word_fraction"):
        value = getattr(s, name)
        _require(0 < value < 1, f"setting synthetic.{name}: must be strictly between 0 and 1, got {value}")
    for name in ("neutral_slot_prob", "negation_prob"):
        value = getattr(s, name)
        _require(0 <= value < 1, f"setting synthetic.{name}: must be in [0, 1), got {value}")
    _require(s.word_spread > 0, "setting synthetic.word_spread: must be positive")
    _require(s.vocab_size >= 300, "setting synthetic.vocab_size: must be at least 300 (256 bytes + specials)")
    _require(s.hidden_size >= 8 and s.num_layers >= 1 and s.num_heads >= 1 and s.intermediate_size >= 8,
             "settings synthetic.hidden_size/num_layers/num_heads/intermediate_size: must be positive")
    _require(s.hidden_size % s.num_heads == 0,
             f"settings synthetic.hidden_size ({s.hidden_size}) must be divisible by num_heads ({s.num_heads})")
    _require(s.context_length >= 16, "setting synthetic.context_length: must be at least 16")
    _require(0 < s.rotary_pct <= 1, "setting synthetic.rotary_pct: must be in (0, 1]")
    _require(s.pretrain_epochs > 0 and s.pretrain_lr > 0 and s.pretrain_batch_size >= 1,
             "settings synthetic.pretrain_*: epochs, lr and batch size must be positive")

    r = c.rlhf
    _require(r.steps >= 1, "setting rlhf.steps: must be at least 1")
    _require(r.num_generations >= 2, "setting rlhf.num_generations: RLOO's leave-one-out baseline needs >= 2")
    _require(r.mini_batch_size >= 1 and r.generation_batch_size >= r.mini_batch_size,
             "settings rlhf.generation_batch_size must be >= rlhf.mini_batch_size >= 1")
    _require(r.generation_batch_size % r.mini_batch_size == 0,
             "setting rlhf.generation_batch_size must be a multiple of rlhf.mini_batch_size")
    _require(r.generation_batch_size % r.num_generations == 0,
             "setting rlhf.generation_batch_size must be a multiple of rlhf.num_generations")
    _require(r.beta >= 0, "setting rlhf.beta: the KL coefficient cannot be negative")
    _require(0 < r.epsilon < 1, "setting rlhf.epsilon: clip range must be in (0, 1)")
    _require(0 < r.learning_rate < 1, "setting rlhf.learning_rate: must be in (0, 1)")
    _require(r.max_grad_norm > 0, "setting rlhf.max_grad_norm: must be positive")
    _require(1 <= r.min_new_tokens <= r.max_new_tokens,
             "settings rlhf.min_new_tokens/max_new_tokens: need 1 <= min <= max")
    _require(r.temperature > 0, "setting rlhf.temperature: must be positive")
    _require(r.num_iterations >= 1, "setting rlhf.num_iterations: must be at least 1")

    d = c.dpo
    _require(d.steps >= 1 and d.batch_size >= 1 and d.gradient_accumulation_steps >= 1,
             "settings dpo.steps/batch_size/gradient_accumulation_steps: must be at least 1")
    _require(0 < d.learning_rate < 1, "setting dpo.learning_rate: must be in (0, 1)")
    _require(d.beta > 0, "setting dpo.beta: must be positive")
    _require(d.max_length >= 8, "setting dpo.max_length: must be at least 8")

    rw = c.reward
    _require(rw.scale > 0, "setting reward.scale: must be positive")
    _require(rw.clip > 0, "setting reward.clip: must be positive")
    _require(rw.batch_size >= 1, "setting reward.batch_size: must be at least 1")

    e = c.evaluation
    _require(e.n_prompts >= 2, "setting evaluation.n_prompts: a significance test needs at least 2 prompts")
    _require(1 <= e.min_new_tokens <= e.max_new_tokens,
             "settings evaluation.min_new_tokens/max_new_tokens: need 1 <= min <= max")
    _require(e.temperature > 0, "setting evaluation.temperature: must be positive")
    _require(e.batch_size >= 1 and e.n_samples_stored >= 0,
             "settings evaluation.batch_size >= 1 and evaluation.n_samples_stored >= 0")

    _require(c.divergence.top_k >= 1, "setting divergence.top_k: must be at least 1")

    a = c.activations
    _require(a.n_train_tokens >= 64, "setting activations.n_train_tokens: must be at least 64")
    _require(a.n_eval_tokens >= 16, "setting activations.n_eval_tokens: must be at least 16")
    _require(a.max_tokens_per_text >= 2, "setting activations.max_tokens_per_text: must be at least 2")
    _require(a.batch_size >= 1, "setting activations.batch_size: must be at least 1")
    _require(a.shard_rows >= 256, "setting activations.shard_rows: must be at least 256")
    _require("tuned" in a.models and set(a.models) <= {"tuned", "base"} and len(set(a.models)) == len(a.models),
             f"setting activations.models: expected [\"tuned\"] or [\"tuned\", \"base\"], got {a.models}")

    sa = c.sae
    _require(sa.architecture in SAE_ARCHITECTURES,
             f"setting sae.architecture: expected one of {', '.join(SAE_ARCHITECTURES)}, got {sa.architecture!r}")
    sizes = sa.dict_multipliers
    _require(len(sizes) == 2 and all(x >= 1 for x in sizes) and sizes[0] < sizes[1],
             f"setting sae.dict_multipliers: expected two increasing whole numbers >= 1 (the paper: [1, 2]), "
             f"got {sizes}; a dictionary size of zero has no features")
    _require(sa.l1_coefficient >= 0, "setting sae.l1_coefficient: cannot be negative")
    _require(0 < sa.learning_rate < 1, "setting sae.learning_rate: must be in (0, 1)")
    _require(sa.batch_size >= 1 and sa.eval_batch_size >= 1,
             "settings sae.batch_size and sae.eval_batch_size: must be at least 1")
    _require(sa.n_train_examples >= sa.batch_size,
             "setting sae.n_train_examples: must be at least one batch (sae.batch_size)")
    _require(sa.topk >= 1, "setting sae.topk: must be at least 1")
    _require(0 < sa.dense_threshold <= 1, "setting sae.dense_threshold: must be in (0, 1]")

    f = c.features
    _require(-1 <= f.shared_threshold <= 1, "setting features.shared_threshold: a cosine, must be in [-1, 1]")
    _require(f.n_top_examples >= 1, "setting features.n_top_examples: must be at least 1")
    _require(f.n_quantiles >= 1 and f.examples_per_quantile >= 0,
             "settings features.n_quantiles >= 1 and features.examples_per_quantile >= 0")
    _require(f.context_before >= 0 and f.context_after >= 0,
             "settings features.context_before/context_after: cannot be negative")
    _require(f.histogram_bins >= 1, "setting features.histogram_bins: must be at least 1")
    _require(f.n_logits >= 1 and f.n_neighbors >= 1, "settings features.n_logits/n_neighbors: must be at least 1")
    _require(f.batch_rows >= 1, "setting features.batch_rows: must be at least 1")

    k = c.contrastive
    _require(k.n_triples >= 10, "setting contrastive.n_triples: must be at least 10")
    _require(k.max_context_chars >= 0, "setting contrastive.max_context_chars: cannot be negative")
    _require(k.min_word_count >= 1, "setting contrastive.min_word_count: must be at least 1")
    _require(0 <= k.min_abs_value < 4, "setting contrastive.min_abs_value: must be in [0, 4)")
    _require(0 < k.test_fraction < 1, "setting contrastive.test_fraction: must be strictly between 0 and 1")
    _require(k.n_text_triples >= 10, "setting contrastive.n_text_triples: must be at least 10")

    p = c.probe
    _require(2 <= p.cv_folds <= 20, "setting probe.cv_folds: must be between 2 and 20")
    _require(p.n_bootstrap >= 0, "setting probe.n_bootstrap: cannot be negative")
    _require(p.batch_size >= 1, "setting probe.batch_size: must be at least 1")
    _require(p.n_generation_prompts >= 1, "setting probe.n_generation_prompts: must be at least 1")
    _require(p.max_pca_rows >= 10, "setting probe.max_pca_rows: must be at least 10")

    x = c.explain
    _require(x.max_llm_features >= 1, "setting explain.max_llm_features: must be at least 1")
    _require(0 < x.shown_fraction < 1, "setting explain.shown_fraction: must be strictly between 0 and 1")
    _require(x.n_windows >= 1 and x.n_quiet >= 1, "settings explain.n_windows and explain.n_quiet: must be at least 1")
    _require(0 <= x.relevance_min_r <= 1, "setting explain.relevance_min_r: must be in [0, 1]")
    _require(0 < x.relevance_max_p <= 1, "setting explain.relevance_max_p: must be in (0, 1]")
    _require(x.n_questions >= 0, "setting explain.n_questions: cannot be negative")

    v = c.validate
    _require(math.isfinite(v.threshold), "setting validate.threshold: must be a finite number")
    _require(v.n_prompts >= 2, "setting validate.n_prompts: a paired test needs at least 2 prompts")
    _require(v.n_random_draws >= 1, "setting validate.n_random_draws: must be at least 1")
    _require(v.n_samples_stored >= 0, "setting validate.n_samples_stored: cannot be negative")

    m = c.llm
    _require(bool(m.model), "setting llm.model: name the model to ask")
    _require(bool(m.api_key_env), "setting llm.api_key_env: name the environment variable holding the key")
    _require(1 <= m.max_concurrency <= 64, "setting llm.max_concurrency: must be between 1 and 64")
    _require(0 <= m.max_retries <= 20, "setting llm.max_retries: must be between 0 and 20")
    _require(m.timeout_s > 0, "setting llm.timeout_s: must be positive")
    _require(0 <= m.temperature <= 2, "setting llm.temperature: must be in [0, 2]")
    _require(m.max_tokens >= 16, "setting llm.max_tokens: must be at least 16")
