"""The policy lens (docs/method.md, "The policy lens"): beta log pi_tuned/pi_base per token, word, text and triple,
checked against plain float64 forward passes, against TRL's own DPO implicit reward, and its measures
against scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from lfp_engine.policy.log_ratio import PolicyPair
from lfp_engine.policy.text import read_text
from lfp_engine.policy.triples import element_differences
from lfp_engine.policy.word_values import absorbed_share, label_null, policy_metrics, policy_value_table
from lfp_engine.probe.words import WordSet
from lfp_engine.run.errors import InputError
from lfp_engine.worlds.tokenizer import train_bpe_tokenizer

from .conftest import tiny_neox

BETA = 0.7
TEXTS = ["the film was good", "the plot was bad and the film was long", "good", "the"]


@pytest.fixture(scope="module")
def pair() -> PolicyPair:
    tokenizer = train_bpe_tokenizer(["the film was good and the plot was bad, the film was long"] * 20, 300)
    tuned = tiny_neox(layers=2, vocab=len(tokenizer), seed=1)
    base = tiny_neox(layers=2, vocab=len(tokenizer), seed=2)
    return PolicyPair(tuned, base, tokenizer, BETA, max_tokens=64, batch_size=3)


def reference(pair: PolicyPair, context: list[int], ids: list[int]) -> np.ndarray:
    """beta (log pi_tuned - log pi_base) of `ids` after `context`: one unpadded forward pass per model,
    log-softmax in float64."""
    full = torch.tensor([context + ids])
    out = []
    for model in (pair.tuned, pair.base):
        with torch.no_grad():
            logp = torch.log_softmax(model(full).logits[0].double(), -1)
        out.append(np.array([logp[len(context) + j - 1, t].item() for j, t in enumerate(ids)]))
    return BETA * (out[0] - out[1])


def test_token_values_equal_plain_forward_passes(pair):
    encoded = pair.encode(TEXTS)
    got = pair.token_values(encoded)  # batches of 3 of different lengths: padding must never count
    for text, values in zip(encoded, got, strict=True):
        assert text.context == [pair.separator]
        np.testing.assert_allclose(values, reference(pair, text.context, text.ids), atol=1e-5)


def test_a_prompt_conditions_the_text(pair):
    (with_prompt,) = pair.encode(["was good"], ["the film"])
    assert with_prompt.context == pair.tokenizer("the film", add_special_tokens=False)["input_ids"]
    (values,) = pair.token_values([with_prompt])
    np.testing.assert_allclose(values, reference(pair, with_prompt.context, with_prompt.ids), atol=1e-5)


def test_a_text_reads_per_token_per_word_and_in_all(pair):
    reading = read_text(pair, "the film was good")
    np.testing.assert_allclose(reading.tokens["reward"], reference(pair, [pair.separator], pair.encode(
        ["the film was good"])[0].ids), atol=1e-5)
    assert reading.total == pytest.approx(reading.tokens["reward"].sum())
    assert reading.words["word"].tolist() == ["the", "film", "was", "good"]
    assert reading.words["value"].sum() == pytest.approx(reading.total)  # every token in exactly one word here
    with pytest.raises(InputError, match="empty"):
        read_text(pair, "   ")


def test_the_window_cuts_long_text(pair):
    small = PolicyPair(pair.tuned, pair.base, pair.tokenizer, BETA, max_tokens=5)
    reading = read_text(small, "the film was good and the plot was bad")
    assert reading.truncated and len(reading.tokens) == 4 and len(reading.text_read) < 30


def test_no_kl_penalty_has_no_implicit_reward(pair):
    with pytest.raises(InputError, match="beta > 0"):
        PolicyPair(pair.tuned, pair.base, pair.tokenizer, 0.0, 64)


def triples_frame() -> pd.DataFrame:
    sentences = [("the film was {} and long", "good", "long", "bad"), ("the plot was {}", "good", "long", "bad")]
    rows = []
    for i, (template, pos, neu, neg) in enumerate(sentences):
        row = {"triple_id": i, "split": "train" if i == 0 else "test", "word_positive": pos, "word_neutral": neu,
               "word_negative": neg, "value_positive": 1.9, "value_negative": -2.5}
        for element, word in (("positive", pos), ("neutral", neu), ("negative", neg)):
            text = template.format(word)
            row[f"text_{element}"] = text
            row[f"start_{element}"] = text.index(word)
            row[f"end_{element}"] = text.index(word) + len(word)
        rows.append(row)
    return pd.DataFrame(rows)


def test_a_triple_reads_each_element_against_the_neutral_one(pair):
    triples = triples_frame()
    reward = lambda texts: np.array([float("good" in t) - float("bad" in t) for t in texts])  # noqa: E731
    rows = element_differences(pair, triples, "word", reward)
    sums = {e: [reference(pair, [pair.separator], pair.encode([t])[0].ids).sum() for t in triples[f"text_{e}"]]
            for e in ("positive", "neutral", "negative")}
    got = rows.set_index(["triple_id", "element"])
    for i in range(2):
        assert got.loc[(i, "positive"), "policy"] == pytest.approx(sums["positive"][i] - sums["neutral"][i], abs=1e-5)
        assert got.loc[(i, "negative"), "policy"] == pytest.approx(sums["negative"][i] - sums["neutral"][i], abs=1e-5)
    assert got.loc[(0, "positive"), "reward"] == 1.0 and got.loc[(0, "negative"), "reward"] == -1.0
    # the tokens before the word are the same in both versions and cancel exactly: only the rest is read
    prefix = len(pair.encode(["the film was"])[0].ids)
    positive = reference(pair, [pair.separator], pair.encode([triples.loc[0, "text_positive"]])[0].ids)
    neutral = reference(pair, [pair.separator], pair.encode([triples.loc[0, "text_neutral"]])[0].ids)
    assert got.loc[(0, "positive"), "policy"] == pytest.approx(positive[prefix:].sum() - neutral[prefix:].sum(),
                                                                abs=1e-5)


def test_word_values_intervals_and_absorbed_share():
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"triple_id": np.arange(40), "element": ["positive"] * 20 + ["negative"] * 20,
                         "word": ["good"] * 10 + ["great"] * 10 + ["bad"] * 10 + ["awful"] * 10,
                         "split": "test", "lexicon_value": [1.9] * 10 + [3.1] * 10 + [-2.5] * 10 + [-3.1] * 10,
                         "policy": rng.normal(0.3, 0.1, 40) * np.repeat([1, 2, -1, -2], 10),
                         "reward": np.repeat([0.38, 0.62, -0.5, -0.62], 10)})
    table = policy_value_table(rows, None, 500, np.random.default_rng(1)).set_index("word")
    assert table.loc["good", "policy_value"] == pytest.approx(rows["policy"][:10].mean())
    assert table.loc["good", "ci_low"] < table.loc["good", "policy_value"] < table.loc["good", "ci_high"]
    assert table.loc["good", ["n_triples", "reward_difference"]].tolist() == [10, pytest.approx(0.38)]
    x, y = table["reward_difference"].to_numpy(), table["policy_value"].to_numpy()
    slope = np.linalg.lstsq(x[:, None], y, rcond=None)[0][0]
    assert absorbed_share(y, x) == pytest.approx(slope)


def test_the_label_null_against_scipy():
    """The p-value of the pooled tau against lexicon values permuted among the words is the one-sided
    permutation p scipy's `permutation_test` gives for the same statistic (within Monte Carlo error)."""
    rng = np.random.default_rng(3)
    truth = np.concatenate([rng.uniform(0.5, 3, 12), -rng.uniform(0.5, 3, 12)])
    values = 0.2 * truth + rng.normal(0, 0.6, 24)
    words = WordSet(np.array([f"w{i}" for i in range(24)]), truth, truth > 0, np.arange(24), np.eye(24))
    null = label_null(words, values, 4000, np.random.default_rng(4))
    observed = stats.kendalltau(truth, values).statistic
    scipy_p = stats.permutation_test((truth,), lambda t: stats.kendalltau(t, values).statistic,
                                     permutation_type="pairings", n_resamples=4000, alternative="greater",
                                     random_state=5).pvalue
    assert null.p_value("pooled", observed) == pytest.approx(scipy_p, abs=0.02)
    # within polarity, the permutations never cross polarities: the pooled ordering of signs is kept
    positive_tau = stats.kendalltau(truth[:12], values[:12]).statistic
    assert np.isfinite(null.p_value("positive", positive_tau))


