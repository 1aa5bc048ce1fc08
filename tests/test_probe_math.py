"""Probe fitting, its zero point and units, the agreement measures, and a text's implicit reward,
against scipy and hand computations."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold, cross_val_predict

from lfp_engine.run.errors import InputError
from lfp_engine.probe.dataset import ProbeDataset, build_dataset, target_scale
from lfp_engine.probe.implicit_reward import word_rewards
from lfp_engine.probe.kendall import tau_b
from lfp_engine.probe.strength import DEFAULT_ALPHAS, cv_errors
from lfp_engine.probe.linear import (fit, fit_logistic, fit_regression,
                                     fit_sharing_strength, shuffled_probe, xavier_probe)
from lfp_engine.probe.measures import sign_agreement, word_values
from lfp_engine.probe.zero_point import ContextTokens, context_tokens
from lfp_engine.tuning.reward import VaderReward
from lfp_engine.worlds.tokenizer import train_bpe_tokenizer



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
    words = np.repeat([f"w{i:02d}" for i in range(20)], 10)
    word_means = np.repeat(rng.normal(size=20), 10)
    X[:, 0] = word_means + 0.1 * rng.normal(size=200)
    data = ProbeDataset(kind="word", X=X, target=X[:, 0].copy(), split=np.full(200, "train"),
                        element=np.full(200, "positive"), triple_id=np.arange(200), word=words,
                        lexicon_value=np.ones(200), scale=1.0)
    shuffled = shuffled_probe(data, rng, 5)
    assert abs(np.corrcoef(shuffled.predict(X), data.target)[0, 1]) < 0.5
    # the shuffle moves whole words: each word's rows keep their spread around a mean another word had
    fitted = shuffled.predict(X)
    assert fitted.std() < data.target.std()


def test_word_values_sign_agreement_and_scale():
    values = word_values(np.array([1.0, 3.0, -2.0, 0.5]), ["good", "good", "bad", "fine"])
    assert values.to_dict() == {"bad": -2.0, "fine": 0.5, "good": 2.0}
    assert sign_agreement(np.array([1.0, -1.0, 2.0, -3.0]), np.array([0.5, 0.2, 1.0, -1.0])) == 0.75



def test_the_zero_points_rows_count_once_in_choosing_the_strength():
    """With anchor rows the held-out error is the lexicon rows' mean squared error plus the anchors',
    checked against sklearn's grouped cross-validated predictions (ten times more anchors than words)."""
    rng = np.random.default_rng(1)
    n_words, n_anchor = 120, 1200
    X = np.vstack([rng.normal(size=(n_words, 6)), rng.normal(0, 0.1, size=(n_anchor, 6))])
    y = np.concatenate([X[:n_words] @ rng.normal(size=6) + rng.normal(0, 1.0, n_words), np.zeros(n_anchor)])
    groups = np.array([f"w{i % 30}" for i in range(n_words)] + [f"a{i % 50}" for i in range(n_anchor)])
    anchor = np.arange(len(y)) >= n_words
    alphas = (0.1, 10.0, 1e3, 1e5)
    probe = fit_regression(X, y, groups, alphas, anchor=anchor)
    expected = []
    for alpha in alphas:
        held = cross_val_predict(Ridge(alpha=alpha), X, y, groups=groups, cv=GroupKFold(n_splits=5))
        errors = (held - y) ** 2
        expected.append(errors[~anchor].mean() + errors[anchor].mean())
    assert probe.alpha == alphas[int(np.argmin(expected))] < 1e5
    assert np.corrcoef(probe.predict(X[:n_words]), y[:n_words])[0, 1] > 0.5


def test_cv_groups_hold_out_words_and_the_zero_points_texts():
    """A lexicon word's rows are one group wherever they occur; a zero-point row goes with its
    triple's text, so a fold that holds out a text holds out its neutral word and shared tokens."""
    reps, triples, context = planted_triples()
    data = build_dataset(reps, triples, "word", context)
    groups = data.cv_groups
    assert (groups[data.scored] == data.word[data.scored].astype(str)).all()
    assert (groups[~data.scored] == np.char.add("text:", data.triple_id[~data.scored].astype(str))).all()
    for keep, held in GroupKFold(n_splits=5).split(data.X, groups=groups):
        assert not set(data.word[keep][data.scored[keep]]) & set(data.word[held][data.scored[held]])
        assert not set(data.triple_id[keep][~data.scored[keep]]) & set(data.triple_id[held][~data.scored[held]])


