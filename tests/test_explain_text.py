"""Explanation prompts, answer parsing, scores, and the offline explainer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from lfp_engine.explain.offline import (is_piece, keyword_judge, lexicon_correlation, offline_explanation,
                                        offline_relevance, top_tokens)
from lfp_engine.explain.prompts import (Example, discretise, explanation_request, format_examples, parse_detection,
                                        parse_explanation, parse_relevance, parse_simulation)
from lfp_engine.explain.scoring import balanced_accuracy, detection_score, simulation_score
from lfp_engine.explain.word_classes import WordClasses, word_classes
from lfp_engine.worlds.synthetic_reviews import DATA_DIR
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


def peaked(previous: str, word: str, activation: float = 1.0) -> Example:
    """A window firing only on `word`, right after `previous`."""
    return Example([" I", f" {previous}", f" {word}", "."], [0.0, 0.0, activation, 0.0])


@pytest.fixture(scope="module")
def world_classes() -> WordClasses:
    return word_classes(synthetic_world=True, pipeline=None)


def test_world_classes_are_the_pools_of_the_world(world_classes):
    """Read against the vocabulary file itself: every pool's words take the pool's role."""
    vocab = json.loads((DATA_DIR / "vocabulary.json").read_text(encoding="utf-8"))
    for role, cls in (("adjective", "adjectives"), ("verb", "verbs"), ("noun", "nouns")):
        for polarity in ("positive", "negative"):
            assert {world_classes.of(w) for w in vocab["sentiment"][role][polarity]} == {cls}
        assert {world_classes.of(w) for w in vocab["neutral"][role]} == {cls}
    assert {world_classes.of(w.lower()) for w in vocab["context"]["name"]} == {"names"}
    assert world_classes.of("7") == world_classes.of("1990") == "numbers"
    assert world_classes.of(".") == world_classes.of(",") == "punctuation"
    assert world_classes.of("the") == "function words"
    assert world_classes.of("xylograph") is None
    assert word_classes(synthetic_world=False, pipeline=None).of("great") is None  # no grammar offered: no class


@pytest.mark.parametrize("examples, sentiment, expected", [
    ([peaked("was", "great", 2.0), peaked("was", "superb", 1.5), peaked("was", "lovely")], True,
     "positive adjectives, after 'was' in 3 of 3 examples: 'great', 'superb', 'lovely'"),
    ([peaked("I", "hated"), peaked("we", "despised"), peaked("they", "loathed")], True,
     "negative verbs: 'hated', 'despised', 'loathed'"),
    ([peaked("rated", "7"), peaked("rated", "9"), peaked("was", "10")], True, "numbers: '7', '9', '10'"),
    ([peaked("great", "."), peaked("fine", ","), peaked("dull", ".")], True, "punctuation: '.', ','"),
    ([peaked("with", "Anna"), peaked("and", "Ben")], True, "names: 'anna', 'ben'"),
    ([peaked("a", "great"), peaked("a", "dreadful"), peaked("a", "triumph", 0.1)], True,
     "positive and negative adjectives, after 'a' in 3 of 3 examples: 'great', 'dreadful', 'triumph'"),
    ([peaked("was", "great", 2.0), peaked("was", "superb", 1.5), peaked("was", "lovely")], False,
     "adjectives, after 'was' in 3 of 3 examples: 'great', 'superb', 'lovely'"),  # no lexicon, no polarity
    ([peaked("a", "great"), peaked("the", "movie"), peaked("I", "watched")], True,
     "words: 'great', 'movie', 'watched'"),  # no class holds most of the weight
])
def test_offline_explanation_names_class_polarity_and_context(world_classes, examples, sentiment, expected):
    lexicon = vader_lexicon() if sentiment else {}
    assert offline_explanation(examples + [DULL], lexicon, world_classes) == expected


def test_pieces_of_words_get_no_class_and_no_lexicon_value(world_classes):
    """'l' is a VADER entry (+2.0), but ' l' + 'ovely' is the word 'lovely': a piece is no word."""
    lovely = [Example([" a", " l", "ovely", " film"], [0.0, 1.0, 0.0, 0.0]),
              Example([" so", " l", "ovely", "."], [0.0, 1.0, 0.0, 0.0])]
    assert offline_explanation(lovely, vader_lexicon(), world_classes) == "word pieces: 'l'"
    assert [is_piece(lovely[0].tokens, i) for i in range(4)] == [False, True, True, False]
    assert not is_piece([" The", " film", " was", " great", "."], 3)
    assert not is_piece(["The", "film", "was"], 1)  # tokens decoded without their spaces: cannot tell


def test_offline_explanation_without_a_grammar_claims_no_part_of_speech():
    examples = [peaked("was", "great", 2.0), peaked("was", "superb", 1.5), peaked("was", "lovely")]
    assert offline_explanation(examples, vader_lexicon(), word_classes(False, None)).startswith("positive words, ")
    assert offline_explanation([DULL], vader_lexicon(), word_classes(False, None)) == "nothing in these examples"
    assert top_tokens([GREAT, SUPERB, DULL]) == ["great", "superb"]


def test_a_trained_pipeline_tags_words_the_world_does_not_know(tmp_path):
    """A real spaCy pipeline loaded from a folder (an attribute ruler standing in for a trained
    tagger: en_core_web_sm is not installable here): it decides words no world role covers, after
    punctuation and numbers and before the stop-word list."""
    import spacy

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("attribute_ruler")
    for word, pos in (("splendid", "ADJ"), ("film", "NOUN"), ("was", "AUX"), ("7", "NOUN")):
        ruler.add([[{"LOWER": word}]], {"POS": pos})
    nlp.to_disk(tmp_path / "pipeline")
    classes = word_classes(synthetic_world=False, pipeline=str(tmp_path / "pipeline"))
    assert classes.of("splendid") == "adjectives" and classes.of("film") == "nouns" and classes.of("was") == "verbs"
    assert classes.of("7") == "numbers"  # the lexical attribute comes first
    assert classes.of("the") == "function words" and classes.of("xylograph") is None
    assert "spaCy pipeline" in classes.sources
    examples = [peaked("a", "splendid"), peaked("the", "film")]
    assert offline_explanation(examples, vader_lexicon(), classes).startswith("positive adjectives and nouns")


def test_lexicon_correlation_against_scipy_and_relevance():
    lex = vader_lexicon()
    corr = lexicon_correlation([GREAT, SUPERB, DULL], lex)
    acts = [0, 0, 0.1, 2.0, 0, 0, 1.6, 0.2, 0, 0, 0]
    values = [0, 0, 0, 3.1, 0, 0, 3.1, 0, 0, 0, 0]
    assert corr.r == pytest.approx(stats.pearsonr(acts, values).statistic) and corr.n_tokens == 11
    assert offline_relevance(corr, 0.3, 0.01)
    assert not offline_relevance(lexicon_correlation([DULL], lex), 0.3, 0.01)
