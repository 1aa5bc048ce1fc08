"""The probe stage on the micro run: its tables, that it reads the tuned model through the tuned
model's SAEs, that the live per-token view agrees with it, and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lfp_engine.sae.activations import ActivationSet
from lfp_engine.probe.encoding import Encoder, TokenizedText, tokenize
from lfp_engine.run.errors import InputError
from lfp_engine.models.hub import load_causal_lm, load_tokenizer
from lfp_engine.probe.implicit_reward import token_rewards
from lfp_engine.probe.card import load_probe
from lfp_engine.probe.zero_point import context_tokens
from lfp_engine.report.verdict import read_verdict
from lfp_engine.sae.saelens_format import find_saes, load_sae
from lfp_engine.run.store import RunPaths, RunStore
from lfp_engine.statistics import MIN_RESAMPLED
from precompute.cli import main

pytestmark = pytest.mark.slow


def encoder_of(run, model: str, card, probe_saes: str | None = None) -> Encoder:
    paths = RunPaths(run)
    source = paths.tuned_model if model == "tuned" else paths.base_model
    found = find_saes(paths.saes_of(probe_saes or model))
    saes = {layer: load_sae(found[(layer, width)]) for layer, width in zip(card.layers, card.widths, strict=True)}
    return Encoder(load_causal_lm(str(source)), load_tokenizer(str(source)), list(card.layers), saes,
                   card.bos_token_id, card.max_tokens)


def test_probe_tables_follow_the_contract(micro_run):
    store = RunStore(micro_run)
    metrics = store.read("probe_metrics")
    assert set(metrics["variant"]) == {"sae", "xavier", "shuffled", "raw_mlp", "base_model", "polarity_only",
                                       "tuned_minus_base", "tuned_over_base"}
    taus = metrics[metrics["subset"].str.startswith("test") & (metrics["metric"] == "kendall_tau")]
    assert set(taus["subset"]) == {"test", "test_positive", "test_negative", "test_within"}
    readouts = taus[taus["test"] == "permutation"]
    assert set(readouts["variant"]) == {"sae", "xavier", "shuffled", "raw_mlp", "base_model"} and len(readouts) == 20
    # micro: 100 permutations, so p in [1/101, 1]; the null's 95th percentile above its mean
    assert readouts["p_value"].between(1 / 101, 1).all() and (readouts["null_q95"] >= readouts["null_mean"]).all()
    assert (readouts["ci_low"] <= readouts["ci_high"]).all()
    differences = taus[taus["variant"] == "tuned_minus_base"]
    assert len(differences) == 4 and (differences["test"] == "paired_bootstrap").all()
    paired = taus.set_index(["variant", "subset"])["value"]
    for subset in ("test", "test_within"):
        assert paired[("tuned_minus_base", subset)] == pytest.approx(paired[("sae", subset)] - paired[("base_model", subset)])
    signs = metrics[metrics["metric"] == "sign_agreement"]
    assert {"test", "test_positive", "test_negative"} <= set(signs[signs["variant"] == "sae"]["subset"])
    values = store.read("word_values")
    assert set(values["model"]) == {"tuned", "base", "tuned_minus_base"}
    few = values["n_examples"] < MIN_RESAMPLED  # too few contexts to resample: no interval, so never tested
    assert values.loc[few, "ci_low"].isna().all() and (values.loc[~few, "ci_low"] <= values.loc[~few, "ci_high"]).all()
    assert set(values["word"]) == set(store.read("contrastive_words")["word"]) and (values["n_examples"] > 0).all()
    comparison = store.read("lexicon_comparison")
    words = store.read("contrastive_words")
    assert set(comparison["word"]) == set(words["word"])
    merged = comparison.merge(words, on="word", suffixes=("", "_w"))
    assert (merged["split"] == merged["split_w"]).all() and (merged["lexicon_value"] == merged["value"]).all()
    assert (comparison["generation_count"] >= 0).all()
    predictions = store.read("probe_predictions")
    assert set(predictions["element"]) == {"positive", "negative", "neutral"}
    assert ((predictions["target"] > 0) == (predictions["element"] == "positive")).all()
    assert (predictions.loc[predictions["element"] == "neutral", "target"] == 0).all()  # the zero point
    weights = store.read("probe_weights")
    probe, card = load_probe(RunPaths(micro_run).probe)
    assert len(weights) == sum(card.widths) == len(probe.weights)
    np.testing.assert_array_equal(weights["weight"].to_numpy(), probe.weights)
    assert card.model == "tuned" and len(store.read("probe_pca")) <= 200


def test_deltas_come_from_the_tuned_model_and_its_own_saes(micro_run):
    store = RunStore(micro_run)
    probe, card = load_probe(RunPaths(micro_run).probe)
    triples = store.read("triples", where="split = ?", params=["test"], order_by="triple_id").head(12)
    stored = store.read("probe_predictions", where="element = ? AND split = ?", params=["positive", "test"],
                        order_by="triple_id").head(12)
    spans = list(zip(triples["start_positive"], triples["end_positive"]))
    tuned = encoder_of(micro_run, "tuned", card)
    texts = tokenize(tuned.tokenizer, triples["text_positive"].tolist(), spans, card.max_tokens)
    # float32 forward passes in other batch compositions agree to ~1e-8
    np.testing.assert_allclose(probe.predict(tuned.representations(texts)), stored["prediction"], rtol=0, atol=1e-6)
    # the authors' mistake, base-model activations through tuned SAEs, gives other inputs
    mixed = encoder_of(micro_run, "base", card, probe_saes="tuned")
    assert np.abs(mixed.representations(texts) - tuned.representations(texts)).max() > 1e-3


def test_live_token_rewards_agree_with_the_stage(micro_run):
    store = RunStore(micro_run)
    probe, card = load_probe(RunPaths(micro_run).probe)
    encoder = encoder_of(micro_run, "tuned", card)
    triples = store.read("triples", where="split = ? AND kind = 'word'", params=["test"], order_by="triple_id")
    # the live reading starts at the text's first token: compare where the text up to the word fits its window
    fits = [len(encoder.tokenizer(t[:end], add_special_tokens=False)["input_ids"]) < card.max_tokens
            for t, end in zip(triples["text_negative"], triples["end_negative"])]
    triples = triples[fits].head(5)
    stored = store.read("probe_predictions", where="element = ? AND split = ?", params=["negative", "test"],
                        order_by="triple_id").set_index("triple_id").loc[triples["triple_id"]]
    assert len(triples) == 5
    for row, expected in zip(triples.itertuples(), stored["prediction"], strict=True):
        text = row.text_negative[: row.end_negative]  # the activations at the word see only what precedes it
        live = token_rewards(encoder, probe, text, top_k=3)
        (tokenized,) = tokenize(encoder.tokenizer, [text], [(row.start_negative, row.end_negative)], card.max_tokens)
        offset = live.n_tokens_read - len(tokenized.ids)  # both end at the word
        word = [offset + p for p in tokenized.positions]
        assert live.tokens.loc[word, "reward"].mean() == pytest.approx(expected, abs=1e-6)
        drivers = live.tokens.loc[word[0], "drivers"]
        assert len(drivers) <= 3 and all(len(d) == 4 for d in drivers)


def test_live_view_refuses_empty_text_and_reads_long_text_truncated(micro_run):
    probe, card = load_probe(RunPaths(micro_run).probe)
    encoder = encoder_of(micro_run, "tuned", card)
    for bad in ("", "   \n"):
        with pytest.raises(InputError, match="empty"):
            token_rewards(encoder, probe, bad)
    long = token_rewards(encoder, probe, "The plot was great. " * 5000)
    assert long.truncated and long.n_tokens_read == card.max_tokens
    odd = token_rewards(encoder, probe, "zxqvblorp 🎬 <script>alert(1)</script>\x07")
    assert not odd.truncated and np.isfinite(odd.tokens["reward"]).all()


def test_unknown_words_split_into_sub_tokens(micro_run):
    tokenizer = load_tokenizer(str(RunPaths(micro_run).tuned_model))
    text = "The acting was zxqvblorpish."
    start = text.index("zxq")
    (tt,) = tokenize(tokenizer, [text], [(start, start + len("zxqvblorpish"))], 64)
    assert len(tt.positions) > 1 and tt.positions[-1] == len(tt.ids) - 1
    with pytest.raises(InputError, match="no tokens"):
        tokenize(tokenizer, [""], None, 64)
    with pytest.raises(InputError, match="cover no token"):
        tokenize(tokenizer, ["abc"], [(10, 12)], 64)


def test_a_run_without_saes_says_so_and_keeps_its_tables(micro_run, tmp_path, capsys):
    out = tmp_path / "nosae"
    shutil.copytree(micro_run, out)
    before = RunStore(out).read("probe_metrics")
    shutil.rmtree(out / "saes")
    assert main(["run", "--out", str(out), "--stages", "probe", "--force", "probe"]) == 2
    assert "run the `sae` stage" in capsys.readouterr().err
    assert RunStore(out).read("probe_metrics").equals(before)
    assert ActivationSet(out / "activations" / "train").n_rows > 0


def test_lfp_report_prints_the_verdict_record(micro_run, capsys):
    verdict = read_verdict(RunStore(micro_run))
    assert [f.key for f in verdict.findings] == ["reward", "policy", "learned", "divergence"]
    assert main(["report", str(micro_run)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"run {micro_run}: preset micro") and verdict.text() in printed
    assert main(["report", str(micro_run), "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert [f["text"] for f in answers["findings"]] == [f.text for f in verdict.findings]
    assert main(["status", str(micro_run)]) == 0 and verdict.text() in capsys.readouterr().out


def test_the_zero_points_shared_tokens_have_the_same_codes_in_every_element(micro_run):
    """The shared tokens' target 0 rests on causality: before the substituted word the three
    versions of a triple are the same text, so the model's codes there are the same in each."""
    store = RunStore(micro_run)
    probe, card = load_probe(RunPaths(micro_run).probe)
    triples = store.read("triples", order_by="triple_id").head(8)
    tuned = encoder_of(micro_run, "tuned", card)
    drawn = context_tokens(triples, tuned.tokenizer, card.max_tokens, set(), 4, np.random.default_rng(0))
    checked = 0
    for i, shared in enumerate(drawn.texts):
        if not shared.positions or len(shared.ids) == card.max_tokens:
            continue  # a window cut at its left end would differ between elements by the words' lengths
        neutral = tuned.token_codes(shared)
        for element in ("positive", "negative"):
            text = triples[f"text_{element}"].iloc[i]
            ids = tuned.tokenizer(text, add_special_tokens=False)["input_ids"][: len(shared.ids)]
            assert ids[: max(shared.positions) + 1] == shared.ids[: max(shared.positions) + 1]
            codes = tuned.token_codes(TokenizedText(ids, []))
            np.testing.assert_allclose(codes[shared.positions], neutral[shared.positions], atol=1e-5)
            checked += 1
    assert checked >= 4


