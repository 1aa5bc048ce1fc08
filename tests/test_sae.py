"""The SAE module against an independent float64 reference, tying, stacking and determinism."""

from __future__ import annotations

import pytest
import torch

from lfp_engine.run.errors import InputError
from lfp_engine.sae.autoencoder import SparseAutoencoder
from lfp_engine.sae.training import SaeSpec, train_saes


def random_sae(architecture: str, d_in: int = 6, d_sae: int = 10, k: int | None = None,
               stack: int | None = None, seed: int = 0) -> SparseAutoencoder:
    sae = SparseAutoencoder(d_in, d_sae, architecture, k=k, stack=stack)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in sae.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return sae


def reference_loss(x, W_enc, b_enc, W_dec, b_dec, l1, architecture, k=None):
    """The paper's equations written out directly, in whatever dtype the inputs have."""
    pre = x @ W_enc + b_enc
    if architecture == "topk":
        keep = torch.zeros_like(pre, dtype=torch.bool)
        keep.scatter_(1, pre.topk(k, dim=1).indices, True)
        z = torch.where(keep, pre.clamp_min(0), torch.zeros_like(pre))
    else:
        z = pre.clamp_min(0)
    x_hat = z @ W_dec + b_dec
    mse = ((x_hat - x) ** 2).sum(1).mean()
    if architecture == "tied":
        sparsity = z.abs().sum(1).mean()
    elif architecture == "untied":
        sparsity = (z.abs() * W_dec.norm(dim=1)).sum(1).mean()
    else:
        sparsity = torch.zeros(())
    return mse + l1 * sparsity, x_hat


@pytest.mark.parametrize("architecture,k", [("tied", None), ("untied", None), ("topk", 3)])
def test_forward_and_gradients_match_a_float64_reference(architecture, k):
    sae = random_sae(architecture, k=k)
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(1))
    loss, _, _ = sae.losses(x, 0.3)
    loss.backward()

    W_enc = sae.W_enc.detach().double().requires_grad_()
    b_enc = sae.b_enc.detach().double().requires_grad_()
    b_dec = sae.b_dec.detach().double().requires_grad_()
    free = None if architecture == "tied" else sae.W_dec_free.detach().double().requires_grad_()
    W_dec = W_enc.T if architecture == "tied" else free
    ref_loss, ref_x_hat = reference_loss(x.double(), W_enc, b_enc, W_dec, b_dec, 0.3, architecture, k)
    ref_loss.backward()

    torch.testing.assert_close(sae(x).double(), ref_x_hat.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss.double(), ref_loss.detach(), rtol=1e-5, atol=1e-6)
    for mine, ref in [(sae.W_enc, W_enc), (sae.b_enc, b_enc), (sae.b_dec, b_dec)] + (
            [] if free is None else [(sae.W_dec_free, free)]):
        torch.testing.assert_close(mine.grad.double(), ref.grad, rtol=1e-4, atol=1e-5)


def test_tied_weights_are_one_parameter_and_stay_tied():
    sae = random_sae("tied")
    names = [name for name, _ in sae.named_parameters()]
    assert names == ["W_enc", "b_enc", "b_dec"]
    assert sae.W_dec.data_ptr() == sae.W_enc.data_ptr()
    optimizer = torch.optim.Adam(sae.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        sae.losses(torch.randn(8, 6), 1e-3)[0].backward()
        optimizer.step()
    assert torch.equal(sae.W_dec, sae.W_enc.T)
    assert "W_dec" not in sae.state_dict() and "W_dec_free" not in sae.state_dict()


def test_topk_keeps_at_most_k_codes():
    sae = random_sae("topk", k=3)
    z = sae.encode(torch.randn(50, 6))
    assert ((z > 0).sum(1) <= 3).all() and (z >= 0).all()


def test_a_stack_computes_what_its_members_compute():
    stack = random_sae("untied", stack=3)
    x = torch.randn(3, 7, 6)
    out = stack(x)
    for i in range(3):
        torch.testing.assert_close(out[i], stack.member(i)(x[i]))
        assert torch.equal(stack.member(i).W_dec, stack.W_dec[i])


def stream(data: torch.Tensor, batch: int):
    for start in range(0, data.shape[1] - batch + 1, batch):
        yield data[:, start:start + batch]


def test_training_together_equals_training_alone_and_is_deterministic():
    data = torch.randn(2, 64 * 8, 6, generator=torch.Generator().manual_seed(3))
    specs = [SaeSpec(layer=4, d_sae=6), SaeSpec(layer=7, d_sae=12), SaeSpec(layer=7, d_sae=6, l1_coefficient=0.01)]
    together = train_saes(stream(data, 8), [4, 7], specs, d_in=6, n_steps=64, learning_rate=1e-2, seed=5)
    again = train_saes(stream(data, 8), [4, 7], specs, d_in=6, n_steps=64, learning_rate=1e-2, seed=5)
    for a, b in zip(together.saes, again.saes):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    for spec, sae in zip(specs, together.saes):
        alone = train_saes(stream(data, 8), [4, 7], [spec], d_in=6, n_steps=64, learning_rate=1e-2, seed=5).saes[0]
        for p, q in zip(sae.parameters(), alone.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert set(together.log["spec"]) == {0, 1, 2} and together.log["step"].max() == 64


def test_training_reduces_the_loss():
    data = torch.randn(1, 32 * 200, 6, generator=torch.Generator().manual_seed(0))
    result = train_saes(stream(data, 32), [0], [SaeSpec(0, 12)], d_in=6, n_steps=200, learning_rate=1e-2, seed=0,
                        log_every=50)
    losses = result.log.sort_values("step")["loss"].tolist()
    assert losses[-1] < losses[0]


def test_bad_sizes_are_refused():
    with pytest.raises(InputError, match="dictionary size"):
        SparseAutoencoder(6, 0)
    with pytest.raises(InputError, match="k="):
        SparseAutoencoder(6, 4, "topk", k=5)
    with pytest.raises(InputError, match="architecture"):
        SparseAutoencoder(6, 4, "gated")
    with pytest.raises(InputError, match="do not hold"):
        train_saes([], [0], [SaeSpec(3, 4)], d_in=6, n_steps=1, learning_rate=1e-3, seed=0)
    with pytest.raises(InputError, match="ended after 1 of 5"):
        train_saes([torch.randn(1, 4, 6)], [0], [SaeSpec(0, 4)], d_in=6, n_steps=5, learning_rate=1e-3, seed=0)