def test_policy_metrics_rows():
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(30)]
    lexicon = np.concatenate([rng.uniform(0.5, 3, 15), -rng.uniform(0.5, 3, 15)])
    values = pd.DataFrame({"word": words, "kind": ["ordinary"] * 20 + ["contested"] * 10, "split": "test",
                           "polarity": np.where(lexicon > 0, "positive", "negative"), "lexicon_value": lexicon,
                           "policy_value": 0.5 * lexicon + rng.normal(0, 0.2, 30), "ci_low": np.nan,
                           "ci_high": np.nan, "n_triples": 5, "reward_difference": 0.2 * lexicon})
    metrics = pd.DataFrame([r.__dict__ for r in policy_metrics(values, 200, 200, seed=0)]).set_index(
        ["subset", "metric"])
    assert metrics.loc[("test", "kendall_tau"), "value"] == pytest.approx(
        stats.kendalltau(lexicon, values["policy_value"]).statistic)
    assert metrics.loc[("test_within", "kendall_tau"), "test"] == "label_permutation"
    assert metrics.loc[("test", "sign_agreement"), "value"] == 1.0
    assert metrics.loc[("test_ordinary", "spearman"), "value"] == pytest.approx(
        stats.spearmanr(lexicon[:20], values["policy_value"][:20]).statistic)
    assert metrics.loc[("all", "absorbed_share"), "value"] == pytest.approx(
        absorbed_share(values["policy_value"].to_numpy(), values["reward_difference"].to_numpy()))
    assert {"ordinary", "contested"} <= {s for s, m in metrics.index if m == "absorbed_share"}


