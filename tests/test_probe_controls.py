"""The probe's controls on planted data: Kendall's tau-b against scipy, the closed-form ridge against
scikit-learn, the permutation null's calibration, the polarity-only baseline, tuned minus base, and
cross-fitted per-word values. Each planted case knows the answer the measures must give."""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold

from lfp_engine.probe.agreement import accuracy_difference_row, bootstrap_p
from lfp_engine.probe.crossfit import (WORD_VALUE_COLUMNS, crossfit, null_crossfit, paired_difference_rows,
                                      word_value_table)
from lfp_engine.probe.dataset import ProbeDataset
from lfp_engine.probe.kendall import tau_b, word_taus
from lfp_engine.probe.nulls import permutation_null, word_shuffles
from lfp_engine.probe.ridge import RidgeSolver
from lfp_engine.probe.settings import ProbeSettings
from lfp_engine.probe.variants import fit_variants
from lfp_engine.probe.words import WordSet, stratified_resamples
from lfp_engine.report.verdict import learned_from_taus
from lfp_engine.run.errors import InputError

from .planted_probe import planted_dataset, planted_words

SETTINGS = ProbeSettings(n_bootstrap=200, n_permutations=200)
CLAIMS_THE_TUNED_MODEL_KNOWS = {"added_by_tuning", "already_there", "origin_unclear", "tuned_only",
                                "weakened_by_tuning"}


def brute_tau_b(truth, estimate, keep=lambda i, j: True) -> float:
    """tau-b over the pairs `keep` admits, one pair at a time."""
    s = tx = ty = 0
    for i, j in combinations(range(len(truth)), 2):
        if keep(i, j):
            dx, dy = np.sign(truth[i] - truth[j]), np.sign(estimate[i] - estimate[j])
            s, tx, ty = s + dx * dy, tx + abs(dx), ty + abs(dy)
    return s / np.sqrt(tx * ty)


def test_tau_b_matches_scipy_and_counts_only_the_pairs_asked_for():
    rng = np.random.default_rng(0)
    truth = np.round(rng.normal(size=(5, 30)), 1)  # ties, as in a lexicon
    estimate = np.round(truth + rng.normal(size=(5, 30)), 1)
    for row, value in zip(range(5), tau_b(truth, estimate), strict=True):
        assert value == pytest.approx(stats.kendalltau(truth[row], estimate[row]).statistic, abs=1e-12)
    positive = np.arange(30) < 14
    taus = word_taus(truth[0] * np.where(positive, 1, -1), estimate[0], positive)
    signed_truth = truth[0] * np.where(positive, 1, -1)
    assert taus["positive"][0] == pytest.approx(stats.kendalltau(signed_truth[positive], estimate[0][positive]).statistic)
    assert taus["within"][0] == pytest.approx(
        brute_tau_b(signed_truth, estimate[0], lambda i, j: positive[i] == positive[j]))
    # a bootstrap resample: a word drawn twice is never compared with its own copy
    ids = np.array([[0, 0, 1, 2, 3, 3, 4]])
    t, e = rng.normal(size=5), rng.normal(size=5)
    assert tau_b(t[ids], e[ids], ids=ids)[0] == pytest.approx(
        brute_tau_b(t[ids[0]], e[ids[0]], lambda i, j: ids[0, i] != ids[0, j]))
    assert np.isnan(tau_b(t, np.ones(5))[0])


def test_polarity_alone_scores_its_expected_tau_with_ties_broken_at_random():
    rng = np.random.default_rng(1)
    truth = np.concatenate([rng.uniform(0.5, 3, 12), -rng.uniform(0.5, 3, 9)])
    polarity = np.sign(truth)
    exact = word_taus(truth, polarity, truth > 0, random_ties=True)
    broken = np.mean([stats.kendalltau(truth, polarity + 1e-9 * rng.normal(size=21)).statistic for _ in range(1000)])
    assert exact["pooled"][0] == pytest.approx(broken, abs=0.01)
    assert exact["within"][0] == exact["positive"][0] == exact["negative"][0] == 0.0


