"""The offline world: word pools checked against the lexicon, seeded generation, planted truth."""

from __future__ import annotations

import numpy as np
import pytest

from lfp_engine.run.errors import InputError
from lfp_engine.tuning.lexicon import vader_lexicon, word_tokens
from lfp_engine.tuning.reward import VaderReward
from lfp_engine.worlds.prompts import make_prompts
from lfp_engine.worlds.synthetic_reviews import ReviewGenerator, Vocabulary, choose_heldout_words
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


def test_a_context_word_with_sentiment_is_refused(tmp_path, vocab):
    import json
    import shutil

    from lfp_engine.worlds.synthetic_reviews import DATA_DIR

    shutil.copy(DATA_DIR / "templates.json", tmp_path / "templates.json")
    data = json.loads((DATA_DIR / "vocabulary.json").read_text())
    data["context"]["place"].append("paradise")  # in the lexicon: would leak reward into context
    (tmp_path / "vocabulary.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="paradise"):
        Vocabulary.load(vader_lexicon(), tmp_path)


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


def test_heldout_words_cover_every_role_and_polarity(vocab):
    held = choose_heldout_words(vocab, 0.2, np.random.default_rng(0))
    groups = {(w.role, w.polarity) for w in vocab.sentiment if w.word in held}
    assert groups == {(w.role, w.polarity) for w in vocab.sentiment}
    assert 0.15 * len(vocab.sentiment) < len(held) < 0.3 * len(vocab.sentiment)


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
