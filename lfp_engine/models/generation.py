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
def completion_logprobs(model, tokenizer, prompt_ids: Sequence[Sequence[int]],
                        completion_ids: Sequence[Sequence[int]], batch_size: int = 64) -> torch.Tensor:
    """Sum of log p(completion token | everything before) per sequence, as float64."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    totals = []
    for start in range(0, len(prompt_ids), batch_size):
        rows = [list(p) + list(c) for p, c in zip(prompt_ids[start:start + batch_size],
                                                   completion_ids[start:start + batch_size])]
        n_prompt = [len(p) for p in prompt_ids[start:start + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        target = torch.zeros_like(ids, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
            target[i, n_prompt[i]: len(r)] = True
        ids, mask, target = ids.to(device), mask.to(device), target.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].double()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        totals.append((logp * target[:, 1:]).sum(-1).cpu())
    return torch.cat(totals)


def text_logprobs(model, tokenizer, prompts: Sequence[str], continuations: Sequence[str],
                  max_length: int, batch_size: int = 32) -> torch.Tensor:
    """log p(continuation | prompt) for text pairs (DPO margins), truncated to `max_length` tokens."""
    prompt_ids = encode_prompts(tokenizer, prompts, max_length // 2)
    cont_ids = [ids[: max_length - len(p)] for ids, p in
                zip(tokenizer(list(continuations), add_special_tokens=False)["input_ids"], prompt_ids)]
    return completion_logprobs(model, tokenizer, prompt_ids, cont_ids, batch_size)