@pytest.mark.parametrize("shape", [(200, 15), (12, 40)])  # more rows than features (primal), and fewer (dual)
def test_closed_form_ridge_equals_sklearn(shape):
    rng = np.random.default_rng(2)
    X = rng.normal(size=shape) + rng.uniform(0, 3, shape[1])
    Y = rng.normal(size=(shape[0], 4)) + 5
    fit = RidgeSolver(X, alpha=0.7).fit(Y)
    for k in range(4):
        reference = Ridge(alpha=0.7).fit(X, Y[:, k])
        np.testing.assert_allclose(fit.weights[:, k], reference.coef_, rtol=1e-8, atol=1e-10)
        assert fit.intercepts[k] == pytest.approx(reference.intercept_, rel=1e-9)
        np.testing.assert_allclose(fit.predict(X[:3])[:, k], reference.predict(X[:3]), rtol=1e-9)


def test_word_shuffles_move_whole_words_and_keep_each_rows_deviation():
    rng = np.random.default_rng(3)
    word = np.repeat(["a", "b", "c", "d"], 3)
    target = np.repeat([1.0, 2.0, -3.0, 4.0], 3) + rng.normal(0, 0.1, 12)
    carries = np.ones(12, bool)
    carries[-1] = False  # e.g. a neutral row: left alone
    shuffled = word_shuffles(target, word, carries, 50, rng)
    means = {w: target[(word == w) & carries].mean() for w in "abcd"}
    for k in range(50):
        moved = shuffled[:, k] - target
        for w in "abcd":
            rows = (word == w) & carries
            assert np.ptp(moved[rows]) == pytest.approx(0, abs=1e-12)  # one shift per word
            assert means[w] + moved[rows][0] == pytest.approx(min(means.values(), key=lambda m: abs(
                m - (means[w] + moved[rows][0]))))  # the shift lands on another word's mean
    assert (shuffled[-1] == target[-1]).all()


def null_world(rng: np.random.Generator, words, values, split):
    """Codes with word structure, and targets whose word means are drawn independently of them."""
    data = planted_dataset(rng, words, values, split, magnitude=1.0)
    index = np.unique(data.word, return_inverse=True)[1]
    target = rng.normal(0, 1, len(words))[index] + rng.normal(0, 0.2, len(index))
    return replace(data, target=target)


def test_the_permutation_p_is_uniform_when_targets_carry_nothing():
    """Under the null (word means exchangeable), p must be uniform: check its distribution over many
    independent worlds with a Kolmogorov-Smirnov test."""
    rng = np.random.default_rng(4)
    words, values, split = planted_words(rng, n_per_polarity=40, test_fraction=0.5)
    p = {"pooled": [], "within": []}
    for _ in range(300):
        data = null_world(rng, words, values, split)
        test = WordSet.of(data, data.test)
        observed = RidgeSolver(data.X[data.train], 1.0).fit(data.target[data.train]).predict(data.X)
        null = permutation_null(data, 1.0, test, 99, rng)
        for measure, taus in word_taus(test.truth, test.values(observed), test.positive).items():
            if measure in p:
                p[measure].append(null.p_value(measure, taus[0]))
    for measure, values_ in p.items():
        assert stats.kstest(values_, "uniform").pvalue > 0.01, measure
        assert 0.4 < np.mean(values_) < 0.6


def fit_planted(tuned_magnitude: float, base_magnitude: float | None, n_per_polarity: int = 40):
    """Probe fits on a tuned and a base model; `base_magnitude` None: the base model is the tuned one."""
    words, values, split = planted_words(np.random.default_rng(0), n_per_polarity)
    tuned = planted_dataset(np.random.default_rng(1), words, values, split, tuned_magnitude)
    base = tuned if base_magnitude is None else planted_dataset(np.random.default_rng(2), words, values, split,
                                                                base_magnitude)
    return fit_variants({"sae": tuned, "base_model": base}, SETTINGS, seed=0, rng=np.random.default_rng(0))


def row(metrics, variant, subset, metric="kendall_tau"):
    return metrics.set_index(["variant", "subset", "metric"]).loc[(variant, subset, metric)]


def test_a_readout_that_knows_only_polarity_claims_no_learned_feedback():
    fits = fit_planted(0.0, 0.0, n_per_polarity=80)
    metrics = fits.metrics
    assert row(metrics, "sae", "test")["value"] > 0.4  # the pooled tau looks good: polarity
    assert abs(row(metrics, "sae", "test_within")["value"]) < 0.25
    assert row(metrics, "sae", "test_within")["ci_low"] < 0 < row(metrics, "sae", "test_within")["ci_high"]
    assert row(metrics, "polarity_only", "test_within")["value"] == 0
    assert row(metrics, "sae", "test")["ci_low"] <= row(metrics, "polarity_only", "test")["value"]
    finding = learned_from_taus(metrics, held_out_of_tuning=True)
    assert finding.answer not in CLAIMS_THE_TUNED_MODEL_KNOWS, finding.text


