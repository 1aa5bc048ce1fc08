"""SAE metrics against numpy, and the loss-recovered score at its two ends."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lfp_engine.run.errors import InputError
from lfp_engine.sae.metrics import loss_recovered, reconstruction_metrics, token_loss, zero_output

from .conftest import tiny_neox
from .test_sae import random_sae


def test_reconstruction_metrics_match_numpy():
    sae = random_sae("untied", d_in=6, d_sae=10)
    with torch.no_grad():
        sae.b_enc[3] = -100.0  # a feature that can never fire
        sae.b_enc[4] = 100.0  # and one that always does
    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(2)) + 0.5
    metrics = reconstruction_metrics(sae, [x[:120], x[120:]], dense_threshold=0.5)

    X = x.double().numpy()
    W_enc, b_enc = sae.W_enc.detach().double().numpy(), sae.b_enc.detach().double().numpy()
    W_dec, b_dec = sae.W_dec.detach().double().numpy(), sae.b_dec.detach().double().numpy()
    Z = np.maximum(X @ W_enc + b_enc, 0)
    err = ((Z @ W_dec + b_dec - X) ** 2).sum()
    density = (Z > 0).mean(0)
    assert metrics.n_tokens == 300
    assert metrics.mse == pytest.approx(err / X.size, rel=1e-5)
    assert metrics.normalized_mse == pytest.approx(err / (X ** 2).sum(), rel=1e-5)
    assert metrics.variance_explained == pytest.approx(1 - err / ((X - X.mean(0)) ** 2).sum(), rel=1e-5)
    assert metrics.l0 == pytest.approx((Z > 0).sum(1).mean())
    assert metrics.l0_fraction == pytest.approx((Z > 0).sum(1).mean() / 10)
    assert metrics.l0_scaled == pytest.approx((Z > 0).sum(1).mean() / 100)  # the paper's tables 11 and 12
    assert metrics.dead_fraction == pytest.approx((density == 0).mean()) and metrics.dead_fraction >= 0.1
    assert metrics.dense_fraction == pytest.approx((density > 0.5).mean()) and metrics.dense_fraction >= 0.1


def test_no_rows_is_refused():
    with pytest.raises(InputError, match="no activation rows"):
        reconstruction_metrics(random_sae("tied"), [])


SEQUENCES = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16]]


def losses(model, layer, replace):
    common = dict(pad_token_id=0, bos_token_id=1, batch_size=2)
    clean = token_loss(model, SEQUENCES, **common)
    spliced = token_loss(model, SEQUENCES, layer=layer, replace=replace, **common)
    zero = token_loss(model, SEQUENCES, layer=layer, replace=zero_output, **common)
    return clean, spliced, zero


def test_loss_recovered_is_one_for_the_identity_and_zero_for_zeros():
    model = tiny_neox()
    clean, spliced, zero = losses(model, 1, lambda h: h)
    assert spliced == clean and zero != clean
    assert loss_recovered(clean, spliced, zero) == 1.0
    clean, spliced, zero = losses(model, 1, lambda h: torch.zeros_like(h))
    assert loss_recovered(clean, spliced, zero) == 0.0
    assert math.isnan(loss_recovered(2.0, 2.5, 2.0))


def test_token_loss_is_the_mean_cross_entropy_of_the_text_tokens():
    model = tiny_neox()
    expected = []
    with torch.no_grad():
        for seq in SEQUENCES:  # one text at a time, no padding: BOS predicts the first token
            ids = torch.tensor([[1] + seq])
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
            expected += (-logp[torch.arange(len(seq)), torch.tensor(seq)]).tolist()
    got = token_loss(model, SEQUENCES, pad_token_id=0, bos_token_id=1, batch_size=3)
    assert got == pytest.approx(float(np.mean(expected)), rel=1e-5)