def test_dpo_implicit_reward_equals_trl(dpo_run):
    """On a DPO micro run, the implicit reward of held-out pairs equals what TRL's DPOTrainer computes as
    rewards/chosen and rewards/rejected for the same pairs, to 1e-5."""
    import datasets
    from trl import DPOConfig, DPOTrainer

    from lfp_engine.models.hub import load_causal_lm, load_tokenizer
    from lfp_engine.policy.log_ratio import EncodedText
    from lfp_engine.policy.preference import encode_answers
    from lfp_engine.run.manifest import read_config
    from lfp_engine.run.store import RunStore
    from lfp_engine.worlds import PREFERENCES, WorldRecord, read_world_table

    world = WorldRecord.load(dpo_run / "world")
    tokenizer = load_tokenizer(world.tokenizer)
    tuned = load_causal_lm(str(dpo_run / "models" / "tuned"), torch.device("cpu"), "float32")
    base = load_causal_lm(world.base_model, torch.device("cpu"), "float32")
    beta = read_config(RunStore(dpo_run))[1]["dpo"]["beta"]
    pairs = read_world_table(dpo_run / "world", PREFERENCES)
    test = pairs[pairs["split"] == "test"].head(6).reset_index(drop=True)
    policy = PolicyPair(tuned, base, tokenizer, beta, max_tokens=128, batch_size=4)

    args = DPOConfig(output_dir=str(dpo_run / ".work" / "trl-check"), beta=beta, per_device_eval_batch_size=1,
                     report_to=[], use_cpu=True, max_length=None)
    trainer = DPOTrainer(model=tuned, ref_model=base, args=args, processing_class=tokenizer,
                         train_dataset=datasets.Dataset.from_pandas(test[["prompt", "chosen", "rejected"]]))
    tuned.eval()
    trl = {"rewards/chosen": [], "rewards/rejected": []}
    for example in trainer.train_dataset:
        batch = trainer._prepare_inputs(trainer.data_collator([example]))
        with torch.no_grad():
            trainer._compute_loss(tuned, batch, return_outputs=False)
        for key in trl:
            trl[key].append(trainer._metrics["eval"][key][-1])
    ours_chosen, ours_rejected = encode_answers(policy, test["prompt"].tolist(), test["chosen"].tolist(),
                                                test["rejected"].tolist())
    for i, example in enumerate(trainer.train_dataset):  # the same tokens as TRL trains on
        assert ours_chosen[i].context + ours_chosen[i].ids == example["prompt_ids"] + example["chosen_ids"]
        assert ours_rejected[i].ids == example["rejected_ids"]
    chosen = [v.sum() for v in policy.token_values(ours_chosen)]
    rejected = [v.sum() for v in policy.token_values(ours_rejected)]
    np.testing.assert_allclose(chosen, trl["rewards/chosen"], atol=1e-5)
    np.testing.assert_allclose(rejected, trl["rewards/rejected"], atol=1e-5)
    assert isinstance(ours_chosen[0], EncodedText)


def test_the_policy_stage_on_the_micro_run(micro_run):
    from lfp_engine.run.store import RunStore

    store = RunStore(micro_run)
    values = store.read("policy_values")
    triples = store.read("policy_triples")
    metrics = store.read("policy_metrics")
    assert len(triples) == 2 * len(store.read("triples"))
    first = values.iloc[0]
    mine = triples[(triples["word"] == first["word"]) & np.isfinite(triples["policy"])]
    assert first["policy_value"] == pytest.approx(mine["policy"].mean())
    assert first["n_triples"] == len(mine)
    assert set(values["kind"]) <= {"ordinary", "contested", "reward_only"}
    assert {"kendall_tau", "sign_agreement", "absorbed_share"} <= set(metrics["metric"])
    assert (metrics["variant"] == "policy").all()
