"""The offline world: word pools checked against the lexicon, seeded generation, planted truth."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from lfp_engine.run.errors import InputError
from lfp_engine.tuning.lexicon import vader_lexicon, word_tokens
from lfp_engine.tuning.reward import VaderReward
from lfp_engine.worlds.prompts import make_prompts
from lfp_engine.worlds.synthetic_reviews import (CONTESTED, DATA_DIR, KINDS, ORDINARY, REWARD_ONLY, ReviewGenerator,
                                                 Vocabulary, choose_heldout_words)
from lfp_engine.worlds.synthetic_world import generate_corpus, ground_truth_table
from lfp_engine.worlds.tokenizer import train_bpe_tokenizer


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.load(vader_lexicon())


def test_sentiment_words_carry_their_lexicon_values(vocab):
    lex = vader_lexicon()
    assert len(vocab.sentiment) > 150
    for w in vocab.sentiment:
        assert w.value == lex[w.word]
        assert (w.value > 0) == (w.polarity == "positive")


@pytest.fixture(scope="module")
def planted() -> Vocabulary:
    return Vocabulary.load(vader_lexicon()).plant(16, 16, np.random.default_rng(0))


@pytest.fixture(scope="module")
def planted_truth(planted) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A planted corpus of 3000 reviews and its ground truth (every name about 45 reviews)."""
    corpus = generate_corpus(ReviewGenerator(planted, np.random.default_rng(1)), 3000, 0.1, np.random.default_rng(2))
    return corpus, ground_truth_table(planted, choose_heldout_words(planted, 0.2, np.random.default_rng(3)), corpus)


def _edited_data(tmp_path, edit) -> Vocabulary:
    shutil.copy(DATA_DIR / "templates.json", tmp_path / "templates.json")
    data = json.loads((DATA_DIR / "vocabulary.json").read_text())
    edit(data)
    (tmp_path / "vocabulary.json").write_text(json.dumps(data))
    return Vocabulary.load(vader_lexicon(), tmp_path)


