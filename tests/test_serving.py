"""The serving layer on the real micro run: the playground's numbers are the probe's (its text-level
implicit reward from the model alone, never from the lexicon), the lab's
completions are the validate stage's, bad input is refused with a message, and requests running
at the same time in threads return exactly what they return one at a time."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from lfp_engine.probe.implicit_reward import read_text
from lfp_engine.run.errors import InputError
from lfp_engine.tuning import lexicon as lexicon_module
from lfp_engine.tuning import reward as reward_module
from lfp_engine.tuning.lexicon import word_spans
from lfp_engine.validation.interventions import NO_INTERVENTION, Intervention
from lfp_engine.run.manifest import read_config, read_manifest
from lfp_engine.serving import MAX_PROMPT_CHARS, LiveRun
from lfp_engine.run.store import RunStore

pytestmark = pytest.mark.slow

TEXT = "The acting was wonderful but the plot was boring."


@pytest.fixture(scope="module")
def live(micro_run) -> LiveRun:
    run = LiveRun(micro_run, device="cpu")
    yield run
    run.close()


def relevant(live: LiveRun) -> Intervention:
    """The validate stage's 'relevant' condition (empty where no feature is labelled relevant)."""
    return Intervention(ablate={k: tuple(v) for k, v in live.relevant.items()})


def test_a_words_tokens_average_to_the_probe_stages_prediction(live, micro_run):
    store = RunStore(micro_run)
    triple = store.query("SELECT t.text_positive AS text, t.start_positive AS start, t.end_positive AS end_, "
                         "p.prediction FROM triples t JOIN probe_predictions p USING (triple_id) "
                         "WHERE p.element = 'positive' ORDER BY t.triple_id LIMIT 500")
    fits = [len(live.tokenizer(r.text[:r.end_])["input_ids"]) <= live.max_tokens for r in triple.itertuples()]
    assert sum(fits) >= 3, "no word within the playground's window"
    for row in triple[fits].head(3).itertuples():
        result = live.implicit_reward(row.text)
        tokens = result.tokens
        inside = tokens[(tokens["start"] < row.end_) & (tokens["end"] > row.start)]
        assert inside["reward"].mean() == pytest.approx(row.prediction, abs=1e-6)
        word = result.implicit_words.set_index(["start", "end"]).loc[(row.start, row.end_)]
        assert word["value"] == pytest.approx(row.prediction, abs=1e-6)


def test_neutral_words_read_the_probes_zero_point(live, micro_run):
    """The neutral element of each triple is fit at 0: read live in its text, it stays near 0."""
    store = RunStore(micro_run)
    rows = store.query("SELECT t.text_neutral AS text, t.start_neutral AS start, t.end_neutral AS end_, p.prediction "
                       "FROM triples t JOIN probe_predictions p USING (triple_id) WHERE p.element = 'neutral' "
                       "ORDER BY t.triple_id")
    targets = store.query("SELECT avg(abs(target)) AS size FROM probe_predictions WHERE element <> 'neutral'")
    assert abs(rows["prediction"].mean()) < 0.1 * targets["size"].iloc[0]
    fits = [len(live.tokenizer(r.text[:r.end_])["input_ids"]) <= live.max_tokens for r in rows.itertuples()]
    assert sum(fits) >= 3, "no neutral word within the playground's window"
    for row in rows[fits].head(3).itertuples():
        word = live.implicit_reward(row.text).implicit_words.set_index(["start", "end"]).loc[(row.start, row.end_)]
        assert word["value"] == pytest.approx(row.prediction, abs=1e-6)


def test_the_implicit_reward_never_reads_the_lexicon(live, monkeypatch):
    """Every word counts and the lexicon decides nothing: with the lexicon forbidden the implicit
    reward is the same, and with another lexicon only the true reward changes."""
    expected = live.implicit_reward(TEXT)
    assert expected.implicit_words["word"].tolist() == [w for w, _, _ in word_spans(TEXT)]
    assert expected.implicit_text_reward == live.reward.aggregate(expected.implicit_words["value"])
    monkeypatch.setattr(live.reward, "lexicon", {w: -v for w, v in live.reward.lexicon.items()})
    flipped = live.implicit_reward(TEXT)
    assert flipped.true_reward == -expected.true_reward != 0
    assert flipped.implicit_text_reward == expected.implicit_text_reward
    pd.testing.assert_frame_equal(flipped.implicit_words, expected.implicit_words)

    class Forbidden(dict):
        def __getitem__(self, word, *default):
            raise LookupError(f"the lexicon was read for {word!r}")

        get = __contains__ = __getitem__

    def forbidden_lexicon():
        raise LookupError("the lexicon was read")

    monkeypatch.setattr(live.reward, "lexicon", Forbidden())
    for module in (lexicon_module, reward_module):
        monkeypatch.setattr(module, "vader_lexicon", forbidden_lexicon)
    reader = live.readers["tuned"]
    reading = read_text(reader.encoder, reader.probe, TEXT, live.reward.aggregate)
    assert reading.text_reward == expected.implicit_text_reward
    with pytest.raises(LookupError, match="lexicon was read"):
        live.implicit_reward(TEXT)  # the true reward does read it: the patch bites


