"""The SAE module against an independent float64 reference, tying, stacking and determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfp_engine.run import precision
from lfp_engine.run.errors import InputError
from lfp_engine.sae.autoencoder import SparseAutoencoder
from lfp_engine.sae.training import SaeSpec, train_saes


def random_sae(architecture: str, d_in: int = 6, d_sae: int = 10, k: int | None = None,
               stack: int | None = None, seed: int = 0, n_blocks: int = 1) -> SparseAutoencoder:
    sae = SparseAutoencoder(d_in, d_sae, architecture, k=k, stack=stack, n_blocks=n_blocks)
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
    loss = sae.losses(x, 0.3).loss
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


@pytest.mark.parametrize("architecture", ["tied", "untied"])
def test_the_hand_gradient_is_the_float64_reference_gradient_of_every_member(architecture):
    """relu_step, the training step of the ReLU SAEs, against the paper's loss differentiated by autograd."""
    stack, l1 = 3, torch.tensor([0.3, 0.0, 1.5], dtype=torch.float64)
    sae = random_sae(architecture, stack=stack).double()
    if architecture == "untied":
        with torch.no_grad():
            sae.W_dec_free[2, 4] = 0.0  # a latent whose decoder is zero: its L1 gradient must stay finite
    x = torch.randn(stack, 20, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    terms = sae.relu_step(x, l1)
    for i in range(stack):
        W_enc = sae.W_enc[i].detach().clone().requires_grad_()
        b_enc = sae.b_enc[i].detach().clone().requires_grad_()
        b_dec = sae.b_dec[i].detach().clone().requires_grad_()
        free = None if architecture == "tied" else sae.W_dec_free[i].detach().clone().requires_grad_()
        loss, x_hat = reference_loss(x[i], W_enc, b_enc, W_enc.T if free is None else free, b_dec, float(l1[i]),
                                     architecture)
        loss.backward()
        torch.testing.assert_close(terms.loss[i], loss.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(terms.mse[i], ((x_hat - x[i]) ** 2).sum(1).mean().detach(), rtol=1e-12, atol=0)
        for mine, ref in [(sae.W_enc, W_enc), (sae.b_enc, b_enc), (sae.b_dec, b_dec)] + (
                [] if free is None else [(sae.W_dec_free, free)]):
            expected = torch.nan_to_num(ref.grad)  # autograd's norm at zero; the hand gradient gives 0 there
            torch.testing.assert_close(mine.grad[i], expected, rtol=1e-10, atol=1e-12)
    assert torch.equal(terms.fired, (torch.relu(sae.pre_activations(x)) > 0).any(-2))


def test_tied_weights_are_one_parameter_and_stay_tied():
    sae = random_sae("tied")
    names = [name for name, _ in sae.named_parameters()]
    assert names == ["W_enc", "b_enc", "b_dec"]
    assert sae.W_dec.data_ptr() == sae.W_enc.data_ptr()
    optimizer = torch.optim.Adam(sae.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        sae.losses(torch.randn(8, 6), 1e-3).loss.backward()
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


# -- BatchTopK (Bussmann et al. 2024) and AuxK (Gao et al. 2024), against float64 references --

def reference_batch_topk(x, W_enc, b_enc, W_dec, k, n_blocks=1):
    """The batch's k x rows largest scores ReLU(pre) * w survive, w the sum of block decoder norms."""
    pre = x @ W_enc + b_enc
    acts = pre.clamp_min(0)
    w = W_dec.reshape(W_dec.shape[0], n_blocks, -1).norm(dim=-1).sum(-1)
    scores = acts * w
    order = scores.flatten().argsort(descending=True)[: k * x.shape[0]]
    keep = torch.zeros(scores.numel(), dtype=torch.bool)
    keep[order] = True
    keep = keep.view_as(scores) & (acts > 0)
    return torch.where(keep, acts, torch.zeros_like(acts)), scores[keep].min()


@pytest.mark.parametrize("n_blocks", [1, 2])
def test_batch_topk_forward_and_gradients_match_a_float64_reference(n_blocks):
    sae = SparseAutoencoder(6, 10, "batchtopk", k=3, n_blocks=n_blocks)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for param in sae.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(1))
    terms = sae.losses(x, 0.3)
    terms.loss.backward()

    W_enc, b_enc, W_dec, b_dec = (p.detach().double().requires_grad_() for p in
                                  (sae.W_enc, sae.b_enc, sae.W_dec_free, sae.b_dec))
    z, min_kept = reference_batch_topk(x.double(), W_enc, b_enc, W_dec, 3, n_blocks)
    ref_loss = ((z @ W_dec + b_dec - x.double()) ** 2).sum(1).mean()  # no L1 term: k is the constraint
    ref_loss.backward()
    assert int((z > 0).sum()) == 3 * 20  # k per row on average, not per row
    assert (z > 0).sum(1).float().std() > 0
    torch.testing.assert_close(terms.loss.double(), ref_loss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms.min_kept.double(), min_kept.detach(), rtol=1e-5, atol=1e-6)
    assert torch.equal(terms.fired, (z > 0).any(0))
    for mine, ref in [(sae.W_enc, W_enc), (sae.b_enc, b_enc), (sae.W_dec_free, W_dec), (sae.b_dec, b_dec)]:
        torch.testing.assert_close(mine.grad.double(), ref.grad, rtol=1e-4, atol=1e-5)


def test_batch_topk_inference_is_a_threshold_on_each_code_alone():
    sae = random_sae("batchtopk", k=3)
    sae.set_threshold(0.7)
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(4))
    pre = (x.double() @ sae.W_enc.double() + sae.b_enc.double())
    w = sae.W_dec.double().norm(dim=1)
    expected = torch.where(pre.clamp_min(0) * w > 0.7, pre.clamp_min(0), torch.zeros_like(pre))
    z = sae.encode(x)
    torch.testing.assert_close(z.double(), expected, rtol=1e-5, atol=1e-6)
    assert 0 < int((z > 0).sum()) < z.numel()
    for i in (0, 7, 29):  # a token's codes do not depend on what else is in the batch
        assert torch.equal(sae.encode(x[i:i + 1])[0], z[i])


def test_the_estimated_threshold_is_the_moving_average_of_the_smallest_kept_score():
    """With a zero learning rate the weights stay put, so each batch's smallest kept score can be
    recomputed directly; the threshold is their moving average (rate r), first value as start."""
    data = torch.randn(1, 16 * 12, 6, generator=torch.Generator().manual_seed(5))
    spec = SaeSpec(0, 10, "batchtopk", k=2, threshold_rate=0.25)
    trained = train_saes(stream(data, 16), [0], [spec], d_in=6, n_steps=12, learning_rate=0.0, seed=3)
    sae = trained.saes[0]
    theta = None
    for batch in stream(data, 16):
        W_enc, b_enc, W_dec = (p.detach().double() for p in (sae.W_enc, sae.b_enc, sae.W_dec))
        _, smallest = reference_batch_topk(batch[0].double(), W_enc, b_enc, W_dec, 2)
        theta = smallest if theta is None else 0.75 * theta + 0.25 * smallest
    assert trained.score_thresholds[0] == pytest.approx(float(theta), rel=1e-5)
    torch.testing.assert_close(sae.threshold.double(), theta / sae.W_dec.double().norm(dim=1), rtol=1e-5,
                               atol=1e-7)


def reference_auxk(x, W_enc, b_enc, W_dec, b_dec, z, dead):
    """Gao et al. 2024 A.2: the k_aux = d_in/2 dead latents with the largest ReLU(pre) reconstruct the
    residual through the decoder alone; scaled by min(n_dead / k_aux, 1)."""
    residual = (x - (z @ W_dec + b_dec)).detach()
    acts = (x @ W_enc + b_enc).clamp_min(0)
    k_aux = x.shape[1] // 2
    z_aux = torch.zeros_like(acts)
    for row in range(x.shape[0]):
        candidates = [(float(acts[row, f].detach()), f) for f in range(acts.shape[1]) if dead[f]]
        for _, f in sorted(candidates, reverse=True)[:k_aux]:
            z_aux[row, f] = acts[row, f]
    loss = ((z_aux @ W_dec - residual) ** 2).sum(1).mean()
    return min(int(dead.sum()) / k_aux, 1.0) * loss


@pytest.mark.parametrize("dead_latents", [(0, 3, 4, 8), (6,)])
def test_auxk_loss_and_gradients_match_a_float64_reference(dead_latents):
    sae = random_sae("topk", k=3)
    dead = torch.zeros(10, dtype=torch.bool)
    dead[list(dead_latents)] = True
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(6))
    terms = sae.losses(x, 0.0, dead=dead, auxk_coefficient=0.5)
    terms.aux.backward()

    W_enc, b_enc, W_dec, b_dec = (p.detach().double().requires_grad_() for p in
                                  (sae.W_enc, sae.b_enc, sae.W_dec_free, sae.b_dec))
    pre = x.double() @ W_enc + b_enc
    keep = torch.zeros_like(pre, dtype=torch.bool).scatter(1, pre.topk(3, dim=1).indices, True)
    z = torch.where(keep, pre.clamp_min(0), torch.zeros_like(pre))
    ref = reference_auxk(x.double(), W_enc, b_enc, W_dec, b_dec, z, dead)
    ref.backward()
    torch.testing.assert_close(terms.aux.double(), ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms.loss.double(), (terms.mse + 0.5 * terms.aux).double(), rtol=1e-6, atol=1e-6)
    for mine, theirs in [(sae.W_enc, W_enc), (sae.b_enc, b_enc), (sae.W_dec_free, W_dec)]:
        torch.testing.assert_close(mine.grad.double(), theirs.grad, rtol=1e-4, atol=1e-5)
    assert sae.b_dec.grad is None or not sae.b_dec.grad.any()  # e_hat has no bias, the residual is detached


