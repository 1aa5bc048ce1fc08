"""The explain and validate stages on the micro run: offline, and through a real HTTP LLM endpoint."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from lfp_engine.explain.annotation import NONE_OF_THE_ABOVE
from lfp_engine.models.hub import load_causal_lm, load_tokenizer
from lfp_engine.models.generation import sample_completions
from lfp_engine.explain.llm import CACHE_TABLE
from lfp_engine.explain.offline import NO_FIRING, OFFLINE_RELEVANCE
from lfp_engine.run.config import config_from_dict
from lfp_engine.run.manifest import read_config, read_manifest
from lfp_engine.tuning.reward import VaderReward, scored_texts
from lfp_engine.probe.card import load_probe
from lfp_engine.run.store import RunPaths, RunStore
from precompute.cli import main
from precompute.outputs import ExplainOutputs

from .fake_llm import FakeLLM

pytestmark = pytest.mark.slow
SECRET = "sk-explain-secret-0042"


def test_offline_explanations_cover_every_shared_feature(micro_run):
    store = RunStore(micro_run)
    features = store.read("features")
    shared = features[features["is_shared"]]
    assert len(shared) > 0
    assert shared["explanation"].notna().all() and (shared["explanation_source"] == "offline").all()
    assert features.loc[~features["is_shared"], "explanation"].isna().all()
    explained = store.read("feature_explanations")
    assert set(explained["model"]) == {"tuned", "base"} and (explained["status"] == "ok").all()
    assert explained["relevance"].notna().all()  # a sentiment task: offline relevance from the lexicon
    assert explained["relevance_detail"].str.startswith(OFFLINE_RELEVANCE + ": r = ").all()  # says it is no LLM's
    # a phrase a person can search for (word class, polarity, context), then the top tokens
    phrase = re.compile(r"((positive|negative|positive and negative) )?[a-z ]+(, after '.+' in \d+ of \d+ examples)?"
                        r": '.+'")
    assert explained["explanation"].map(lambda e: e == NO_FIRING or phrase.fullmatch(e) is not None).all()
    heads = explained["explanation"].str.split(r":|,", regex=True).str[0]
    assert heads.str.contains("adjectives|verbs|nouns|names|punctuation").any()  # the world's classes are used
    # dense features too (quiet windows, not silent ones); a toy layer-0 feature at one constant activation on every
    # '.' (or on blank tokens) has no window quieter than its examples, or no word to judge by, and no score
    scored = explained["detection_score"].notna()
    assert scored.mean() >= 0.9 and explained.loc[scored, "detection_score"].between(0, 1).all()
    summary = store.read("explanation_summary")
    assert set(summary["model"]) == {"tuned", "base"}
    assert (summary["n_explained"] == explained.groupby("model").size().loc[summary["model"]].to_numpy()).all()
    questions = store.read("annotation_questions")
    assert len(questions) == 5
    for q in questions.itertuples():
        options = list(q.options)
        assert len(options) == 5 and options[-1] == NONE_OF_THE_ABOVE and len(set(options)) == 5
        own = explained[(explained.model == q.model) & (explained.layer == q.layer) &
                        (explained.dict_size == q.dict_size) & (explained.feature == q.feature)]
        assert options[q.correct_option] == own["explanation"].item()
    assert "annotations" in store.tables()


def responder_for(broken: set[str]):
    """Answers by request kind; explanations of texts containing a word in `broken` come back empty."""
    def respond(messages):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "summarise in one sentence" in system:
            assert "<start>" in user and "<end>" in user and "\t" in user  # Bills et al.'s layout
            return "" if any(w in user for w in broken) else "words that describe how good a film is"
        if "relates to how the model was fine-tuned" in system:
            assert "generate completions with positive sentiment" in user
            return '{"related": true}'
        if "predict how strongly" in system:
            n = len(user.split("Tokens (index, token):\n", 1)[1].splitlines())
            return json.dumps({"activations": [5] * n})
        if "pick the texts" in system:
            return '{"firing": [0, 1]}'
        raise AssertionError(f"unexpected request: {system[:60]}")
    return respond


def test_llm_explanations_are_cached_retried_and_never_leak_the_key(micro_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "llm"
    shutil.copytree(micro_run, out)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeLLM(responder_for({"<never>"})) as server:
        argv = ["run", "--out", str(out), "--stages", "explain", "--set", f"llm.base_url={server.base_url}",
                "--set", "llm.model=fake-model", "--set", "explain.max_llm_features=2"]
        assert main(argv) == 0
        first = len(server.requests)
        explained = RunStore(out).read("feature_explanations")
        assert first > 0 and (explained["source"] == "llm:fake-model").all() and (explained["status"] == "ok").all()
        assert explained.groupby(["model", "layer", "dict_size"]).size().max() <= 2
        assert explained["relevance"].all()
        assert set(server.requests[0]["authorization"].split()) == {"Bearer", SECRET}
        usage = ExplainOutputs.from_record(read_manifest(RunStore(out))["explain"].outputs).llm.usage
        assert usage.requests == first and usage.prompt_tokens == 11 * first

        assert main([*argv, "--force", "explain"]) == 0
        assert len(server.requests) == first  # every answer came from the cache
        assert ExplainOutputs.from_record(read_manifest(RunStore(out))["explain"].outputs).llm.usage.cached == first

    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert RunStore(out).read(CACHE_TABLE)["prompt"].str.contains(SECRET).sum() == 0


def test_failed_explanations_are_recorded_and_retried(micro_run, tmp_path, monkeypatch):
    out = tmp_path / "flaky"
    shutil.copytree(micro_run, out)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    healthy = responder_for(set())
    broken = {"left": 5}

    def flaky(messages):  # the first five explanation requests get an empty answer
        if "summarise in one sentence" in messages[0]["content"] and broken["left"] > 0:
            broken["left"] -= 1
            return ""
        return healthy(messages)

    def explanation_prompts(server) -> list[str]:
        return [r["body"]["messages"][-1]["content"] for r in server.requests
                if "summarise in one sentence" in r["body"]["messages"][0]["content"]]

    def explanation_requests(server) -> int:
        return len(explanation_prompts(server))

    with FakeLLM(flaky) as server:
        argv = ["run", "--out", str(out), "--stages", "explain", "--set", f"llm.base_url={server.base_url}",
                "--set", "llm.model=fake-model", "--set", "explain.max_llm_features=2", "--set", "llm.max_retries=0"]
        assert main(argv) == 0
        record = read_manifest(RunStore(out))["explain"]
        assert record.status == "incomplete" and record.outputs["n_failed"] == 5
        failed = RunStore(out).read("feature_explanations", where="status = ?", params=["failed"])
        assert len(failed) == 5 and failed["explanation"].isna().all() and failed["error"].str.contains("unusable").all()
        first = explanation_requests(server)
        # two features with the same evidence send the same prompt (e.g. a layer tuning left alone): the retry
        # asks only for failed prompts the cache has no answer to (a twin's answer in the first run counts)
        prompts = explanation_prompts(server)
        failed_prompts = set(prompts[:5]) - set(prompts[5:])
        assert len(failed_prompts) >= 3
        assert main(argv) == 0  # not up to date: runs again and asks only for what failed
        assert explanation_requests(server) - first == len(failed_prompts)
        assert read_manifest(RunStore(out))["explain"].status == "done"
        assert (RunStore(out).read("feature_explanations")["status"] == "ok").all()


def test_validation_tables_and_ablating_nothing_is_the_unmodified_model(micro_run):
    store = RunStore(micro_run)
    frequency = store.read("feature_frequency")
    assert list(zip(frequency["group"], frequency["compared_with"].fillna(""))) == [
        ("relevant", ""), ("matched_shared", ""), ("all", ""), ("relevant", "matched_shared")]
    results = store.read("ablation_results")
    assert list(zip(results["condition"], results["compared_with"].fillna(""))) == [
        ("none", ""), ("relevant", "none"), ("random", "none"), ("relevant", "random"), ("relevant", "random draws")]
    rows = results.set_index(["condition", results["compared_with"].fillna("")])
    relevant, random = rows.loc[("relevant", "none")], rows.loc[("random", "none")]
    _, card = load_probe(RunPaths(micro_run).probe)
    probed = {f"{layer}/{width}" for layer, width in zip(card.layers, card.widths)}
    # firing rates are compared within the probe's dictionaries: every feature of them, no other
    groups = frequency[frequency["compared_with"].isna()].set_index("group")
    assert groups.loc["all", "n_features"] == sum(card.widths)
    draws = store.read("ablation_draws")
    config = config_from_dict(read_config(store)[1])
    n_relevant = read_manifest(store)["validate"].outputs["n_relevant_features"]
    if n_relevant == 0:  # the micro world often finds none: every comparison must say so, not show NaN
        assert relevant["n_features"] == 0 and draws.empty
        assert results.iloc[1:]["note"].str.contains("judged relevant").all()
        assert frequency.loc[frequency["group"] != "all", "note"].notna().all()
    else:
        assert relevant["n_features"] == n_relevant and len(draws) == config.validate.n_random_draws
        assert (draws["n_features"] == random["n_features"]).all()
        ablated = [*relevant["features"], *random["features"]]
        assert not set(relevant["features"]) & set(random["features"])
        assert {f.rsplit("/", 1)[0] for f in ablated} <= probed  # twins in the other dictionary are not ablated twice
        # density-matched: the draws fire about as often as the relevant features, far closer than the
        # average live feature of the probe's dictionaries does (a broken matching fails this)
        live = groups.loc["all", "density"] * groups.loc["all", "n_features"] / groups.loc["all", "n_live"]
        gap = np.abs(np.log(draws["mean_density"]) - np.log(relevant["mean_density"])).mean()
        assert gap < max(0.5, abs(np.log(live) - np.log(relevant["mean_density"])))
        assert results.loc[results["compared_with"].notna() & results["note"].isna(), "p_value"].between(0, 1).all()
    # the 'none' condition went through the intervention hooks; it must equal plain sampling
    paths = RunPaths(micro_run)
    from lfp_engine.worlds import PROMPTS, read_world_table

    prompts = read_world_table(paths.world, PROMPTS)
    prompts = prompts.loc[prompts["purpose"] == "eval", "prompt"].head(config.validate.n_prompts).tolist()
    e = config.evaluation
    seed = read_manifest(store)["validate"].seed
    out = sample_completions(load_causal_lm(str(paths.tuned_model)), load_tokenizer(str(paths.tuned_model)), prompts,
                             max_new_tokens=e.max_new_tokens, min_new_tokens=e.min_new_tokens,
                             temperature=e.temperature, batch_size=e.batch_size, seed=seed,
                             max_length=config.world.max_length)
    plain = VaderReward()(scored_texts(prompts, out.texts, True))
    assert np.mean(plain) == results.set_index("condition").loc["none", "mean_reward"]
    samples = store.read("ablation_samples", where="condition = ?", params=["none"])
    assert samples["completion"].tolist() == out.texts[: len(samples)]
