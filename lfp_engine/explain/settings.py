"""Settings of the explanation step (paper 3.4, 4.2, appendix G) and of the LLM it may ask."""

from __future__ import annotations

from dataclasses import dataclass

from lfp_engine.run.fields import require


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

    def __post_init__(self) -> None:
        require(self.max_llm_features >= 1, "setting explain.max_llm_features: must be at least 1")
        require(0 < self.shown_fraction < 1, "setting explain.shown_fraction: must be strictly between 0 and 1")
        require(self.n_windows >= 1 and self.n_quiet >= 1,
                "settings explain.n_windows and explain.n_quiet: must be at least 1")
        require(0 <= self.relevance_min_r <= 1, "setting explain.relevance_min_r: must be in [0, 1]")
        require(0 < self.relevance_max_p <= 1, "setting explain.relevance_max_p: must be in (0, 1]")
        require(self.n_questions >= 0, "setting explain.n_questions: cannot be negative")


@dataclass
class LlmSettings:
    """An OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, Ollama) for rewrites and explanations.

    The key is read from the environment variable named here, never from settings, so it can
    never end up in a stored config. With neither a base URL (here or $OPENAI_BASE_URL) nor a
    key, stages fall back to their offline generators and say so in their data.
    """

    base_url: str = ""
    """Endpoint's base URL, e.g. http://localhost:8000/v1; '' takes $OPENAI_BASE_URL, else OpenAI's."""
    model: str = "gpt-4o-mini"
    """Model asked for explanations and rewrites (the paper: GPT-4 explains, LLaMA-3-8b rewrites)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable that holds the key (never the key itself)."""
    max_concurrency: int = 4
    """Requests in flight at once."""
    max_retries: int = 4
    """Retries of a failed request (rate limits, server errors, timeouts), with exponential backoff."""
    timeout_s: float = 60.0
    """Seconds a request may take before it counts as failed."""
    temperature: float = 0.0
    """Sampling temperature of the answers (0: the most likely answer, reproducible where the server is)."""
    max_tokens: int = 600
    """Longest answer, in tokens."""

    def __post_init__(self) -> None:
        require(bool(self.model), "setting llm.model: name the model to ask")
        require(bool(self.api_key_env), "setting llm.api_key_env: name the environment variable holding the key")
        require(1 <= self.max_concurrency <= 64, "setting llm.max_concurrency: must be between 1 and 64")
        require(0 <= self.max_retries <= 20, "setting llm.max_retries: must be between 0 and 20")
        require(self.timeout_s > 0, "setting llm.timeout_s: must be positive")
        require(0 <= self.temperature <= 2, "setting llm.temperature: must be in [0, 2]")
        require(self.max_tokens >= 16, "setting llm.max_tokens: must be at least 16")