def test_identical_tuned_and_base_models_read_as_already_there():
    metrics = fit_planted(1.0, None).metrics
    differences = metrics[metrics["variant"] == "tuned_minus_base"]
    assert set(differences["subset"]) == {"test", "test_positive", "test_negative", "test_within"}
    assert (differences[["value", "ci_low", "ci_high"]] == 0).all().all() and (differences["p_value"] == 1).all()
    assert row(metrics, "sae", "test_within")["p_value"] < 0.05
    finding = learned_from_taus(metrics, held_out_of_tuning=True)
    assert finding.answer == "already_there", finding.text
    assert finding.headline.startswith("The model already knew this before tuning")


def test_a_magnitude_signal_only_in_the_tuned_codes_is_added_by_tuning():
    metrics = fit_planted(1.0, 0.0).metrics
    difference = row(metrics, "tuned_minus_base", "test_within")
    assert difference["ci_low"] > 0 and difference["p_value"] < 0.05 and difference["test"] == "paired_bootstrap"
    tuned = row(metrics, "sae", "test_within")
    assert tuned["test"] == "permutation" and tuned["p_value"] < 0.05 and tuned["value"] > tuned["null_q95"]
    assert row(metrics, "base_model", "test_within")["p_value"] > 0.05
    finding = learned_from_taus(metrics, held_out_of_tuning=True)
    assert finding.answer == "added_by_tuning", finding.text
    assert f"Kendall tau {tuned['value']:.2g}" in finding.text


def test_metrics_rows_and_their_tests():
    metrics = fit_planted(1.0, 0.0).metrics
    assert row(metrics, "sae", "test", "sign_agreement")["n"] == 20  # the test row the Lexicon tile shows
    permutation = metrics[metrics["test"] == "permutation"]
    assert set(permutation["variant"]) == {"sae", "xavier", "shuffled", "base_model"}
    assert permutation["p_value"].between(1 / 201, 1).all() and (permutation["null_q95"] >= permutation["null_mean"]).all()
    assert metrics.loc[metrics["variant"] == "polarity_only", "p_value"].isna().all()
    assert metrics.loc[metrics["subset"] == "train", "p_value"].isna().all()


def with_neutral_rows(data: ProbeDataset, words: np.ndarray, values: np.ndarray, split: np.ndarray) -> ProbeDataset:
    """`data` with rows of the probe's zero point (target 0, no lexicon word) appended."""
    neutral = planted_dataset(np.random.default_rng(5), words[:5], values[:5], split[:5], 1.0)
    return replace(data, **{name: np.concatenate([getattr(data, name), value]) for name, value in {
        "X": neutral.X, "target": np.zeros(len(neutral.target)), "split": neutral.split,
        "element": np.full(len(neutral.target), "neutral"), "triple_id": neutral.triple_id,
        "word": np.full(len(neutral.target), "okay"), "lexicon_value": np.full(len(neutral.target), np.nan)}.items()})


def test_the_permutation_null_refits_with_the_zero_point_as_the_probe_is_fit():
    """Null probes are fit on the probe's own rows, training neutral rows included at target 0: only
    the words' targets move, so the null differs from the probe in nothing but which word is which."""
    words, values, split = planted_words(np.random.default_rng(0), 20)
    data = with_neutral_rows(planted_dataset(np.random.default_rng(1), words, values, split, 1.0), words, values,
                             split)
    assert (data.fitted & ~data.scored).any() and not (data.train & ~data.scored).any()
    test = WordSet.of(data, data.test)
    null = permutation_null(data, 1.0, test, 30, np.random.default_rng(3))
    rows = np.flatnonzero(data.fitted)
    targets = word_shuffles(data.target[rows], data.word[rows], data.scored[rows], 30, np.random.default_rng(3))
    assert (targets[~data.scored[rows]] == 0).all()
    refits = [Ridge(alpha=1.0).fit(data.X[rows], targets[:, k]).predict(data.X[test.rows]) for k in range(30)]
    expected = word_taus(test.truth, test.average(np.column_stack(refits)), test.positive)
    for measure, taus in expected.items():
        np.testing.assert_allclose(null.taus[measure], taus, atol=1e-9)


