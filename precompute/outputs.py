"""What each stage records in the run manifest: one typed summary per stage.

Later stages read these as attributes (`ctx.outputs_of(DivergenceOutputs).layers`); `lfp status`
prints them. They live in one module, apart from the stages, so that a stage can read another's
summary without importing its code, and so that the manifest's contract reads in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from lfp_engine.explain.llm import Usage

from .stage import StageOutputs


@dataclass(frozen=True)
class WorldOutputs(StageOutputs):
    stage: ClassVar[str] = "world"
    folder: str
    vocab_size: int
    n_rl_prompts: int
    n_eval_prompts: int
    n_corpus_texts: int | None = None
    """Hub worlds: corpus texts kept."""
    n_reviews: int | None = None
    """Synthetic worlds: reviews generated."""
    n_parameters: int | None = None
    pretrain_steps: int | None = None
    pretrain_tokens: int | None = None
    pretrain_train_loss: float | None = None
    pretrain_test_loss: float | None = None
    pretrain_precision: str | None = None
    """Synthetic worlds: what pretraining's matrix products ran in (float32 where bfloat16 was asked
    for on a device without it)."""
    n_sentiment_words: int | None = None
    n_heldout_words: int | None = None


@dataclass(frozen=True)
class RlhfOutputs(StageOutputs):
    stage: ClassVar[str] = "rlhf"
    tuned_model: str
    """Where the tuned model is: './models/tuned' inside the run folder, or the path / hub id given."""
    method: str
    """'rloo', 'dpo' or 'given' (a tuned checkpoint brought in, only evaluated)."""
    kl_to_base: float
    mean_rewards: dict[str, float]
    """'<metric>_<model>' -> mean over the held-out openings (e.g. 'vader_reward_tuned')."""
    p_values: dict[str, float]
    """metric -> p-value of tuned vs base."""


@dataclass(frozen=True)
class DivergenceOutputs(StageOutputs):
    stage: ClassVar[str] = "divergence"
    layers: list[int]
    """The most divergent layers, ascending: the layers every later stage studies."""
    n_layers: int
    max_divergence: float


@dataclass(frozen=True)
class ActivationsOutputs(StageOutputs):
    stage: ClassVar[str] = "activations"
    folder: str
    models: list[str]
    """Models whose activations were captured ('tuned', and 'base' for the baselines)."""
    layers: list[int]
    max_tokens_per_text: int
    """Tokens of each text read (after cutting to the model's window): the window later stages use."""
    n_train_rows: int
    n_eval_rows: int
    d_model: int


@dataclass(frozen=True)
class SaeOutputs(StageOutputs):
    stage: ClassVar[str] = "sae"
    folder: str
    models: list[str]
    n_saes: int
    train_seconds: float
    mean_variance_explained: float
    mean_loss_recovered: float | None
    """Over the tuned model's dictionaries that have a loss recovered (`n_loss_recovered` of `n_saes`):
    None when none has, because zeroing their layers barely changes the loss (`sae.metrics.LossRecovered`)."""
    n_loss_recovered: int
    mean_l0: float


@dataclass(frozen=True)
class FeaturesOutputs(StageOutputs):
    stage: ClassVar[str] = "features"
    n_features: int
    n_shared: int
    mean_max_cosine: dict[str, float]
    """Layer -> mean max decoder cosine of the smaller dictionary to the larger one."""


@dataclass(frozen=True)
class LlmUse:
    """Which endpoint answered a stage's requests, and how many it took."""

    endpoint: dict[str, Any]
    usage: Usage


@dataclass(frozen=True)
class ContrastiveOutputs(StageOutputs):
    stage: ClassVar[str] = "contrastive"
    kind: str
    """'word' (substitution triples, reward tasks) or 'text' (rewrites, preference tasks)."""
    n_triples: int
    n_by_split: dict[str, int]
    n_words: dict[str, int] | None = None
    """Word triples: words per split."""
    llm: LlmUse | None = None
    llm_failed: int = 0


@dataclass(frozen=True)
class PolicyOutputs(StageOutputs):
    stage: ClassVar[str] = "policy"
    beta: float
    """The KL coefficient the values are scaled by (`rlhf.beta` or `dpo.beta`)."""
    n_elements: int
    """Triple elements read (positive and negative, each against its neutral)."""
    n_words: int
    """Words with a policy value (word triples; 0 for text triples)."""
    headline: dict[str, float] = field(default_factory=dict)
    """'<metric>_<subset>' -> value of the lens's headline measures (`policy_metrics`)."""


@dataclass(frozen=True)
class ProbeOutputs(StageOutputs):
    stage: ClassVar[str] = "probe"
    kind: str
    """'regression' (word triples) or 'logistic' (text triples)."""
    alpha: float
    n_features: int
    folder: str
    headline: dict[str, float] = field(default_factory=dict)
    """'<variant>_<metric>[_within]' -> value on the test split (Kendall tau pooled or within polarity,
    or accuracy), and '..._p' its p-value."""


@dataclass(frozen=True)
class ExplainOutputs(StageOutputs):
    stage: ClassVar[str] = "explain"
    n_explained: int
    n_failed: int
    source: str | None
    n_relevant: dict[str, int]
    n_questions: int
    llm: LlmUse | None = None


@dataclass(frozen=True)
class ValidateOutputs(StageOutputs):
    stage: ClassVar[str] = "validate"
    n_relevant_features: int
    n_strong_inputs: int
    n_inputs: int
    probe_value_p99: float
    firing_rates: dict[str, float]
    """Group ('relevant', 'matched_shared', 'all') -> mean firing rate on the strong inputs."""
    enrichment: dict[str, float]
    """Group -> mean enrichment (rate on strong inputs / rate on all); 'relevant_vs_matched': their ratio."""
    frequency_p_value: float
    """One-sided Mann-Whitney U, relevant enrichment > matched shared features'."""
    mean_rewards: dict[str, float] = field(default_factory=dict)
    """Ablation condition -> mean reward ('none', 'relevant', 'random': over the draws)."""
    p_values: dict[str, float] = field(default_factory=dict)
    """'relevant_vs_none', 'random_vs_none', 'relevant_vs_random', 'relevant_vs_random_draws' -> p-value."""
    notes: list[str] = field(default_factory=list)
    """Why a comparison is missing (e.g. no feature judged relevant)."""


@dataclass(frozen=True)
class CrosscoderOutputs(StageOutputs):
    stage: ClassVar[str] = "crosscoder"
    folder: str
    layers: list[int]
    dict_size: int
    architecture: str
    train_seconds: float
    n_by_tag: dict[str, int]
    """Tag -> latents over all layers ('tuned-only', 'base-only', 'shared', 'changed', 'dead')."""
    n_specific: int
    """Tuned-only latents that Latent Scaling confirms (the base model needs little of them)."""
    variance_explained: dict[str, float]
    """Model -> mean over layers of the variance of its activations the crosscoder explains."""
    loss_recovered: dict[str, float | None]
    """Model -> mean over the layers that have one of the loss recovered with the crosscoder spliced
    into it (None: no layer has one; `sae.metrics.LossRecovered`)."""
    top_latents: list[str] = field(default_factory=list)
    """The tuned-only latents with the strongest link to the reward, 'layer/dict_size/feature', best first."""
    probe_headline: dict[str, float] = field(default_factory=dict)
    """The probe on crosscoder codes on the test split ('kendall_tau' or 'accuracy', and '_p')."""


@dataclass(frozen=True)
class BehaviourOutputs(StageOutputs):
    stage: ClassVar[str] = "behaviour"
    n_openings: int
    """Held-out openings both models completed (0: the world has no planted ground truth)."""
    n_words: int
    """Words of the world's ground truth counted."""
    n_changed: int
    """Of them, words whose use tuning changed (McNemar, Benjamini-Hochberg q < 0.05)."""


@dataclass(frozen=True)
class WordReportOutputs(StageOutputs):
    stage: ClassVar[str] = "word_report"
    n_words: int
    """Words in the divergence report (`lfp_divergence`)."""
    n_divergent: int
    """Words flagged divergent inside the model (the rule of `lfp_engine.report.divergence`)."""
    n_policy_divergent: int = 0
    """Words the policy learned against the reward (the same rule on the policy lens)."""
    recall: dict[str, float] = field(default_factory=dict)
    """'<lens>_<kind>' -> share of the kind's words with the outcome the lens should find (worlds with
    ground truth; `lfp_engine.report.divergence.EXPECTED`)."""
    precision: dict[str, float] = field(default_factory=dict)
    """lens -> share of its against-the-reward readings on words planted to be read so (worlds with
    ground truth; absent when the lens read none against the reward)."""