def test_the_neutral_element_and_the_shared_tokens_are_read_in_one_pass(micro_run):
    """One pass over the neutral texts gives the neutral representations and the zero point's shared
    tokens exactly as a pass for each would."""
    from lfp_engine.probe.variants import tokenized_elements

    store = RunStore(micro_run)
    _, card = load_probe(RunPaths(micro_run).probe)
    tuned = encoder_of(micro_run, "tuned", card)
    triples = store.read("triples", order_by="triple_id").head(40)
    neutral = tokenized_elements(triples, "word", tuned.tokenizer, card.max_tokens)["neutral"]
    drawn = context_tokens(triples, tuned.tokenizer, card.max_tokens, set(), 3, np.random.default_rng(0))
    assert all(c.ids == t.ids for c, t in zip(drawn.texts, neutral))
    (means, raw), (shared, shared_raw) = tuned.representations_with_positions(
        neutral, [c.positions for c in drawn.texts], with_raw=True)
    alone, alone_raw = tuned.representations(neutral, with_raw=True)
    codes, codes_raw = tuned.position_codes(drawn.texts, with_raw=True)
    np.testing.assert_allclose(means, alone, atol=1e-6)
    np.testing.assert_allclose(raw, alone_raw, atol=1e-6)
    np.testing.assert_allclose(shared, codes, atol=1e-6)
    np.testing.assert_allclose(shared_raw, codes_raw, atol=1e-6)