def test_cross_fitted_values_never_see_their_word():
    words, values, split = planted_words(np.random.default_rng(0), 20)
    # neutral rows (target 0) are fitted on in every fold and never valued
    data = with_neutral_rows(planted_dataset(np.random.default_rng(1), words, values, split, 1.0, rows_per_word=12),
                             words, values, split)
    predicted = crossfit(data, alpha=2.0, n_folds=5).predictions
    assert np.isnan(predicted[data.element == "neutral"]).all() and np.isfinite(predicted[data.element != "neutral"]).all()
    rows = np.flatnonzero(data.element != "neutral")
    for keep, held in GroupKFold(5).split(rows, groups=data.word[rows]):
        if "w003" in set(data.word[rows[held]]):
            break
    assert "w003" not in set(data.word[rows[keep]])
    fit_rows = np.concatenate([rows[keep], np.flatnonzero(data.element == "neutral")])
    reference = Ridge(alpha=2.0).fit(data.X[fit_rows], data.target[fit_rows])
    np.testing.assert_allclose(predicted[rows[held]], reference.predict(data.X[rows[held]]), rtol=1e-8, atol=1e-10)
    fits = fit_variants({"sae": data, "base_model": data}, SETTINGS, seed=0, rng=np.random.default_rng(0))
    table = fits.word_values
    assert list(table.columns) == WORD_VALUE_COLUMNS and set(table["model"]) == {"tuned", "base", "tuned_minus_base"}
    assert len(table) == 3 * len(words) and "okay" not in set(table["word"])
    assert (table["ci_low"] <= table["value"]).all() and (table["value"] <= table["ci_high"]).all()
    same = table[table["model"] == "tuned_minus_base"]  # the same data as both models: no difference
    assert (same[["value", "ci_low", "ci_high"]].abs() < 1e-12).all().all()


def test_tuned_minus_base_word_values_are_paired_row_differences():
    rng = np.random.default_rng(8)
    tuned = pd.DataFrame({"triple_id": np.repeat(np.arange(20), 2), "element": ["positive", "negative"] * 20,
                          "word": ["good", "bad"] * 20, "split": "train", "lexicon_value": [1.9, -2.5] * 20})
    tuned["polarity"] = tuned["element"]
    context = rng.normal(0, 1.0, len(tuned))  # large context effects shared by both models
    tuned["prediction"] = context + 0.3
    base = tuned.assign(prediction=context + rng.normal(0, 0.05, len(tuned))).iloc[::-1]  # row order must not matter
    difference = paired_difference_rows(tuned, base)
    no_fit = pd.Series(0.0, index=["good", "bad"])  # the context's part alone
    table = word_value_table(difference, "tuned_minus_base", no_fit, 500, np.random.default_rng(0)).set_index("word")
    values = {model: word_value_table(frame, model, no_fit, 500, np.random.default_rng(0)).set_index("word")
              for model, frame in (("tuned", tuned), ("base", base))}
    np.testing.assert_allclose(table["value"], values["tuned"]["value"] - values["base"]["value"], atol=1e-12)
    assert (table["ci_low"] > 0.2).all() and (table["ci_high"] < 0.4).all()  # paired: the context cancels
    assert (values["tuned"]["ci_high"] - values["tuned"]["ci_low"] > 0.5).all()
    with pytest.raises(InputError, match="same rows"):
        paired_difference_rows(tuned, base.iloc[1:])


def test_resamples_keep_polarity_counts_and_the_bootstrap_p_is_two_sided():
    positive = np.array([True] * 5 + [False] * 3)
    picks = stratified_resamples(positive, 100, np.random.default_rng(0))
    assert positive[picks].sum(axis=1).tolist() == [5] * 100
    assert bootstrap_p(np.zeros(9)) == 1.0 and bootstrap_p(np.ones(99)) == pytest.approx(0.02)
    assert bootstrap_p(-np.ones(99)) == pytest.approx(0.02)


def test_accuracy_difference_resamples_texts():
    rng = np.random.default_rng(6)
    text = np.tile(np.arange(50), 2)
    same = accuracy_difference_row(np.ones(100, bool), np.ones(100, bool), text, 200, rng)
    assert same.value == 0 and same.p_value == 1
    better = accuracy_difference_row(np.ones(100, bool), rng.random(100) < 0.5, text, 200, rng)
    assert better.ci_low > 0 and better.p_value < 0.05 and better.variant == "tuned_minus_base"


