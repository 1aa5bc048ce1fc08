"""Zero ablation and steering through SAE features: exact, scoped, and per request."""

from __future__ import annotations

import threading

import pytest
import torch

from lfp_engine.models.architecture import mlp_modules
from lfp_engine.run.errors import InputError
from lfp_engine.models.hooks import capture_mlp_outputs
from lfp_engine.validation.interventions import Intervention, intervening, intervention_hooks
from lfp_engine.sae.autoencoder import SparseAutoencoder

from .conftest import tiny_neox


def _setup():
    model = tiny_neox(layers=3, hidden=16, vocab=50)
    saes = {}
    for layer in (1, 2):
        sae = SparseAutoencoder(16, 32)
        sae.initialize([torch.Generator().manual_seed(layer)])
        with torch.no_grad():
            sae.b_enc.fill_(0.05)  # make many features fire on random activations
        saes[(layer, 32)] = sae.eval()
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    return model, saes, ids


@torch.no_grad()
def test_ablating_nothing_reproduces_the_logits_bit_for_bit():
    model, saes, ids = _setup()
    clean = model(ids).logits
    with intervention_hooks(model, saes):
        with intervening(Intervention(), saes):
            assert torch.equal(model(ids).logits, clean)
        with intervening(Intervention(ablate={(1, 32): ()}), saes):
            assert torch.equal(model(ids).logits, clean)
        assert torch.equal(model(ids).logits, clean)  # outside any intervention
    assert all(not m._forward_hooks for m in mlp_modules(model, [0, 1, 2]).values())


@torch.no_grad()
def test_ablating_a_feature_removes_exactly_its_contribution():
    model, saes, ids = _setup()
    sae = saes[(1, 32)]
    with capture_mlp_outputs(model, [1]) as captured:
        model(ids)
    h = captured[1].clone()
    z = sae.encode(h)
    feature = int(z.sum((0, 1)).argmax())
    assert z[..., feature].abs().sum() > 0
    with intervention_hooks(model, saes), intervening(Intervention(ablate={(1, 32): (feature,)}), saes):
        with capture_mlp_outputs(model, [1]) as after:  # registered later, sees the replaced output
            model(ids)
    expected = h - z[..., feature, None] * sae.W_dec[feature]
    torch.testing.assert_close(after[1], expected, rtol=0, atol=1e-6)
    # equivalently: decode with the feature's code zeroed, plus the SAE's error term
    z0 = z.clone()
    z0[..., feature] = 0
    torch.testing.assert_close(after[1], sae.decode(z0) + (h - sae.decode(z)), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_steering_adds_the_unit_direction():
    model, saes, ids = _setup()
    with capture_mlp_outputs(model, [2]) as before:
        model(ids)
    d = saes[(2, 32)].W_dec[3]
    with intervention_hooks(model, saes), intervening(Intervention(steer={(2, 32): ((3, 2.5),)}), saes):
        with capture_mlp_outputs(model, [2]) as after:
            model(ids)
    torch.testing.assert_close(after[2] - before[2], (2.5 * d / d.norm()).expand_as(before[2]), rtol=0, atol=1e-5)


@torch.no_grad()
def test_concurrent_requests_see_only_their_own_intervention():
    model, saes, ids = _setup()
    requests = [Intervention(), Intervention(ablate={(1, 32): tuple(range(16))}),
                Intervention(steer={(2, 32): ((5, -3.0),)}), Intervention(ablate={(2, 32): (0, 1, 2)})] * 3
    with intervention_hooks(model, saes):
        alone = []
        for iv in requests:
            with intervening(iv, saes):
                alone.append(model(ids).logits)
        together: list = [None] * len(requests)
        barrier = threading.Barrier(len(requests))

        def work(i: int) -> None:
            barrier.wait()
            with intervening(requests[i], saes):
                for _ in range(5):
                    together[i] = model(ids).logits

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for a, b in zip(alone, together, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(alone[0], alone[1])


def test_bad_interventions_are_refused():
    _, saes, _ = _setup()
    with pytest.raises(InputError, match="out of range"):
        with intervening(Intervention(ablate={(1, 32): (32,)}), saes):
            pass
    with pytest.raises(InputError, match="no dictionary"):
        with intervening(Intervention(ablate={(0, 32): (1,)}), saes):
            pass
    with pytest.raises(InputError, match="finite"):
        with intervening(Intervention(steer={(1, 32): ((1, float("nan")),)}), saes):
            pass


@torch.no_grad()
def test_ablating_in_two_dictionaries_of_one_layer_removes_both_contributions():
    """A ReLU and a top-k dictionary at one layer: the first's chosen codes come from its chosen
    encoder columns alone, the second's from a full encoding (top-k codes depend on each other)."""
    model, saes, ids = _setup()
    topk = SparseAutoencoder(16, 48, "topk", k=6)
    topk.initialize([torch.Generator().manual_seed(7)])
    saes[(1, 48)] = topk.eval()
    with capture_mlp_outputs(model, [1]) as captured:
        model(ids)
    h = captured[1].clone()
    chosen = {(1, 32): (0, 4, 9), (1, 48): tuple(int(f) for f in topk.encode(h).sum((0, 1)).topk(3).indices)}
    expected = h.clone()
    for key, features in chosen.items():
        idx = list(features)
        expected -= saes[key].encode(h)[..., idx] @ saes[key].W_dec[idx]
    assert not torch.allclose(expected, h)
    with intervention_hooks(model, saes), intervening(Intervention(ablate=chosen), saes):
        with capture_mlp_outputs(model, [1]) as after:
            model(ids)
    torch.testing.assert_close(after[1], expected, rtol=0, atol=1e-5)


@torch.no_grad()
def test_ablating_batch_topk_features_uses_their_inference_threshold():
    """A BatchTopK SAE's inference codes are ReLU(pre) above each latent's threshold, so its chosen
    columns alone give exactly the codes a full encoding gives: the removed contribution matches."""
    model, saes, ids = _setup()
    sae = SparseAutoencoder(16, 40, "batchtopk", k=4)
    sae.initialize([torch.Generator().manual_seed(9)])
    with capture_mlp_outputs(model, [1]) as captured:
        model(ids)
    h = captured[1].clone()
    pre = sae.pre_activations(h)
    sae.set_threshold(float((torch.relu(pre) * sae.latent_weights()).quantile(0.8)))  # some codes survive
    saes[(1, 40)] = sae.eval()
    z = sae.encode(h)
    chosen = tuple(int(f) for f in z.sum((0, 1)).topk(3).indices)
    assert bool((z > 0).any()) and bool((z[..., list(chosen)] == 0).any())  # the threshold cuts some codes
    expected = h - z[..., list(chosen)] @ sae.W_dec[list(chosen)]
    with intervention_hooks(model, saes), intervening(Intervention(ablate={(1, 40): chosen}), saes):
        with capture_mlp_outputs(model, [1]) as after:
            model(ids)
    torch.testing.assert_close(after[1], expected, rtol=0, atol=1e-5)