def test_the_tuned_and_base_probes_share_the_strength_of_least_summed_error():
    """Two models' data on the same rows: one strength for both, the argmin of their summed held-out
    errors (sklearn's grouped cross-validated predictions), even where each alone would pick another."""
    reps, triples, context = planted_triples()
    data = build_dataset(reps, triples, "word", context)
    rng = np.random.default_rng(5)
    noisy = dataclasses.replace(data, X=data.X + rng.normal(0, 3.0 * data.X.std(), size=data.X.shape))
    rows = data.fitted
    summed = np.zeros(len(DEFAULT_ALPHAS))
    for d in (data, noisy):
        for i, alpha in enumerate(DEFAULT_ALPHAS):
            held = cross_val_predict(Ridge(alpha=alpha), d.X[rows], d.target[rows], groups=d.cv_groups[rows],
                                     cv=GroupKFold(n_splits=5))
            errors = (held - d.target[rows]) ** 2
            summed[i] += errors[d.scored[rows]].mean() + errors[~d.scored[rows]].mean()
    alone = [fit(d, folds=5).alpha for d in (data, noisy)]
    assert alone[0] != alone[1]  # the planted case: each model alone would choose its own strength
    shared = fit_sharing_strength([data, noisy], folds=5)
    assert shared[0].alpha == shared[1].alpha == DEFAULT_ALPHAS[int(np.argmin(summed))]
    assert np.allclose(cv_errors(data.X[rows], data.target[rows], data.cv_groups[rows], DEFAULT_ALPHAS, 5,
                                 ~data.scored[rows]) + cv_errors(noisy.X[rows], noisy.target[rows],
                                                                 noisy.cv_groups[rows], DEFAULT_ALPHAS, 5,
                                                                 ~noisy.scored[rows]), summed)
    ref = Ridge(alpha=shared[1].alpha).fit(noisy.X[rows], noisy.target[rows])
    assert np.allclose(shared[1].weights, ref.coef_) and shared[1].intercept == pytest.approx(ref.intercept_)


def test_target_scale_is_the_least_squares_gain_onto_lexicon_values():
    deltas, values = np.array([0.5, -2.0, 1.0]), np.array([1.5, -3.0, 1.0])
    gain = target_scale(deltas, values)
    assert gain == pytest.approx(np.linalg.lstsq(deltas[:, None], values, rcond=None)[0][0])
    assert gain == pytest.approx(7.75 / 5.25)
    assert target_scale(3 * deltas, values) == pytest.approx(gain / 3)  # a model's delta units cancel out
    with pytest.raises(InputError, match="zero"):
        target_scale(np.zeros(3), values)
    with pytest.raises(InputError, match="mixed up"):
        target_scale(-deltas, values)


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


def planted_triples(n: int = 240, per_triple: int = 2, seed: int = 0) -> tuple[dict[str, np.ndarray], pd.DataFrame,
                                                                             ContextTokens]:
    """Word triples whose codes share a slot feature (column 0), carry the word's value (column 1), a
    'sentiment word' feature stronger on positive (3) than on negative words (1) and absent from
    neutral ones (column 2), and a feature of ordinary tokens (column 3), weak at substituted words
    and a little stronger on positive ones, ten times stronger on the tokens the triples share
    before the word; test triples last."""
    rng = np.random.default_rng(seed)
    positive, negative, neutral = ([f"{c}{i}" for i in range(k)] for c, k in (("p", 12), ("n", 12), ("z", 6)))
    value = {w: 1.0 + i % 4 for i, w in enumerate(positive)} | {w: -(1.0 + i % 4) for i, w in enumerate(negative)}
    rows = pd.DataFrame({"triple_id": np.arange(n), "split": np.where(np.arange(n) < 0.8 * n, "train", "test"),
                         "word_positive": rng.choice(positive, n), "word_negative": rng.choice(negative, n),
                         "word_neutral": rng.choice(neutral, n)})
    rows["value_positive"] = rows["word_positive"].map(value)
    rows["value_negative"] = rows["word_negative"].map(value)

    def codes(slot: float, values: np.ndarray, strength: float, ordinary: float) -> np.ndarray:
        m = len(values)
        return np.column_stack([np.full(m, slot), values, np.full(m, strength), np.full(m, ordinary)]) + rng.normal(
            0, 0.05, (m, 4))

    shared = np.repeat(np.arange(n), per_triple)
    context = ContextTokens(texts=[], triple=shared, word=rng.choice(["the", "was", "film", "."], len(shared)))
    reps = {"positive": codes(1, rows["value_positive"].to_numpy(), 3.0, 0.6),
            "negative": codes(1, rows["value_negative"].to_numpy(), 1.0, 0.4),
            "neutral": codes(1, np.zeros(n), 0.0, 0.4), "context": codes(0, np.zeros(len(shared)), 0.0, 5.0)}
    return reps, rows, context


def test_the_neutral_element_is_the_probes_zero_point():
    reps, triples, context = planted_triples()
    data = build_dataset(reps, triples, "word", context)
    n, m = len(triples), len(context.triple)
    assert data.element.tolist() == ["positive"] * n + ["negative"] * n + ["neutral"] * n + ["context"] * m
    assert data.at_word.tolist() == [True] * 3 * n + [False] * m
    neutral = ~data.scored
    assert (data.target[neutral] == 0).all() and (data.lexicon_value[neutral] == 0).all()
    assert data.word[2 * n: 3 * n].tolist() == triples["word_neutral"].tolist()
    assert data.split[3 * n:].tolist() == triples["split"].to_numpy()[context.triple].tolist()
    assert not data.train[neutral].any() and not data.test[neutral].any() and data.fitted[neutral].any()
    probe = fit(data, folds=5)
    size = np.abs(data.target[data.scored]).mean()
    for rows in (slice(2 * n, 3 * n), slice(3 * n, None)):  # the neutral words, the shared tokens
        assert abs(probe.predict(data.X[rows]).mean()) < 0.1 * size
    # without the anchors the probe extrapolates the features it saw only at rewarded and penalised words
    free = fit_regression(data.X[data.train], data.target[data.train], data.word[data.train])
    assert abs(free.predict(data.X[2 * n: 3 * n]).mean()) > 0.4 * size
    word_only = build_dataset(reps, triples, "word", ContextTokens.none())
    assert abs(fit(word_only, folds=5).predict(reps["context"]).mean()) > 0.4 * size


