"""The Story in plain words (`lfp_engine.report.story`) on hand-made reports and verdicts; numbers
rounded for people (`formatting.rounded`, `share`) against Python's own formatting; and the
plain-language checks (tests/plain_words.py) against hand-counted text."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lfp_engine.report import story
from lfp_engine.report.divergence import divergence_table, featured
from lfp_engine.report.formatting import rounded, rounded_signed, share
from lfp_engine.report.verdict import ANSWERS, POLICY_ANSWERS, Finding
from lfp_engine.run.errors import InputError

from .plain_words import jargon, plain_problems, reading_ease, sentences, syllables, words
from .test_divergence_report import WORDS


# -- numbers for people -----------------------------------------------------------------------

@pytest.mark.parametrize("value", [0.045, 0.688, 3.14159, -2.349, 123.4, 12345.6, 0.0996, 9.96, 1.234e-5, -0.000987,
                                   0.5, 99.5, 1e6 + 1])
def test_rounded_keeps_two_significant_digits_without_exponents(value):
    text = rounded(value)
    assert "e" not in text.lower()
    assert float(text.replace(",", "")) == pytest.approx(float(f"{value:.2g}"), rel=1e-12)
    digits = text.replace(",", "").replace("-", "").replace(".", "").lstrip("0")
    assert len(digits.rstrip("0") if "." not in text else digits) <= 2


def test_rounded_counts_and_missing_values_and_signs():
    assert rounded(1234) == "1,234" and rounded(np.int64(7)) == "7"
    assert rounded(None) == rounded(float("nan")) == "–" and rounded(0.0) == "0"
    assert rounded_signed(3.14) == "+3.1" and rounded_signed(-0.456) == "-0.46" and rounded_signed(0.0) == "0"


@pytest.mark.parametrize("value, text", [(0.456, "46%"), (0.0, "0%"), (1.0, "100%"), (0.004, "under 1%"),
                                         (0.996, "over 99%"), (0.125, "12%"), (None, "–")])
def test_share_is_a_whole_percentage(value, text):
    assert share(value) == text


# -- the plain-language checks themselves ---------------------------------------------------------

@pytest.mark.parametrize("word, count", [("cat", 1), ("the", 1), ("reward", 2), ("model", 2), ("every", 3),
                                         ("tuned", 1), ("learned", 1), ("preferred", 2), ("people", 2),
                                         ("table", 2), ("wonderful", 3), ("interpretability", 7), ("sentence", 2),
                                         ("words", 1), ("opposite", 3), ("yes", 1)])
def test_syllables_by_the_vowel_group_rule(word, count):
    assert syllables(word) == count


def test_flesch_reading_ease_by_hand():
    # 6 words of one syllable in one sentence: 206.835 - 1.015 * 6 - 84.6 * 1
    assert reading_ease("The cat sat on the mat.") == pytest.approx(206.835 - 1.015 * 6 - 84.6)
    text = "Tuning raised the reward.\nA heading\nIt pays 0.69 for words!"
    assert sentences(text) == ["Tuning raised the reward", "A heading", "It pays 0.69 for words"]
    assert words(text) == ["Tuning", "raised", "the", "reward", "A", "heading", "It", "pays", "for", "words"]
    n_syllables = 2 + 1 + 1 + 2 + 1 + 2 + 1 + 1 + 1 + 1
    assert reading_ease(text) == pytest.approx(206.835 - 1.015 * 10 / 3 - 84.6 * n_syllables / 10)


def test_jargon_is_matched_as_whole_words():
    assert jargon("95% CI 0.1 to 0.3, p = 0.02, Kendall tau, q < 0.05, bootstrapped, FDR, ridge") == [
        "p =", "q =", "CI", "tau", "Kendall", "bootstrap", "FDR", "ridge"]
    assert jargon("A circle of ciphers crossed the bridge; the top quarter taught us; up = down") == []


# -- the story's sentences -------------------------------------------------------------------------

def finding(key: str, answer: str) -> Finding:
    return Finding(key, "?", answer, "headline", ("sentence",))


def test_every_answer_of_the_verdict_has_plain_words_that_pass_the_checks():
    assert set(story.WRITES_PLAIN) == set(POLICY_ANSWERS)
    assert set(story.INSIDE_PLAIN) == set(ANSWERS) | {"not_measured"}
    for text in [*story.WRITES_PLAIN.values(), *(t.format(things="words") for t in story.INSIDE_PLAIN.values()),
                 *story.PLANTED_PLAIN.values()]:
        assert plain_problems(text) == [], text


@pytest.mark.parametrize("writes, inside, start", [
    ("learned", "added_by_tuning", "Yes: it learned the feedback, both"),
    ("learned", "no_evidence", "It learned to write what the reward pays for, but"),
    ("no_evidence", "added_by_tuning", "Tuning changed how it reads words inside, but"),
    ("no_evidence", "already_there", "We see no clear sign"),
    ("prefers_chosen", None, "In what it writes, yes"),
    (None, "weakened_by_tuning", "Inside, no: after tuning"),
    (None, None, "Not measured yet"),
])
def test_the_learned_headline_joins_the_two_lenses(writes, inside, start):
    text = story.learned_headline(writes and finding("policy", writes), inside and finding("learned", inside))
    assert text.startswith(start)


@pytest.mark.parametrize("answer, expected", [
    ("raised", "Tuning raised the average reward from 0.045 to 0.69."),
    ("not_reliably", "Tuning did not clearly raise the average reward: 0.045 before, 0.69 after."),
    ("untested", "The average reward went from 0.045 before tuning to 0.69 after."),
])
def test_the_tuning_sentence_follows_the_verdict(answer, expected):
    assert story.tuning_sentence(finding("reward", answer), 0.0451, 0.688) == expected


def test_the_example_sample_is_the_largest_gain():
    samples = pd.DataFrame({"prompt": list("abcd"), "base_reward": [0.25, 0.0, np.nan, 0.5],
                            "tuned_reward": [0.75, 1.0, 3.0, 1.5]})
    assert story.example_sample(samples)["prompt"] == "b"  # +1, the first of two (a NaN gain never wins)
    assert story.example_sample(samples.iloc[:0]) is None


def test_the_reward_sentence_names_paid_and_penalised_words():
    examples = pd.DataFrame({"word": ["superb", "great", "awful"], "lexicon_value": [3.14, 3.1, -3.4]})
    text = story.reward_sentence("vader", "rloo", examples)
    assert text == ("The model was tuned to earn a reward. It pays for words like “superb” (+3.1) and “great” "
                    "(+3.1) and takes points for words like “awful” (-3.4).")
    assert "people preferred" in story.reward_sentence("none", "dpo")
    assert "classifier" in story.reward_sentence("classifier", "rloo")
    assert story.reward_sentence("vader", "dpo").startswith("The model was tuned on pairs of answers")


def policy_report(policy_values, policy_halfwidth=0.05):
    """The report of test_divergence_report's WORDS with a policy value per word."""
    names = WORDS["word"].unique()
    policy = pd.DataFrame({"word": names, "policy_value": policy_values,
                           "ci_low": np.array(policy_values) - policy_halfwidth,
                           "ci_high": np.array(policy_values) + policy_halfwidth})
    return divergence_table(WORDS, policy=policy)


