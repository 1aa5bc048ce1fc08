"""Sampling is seeded; likelihoods are computed on exactly the sampled tokens."""

from __future__ import annotations

import torch

from lfp_engine.models.generation import completion_logprobs, sample_completions
from lfp_engine.worlds.tokenizer import train_bpe_tokenizer

from .conftest import tiny_neox


def _setup():
    tokenizer = train_bpe_tokenizer(["the film was good and the plot was bad"] * 20, 300)
    model = tiny_neox(layers=2, vocab=len(tokenizer))
    return model, tokenizer


def test_sampling_is_seeded_and_respects_lengths():
    model, tokenizer = _setup()
    prompts = ["the film", "the plot was", ""]
    a = sample_completions(model, tokenizer, prompts, max_new_tokens=6, min_new_tokens=3, seed=1, batch_size=2)
    b = sample_completions(model, tokenizer, prompts, max_new_tokens=6, min_new_tokens=3, seed=1, batch_size=2)
    assert a.completion_ids == b.completion_ids and a.texts == b.texts
    assert all(3 <= len(c) <= 6 or tokenizer.eos_token_id in c for c in a.completion_ids)
    assert all(len(c) <= 6 for c in a.completion_ids)


def test_logprobs_equal_a_token_by_token_computation():
    model, tokenizer = _setup()
    prompt_ids = [[5, 6, 7], [8]]
    completion_ids = [[9, 10], [11, 12, 13]]
    got = completion_logprobs(model, tokenizer, prompt_ids, completion_ids)
    for i in range(2):
        ids = torch.tensor([prompt_ids[i] + completion_ids[i]])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].double(), -1)
        expected = sum(logp[len(prompt_ids[i]) + j - 1, t].item() for j, t in enumerate(completion_ids[i]))
        assert abs(got[i].item() - expected) < 1e-5


def test_sampling_ignores_the_global_rng_and_follows_the_distribution():
    model, tokenizer = _setup()
    prompts = ["the film"] * 4
    torch.manual_seed(123)
    a = sample_completions(model, tokenizer, prompts, max_new_tokens=5, seed=7)
    torch.manual_seed(999)
    torch.rand(1000)
    b = sample_completions(model, tokenizer, prompts, max_new_tokens=5, seed=7)
    assert a.completion_ids == b.completion_ids
    assert len({tuple(c) for c in a.completion_ids}) > 1  # rows of one batch draw different noise


def test_gumbel_sampling_draws_from_the_softmax():
    from lfp_engine.models.generation import GumbelSampling

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(40000, 1)
    noise = GumbelSampling(temperature=1.5, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(noise(None, logits).argmax(-1), minlength=4).double() / len(logits)
    expected = torch.softmax(torch.tensor([2.0, 1.0, 0.0, -1.0]) / 1.5, -1).double()
    assert torch.allclose(counts, expected, atol=0.01)
    masked = noise(None, torch.tensor([[0.0, float("-inf")]]))
    assert masked[0, 1] == float("-inf")