def test_playground_answer_beside_the_true_reward_and_the_base_model(live):
    tuned = live.implicit_reward(TEXT)
    assert not tuned.truncated and tuned.text_read == TEXT
    assert tuned.true_reward == live.reward([TEXT])[0]
    assert "wonderful" in tuned.words["word"].tolist()
    assert tuned.words.set_index("word").loc["wonderful", "value"] > 0
    assert all(len(d) <= 5 for d in tuned.tokens["drivers"])
    layer, size, feature, contribution = tuned.tokens["drivers"].iloc[0][0]
    assert (layer, size) in live.saes and 0 <= feature < size
    base = live.implicit_reward(TEXT, model="base")
    assert base.tokens["token"].tolist() == tuned.tokens["token"].tolist()
    assert not np.allclose(base.tokens["reward"], tuned.tokens["reward"])
    for result in (tuned, base):  # both in the true reward's units: its own formula on the words' values
        assert result.implicit_text_reward == live.reward.aggregate(result.implicit_words["value"])
        assert result.implicit_words["word"].tolist() == tuned.words["word"].tolist()


def test_long_text_is_read_up_to_the_window_and_says_so(live):
    text = "a wonderful film " * 6000  # ~100k characters
    result = live.implicit_reward(text)
    assert result.truncated and len(result.tokens) == live.max_tokens
    assert text.startswith(result.text_read) and len(result.text_read) < len(text)
    assert result.true_reward == live.reward([result.text_read])[0]


@pytest.mark.parametrize("text", ["", "   \n\t  "])
def test_empty_text_is_refused(live, text):
    with pytest.raises(InputError, match="empty"):
        live.implicit_reward(text)


@pytest.mark.parametrize("text", ["great 😀🎬 film\x00\x07\x1b[31m done", "<script>alert('x')</script><b>bold</b>"])
def test_emoji_control_characters_and_markup_are_read_as_text(live, text):
    result = live.implicit_reward(text)
    assert np.isfinite(result.tokens["reward"]).all()
    assert result.tokens["end"].max() <= len(text)


def test_ablating_nothing_and_the_relevant_features_reproduces_the_validate_stage(live, micro_run):
    """Same prompts, batch and seed as the stage: the lab's completions are the stage's, token for token."""
    store = RunStore(micro_run)
    seed = read_manifest(store)["validate"].seed
    stored = store.read("ablation_samples")
    prompts = live.heldout_prompts[:live.config.validate.n_prompts]
    result = live.compare_generations(prompts, relevant(live), len(prompts), seed=seed).samples
    for condition, column in (("none", "unmodified"), ("relevant", "modified")):
        expected = stored[stored["condition"] == condition]
        assert result[column].head(len(expected)).tolist() == expected["completion"].tolist()
        assert result[f"{column}_reward"].head(len(expected)).tolist() == expected["reward"].tolist()


def test_an_empty_intervention_is_the_model_and_steering_changes_it(live):
    prompts = live.heldout_prompts[:3]
    same = live.compare_generations(prompts, NO_INTERVENTION, 6, 12, seed=3)
    assert same.samples["modified"].tolist() == same.samples["unmodified"].tolist()
    assert (same.samples["difference"] == 0).all() and same.comparison.mean_difference == 0
    key = next(iter(live.saes))
    steered = live.compare_generations(prompts, Intervention(steer={key: ((0, 40.0),)}), 6, 12, seed=3)
    assert steered.samples["unmodified"].tolist() == same.samples["unmodified"].tolist()
    assert steered.samples["modified"].tolist() != steered.samples["unmodified"].tolist()


