"""SAE metrics against numpy; the loss-recovered score at its two ends, against a hand computation, and left
empty on a layer whose zero-ablation does not change the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from lfp_engine.run.errors import InputError
from lfp_engine.sae.metrics import (MIN_INCREASE_STANDARD_ERRORS, LossRecovered, ReferenceLosses, TextLosses, increase_standard_error,
                                    loss_recovered_reason, mean_loss_recovered, reconstruction_metrics, text_losses,
                                    zero_output)

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
COMMON = dict(pad_token_id=0, bos_token_id=1, batch_size=8)
TEXTS = [list(range(2 + i % 7, 12 + i % 5)) for i in range(40)]
"""Enough texts to measure the noise of a mean loss over them."""
SEED, LAYER = 2, 1
"""A random model whose layer-1 MLP output the loss depends on: zeroing it raises the loss by 13
standard errors (checked in the tests, as their premise)."""


def losses(model, layer, replace, sequences=SEQUENCES) -> tuple[TextLosses, TextLosses, TextLosses]:
    clean = text_losses(model, sequences, **COMMON)
    spliced = text_losses(model, sequences, layer=layer, replace=replace, **COMMON)
    zero = text_losses(model, sequences, layer=layer, replace=zero_output, **COMMON)
    return clean, spliced, zero


def test_loss_recovered_is_one_for_the_identity_and_zero_for_zeros():
    model = tiny_neox(seed=SEED)
    clean, spliced, zero = losses(model, LAYER, lambda h: h, TEXTS)
    assert spliced.mean == clean.mean and zero.mean != clean.mean
    assert LossRecovered.measure(ReferenceLosses.of(clean, zero), spliced.mean).loss_recovered == 1.0
    clean, spliced, zero = losses(model, LAYER, lambda h: torch.zeros_like(h), TEXTS)
    assert LossRecovered.measure(ReferenceLosses.of(clean, zero), spliced.mean).loss_recovered == 0.0


def test_loss_recovered_against_a_hand_computation():
    # Three texts of 2, 3 and 5 tokens; summed losses per text.
    counts = np.array([2, 3, 5])
    clean = TextLosses(np.array([2.0, 3.3, 5.0]), counts)
    spliced = TextLosses(np.array([2.2, 3.6, 5.5]), counts)
    zero = TextLosses(np.array([3.0, 4.5, 7.5]), counts)
    got = LossRecovered.measure(ReferenceLosses.of(clean, zero), spliced.mean)
    assert got.ce_clean == pytest.approx(10.3 / 10) and got.ce_zero_ablated == pytest.approx(15.0 / 10)
    assert got.loss_increase == pytest.approx(0.47)
    assert got.loss_recovered == pytest.approx((1.5 - 1.13) / (1.5 - 1.03))  # (zero - spliced) / (zero - clean)
    # The standard error with texts as the unit: the residuals of each text's summed difference from
    # g = 0.47 per token, d = (1.0, 1.2, 2.5) - 0.47 * (2, 3, 5) = (0.06, -0.21, 0.15).
    assert got.loss_increase_se == pytest.approx(np.sqrt(3 / 2 * (0.06**2 + 0.21**2 + 0.15**2)) / 10)
    assert got.as_dict()["loss_increase"] == got.loss_increase


def test_the_increase_s_standard_error_is_the_texts_standard_error():
    """Equal text lengths: the mean of the texts' per-token differences and scipy's standard error of
    it; unequal lengths: a bootstrap over texts."""
    rng = np.random.default_rng(0)
    clean_sums = rng.normal(20, 3, 400)
    equal = np.full(400, 10)
    differences = rng.normal(0.1, 0.5, 400)
    se = increase_standard_error(TextLosses(clean_sums, equal), TextLosses(clean_sums + differences, equal))
    assert se == pytest.approx(stats.sem(differences / 10), rel=1e-9)
    counts = rng.integers(2, 40, 400)
    zero = clean_sums + rng.normal(0.02, 0.1, 400) * counts + rng.normal(0, 0.3, 400)
    se = increase_standard_error(TextLosses(clean_sums, counts), TextLosses(zero, counts))
    draws = rng.integers(0, 400, (4000, 400))
    boot = (zero[draws].sum(1) - clean_sums[draws].sum(1)) / counts[draws].sum(1)
    assert se == pytest.approx(boot.std(), rel=0.05)
    with pytest.raises(InputError, match="different texts"):
        increase_standard_error(TextLosses(clean_sums, equal), TextLosses(zero, counts))


def silenced(scale: float):
    """The test model with its layer's MLP output projection scaled by `scale` (0: the MLP writes nothing)."""
    model = tiny_neox(seed=SEED)
    with torch.no_grad():
        model.gpt_neox.layers[LAYER].mlp.dense_4h_to_h.weight.mul_(scale)
        model.gpt_neox.layers[LAYER].mlp.dense_4h_to_h.bias.mul_(scale)
    return model


