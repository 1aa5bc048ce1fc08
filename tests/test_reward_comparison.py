"""The paired comparison behind 'tuning raised the reward' and 'ablation lowered it'."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lfp_engine.run.errors import InputError
from lfp_engine.statistics import paired_comparison


def test_matches_scipy_paired_t_test():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 200)
    tuned = base + rng.normal(0.3, 1, 200)
    c = paired_comparison(base, tuned, "vader_reward")
    ref = stats.ttest_rel(tuned, base, alternative="greater")
    assert c.statistic == pytest.approx(ref.statistic) and c.p_value == pytest.approx(ref.pvalue)
    assert c.mean_difference == pytest.approx((tuned - base).mean())
    assert c.ci_low < c.mean_difference < c.ci_high
    assert c.p_value < 0.01
    less = paired_comparison(base, tuned, "r", alternative="less")
    assert less.p_value == pytest.approx(1 - c.p_value)


def test_constant_differences_have_exact_answers():
    assert paired_comparison(np.zeros(5), np.ones(5), "r").p_value == 0.0
    assert paired_comparison(np.zeros(5), np.zeros(5), "r").p_value == 1.0


def test_bad_inputs_are_refused():
    with pytest.raises(InputError):
        paired_comparison(np.zeros(3), np.zeros(4), "r")
    with pytest.raises(InputError):
        paired_comparison(np.zeros(1), np.zeros(1), "r")
    with pytest.raises(InputError, match="NaN"):
        paired_comparison(np.array([0.0, np.nan]), np.zeros(2), "r")