def test_a_context_word_with_sentiment_is_refused(tmp_path, vocab):
    shutil.copy(DATA_DIR / "templates.json", tmp_path / "templates.json")
    data = json.loads((DATA_DIR / "vocabulary.json").read_text())
    data["context"]["place"].append("paradise")  # in the lexicon: would leak reward into context
    (tmp_path / "vocabulary.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="paradise"):
        Vocabulary.load(vader_lexicon(), tmp_path)


def test_planted_candidates_are_checked_against_the_lexicon(tmp_path):
    with pytest.raises(InputError, match="'Hope' is listed as negative"):
        _edited_data(tmp_path, lambda d: d["planted"]["reward_only"]["name"]["negative"].append("Hope"))
    # a name that is also a sentiment-slot word would carry sentiment in the corpus: not reward-only
    with pytest.raises(InputError, match="used nowhere else.*'joy'"):
        _edited_data(tmp_path, lambda d: d["planted"]["reward_only"]["name"]["positive"].append("Joy"))


def test_planting_is_seeded_and_draws_half_of_each_polarity(vocab, planted):
    kinds = {(w.kind, w.polarity): 0 for w in planted.sentiment}
    for w in planted.sentiment:
        kinds[(w.kind, w.polarity)] += 1
    for kind in (CONTESTED, REWARD_ONLY):
        assert kinds[(kind, "negative")] == kinds[(kind, "positive")] == 8
    assert len({w.word for w in planted.sentiment}) == len(planted.sentiment)  # one kind per word
    again = vocab.plant(16, 16, np.random.default_rng(0))
    other = vocab.plant(16, 16, np.random.default_rng(1))
    assert again == planted and other != planted
    assert all(w.role == "name" for w in planted.sentiment if w.kind == REWARD_ONLY)
    # a contested word keeps its lexicon value and polarity (what the reward pays and the probe targets)
    lex = vader_lexicon()
    for w in planted.sentiment:
        assert w.value == lex[w.word] and (w.value > 0) == (w.polarity == "positive")
        assert w.usage == {ORDINARY: w.value, CONTESTED: -w.value, REWARD_ONLY: 0.0}[w.kind]


def test_planting_nothing_leaves_the_world_as_it_was(vocab):
    rng = np.random.default_rng(4)
    state = rng.bit_generator.state
    assert vocab.plant(0, 0, rng).sentiment == vocab.sentiment
    assert rng.bit_generator.state == state
    plain = ReviewGenerator(vocab, np.random.default_rng(5)).review()
    assert ReviewGenerator(vocab.plant(0, 0, rng), np.random.default_rng(5)).review() == plain


def test_contested_words_are_used_with_the_opposite_polarity(planted_truth):
    _, truth = planted_truth
    contested = truth[truth["kind"] == CONTESTED]
    assert len(contested) == 16 and (contested["corpus_count"] >= 20).all()
    assert (np.sign(contested["corpus_value"]) == -np.sign(contested["lexicon_value"])).all()
    # the control: ordinary words of clear polarity are used the way the lexicon scores them
    ordinary = truth[(truth["kind"] == ORDINARY) & (truth["lexicon_value"].abs() >= 1) & (truth["corpus_count"] >= 20)]
    assert len(ordinary) > 100
    assert (np.sign(ordinary["corpus_value"]) == np.sign(ordinary["lexicon_value"])).all()


def _reviews_with(corpus: pd.DataFrame) -> Counter[str]:
    """How many reviews hold each word."""
    return Counter(word for tokens in word_tokens(corpus["text"].tolist()) for word in set(tokens))


def test_reward_only_words_say_nothing_about_the_review(planted_truth):
    """A reward-only word is placed independently of the review's hidden score s ~ U(-3, 3), so the
    mean score of the n reviews holding it has mean 0 and standard error sqrt(3)/sqrt(n) (the
    uniform's standard deviation is sqrt(3)): |corpus_value| must stay within 4 standard errors
    (about 1 at n ~ 45; a chance failure per word has probability 6e-5). The same bound rejects
    nearly every ordinary word of lexicon strength >= 2 (negations such as "not hopeful" pull a
    few towards 0), so it separates words placed by sentiment from words that are not."""
    corpus, truth = planted_truth
    truth = truth.assign(bound=4 * np.sqrt(3) / np.sqrt(truth["word"].map(_reviews_with(corpus)).clip(lower=1)))
    only = truth[truth["kind"] == REWARD_ONLY].set_index("word")
    assert len(only) == 16 and (only["corpus_count"] >= 20).all()
    assert (only["corpus_value"].abs() < only["bound"]).all()
    strong = truth[(truth["kind"] == ORDINARY) & (truth["lexicon_value"].abs() >= 2) & (truth["corpus_count"] >= 20)]
    assert (strong["corpus_value"].abs() > strong["bound"]).mean() > 0.95
    # and they are names: every occurrence capitalised, never in a sentiment slot
    text = " ".join(corpus["text"])
    for word in only.index:
        assert re.findall(rf"\b{word}\b", text, flags=re.IGNORECASE) == re.findall(rf"\b{word.capitalize()}\b", text)


def test_generation_is_seeded(vocab):
    a = [ReviewGenerator(vocab, np.random.default_rng(5)).review() for _ in range(3)]
    gen = ReviewGenerator(vocab, np.random.default_rng(5))
    assert a[0] == gen.review()
    assert ReviewGenerator(vocab, np.random.default_rng(6)).review() != a[0]


def test_reward_and_rating_follow_the_hidden_score(vocab):
    corpus = generate_corpus(ReviewGenerator(vocab, np.random.default_rng(0)), 600, 0.1, np.random.default_rng(1))
    reward = VaderReward()(corpus["text"].tolist())
    assert np.corrcoef(corpus["score"], reward)[0, 1] > 0.7
    assert np.corrcoef(corpus["score"], corpus["rating"])[0, 1] > 0.8
    assert set(corpus["split"]) == {"train", "test"}
    assert not corpus["text"].str.contains(r"\{").any()  # every slot filled


def test_heldout_words_cover_every_role_polarity_and_kind(vocab, planted):
    held = choose_heldout_words(vocab, 0.2, np.random.default_rng(0))
    groups = {(w.role, w.polarity) for w in vocab.sentiment if w.word in held}
    assert groups == {(w.role, w.polarity) for w in vocab.sentiment}
    assert 0.15 * len(vocab.sentiment) < len(held) < 0.3 * len(vocab.sentiment)
    held = choose_heldout_words(planted, 0.2, np.random.default_rng(0))
    every = {(w.kind, w.role, w.polarity) for w in planted.sentiment}
    assert {k for k in every if k[0] != ORDINARY} == {(CONTESTED, "adjective", p) for p in ("negative", "positive")} | {
        (REWARD_ONLY, "name", p) for p in ("negative", "positive")}
    assert {(w.kind, w.role, w.polarity) for w in planted.sentiment if w.word in held} == every
    assert {(w.kind, w.role, w.polarity) for w in planted.sentiment if w.word not in held} == every
    assert {w.kind for w in planted.sentiment} == set(KINDS)


def test_preference_pairs_differ_only_in_sentiment(vocab):
    gen = ReviewGenerator(vocab, np.random.default_rng(3), neutral_slot_prob=0.0)
    reward = VaderReward()
    for _ in range(20):
        prompt, chosen, rejected = gen.preference_pair()
        assert reward([prompt])[0] == 0.0
        assert reward([chosen])[0] > reward([rejected])[0]
        assert len(chosen.split()) - len(rejected.split()) in (-1, 0, 1)  # same skeleton ('a'/'an' aside)


def test_rl_prompts_never_contain_heldout_words(vocab):
    corpus = generate_corpus(ReviewGenerator(vocab, np.random.default_rng(0)), 800, 0.2, np.random.default_rng(1))
    truth = ground_truth_table(vocab, choose_heldout_words(vocab, 0.2, np.random.default_rng(2)), corpus)
    held = set(truth.loc[truth.heldout, "word"])
    assert truth["corpus_count"].sum() > 0
    tokenizer = train_bpe_tokenizer(corpus["text"], 600)
    prompts = make_prompts(corpus, tokenizer, min_tokens=2, max_tokens=12, n_rl=300, eval_tokens=8, n_eval=50,
                           rng=np.random.default_rng(4), excluded_words=held)
    rl = prompts[prompts.purpose == "rl"]
    assert len(rl) == 300 and (prompts.purpose == "eval").sum() == 50
    for tokens in word_tokens(rl["prompt"].tolist()):
        assert not held.intersection(tokens)
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in rl["prompt"]]
    assert min(lengths) >= 1 and max(lengths) <= 12
    test_ids = set(corpus.loc[corpus.split == "test", "text_id"])
    assert set(prompts.loc[prompts.purpose == "eval", "text_id"]) <= test_ids


def test_tokenizer_encodes_anything_without_unknowns():
    tokenizer = train_bpe_tokenizer(["a small corpus of words", "with some more words"], 300)
    text = "Emoji 🎬, control \x07 chars and <script>alert(1)</script>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
