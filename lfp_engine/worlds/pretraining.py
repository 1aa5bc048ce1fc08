"""Pretraining the offline world's base model: a GPT-NeoX (Pythia's architecture) from scratch.

A plain causal-LM loop rather than `transformers.Trainer`: the corpus is a few million tokens,
packed into fixed-length blocks, and a hand loop keeps the run seeded end to end, shows one
progress bar, and reports the held-out loss the world stage records.

With `pretrain_precision` 'bfloat16' the forward pass runs under bfloat16 autocast
(`lfp_engine.run.precision`): the model's matrix products in bfloat16, its weights, Adam's state
and the loss in float32. Attention stays float32 (`float32_attention`): on a CPU, PyTorch's
bfloat16 attention backward is several times slower than its float32 one at this model's head
width (32), which would cancel much of what the products gain. The held-out loss is always
measured in float32, so the two precisions are compared on one scale.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import AttentionInterface, GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from lfp_engine.run.precision import Precision, autocast, effective_precision
from lfp_engine.worlds.settings import SyntheticSettings

log = logging.getLogger(__name__)

FLOAT32_ATTENTION = "lfp_sdpa_float32"
"""The name under which `float32_attention` registers its attention with transformers."""


def _sdpa_in_float32(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, **kwargs: object) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, computed in float32 whatever autocast is active."""
    with torch.autocast(query.device.type, enabled=False):
        return sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask, **kwargs)


AttentionInterface.register(FLOAT32_ATTENTION, _sdpa_in_float32)
AttentionMaskInterface.register(FLOAT32_ATTENTION, sdpa_mask)  # masks built exactly as for SDPA


@contextlib.contextmanager
def float32_attention(model: GPTNeoXForCausalLM) -> Iterator[None]:
    """Inside the block the model's attention runs in float32 (transformers' SDPA, the same
    masks); the model's own attention setting is restored afterwards, so it is saved unchanged."""
    original = model.config._attn_implementation
    model.set_attn_implementation(FLOAT32_ATTENTION)
    try:
        yield
    finally:
        model.set_attn_implementation(original)


def neox_config(settings: SyntheticSettings, tokenizer: PreTrainedTokenizerFast) -> GPTNeoXConfig:
    return GPTNeoXConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        num_hidden_layers=settings.num_layers,
        num_attention_heads=settings.num_heads,
        intermediate_size=settings.intermediate_size,
        max_position_embeddings=settings.context_length,
        rotary_pct=settings.rotary_pct,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def pack_blocks(texts: Sequence[str], tokenizer: PreTrainedTokenizerFast, block: int) -> torch.Tensor:
    """Concatenate texts with EOS between them and cut into [n_blocks, block] token ids."""
    ids: list[int] = []
    for encoded in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        ids.extend(encoded)
        ids.append(tokenizer.eos_token_id)
    n = len(ids) // block
    if n == 0:
        raise ValueError(f"corpus of {len(ids)} tokens is shorter than one block of {block}")
    return torch.tensor(ids[: n * block], dtype=torch.long).view(n, block)


@dataclass
class PretrainResult:
    model: GPTNeoXForCausalLM
    train_loss: float
    test_loss: float
    tokens_seen: int
    steps: int
    precision: Precision
    """What the matrix products ran in: the setting, or float32 where the device lacks bfloat16."""


@torch.no_grad()
def mean_loss(model: GPTNeoXForCausalLM, blocks: torch.Tensor, batch_size: int, device: torch.device) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start : start + batch_size].to(device)
        total += model(input_ids=batch, labels=batch).loss.item() * len(batch)
        count += len(batch)
    return total / max(count, 1)


def pretrain(settings: SyntheticSettings, tokenizer: PreTrainedTokenizerFast, train_texts: Sequence[str],
             test_texts: Sequence[str], seed: int, device: torch.device) -> PretrainResult:
    torch.manual_seed(seed)
    model = GPTNeoXForCausalLM(neox_config(settings, tokenizer)).to(device)
    train_blocks = pack_blocks(train_texts, tokenizer, settings.context_length)
    test_blocks = pack_blocks(test_texts, tokenizer, settings.context_length)
    batch = settings.pretrain_batch_size
    steps = max(1, math.ceil(settings.pretrain_epochs * len(train_blocks) / batch))
    precision = effective_precision(settings.pretrain_precision, device, "pretraining")
    log.info("pretraining %.2fM-parameter GPT-NeoX: %d blocks of %d tokens, %d steps, matrix products in %s",
             sum(p.numel() for p in model.parameters()) / 1e6, len(train_blocks), settings.context_length, steps,
             precision)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.pretrain_weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.pretrain_lr, betas=(0.9, 0.95),
    )
    warmup = min(settings.pretrain_warmup_steps, steps // 2)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    generator = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.long)
    model.train()
    running = float("nan")
    bar = tqdm(range(steps), desc="pretrain base model", unit="step", mininterval=1.0)
    attention = float32_attention(model) if precision == "bfloat16" else contextlib.nullcontext()
    with attention:
        for step in bar:
            if len(order) < batch:
                order = torch.cat([order, torch.randperm(len(train_blocks), generator=generator)])
            idx, order = order[:batch], order[batch:]
            x = train_blocks[idx].to(device)
            with autocast(precision, device):
                loss = model(input_ids=x, labels=x).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running = loss.item() if math.isnan(running) else 0.95 * running + 0.05 * loss.item()
            if step % 10 == 0:
                bar.set_postfix(loss=f"{running:.3f}")
    model.eval()
    test_loss = mean_loss(model, test_blocks, batch, device)
    log.info("pretraining done: train loss %.3f, held-out loss %.3f", running, test_loss)
    return PretrainResult(model=model, train_loss=running, test_loss=test_loss,
                          tokens_seen=steps * batch * settings.context_length, steps=steps, precision=precision)
