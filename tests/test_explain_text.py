"""Explanation prompts, answer parsing, scores, and the offline explainer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lfp_engine.explain.offline import keyword_judge, lexicon_correlation, offline_explanation, offline_relevance, top_tokens
from lfp_engine.explain.prompts import (Example, discretise, explanation_request, format_examples, parse_detection,
                                        parse_explanation, parse_relevance, parse_simulation)
from lfp_engine.explain.scoring import balanced_accuracy, detection_score, simulation_score
from lfp_engine.tuning.lexicon import vader_lexicon

GREAT = Example([" The", " film", " was", " great", "."], [0.0, 0.0, 0.1, 2.0, 0.0])
SUPERB = Example([" A", " superb", " cast"], [0.0, 1.6, 0.2])
DULL = Example([" It", " runs", " long"], [0.0, 0.0, 0.0])


def test_discretise_like_bills_et_al():
    assert discretise([0.0, 0.49, 1.0, 2.0, 2.5], 2.0) == [0, 2, 5, 10, 10]
    assert discretise([1.0, 2.0], 0.0) == [0, 0]


def test_examples_are_laid_out_token_per_line():
    text = format_examples([GREAT], 2.0)
    assert text.splitlines() == ["<start>", " The\t0", " film\t0", " was\t0", " great\t10", ".\t0", "<end>"]
    assert "\\n" in format_examples([Example(["a\nb"], [1.0])], 1.0)
    request = explanation_request([GREAT, SUPERB], 2.0)
    assert request[0]["role"] == "system" and " superb\t8" in request[1]["content"]


@pytest.mark.parametrize("answer, expected", [
    (" positive adjectives  about films. ", "positive adjectives about films."),
    ("this feature fires on praise", "praise"),
    ("", None), (None, None),
])
def test_parse_explanation(answer, expected):
    assert parse_explanation(answer) == expected


@pytest.mark.parametrize("answer, expected", [
    ('{"related": true}', True), ('```json\n{"related": false}\n```', False), ("Yes.", True), ("no", False),
    ('{"related": "maybe"}', None), ("I think so", None), (None, None),
])
def test_parse_relevance(answer, expected):
    assert parse_relevance(answer) is expected


def test_parse_simulation_and_detection_refuse_malformed_answers():
    assert parse_simulation('{"activations": [0, 3, 12, -1]}', 4) == [0.0, 3.0, 10.0, 0.0]
    assert parse_simulation('{"activations": [0, 3]}', 4) is None
    assert parse_simulation('{"activations": ["x", 1]}', 2) is None
    assert parse_simulation("nope", 2) is None
    assert parse_detection('{"firing": [0, 2]}', 3) == [True, False, True]
    assert parse_detection('{"firing": [5]}', 3) is None
    assert parse_detection('{"firing": [true]}', 3) is None
    assert parse_detection('{"firing": []}', 2) == [False, False]


def test_simulation_score_is_pearson_over_all_tokens():
    pred = [[0, 5, 10], [1, 0]]
    true = [[0.0, 1.0, 2.5], [0.3, 0.0]]
    assert simulation_score(pred, true) == pytest.approx(stats.pearsonr([0, 5, 10, 1, 0], [0, 1, 2.5, 0.3, 0]).statistic)
    assert simulation_score([[3, 3]], [[0.0, 1.0]]) == 0.0


def test_detection_is_balanced_accuracy_whatever_the_order():
    assert balanced_accuracy([True, False, True, True], [True, False, False, False]) == pytest.approx(0.5 * (1 + 1 / 3))
    with pytest.raises(ValueError):
        balanced_accuracy([True], [True])
    judge = keyword_judge(["great", "superb"])
    score = detection_score(judge, "x", ["The film was great.", "A superb cast"], ["It runs long", "A quiet town"],
                            np.random.default_rng(0))
    assert score == 1.0
    assert detection_score(lambda e, t: None, "x", ["a"], ["b"], np.random.default_rng(0)) is None


def test_offline_explainer_names_top_tokens_and_their_lexicon_tone():
    lex = vader_lexicon()
    assert top_tokens([GREAT, SUPERB, DULL]) == ["great", "superb"]
    text = offline_explanation([GREAT, SUPERB, DULL], lex)
    assert text.startswith("fires on 'great', 'superb'") and "rates positive" in text
    assert offline_explanation([DULL], lex) == "never fires on these examples"


def test_lexicon_correlation_against_scipy_and_relevance():
    lex = vader_lexicon()
    corr = lexicon_correlation([GREAT, SUPERB, DULL], lex)
    acts = [0, 0, 0.1, 2.0, 0, 0, 1.6, 0.2, 0, 0, 0]
    values = [0, 0, 0, 3.1, 0, 0, 3.1, 0, 0, 0, 0]
    assert corr.r == pytest.approx(stats.pearsonr(acts, values).statistic) and corr.n_tokens == 11
    assert offline_relevance(corr, 0.3, 0.01)
    assert not offline_relevance(lexicon_correlation([DULL], lex), 0.3, 0.01)