def test_a_preference_probe_gets_accuracy_and_its_tuned_minus_base():
    rng = np.random.default_rng(7)
    n = 80
    label = np.repeat([1.0, 0.0], n)
    triple = np.tile(np.arange(n), 2)
    split = np.where(triple < 60, "train", "test")
    datasets = {}
    for variant, strength in (("sae", 2.0), ("base_model", 0.0)):
        X = rng.normal(size=(2 * n, 6)) + strength * (label[:, None] - 0.5)
        datasets[variant] = ProbeDataset(kind="text", X=X, target=label, split=split,
                                         element=np.repeat(["positive", "negative"], n), triple_id=triple,
                                         word=np.full(2 * n, None, dtype=object), lexicon_value=np.full(2 * n, np.nan),
                                         scale=1.0)
    fits = fit_variants(datasets, SETTINGS, seed=0, rng=np.random.default_rng(0))
    metrics = fits.metrics
    assert fits.word_values is None and set(metrics["metric"]) == {"accuracy"}
    assert row(metrics, "sae", "test", "accuracy")["test"] == "binomial"
    difference = row(metrics, "tuned_minus_base", "test", "accuracy")
    assert difference["ci_low"] > 0 and difference["n"] == 40
    assert difference["value"] == pytest.approx(row(metrics, "sae", "test", "accuracy")["value"]
                                                - row(metrics, "base_model", "test", "accuracy")["value"])


def brute_force_fit_spread(data: ProbeDataset, alpha: float, word: str, n_draws: int,
                           rng: np.random.Generator) -> float:
    """The standard deviation of `word`'s cross-fitted value over fits whose training words are
    resampled with replacement (rows of a word drawn twice count twice), refit with scikit-learn."""
    rows = np.flatnonzero(data.scored)
    words = data.word[rows]
    for keep, held in GroupKFold(5).split(rows, groups=words):
        if word in set(words[held]):
            break
    training = np.unique(words[keep])
    mine = rows[held][words[held] == word]
    always = np.flatnonzero(~data.scored)
    values = []
    for _ in range(n_draws):
        counts = pd.Series(rng.choice(training, size=len(training))).value_counts()
        weights = np.concatenate([counts.reindex(data.word[rows[keep]], fill_value=0).to_numpy(float),
                                  np.ones(len(always))])
        fit_rows = np.concatenate([rows[keep], always])
        model = Ridge(alpha=alpha).fit(data.X[fit_rows], data.target[fit_rows], sample_weight=weights)
        values.append(model.predict(data.X[mine]).mean())
    return float(np.std(values, ddof=1))


def test_the_fit_part_of_a_word_interval_is_the_spread_of_refits_on_resampled_words():
    """The infinitesimal jackknife's standard error of a word's value equals the spread of its value
    over brute-force refits on resampled training words, within the Monte Carlo error of 400 refits."""
    words, values, split = planted_words(np.random.default_rng(0), 20)
    data = with_neutral_rows(planted_dataset(np.random.default_rng(1), words, values, split, 1.0, word_noise=0.6),
                             words, values, split)
    fit = crossfit(data, alpha=2.0, n_folds=5)
    se = pd.Series(np.sqrt(fit.fit_variance()), index=fit.words)
    for word in ("w003", "w031"):
        reference = brute_force_fit_spread(data, 2.0, word, 400, np.random.default_rng(7))
        assert se[word] == pytest.approx(reference, rel=0.2)
        assert se[word] > 0.01


def test_null_words_are_read_held_out_and_a_calibrated_flag_spares_them():
    """The neutral word ('okay', target 0) is held out whole and read by a probe fit on every lexicon
    word; its value lands near 0 within its interval."""
    words, values, split = planted_words(np.random.default_rng(0), 20)
    base = planted_dataset(np.random.default_rng(1), words, values, split, 1.0)
    data = with_neutral_rows(base, words, values, split)
    data = replace(data, word=np.where(data.element == "neutral", np.where(np.arange(len(data.word)) % 2, "okay",
                                                                           "fine"), data.word))
    null = null_crossfit(data, alpha=2.0, n_folds=5)
    assert set(null.words) == {"fine", "okay"}
    held = data.element == "neutral"
    fine = held & (data.word == "fine")
    fit_rows = np.flatnonzero(~fine)
    reference = Ridge(alpha=2.0).fit(data.X[fit_rows], data.target[fit_rows]).predict(data.X[fine])
    np.testing.assert_allclose(null.predictions[fine], reference, rtol=1e-8, atol=1e-10)
    assert np.isnan(null.predictions[~held]).all()