def test_auxk_revives_latents_that_would_stay_dead():
    """Latents pushed far below zero never win a top-k slot on their own; AuxK's gradient on them
    (through the residual they could explain) brings some back."""
    data = torch.randn(1, 64 * 300, 8, generator=torch.Generator().manual_seed(7))

    def dead_after(auxk: float) -> int:
        spec = SaeSpec(0, 32, "batchtopk", k=2, auxk_coefficient=auxk, auxk_dead_tokens=256)
        trained = train_saes(stream(data, 64), [0], [spec], d_in=8, n_steps=300, learning_rate=1e-2, seed=0)
        z = trained.saes[0].encode(data[0])
        return int(((z > 0).sum(0) == 0).sum())

    without, with_auxk = dead_after(0.0), dead_after(1 / 32)
    assert without > 0 and with_auxk < without


def test_bfloat16_products_train_batchtopk_as_float32_does_and_leave_the_relu_step_in_float32(monkeypatch):
    """The crosscoders' precision setting: BatchTopK with AuxK trained under bfloat16 autocast ends
    at the float32 run's loss within 1% (another seed moves it by 2%, bfloat16 by under 0.2%) without
    being the same computation; tied SAEs, whose step is by hand, train in float32 whatever is
    asked, bit for bit."""
    monkeypatch.setattr(precision, "native_bfloat16", lambda device: True)
    data = torch.randn(2, 64 * 300, 16, generator=torch.Generator().manual_seed(0))
    topk = [SaeSpec(layer, 64, "batchtopk", k=4, auxk_coefficient=1 / 32, auxk_dead_tokens=2000) for layer in (0, 1)]
    runs = {p: train_saes(stream(data, 64), [0, 1], topk, d_in=16, n_steps=300, learning_rate=5e-3, seed=0,
                          log_every=100, precision=p) for p in ("float32", "bfloat16")}
    final = {p: r.log[r.log["step"] == 300].set_index("spec")["loss"] for p, r in runs.items()}
    assert not torch.equal(runs["float32"].saes[0].W_enc, runs["bfloat16"].saes[0].W_enc)
    np.testing.assert_allclose(final["bfloat16"], final["float32"], rtol=0.01)
    assert final["float32"].max() < runs["float32"].log[runs["float32"].log["step"] == 100]["loss"].min()
    tied = [SaeSpec(0, 32)]
    by_hand = [train_saes(stream(data, 64), [0, 1], tied, d_in=16, n_steps=50, learning_rate=5e-3, seed=0,
                          precision=p).saes[0] for p in ("float32", "bfloat16")]
    assert torch.equal(by_hand[0].W_enc, by_hand[1].W_enc)