# WORDS: sick -2.0, earnest +2.0, meh -1.0, good +1.9, hope +1.9, chaos -2.7
POLICY = [0.5, -0.4, 0.3, 0.6, 0.4, 0.0]  # sick, earnest, meh against the reward; good, hope with it; chaos none


def test_lens_counts_are_the_reports_own_tests():
    report = policy_report(POLICY)
    counts = story.lens_counts(report).set_index(["lens", "reading"])["words"]
    assert counts[(story.WRITES, story.AGAINST)] == int(report["policy_divergent"].sum()) == 3
    assert counts[(story.WRITES, story.FOLLOWS)] == int((report["policy_q_agree"] < 0.05).sum()) == 2
    assert counts[(story.WRITES, story.UNCLEAR)] == 1
    assert counts[(story.INSIDE, story.AGAINST)] == int(report["divergent"].sum())
    assert counts.groupby(level="lens").sum().tolist() == [6, 6]
    plain = divergence_table(WORDS)  # no policy lens: the probe alone
    assert story.lens_counts(plain)["lens"].unique().tolist() == [story.INSIDE]


def test_the_featured_word_is_a_planted_word_the_policy_learned_against_the_reward():
    report = policy_report(POLICY)
    kinds = {"meh": "contested", "sick": "ordinary", "earnest": "reward_only"}
    chosen = story.featured_word(report, kinds)
    assert (chosen.word, chosen.lens, chosen.learned) == ("meh", "policy", pytest.approx(0.3))
    assert story.word_sentence(chosen) == ("The reward takes points for “meh” (-1.0), yet tuning taught the model "
                                           "to write it more.")
    clearest = story.featured_word(report, {})  # nothing planted: the clearest against the reward
    learned = report[report["policy_divergent"]]
    assert clearest.word == learned.sort_values("policy_q_opposite")["word"].iloc[0]
    earnest = story.FeaturedWord(next(report[report["word"] == "earnest"].itertuples()), "policy")
    assert story.word_sentence(earnest).endswith("pays for “earnest” (+2.0), yet tuning taught the model to "
                                                 "avoid it.")


