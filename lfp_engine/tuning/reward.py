"""Reward functions of the fine-tuning tasks (paper section 3.1 and appendix B).

`VaderReward` is equation 3: R(s) = clip((1/5) * sum_t V(t), -10, 10) over the spaCy tokens of
s, with V the raw VADER lexicon. `ClassifierReward` is appendix B's alternative: the logit of
the positive label of a sentiment classifier named by Hugging Face id or local path.
Both score a batch of texts at once and return float64 arrays, so TRL's trainers, the
evaluation and the app all call them the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np
import torch

from lfp_engine.tuning.settings import RewardSettings
from lfp_engine.run.errors import ConfigError, InputError
from lfp_engine.tuning.lexicon import vader_lexicon, word_spans, word_tokens
from lfp_engine.run.tasks import TaskSpec


class RewardFunction(Protocol):
    name: str

    def __call__(self, texts: Sequence[str]) -> np.ndarray: ...


class VaderReward:
    """The paper's lexicon reward: sum of raw lexicon values of the lower-cased tokens / 5, clipped."""

    name = "vader"

    def __init__(self, lexicon: Mapping[str, float] | None = None, scale: float = 0.2, clip: float = 10.0):
        self.lexicon = vader_lexicon() if lexicon is None else lexicon
        self.scale = scale
        self.clip = clip

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        lexicon = self.lexicon
        return np.fromiter(
            (self.aggregate(lexicon.get(token, 0.0) for token in tokens) for tokens in word_tokens(texts)),
            dtype=np.float64,
            count=len(texts),
        )

    def aggregate(self, word_values: Iterable[float]) -> float:
        """Equation 3 on the values of a text's words: clip(scale x sum, -clip, clip). The reward
        applies it to lexicon values; the implicit text reward to the probe's values of the same
        words, so the two share units."""
        return float(np.clip(self.scale * sum(word_values, 0.0), -self.clip, self.clip))

    def token_values(self, text: str) -> list[tuple[str, int, int, float]]:
        """Each spaCy token of `text` with its character span and lexicon value (0 when absent)."""
        return [(tok, start, end, self.lexicon.get(tok, 0.0)) for tok, start, end in word_spans(text)]


def positive_label_index(id2label: Mapping[int, str], wanted: str = "") -> int:
    """Index of the classifier's positive class: the named label, or the one that reads as positive.

    Sentiment classifiers on the hub label their classes 'POSITIVE', 'pos', 'LABEL_1' (binary,
    with 1 = positive by convention, as `lvwerra/distilbert-imdb` does).
    """
    labels = {int(i): str(label) for i, label in id2label.items()}
    if wanted:
        for i, label in labels.items():
            if label.lower() == wanted.lower():
                return i
        raise ConfigError(f"classifier has no label {wanted!r}; its labels are {sorted(labels.values())}")
    for i, label in labels.items():
        if label.lower() in {"positive", "pos"}:
            return i
    if len(labels) == 2 and set(labels) == {0, 1} and labels[1].upper() == "LABEL_1":
        return 1
    raise ConfigError(
        f"cannot tell which classifier label is positive among {sorted(labels.values())}; "
        "set reward.classifier_positive_label"
    )


class ClassifierReward:
    """Appendix B: the positive-class logit of a sequence classifier."""

    name = "classifier"

    def __init__(self, model, tokenizer, positive_label: str = "", batch_size: int = 64,
                 max_length: int = 512):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.index = positive_label_index(model.config.id2label, positive_label)
        self.batch_size = batch_size
        self.max_length = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: torch.device, **kwargs) -> ClassifierReward:
        from lfp_engine.models.hub import load_sequence_classifier

        model, tokenizer = load_sequence_classifier(name_or_path, device)
        return cls(model, tokenizer, **kwargs)

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros(0, dtype=np.float64)
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(device)
            out.append(self.model(**batch).logits[:, self.index].double().cpu())
        return torch.cat(out).numpy()


def scored_texts(prompts: Sequence[str], completions: Sequence[str], score_prefix: bool) -> list[str]:
    """The text a reward sees: prefix + completion (the authors' trained models) or completion only."""
    if len(prompts) != len(completions):
        raise InputError(f"{len(prompts)} prompts but {len(completions)} completions")
    return [p + c for p, c in zip(prompts, completions)] if score_prefix else list(completions)


def build_reward(spec: TaskSpec, settings: RewardSettings, device: torch.device) -> RewardFunction | None:
    """The reward of a task (None for preference tasks, which have no reward function)."""
    if spec.reward == "vader":
        return VaderReward(scale=settings.scale, clip=settings.clip)
    if spec.reward == "classifier":
        return ClassifierReward.from_pretrained(settings.classifier, device,
                                                positive_label=settings.classifier_positive_label,
                                                batch_size=settings.batch_size)
    return None
