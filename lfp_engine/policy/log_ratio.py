"""beta log pi_tuned(y_t | x, y<t) / pi_base(y_t | x, y<t), token by token (docs/method.md, "The policy lens").

Both models read the same token ids under the same prompt (`generation.token_logprobs`: batched,
padding never scored, float64 log-softmax); beta is the KL coefficient the policy was tuned with
(`task_beta`), so the values are in the reward's units when the tuned model is at the optimum of
its objective. The tuned model is not at that optimum, and a text it would never write (or tokens far
from its training data) gives large, noisy log-ratios: readings are meaningful where they are
averaged over many natural contexts (the triples) or compared under one prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from lfp_engine.models.generation import token_logprobs
from lfp_engine.run.config import RunConfig
from lfp_engine.run.errors import InputError
from lfp_engine.run.tasks import task_spec


def task_beta(config: RunConfig) -> float:
    """The KL coefficient of the run's tuning: `rlhf.beta` for RL tasks, `dpo.beta` for DPO tasks (for a
    model tuned elsewhere, `tuned_model`, the setting must say what it was tuned with)."""
    return config.rlhf.beta if task_spec(config.task).method == "rloo" else config.dpo.beta


@dataclass(frozen=True)
class EncodedText:
    """A text's token ids after its context (the prompt's tokens, or the document separator), with
    each text token's character span; `truncated` when the model's window cut it."""

    context: list[int]
    ids: list[int]
    offsets: list[tuple[int, int]]
    truncated: bool


@dataclass(frozen=True)
class PolicyPair:
    """The tuned policy, the base model it was held to (the reference of the KL penalty), and beta."""

    tuned: nn.Module
    base: nn.Module
    tokenizer: Any
    beta: float
    max_tokens: int
    """The models' window: context and text together are cut to it."""
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise InputError(f"the policy's implicit reward needs the KL coefficient beta > 0, got {self.beta}: "
                             "without a KL penalty the tuned policy is not tied to its base")
        if self.max_tokens < 2:
            raise InputError(f"the models' window must hold at least 2 tokens, got {self.max_tokens}")

    @property
    def separator(self) -> int:
        """The document separator a text without a prompt is conditioned on (BOS, else EOS)."""
        token = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None \
            else self.tokenizer.eos_token_id
        if token is None:
            raise InputError("the tokenizer has neither a BOS nor an EOS token to condition a text on")
        return int(token)

    def encode(self, texts: Sequence[str], prompts: Sequence[str] | None = None) -> list[EncodedText]:
        """Each text's tokens after its prompt's (or the separator), cut to the window: the prompt
        keeps its last tokens (at most half the window), the text its first."""
        encoded = self.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        contexts = ([[self.separator]] * len(texts) if prompts is None else
                    [ids[-(self.max_tokens // 2):] or [self.separator]
                     for ids in self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]])
        out = []
        for context, ids, offsets in zip(contexts, encoded["input_ids"], encoded["offset_mapping"], strict=True):
            room = self.max_tokens - len(context)
            out.append(EncodedText(list(context), list(ids[:room]), [tuple(o) for o in offsets[:room]],
                                   len(ids) > room))
        return out

    def token_values(self, texts: Sequence[EncodedText], desc: str | None = None) -> list[np.ndarray]:
        """beta (log pi_tuned - log pi_base) of every text token, per text (float64)."""
        contexts, ids = [t.context for t in texts], [t.ids for t in texts]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.separator
        tuned = token_logprobs(self.tuned, pad, contexts, ids, self.batch_size, f"{desc}: tuned" if desc else None)
        base = token_logprobs(self.base, pad, contexts, ids, self.batch_size, f"{desc}: base" if desc else None)
        return [self.beta * (t - b) for t, b in zip(tuned, base, strict=True)]