@pytest.mark.parametrize("call, message", [
    (lambda live, key: live.compare_generations(["a"], Intervention(ablate={key: (10**6,)}), 2), "out of range"),
    (lambda live, key: live.compare_generations(["a"], Intervention(steer={key: ((1, float("nan")),)}), 2), "finite"),
    (lambda live, key: live.compare_generations(["a"], Intervention(ablate={(99, 7): (1,)}), 2), "no dictionary"),
    (lambda live, key: live.compare_generations([], NO_INTERVENTION, 2), "no prompts"),
    (lambda live, key: live.compare_generations(["x" * (MAX_PROMPT_CHARS + 1)], NO_INTERVENTION, 2), "characters"),
    (lambda live, key: live.compare_generations(["a"], NO_INTERVENTION, 0), "number of samples"),
    (lambda live, key: live.compare_generations(["a"], NO_INTERVENTION, 2, 0), "new tokens"),
    (lambda live, key: live.implicit_reward(TEXT, model="other"), "model must be"),
])
def test_bad_requests_are_refused_with_a_message(live, call, message):
    with pytest.raises(InputError, match=message):
        call(live, next(iter(live.saes)))


def test_parallel_requests_return_what_they_return_alone(live):
    keys = sorted(live.saes)
    prompts = live.heldout_prompts[:4]
    requests = [
        lambda: live.compare_generations(prompts, NO_INTERVENTION, 4, 10, seed=1).samples,
        lambda: live.compare_generations(prompts, Intervention(ablate={keys[1]: (0, 3, 5)}), 4, 10, seed=1).samples,
        lambda: live.compare_generations(prompts, Intervention(ablate={keys[0]: tuple(range(20))}), 4, 10, seed=1).samples,
        lambda: live.compare_generations(prompts, Intervention(steer={keys[-1]: ((2, 25.0),)}), 4, 10, seed=1).samples,
        lambda: live.implicit_reward(TEXT).tokens,
        lambda: live.implicit_reward(TEXT + " " + TEXT, model="base").tokens,
    ] * 2
    alone = [request() for request in requests]
    together: list[pd.DataFrame | None] = [None] * len(requests)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(requests))

    def work(i: int) -> None:
        barrier.wait()
        try:
            for _ in range(3):
                together[i] = requests[i]()
        except BaseException as err:  # noqa: B036 - reported below, with the request it came from
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for a, b in zip(alone, together, strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not alone[0].equals(alone[2])


def test_the_policy_lens_reads_the_two_models_own_probabilities_beside_the_probe_and_the_reward(live, micro_run):
    """Per token: beta (log pi_tuned - log pi_base) by plain forward passes in float64 after the document
    separator; per word: the probe's and the lexicon's values times the reward's scale, the policy's
    sum over the word's tokens; in all: the true reward, the probe's text reward, the policy's sum."""
    import torch

    together = live.reward_units(TEXT)
    beta = read_config(RunStore(micro_run))[1]["rlhf"]["beta"]
    ids = live.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    context = [live.tokenizer.bos_token_id if live.tokenizer.bos_token_id is not None else live.tokenizer.eos_token_id]
    full = torch.tensor([context + ids])
    logp = []
    for name in ("tuned", "base"):
        with torch.no_grad():
            scores = torch.log_softmax(live.models[name](full).logits[0].double(), -1)
        logp.append(np.array([scores[len(context) + j - 1, t].item() for j, t in enumerate(ids)]))
    expected = beta * (logp[0] - logp[1])
    np.testing.assert_allclose(together.tokens["policy"], expected, atol=1e-5 * beta)
    assert together.totals["policy"] == pytest.approx(expected.sum(), abs=1e-4 * beta)
    probe = live.implicit_reward(TEXT)
    scale = live.config.reward.scale
    words = together.words.set_index(["start", "end"])
    lexicon = live.reward.lexicon  # the reward's own word values
    for word, start, end in word_spans(TEXT):
        if word.isspace():
            continue
        row = words.loc[(start, end)]
        assert row["reward"] == pytest.approx(scale * lexicon.get(word, 0.0))
        tokens = together.tokens[(together.tokens["start"] < end) & (together.tokens["end"] > start)]
        assert row["policy"] == pytest.approx(tokens["policy"].sum())
    implicit = probe.implicit_words.set_index(["start", "end"])["value"]
    np.testing.assert_allclose(words.loc[implicit.index, "probe"], scale * implicit, rtol=1e-12)
    assert together.totals["reward"] == probe.true_reward and together.totals["probe"] == probe.implicit_text_reward
    assert live.policy_reading(TEXT).total == pytest.approx(together.totals["policy"])