def test_a_layer_whose_zero_ablation_does_not_change_the_loss_has_no_ratio():
    """The layer's MLP silenced: zero-ablating it changes nothing, so the ratio has no denominator and
    is left empty, with its reason. The floor is the noise, not the size: a layer that writes a
    thousandth of the original still raises the loss consistently over the texts, and halving its
    output recovers half of it, as it should."""
    splice = lambda h: h * 0.5  # an SAE that halves the output it rebuilds  # noqa: E731
    clean, spliced, zero = losses(silenced(1.0), LAYER, splice, TEXTS)
    normal = LossRecovered.measure(ReferenceLosses.of(clean, zero), spliced.mean)
    assert normal.loss_increase > MIN_INCREASE_STANDARD_ERRORS * normal.loss_increase_se  # the premise
    assert normal.loss_recovered == pytest.approx((zero.mean - spliced.mean) / (zero.mean - clean.mean))

    clean, spliced, zero = losses(silenced(0.0), LAYER, splice, TEXTS)
    nothing = LossRecovered.measure(ReferenceLosses.of(clean, zero), spliced.mean)
    assert nothing.loss_increase == 0 and nothing.loss_increase_se == 0 and nothing.loss_recovered is None
    reason = loss_recovered_reason(nothing.loss_increase, nothing.loss_increase_se)
    assert reason.startswith("zeroing the layer raises the loss by only 0 nats") and "would be noise" in reason

    clean, spliced, zero = losses(silenced(1e-3), LAYER, splice, TEXTS)
    faint = LossRecovered.measure(ReferenceLosses.of(clean, zero), spliced.mean)
    assert 0 < faint.loss_increase < normal.loss_increase / 100
    assert faint.loss_recovered == pytest.approx(0.5, abs=0.01)


def test_an_increase_within_the_noise_of_the_texts_has_no_ratio():
    """The tiny run's layer 2 (seed 0) in numbers: 470 texts, an increase of 0.00026 nats per token whose
    texts disagree (standard error 0.00029); the ratio, which read 0.76, is left empty."""
    rng = np.random.default_rng(0)
    counts = rng.integers(30, 56, 470)
    clean = TextLosses(1.32 * counts + rng.normal(0, 3, 470), counts)
    noise = rng.normal(0, 0.0063, 470)
    noise -= (counts * noise).sum() / counts.sum()  # the texts disagree, and average to 0.00026
    zero = TextLosses(clean.sums + counts * (0.00026 + noise), counts)
    spliced = TextLosses(clean.sums + counts * 0.00006, counts)
    measured = LossRecovered.measure(ReferenceLosses.of(clean, zero), spliced.mean)
    assert measured.loss_increase == pytest.approx(0.00026)
    assert measured.loss_increase < MIN_INCREASE_STANDARD_ERRORS * measured.loss_increase_se
    assert measured.loss_recovered is None


def test_the_mean_loss_recovered_skips_empty_ones_and_counts_the_rest():
    import pandas as pd

    assert mean_loss_recovered(pd.Series([0.9, None, 0.7])) == (pytest.approx(0.8), 2)
    assert mean_loss_recovered(pd.Series([None, None], dtype=float)) == (None, 0)


def test_text_losses_are_the_cross_entropy_of_the_text_tokens():
    model = tiny_neox()
    expected = []
    with torch.no_grad():
        for seq in SEQUENCES:  # one text at a time, no padding: BOS predicts the first token
            ids = torch.tensor([[1] + seq])
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
            expected.append((-logp[torch.arange(len(seq)), torch.tensor(seq)]).tolist())
    got = text_losses(model, SEQUENCES, pad_token_id=0, bos_token_id=1, batch_size=3)
    assert got.mean == pytest.approx(float(np.mean(sum(expected, []))), rel=1e-5)
    np.testing.assert_allclose(got.sums, [sum(e) for e in expected], rtol=1e-5)
    assert got.counts.tolist() == [len(s) for s in SEQUENCES]
