"""Probe fitting and the agreement measures, against scipy and known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lfp_engine.run.errors import InputError
from lfp_engine.probe.dataset import target_scale
from lfp_engine.probe.linear import fit_logistic, fit_regression, shuffled_probe, xavier_probe
from lfp_engine.probe.kendall import tau_b
from lfp_engine.probe.measures import sign_agreement, word_values


def test_kendall_tau_is_scipys_on_values():
    truth = np.array([3.1, 2.8, -2.5, 1.9, -0.8, -3.1, 0.9])
    estimate = np.array([2.0, 2.5, -1.0, 0.5, 0.1, -2.2, 1.1])
    assert tau_b(truth, estimate)[0] == pytest.approx(stats.kendalltau(truth, estimate).statistic)
    # a perfect ranking, whatever the scale: tau 1
    assert tau_b(truth, 10 * truth + 3)[0] == pytest.approx(1.0)
    # words as strings would be ranked alphabetically; values are what is correlated
    assert tau_b(truth, -truth)[0] == pytest.approx(-1.0)
    assert math.isnan(tau_b(truth[:1], estimate[:1])[0])


def test_ridge_probe_recovers_a_linear_signal_and_picks_alpha_by_word_folds():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 20))
    w = rng.normal(size=20)
    y = X @ w + 0.5
    words = np.repeat([f"w{i}" for i in range(40)], 10)
    probe = fit_regression(X, y, words)
    np.testing.assert_allclose(probe.weights, w, atol=0.02)
    assert probe.intercept == pytest.approx(0.5, abs=0.02)
    assert probe.alpha <= 0.1  # noiseless: little regularisation wins
    noisy = fit_regression(X[:60], rng.normal(size=60), words[:60])
    assert noisy.alpha >= 10  # pure noise: the strongest shrinkage wins
    np.testing.assert_allclose(probe.predict(X[:3]), X[:3] @ probe.weights + probe.intercept)
    np.testing.assert_allclose(probe.contributions(X[:2]).sum(1) + probe.intercept, probe.predict(X[:2]))


def test_baselines():
    rng = np.random.default_rng(1)
    xavier = xavier_probe(300, rng)
    bound = math.sqrt(6 / 301)
    assert xavier.intercept == 0 and np.abs(xavier.weights).max() <= bound
    assert np.abs(xavier.weights).max() > 0.9 * bound  # really uniform over the whole range
    X = rng.normal(size=(200, 5))
    y = X[:, 0]
    words = np.repeat([f"w{i}" for i in range(20)], 10)
    shuffled = shuffled_probe(X, y, words, rng)
    assert abs(np.corrcoef(shuffled.predict(X), y)[0, 1]) < 0.5


def test_word_values_sign_agreement_and_scale():
    values = word_values(np.array([1.0, 3.0, -2.0, 0.5]), ["good", "good", "bad", "fine"])
    assert values.to_dict() == {"bad": -2.0, "fine": 0.5, "good": 2.0}
    assert sign_agreement(np.array([1.0, -1.0, 2.0, -3.0]), np.array([0.5, 0.2, 1.0, -1.0])) == 0.75
    assert target_scale(np.array([0.5, -2.0, 1.0]), 4.0) == 2.0
    with pytest.raises(InputError, match="zero"):
        target_scale(np.zeros(3), 4.0)


def test_logistic_probe_separates_and_refuses_one_class():
    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(1, 1, (50, 4)), rng.normal(-1, 1, (50, 4))])
    labels = np.array([1] * 50 + [0] * 50)
    probe = fit_logistic(X, labels, groups=np.tile(np.arange(50), 2))
    assert ((probe.predict(X) > 0) == labels).mean() > 0.85
    with pytest.raises(InputError, match="both positive and negative"):
        fit_logistic(X, np.ones(100))


def test_bad_probe_data_is_refused():
    with pytest.raises(InputError, match="NaN"):
        fit_regression(np.array([[np.nan, 1.0], [0.0, 1.0]]), np.array([1.0, 2.0]), ["a", "b"])
    with pytest.raises(InputError, match="two different words"):
        fit_regression(np.ones((3, 2)), np.ones(3), ["a", "a", "a"])
