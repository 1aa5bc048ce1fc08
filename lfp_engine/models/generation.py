"""Sampling completions and scoring their likelihood, batched and seeded.

Used wherever the method compares a model's behaviour: base vs tuned reward (section 3.1),
the KL of the tuned policy to its base, DPO preference margins, ablated vs unablated
generations, and the dashboard's live lab. Completions keep their token ids so that
likelihoods are computed on exactly the tokens sampled, never on a decode/re-encode round trip.

Sampling draws its randomness from its own `torch.Generator`, never from torch's global RNG:
HF `generate` runs greedy decoding over logits to which `GumbelSampling` adds Gumbel noise,
and argmax(logits / T + Gumbel) is an exact sample of softmax(logits / T). So the same prompts,
model and seed give the same completions whatever else the process does, including other
threads sampling at the same time (two dashboard sessions), and it works for any architecture
`generate` supports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from lfp_engine.run.config import RunConfig
from lfp_engine.run.distributed import SINGLE, Ranks
from lfp_engine.run.errors import InputError



@dataclass(frozen=True)
class Sampling:
    """How completions are drawn and scored: the run's `evaluation` and `reward` settings."""

    max_new_tokens: int
    min_new_tokens: int
    temperature: float
    batch_size: int
    max_length: int
    score_prefix: bool

    @classmethod
    def of(cls, config: RunConfig) -> Sampling:
        e = config.evaluation
        return cls(e.max_new_tokens, e.min_new_tokens, e.temperature, e.batch_size, config.world.max_length,
                   config.reward.score_prefix)

    def draws(self) -> dict[str, Any]:
        """The keyword arguments of `sample_completions` these settings fix (all but seed, desc, ranks)."""
        return dict(max_new_tokens=self.max_new_tokens, min_new_tokens=self.min_new_tokens,
                    temperature=self.temperature, batch_size=self.batch_size, max_length=self.max_length)


class GumbelSampling(LogitsProcessor):
    """Perturb temperature-scaled logits with Gumbel noise from a private generator."""

    def __init__(self, temperature: float, generator: torch.Generator):
        self.temperature = temperature
        self.generator = generator

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        u = torch.rand(scores.shape, generator=self.generator, dtype=torch.float32).clamp_(1e-12, 1.0 - 1e-7)
        return scores / self.temperature - torch.log(-torch.log(u)).to(scores.device, scores.dtype)


@dataclass
class Completions:
    prompts: list[str]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    texts: list[str]


def _left_padded(tokenizer, prompt_ids: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompt_ids)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for row, p in enumerate(prompt_ids):
        if p:
            ids[row, width - len(p):] = torch.tensor(p)
            mask[row, width - len(p):] = 1
    return ids.to(device), mask.to(device)


def encode_prompts(tokenizer, prompts: Sequence[str], max_prompt_tokens: int) -> list[list[int]]:
    """Token ids of each prompt, keeping the last `max_prompt_tokens` (the end is what conditions)."""
    if not prompts:
        raise InputError("no prompts to complete")
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    # An empty prompt still needs one token to condition on: the model's document separator.
    return [ids[-max_prompt_tokens:] if ids else [bos] for ids in encoded]