def test_deltas_are_put_in_lexicon_units_on_training_words_only():
    reps, triples, context = planted_triples()
    data = build_dataset(reps, triples, "word", context)
    test = triples["split"] == "test"
    changed = triples.assign(value_positive=np.where(test, 100.0, triples["value_positive"]))
    moved = {e: np.where(test.to_numpy()[:, None], 50 * r, r) for e, r in reps.items() if e != "context"}
    assert build_dataset(moved | {"context": reps["context"]}, changed, "word", context).scale == data.scale
    # the gain maps the training deltas onto their words' values by least squares
    train = data.train
    assert np.sum((data.target[train] - data.lexicon_value[train]) * data.target[train]) == pytest.approx(0, abs=1e-6)
    with pytest.raises(InputError, match="shared tokens"):
        build_dataset(reps, triples, "word")


def test_shared_tokens_are_drawn_before_the_neutral_word_outside_substituted_words():
    texts = ["The plot was great. The acting was fine and the end was okay.", "I saw it. The music was long."]
    tokenizer = train_bpe_tokenizer(texts * 20, 300)
    triples = pd.DataFrame({"text_neutral": texts, "start_neutral": [texts[0].rindex("okay"), texts[1].index("long")]})
    triples["end_neutral"] = triples["start_neutral"] + [4, 4]
    drawn = context_tokens(triples, tokenizer, 64, {"great", "fine"}, 50, np.random.default_rng(0))
    offsets = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    for i, text in enumerate(drawn.texts):
        assert len(set(text.positions)) == len(text.positions) == (drawn.triple == i).sum()
        for p, word in zip(text.positions, drawn.word[drawn.triple == i], strict=True):
            start, end = offsets[i][p]  # the window holds the whole text: positions are the text's own
            assert end <= triples["start_neutral"][i] and texts[i][start:end].strip().lower() in word
    groups = set(drawn.word)  # each token's word: its cross-validation group
    assert not groups & {"great", "fine", "okay", "long"}
    assert {"the", "plot", "was", "acting", "and", "end", "saw", "music", "."} <= groups
    again = context_tokens(triples, tokenizer, 64, {"great", "fine"}, 3, np.random.default_rng(0))
    assert [len(t.positions) for t in again.texts] == [3, 3]
    same = context_tokens(triples, tokenizer, 64, {"great", "fine"}, 3, np.random.default_rng(0))
    assert same.texts == again.texts and same.word.tolist() == again.word.tolist()
    window = context_tokens(triples, tokenizer, 4, set(), 50, np.random.default_rng(0))
    assert all(len(t.ids) <= 4 for t in window.texts)


def test_a_texts_implicit_reward_is_the_rewards_formula_on_its_words_token_means():
    """Hand computation: "Great film, truly awful." in seven tokens, one straddling two words."""
    text = "Great film, truly awful."
    tokens = pd.DataFrame({"start": [0, 2, 5, 10, 11, 19, 23], "end": [2, 5, 10, 11, 19, 23, 24],
                           "reward": [1.0, 3.0, 0.5, -0.2, -1.0, -3.0, 0.1]})
    words = word_rewards(tokens, text)
    assert words["word"].tolist() == ["great", "film", ",", "truly", "awful", "."]
    np.testing.assert_allclose(words["value"], [2.0, 0.5, -0.2, -1.0, -2.0, 0.1])
    assert words["n_tokens"].tolist() == [2, 1, 1, 1, 2, 1]
    reward = VaderReward(lexicon={"great": 3.1, "awful": -3.4}, scale=0.2, clip=1.0)
    assert reward.aggregate(words["value"]) == pytest.approx(0.2 * -0.6)
    assert reward.aggregate([4.0, 3.0]) == 1.0 and reward.aggregate([-9.0]) == -1.0  # clipped like the reward
    assert reward([text])[0] == reward.aggregate([3.1, -3.4])  # the true reward: the same formula on the lexicon


def test_whitespace_is_no_word_and_unread_words_are_not_scored():
    text = "good  \n\n film here"
    tokens = pd.DataFrame({"start": [0, 4, 8], "end": [4, 8, 13], "reward": [1.0, 0.0, 2.0]})  # "here" not read
    words = word_rewards(tokens, text)
    assert words["word"].tolist() == ["good", "film"]
    np.testing.assert_allclose(words["value"], [1.0, 2.0])