def test_codes_that_differ_only_by_a_rescaling_read_no_change():
    """A base model whose codes are the tuned model's times 3 (and so its activation deltas too, which
    its own gain takes back to the lexicon's units): the comparison reads no change, and the change of
    amplitude is reported on its own."""
    words, values, split = planted_words(np.random.default_rng(0), 30)
    tuned = with_neutral_rows(planted_dataset(np.random.default_rng(1), words, values, split, 0.5), words, values,
                              split)
    base = replace(tuned, X=3.0 * tuned.X)
    fits = fit_variants({"sae": tuned, "base_model": base}, SETTINGS, seed=0, rng=np.random.default_rng(0))
    difference = fits.word_values[fits.word_values["model"] == "tuned_minus_base"]
    assert difference["value"].abs().max() < 1e-9
    changes = fits.metrics[fits.metrics["variant"] == "tuned_minus_base"]
    assert changes["value"].abs().max() < 1e-9 and (changes["p_value"] > 0.5).all()
    amplitude = fits.metrics.set_index(["variant", "metric"])
    assert amplitude.loc[("tuned_over_base", "code_scale_ratio"), "value"] == pytest.approx(1 / 3)
    assert learned_from_taus(fits.metrics, False).answer in ("already_there", "no_evidence")


def test_a_word_error_estimated_on_null_words_calibrates_the_flag():
    """Null words whose readings stray from 0 by more than their contexts and the fit say (a word
    error of 0.2): the flag fires far above its nominal rate without the word error, and at it with
    the word error estimated on the other half of the null words."""
    from lfp_engine.probe.crossfit import cross_validated_word_error, split_halves, word_error
    from lfp_engine.report.divergence import calibration_table

    rng = np.random.default_rng(11)
    n = 2000
    value = rng.normal(0, np.sqrt(0.05 ** 2 + 0.03 ** 2 + 0.2 ** 2), n)
    half = 1.959964 * np.hypot(0.05, 0.03)
    nulls = pd.DataFrame({"word": [f"n{i}" for i in range(n)], "model": "tuned", "value": value, "se_contexts": 0.05,
                          "se_fit": 0.03, "se_word": 0.0, "ci_low": value - half, "ci_high": value + half})
    assert word_error(nulls) == pytest.approx(0.2, rel=0.1)
    naive = calibration_table(nulls).iloc[0]
    assert naive["rate"] > 0.3
    calibrated = calibration_table(cross_validated_word_error(nulls, split_halves(nulls["word"], rng))).iloc[0]
    assert calibrated["rate_ci_low"] <= 0.05 <= calibrated["rate_ci_high"] and calibrated["rate"] < 0.07


def test_the_rechosen_null_chooses_each_strength_as_the_probe_does():
    """Each null probe's strength is the argmin of the probe's own cross-validation on its shuffled
    targets (computed independently with `cv_errors` one column at a time and scikit-learn's Ridge)."""
    from lfp_engine.probe.nulls import rechosen_null
    from lfp_engine.probe.strength import DEFAULT_ALPHAS, cv_errors

    words, values, split = planted_words(np.random.default_rng(0), 20)
    data = with_neutral_rows(planted_dataset(np.random.default_rng(1), words, values, split, 1.0), words, values,
                             split)
    test = WordSet.of(data, data.test)
    null = rechosen_null(data, test, 12, np.random.default_rng(3), folds=5)
    rows = np.flatnonzero(data.fitted)
    targets = word_shuffles(data.target[rows], data.word[rows], data.scored[rows], 12, np.random.default_rng(3))
    refits = []
    for k in range(12):
        errors = cv_errors(data.X[rows], targets[:, k], data.cv_groups[rows], DEFAULT_ALPHAS, 5, ~data.scored[rows])
        alpha = DEFAULT_ALPHAS[int(np.argmin(errors))]
        refits.append(Ridge(alpha=alpha).fit(data.X[rows], targets[:, k]).predict(data.X[test.rows]))
    expected = word_taus(test.truth, test.average(np.column_stack(refits)), test.positive)
    for measure, taus in expected.items():
        np.testing.assert_allclose(null.taus[measure], taus, atol=1e-9)