@torch.no_grad()
def sample_completions(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int, min_new_tokens: int = 0,
                       temperature: float = 1.0, batch_size: int = 64, seed: int = 0,
                       max_length: int | None = None, desc: str = "sample", ranks: Ranks = SINGLE) -> Completions:
    """One sampled completion per prompt; batch b draws its noise from a generator seeded seed + b.

    With several processes (`ranks`) the batches are dealt out and every process gets all the
    completions back: batch b is the same prompts with the same noise wherever it runs, so the
    result is one process's."""
    device = next(model.parameters()).device
    window = max_length or getattr(model.config, "max_position_embeddings", 2048)
    prompt_ids = encode_prompts(tokenizer, prompts, max(1, window - max_new_tokens))
    batches: dict[int, list[list[int]]] = {}
    starts = range(0, len(prompt_ids), batch_size)
    for b, start in enumerate(tqdm(starts, desc=desc, unit="batch", leave=False)):
        if not ranks.owns(b):
            continue
        chunk = prompt_ids[start : start + batch_size]
        ids, mask = _left_padded(tokenizer, chunk, device)
        noise = GumbelSampling(temperature, torch.Generator().manual_seed(seed + b))
        out = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
            logits_processor=LogitsProcessorList([noise]),
            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        batches[b] = []
        for row in out[:, ids.shape[1]:].tolist():
            # Cut at the first EOS (kept out of the text) and drop padding after it.
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id)]
            batches[b].append(row)
    completions = [row for batch in ranks.merged(batches) for row in batch]
    texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
    return Completions(list(prompts), prompt_ids, completions, texts)


@torch.no_grad()
def token_logprobs(model, pad_token_id: int, prompt_ids: Sequence[Sequence[int]],
                   completion_ids: Sequence[Sequence[int]], batch_size: int = 64,
                   desc: str | None = None) -> list[np.ndarray]:
    """log p(token | everything before) of every completion token, per sequence, as float64 (the
    log-normaliser summed in float32, good to about 1e-6 nats).

    Sequences are batched in order of length (less padding; the result keeps the input order),
    right-padded with an attention mask, and padding is never scored. A completion's first token
    is conditioned on its prompt, so a prompt of at least one token (a document separator where
    there is no prompt) scores every completion token."""
    if len(prompt_ids) != len(completion_ids):
        raise InputError(f"{len(prompt_ids)} prompts for {len(completion_ids)} completions")
    if any(len(p) == 0 for p in prompt_ids):
        raise InputError("every completion needs a prompt of at least one token to be conditioned on")
    device = next(model.parameters()).device
    lengths = [len(p) + len(c) for p, c in zip(prompt_ids, completion_ids)]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out: list[np.ndarray] = [np.zeros(0)] * len(order)
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", leave=False, disable=desc is None):
        chunk = order[start:start + batch_size]
        rows = [list(prompt_ids[i]) + list(completion_ids[i]) for i in chunk]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[j, : len(r)] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        # log p = logit - logsumexp(logits): only the chosen token's value leaves the vocabulary axis,
        # in float64 (a float64 log-softmax over the whole vocabulary cost as much as the forward pass)
        chosen = logits.gather(-1, ids[:, 1:, None]).squeeze(-1).double()
        logp = (chosen - torch.logsumexp(logits, dim=-1).double()).cpu().numpy()
        for j, i in enumerate(chunk):
            # position t of `logp` scores token t + 1
            out[i] = logp[j, len(prompt_ids[i]) - 1 : len(rows[j]) - 1].copy()
    return out


def completion_logprobs(model, tokenizer, prompt_ids: Sequence[Sequence[int]],
                        completion_ids: Sequence[Sequence[int]], batch_size: int = 64) -> torch.Tensor:
    """Sum of log p(completion token | everything before) per sequence, as float64."""
    tokens = token_logprobs(model, tokenizer.pad_token_id, prompt_ids, completion_ids, batch_size)
    return torch.tensor([float(t.sum()) for t in tokens], dtype=torch.float64)


def text_logprobs(model, tokenizer, prompts: Sequence[str], continuations: Sequence[str],
                  max_length: int, batch_size: int = 32) -> torch.Tensor:
    """log p(continuation | prompt) for text pairs (DPO margins), truncated to `max_length` tokens."""
    prompt_ids = encode_prompts(tokenizer, prompts, max_length // 2)
    cont_ids = [ids[: max_length - len(p)] for ids, p in
                zip(tokenizer(list(continuations), add_special_tokens=False)["input_ids"], prompt_ids)]
    return completion_logprobs(model, tokenizer, prompt_ids, cont_ids, batch_size)
