"""The paper's VADER reward (equation 3) against hand-computed values, and the classifier reward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfp_engine.run.errors import ConfigError, InputError
from lfp_engine.tuning.lexicon import vader_lexicon
from lfp_engine.tuning.reward import ClassifierReward, VaderReward, positive_label_index, scored_texts


def test_lexicon_values_are_the_raw_means():
    lex = vader_lexicon()
    assert lex["great"] == 3.1 and lex["awful"] == -2.0 and lex["okay"] == 0.9
    assert "the" not in lex


def test_vader_reward_matches_hand_computation():
    reward = VaderReward()
    # great 3.1 + awful -2.0 = 1.1 -> / 5 = 0.22 ; GREAT lower-cased ; "not" has no value
    assert reward(["That movie was great but the ending was awful"])[0] == pytest.approx(0.22)
    assert reward(["It was GREAT!"])[0] == pytest.approx(3.1 / 5)
    assert reward(["not good"])[0] == pytest.approx(1.9 / 5)  # raw lexicon: no negation heuristic
    assert reward(["The film runs 90 minutes."])[0] == 0.0
    # spaCy splits the emoticon as one token, which the lexicon rates 2.0
    assert reward(["loved it :)"])[0] == pytest.approx((2.9 + 2.0) / 5)


def test_vader_reward_clips_to_ten():
    reward = VaderReward()
    assert reward(["great " * 40])[0] == 10.0
    assert reward(["awful " * 60])[0] == -10.0


def test_vader_reward_batch_equals_one_by_one():
    reward = VaderReward()
    texts = ["good", "bad bad", "", "what a masterpiece", "terrible, horrible, no good"]
    batch = reward(texts)
    assert batch.dtype == np.float64 and batch.shape == (5,)
    assert np.array_equal(batch, np.concatenate([reward([t]) for t in texts]))


def test_vader_token_values_locate_words():
    values = VaderReward().token_values("A great film")
    assert values[1] == ("great", 2, 7, 3.1)


def test_scored_texts_prefix_or_completion():
    assert scored_texts(["The film was"], [" great"], True) == ["The film was great"]
    assert scored_texts(["The film was"], [" great"], False) == [" great"]
    with pytest.raises(InputError):
        scored_texts(["a", "b"], ["c"], True)


def test_positive_label_resolution():
    assert positive_label_index({0: "NEGATIVE", 1: "POSITIVE"}) == 1
    assert positive_label_index({0: "pos", 1: "neg"}) == 0
    assert positive_label_index({0: "LABEL_0", 1: "LABEL_1"}) == 1
    assert positive_label_index({0: "bad", 1: "good"}, "good") == 1
    with pytest.raises(ConfigError):
        positive_label_index({0: "bad", 1: "good", 2: "meh"})
    with pytest.raises(ConfigError):
        positive_label_index({0: "NEGATIVE", 1: "POSITIVE"}, "joy")


@pytest.fixture(scope="module")
def small_classifier(tmp_path_factory):
    """A DistilBERT sentiment classifier with random weights and its own word-level tokenizer,
    saved to disk like a hub checkpoint (the appendix-B reward's interface, built offline)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "film", "was", "great", "awful", "good", "bad"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]", model_max_length=32)
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=len(words), dim=16, hidden_dim=32, n_layers=1, n_heads=2, max_position_embeddings=32,
        id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1}))
    folder = tmp_path_factory.mktemp("classifier")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model.eval(), tokenizer


def test_classifier_reward_is_the_positive_logit(small_classifier):
    folder, model, tokenizer = small_classifier
    reward = ClassifierReward.from_pretrained(str(folder), torch.device("cpu"), batch_size=2)
    texts = ["the film was great", "awful", "the film was bad bad bad", "good"]
    got = reward(texts)
    with torch.no_grad():
        expected = [model(**tokenizer([t], return_tensors="pt")).logits[0, 1].item() for t in texts]
    assert got.shape == (4,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert reward([]).shape == (0,)