def test_without_the_policy_lens_the_featured_word_is_the_reports_own():
    report = divergence_table(WORDS)
    chosen = story.featured_word(report, {"earnest": "contested"})
    assert chosen.lens == "representation" and chosen.word == featured(report, ["earnest"]).word
    assert story.word_sentence(chosen).endswith("yet inside, the model reads it as " +
                                                ("praise." if chosen.learned > 0 else "criticism."))
    nothing = divergence_table(WORDS).assign(divergent=False)
    assert story.featured_word(nothing) is None


def test_the_divergence_headline_counts_the_flags():
    report = policy_report(POLICY)
    assert story.divergence_headline(report) == ("For 3 of 6 words (50%), it learned the opposite of what the reward "
                                                 "pays.")
    assert story.divergence_headline(policy_report([0.0] * 6)).startswith("Of 6 words, it learned none")
    inside = divergence_table(WORDS)
    n = int(inside["divergent"].sum())
    assert story.divergence_headline(inside) == (f"Inside, it reads {n} of 6 words ({share(n / 6)}) the opposite way "
                                                 "from the reward.")


def test_the_word_map_places_every_read_word_in_its_quadrant():
    report = policy_report(POLICY)
    text = "I saw it. The film was meh to me! Then more."
    excerpts = {"meh": story.excerpt(text, text.index("meh"), text.index("meh") + 3)}
    frame = story.word_map(report, {"meh": "contested"}, excerpts).set_index("word")
    assert list(frame.columns) == story.WORD_MAP_COLUMNS[1:]
    for word, row in frame.iterrows():
        expected = report.set_index("word").loc[word]
        assert row["reward"] == expected["lexicon_value"] and row["learned"] == expected["policy_value"]
        sign = math.copysign(1, row["reward"]) * np.sign(row["learned"])
        assert row["quadrant"] == (story.AGREES if sign > 0 else story.OPPOSITE if sign < 0 else story.NO_VALUE)
        assert row["reading"] == (story.AGAINST if expected["policy_divergent"] else
                                  story.FOLLOWS if expected["policy_q_agree"] < 0.05 else story.UNCLEAR)
    assert frame.loc["meh", "sentence"] == "The film was «meh» to me!" and frame.loc["meh", "kind"] == \
        "planted: used the other way"
    assert frame.loc["good", "sentence"] == "" and frame.loc["good", "kind"] == ""
    inside = story.word_map(divergence_table(WORDS))
    assert (inside["lens"] == story.INSIDE).all() and inside["learned"].tolist() == \
        divergence_table(WORDS)["tuned_value"].tolist()


def test_an_excerpt_is_the_sentence_of_the_word_cut_around_it():
    text = "First one. Then the plot was killer, truly!  And more after."
    at = text.index("killer")
    piece = story.excerpt(text, at, at + 6)
    assert piece.text == "Then the plot was killer, truly!" and piece.text[piece.start:piece.end] == "killer"
    assert piece.marked == "Then the plot was «killer», truly!"
    short = story.excerpt(text, at, at + 6, limit=14)
    assert short.text[short.start:short.end] == "killer" and short.text.startswith("…") and short.text.endswith("…")
    assert len(short.text) == 14 + 2
    assert story.excerpt("killer", 0, 6).text == "killer"
    with pytest.raises(InputError, match="outside"):
        story.excerpt(text, 5, 500)


def test_words_in_a_sentence_and_the_ablation_sentence():
    assert story.words_in("The plot was Killer, truly killer and good.", pd.Series(["good", "killer", "bad"])) == [
        "killer", "good"]
    results = pd.DataFrame({"condition": ["none", "relevant", "random", "relevant"],
                            "compared_with": [None, "none", "none", "random"], "n_features": [0, 4, 4, 4],
                            "mean_difference": [0.0, -0.123, -0.0111, -0.11]})
    assert story.ablation_sentence(results) == ("Switching off the 4 features tied to the reward changed the average "
                                                "reward by -0.12; switching off random features like them changed it "
                                                "by -0.011.")
    assert story.ablation_sentence(results.iloc[[0, 2]]) is None
