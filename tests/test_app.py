"""The dashboard under Streamlit's AppTest: every page on a micro run, the numbers shown against the
store, guidance where a stage has not run, hostile search text, and escaping of stored text.

Runs (conftest `app_runs`): the real micro run; copies carrying FIXTURE probe/explain tables
(tests/contract_fixture.py) for the pages whose stages do not exist yet; a world-only run; a
corrupted store.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from lfp_engine.explain.evidence import Evidence
from lfp_engine.explain.explainer import explain_offline
from lfp_engine.explain.prompts import Example
from lfp_engine.explain.word_classes import word_classes
from lfp_engine.report import story
from lfp_engine.report.divergence import read_divergence_report, recovery_sentence
from lfp_engine.report.formatting import num, p_number, percent, signed, span
from lfp_engine.report.verdict import read_verdict
from app.runs import run_label
from lfp_engine.run.manifest import read_manifest
from lfp_engine.run.store import RunStore
from lfp_engine.sae.keys import FeatureKey
from lfp_engine.tuning.lexicon import vader_lexicon
from precompute.cli import main

from .apptest import MAIN, chart_data, frame_with, metrics, texts
from .contract_fixture import HOSTILE_EXPLANATION, MARKUP_EXPLANATION, MARKUP_TOKEN, copy_run

pytestmark = pytest.mark.slow

PAGES = ["views/story.py", "views/layers.py", "views/features.py", "views/feature.py", "views/lexicon.py",
         "views/compare.py", "views/diffing.py"]
LIVE_PAGES = ["views/playground.py", "views/lab.py", "views/validation.py", "views/quiz.py"]
"""Pages that load the run's models (tests/test_app_live.py runs them on a whole copy of a run)."""


def test_every_page_renders_on_the_real_micro_run(open_app, app_runs):
    for page in PAGES:
        at = open_app(app_runs["micro"], page)
        assert at.title, page
        assert not at.error, (page, [e.value for e in at.error])


def kinds_of(store: RunStore) -> dict[str, str]:
    truth = store.read("world_lexicon")
    return dict(zip(truth["word"], truth["kind"]))


def first_excerpt(store: RunStore, word: str) -> story.Excerpt:
    """The word in the first triple that substitutes it, read with pandas (not the page's SQL)."""
    triples = store.read("triples", "kind = 'word'", order_by="triple_id")
    for element in ("positive", "negative"):
        triples[f"has_{element}"] = triples[f"word_{element}"] == word
    row = triples[triples["has_positive"] | triples["has_negative"]].iloc[0]
    element = "positive" if row["has_positive"] else "negative"
    return story.excerpt(row[f"text_{element}"], int(row[f"start_{element}"]), int(row[f"end_{element}"]))


@pytest.mark.parametrize("name", ["micro", "fixture"])
def test_story_tells_each_finding_in_plain_words_from_the_store(open_app, app_runs, name):
    store = RunStore(app_runs[name])
    at = open_app(app_runs[name])
    shown = [m.value for m in at.markdown]
    verdict = read_verdict(store)
    rewards = store.read("rlhf_rewards", "metric = 'vader_reward'").set_index("model")
    assert story.tuning_sentence(verdict.get("reward"), rewards.loc["base", "mean"], rewards.loc["tuned", "mean"]) \
        in shown
    ordinary = store.read("world_lexicon", "kind = 'ordinary'").sort_values(["lexicon_value", "word"])
    examples = pd.concat([ordinary.sort_values(["lexicon_value", "word"], ascending=[False, True]).head(2),
                          ordinary.head(1)])
    assert story.reward_sentence("vader", "rloo", examples[["word", "lexicon_value"]]) in shown
    assert story.learned_headline(verdict.get("policy"), verdict.get("learned")) in shown
    report = read_divergence_report(store)
    kinds = kinds_of(store)
    chosen = story.featured_word(report, kinds)
    assert f"{story.divergence_headline(report)} {story.word_sentence(chosen)}" in shown
    html = "\n".join(h.proto.body for h in at.get("html"))
    excerpt = first_excerpt(store, chosen.word)
    assert f'>{excerpt.text[excerpt.start:]}' in html.replace('</mark>', '')  # the word, marked in its sentence
    assert all(f.text in shown for f in verdict.findings)  # every answer in `lfp report`'s words, one click away
    word_map = next(frame for frames in chart_data(at) for frame in frames if "quadrant" in frame.columns)
    lens_value = "policy_value" if story.has_policy(report) else "tuned_value"
    read = report[report[lens_value].notna()]
    assert sorted(word_map["word"]) == sorted(read["word"])
    merged = word_map.merge(read, on="word")
    assert (merged["learned"] == merged[lens_value]).all() and (merged["reward"] == merged["lexicon_value"]).all()
    assert word_map.set_index("word").loc[chosen.word, "sentence"] == excerpt.marked
    samples = store.read("rlhf_samples")  # every sample, with every number, in an expander
    assert frame_with(at, "opening", "tuned reward").to_numpy().tolist() == samples.to_numpy().tolist()


def test_story_answers_a_preference_task_with_accuracy(open_app, app_runs):
    at = open_app(app_runs["dpo_fixture"])
    store = RunStore(app_runs["dpo_fixture"])
    row = store.read("probe_metrics", "variant = 'sae' AND metric = 'accuracy'").iloc[0]
    verdict = read_verdict(store)
    answer = verdict.get("learned")
    shown = [m.value for m in at.markdown]
    assert answer.text in shown and percent(row["value"]) in answer.text
    assert story.learned_headline(verdict.get("policy"), answer, "answers") in shown
    assert verdict.get("divergence") is None


def test_story_lexicon_and_lfp_report_say_the_same_thing(open_app, app_runs, capsys):
    verdict = read_verdict(RunStore(app_runs["fixture"]))
    assert [f.key for f in verdict.findings] == ["reward", "policy", "learned", "divergence"]
    page = [m.value for m in open_app(app_runs["fixture"]).markdown]
    lexicon = [m.value for m in open_app(app_runs["fixture"], "views/lexicon.py").markdown]
    assert all(f.text in page for f in verdict.findings)
    assert all(verdict.get(key).text in lexicon for key in ("policy", "learned", "divergence"))
    assert main(["report", str(app_runs["fixture"])]) == 0
    printed = capsys.readouterr().out.split("\n")
    assert all(f.text in printed for f in verdict.findings)


TOUR = ["What the model was tuned for", "What tuning did", "Did it learn the feedback?", "Where it parts from the reward",
        "Try a sentence yourself", "Switch a feature off"]


def test_the_tour_walks_next_and_back_with_its_step_in_the_url(open_app, app_runs):
    at = open_app(app_runs["micro"])
    at.button(key="tour_start").click().run()
    for step, heading in enumerate(TOUR, start=1):
        assert at.query_params["tour"] == str(step) and [h.value for h in at.header] == [heading]
        assert f"step {step} of {len(TOUR)}" in texts(at) and not at.info and not at.exception
        assert at.button(key="tour_back").disabled == (step == 1)
        assert at.button(key="tour_next").label == ("Finish" if step == len(TOUR) else "Next")
        if step == 3:
            at.button(key="tour_back").click().run()
            assert at.query_params["tour"] == "2" and at.header[0].value == TOUR[1]
            at.button(key="tour_next").click().run()
        at.button(key="tour_next").click().run()
    assert "tour" not in at.query_params and at.button(key="tour_start")  # finished: the Story again
    store = RunStore(app_runs["micro"])
    report = read_divergence_report(store)
    chosen = story.featured_word(report, kinds_of(store))
    at = open_app(app_runs["micro"], query={"tour": "4"})  # a shared link opens its step
    assert at.header[0].value == TOUR[3] and f"{story.divergence_headline(report)} {story.word_sentence(chosen)}" in \
        [m.value for m in at.markdown]
    for asked, step in (("x", 1), ("99", len(TOUR)), ("0", 1)):
        at = open_app(app_runs["micro"], query={"tour": asked})
        assert at.header[0].value == TOUR[step - 1]
    at.button(key="tour_leave").click().run()
    assert "tour" not in at.query_params


@pytest.mark.parametrize("name, waiting", [("bare", {2, 3, 4, 5, 6}), ("sae_only", {3, 4, 5, 6})])
def test_the_tour_says_plainly_which_stage_a_step_waits_for(open_app, app_runs, name, waiting):
    at = open_app(app_runs[name], query={"tour": "1"})
    for step in range(1, len(TOUR) + 1):
        said = [i.value for i in at.info]
        assert bool(said) == (step in waiting), (step, said)
        if said:
            assert said[0].startswith("This run has not got this far yet.") and "lfp run --out" in said[0]
        at.button(key="tour_next").click().run()
        assert not at.exception


def test_the_story_and_its_tour_on_a_dpo_run(open_app, dpo_run):
    at = open_app(dpo_run)
    verdict = read_verdict(RunStore(dpo_run))
    shown = [m.value for m in at.markdown]
    assert any(m.startswith("The model was tuned on pairs of answers, one preferred over the other") for m in shown)
    assert story.learned_headline(verdict.get("policy"), verdict.get("learned")) in shown
    assert all(f.text in shown for f in verdict.findings)
    at.button(key="tour_start").click().run()
    for heading in TOUR:
        assert at.header[0].value == heading and not at.exception
        at.button(key="tour_next").click().run()
    assert "tour" not in at.query_params


def test_layers_page_shows_divergence_and_sae_quality(open_app, app_runs):
    store = RunStore(app_runs["micro"])
    at = open_app(app_runs["micro"], "views/layers.py")
    chosen = store.read("layer_divergence", "chosen", order_by="layer")["layer"].tolist()
    assert any(f"**{', '.join(map(str, chosen))}**" in m.value for m in at.markdown)
    sae = store.read("sae_metrics", "model = 'tuned'", order_by="layer, dict_size")
    pd.testing.assert_frame_equal(at.dataframe[0].value.reset_index(drop=True), sae)
    at.radio(key="layers_model").set_value("base").run()
    base = store.read("sae_metrics", "model = 'base'", order_by="layer, dict_size")
    pd.testing.assert_frame_equal(at.dataframe[0].value.reset_index(drop=True), base)
    assert "lfp sae-sweep" in texts(at)


def test_pages_say_why_a_loss_recovered_is_empty(open_app, app_runs, tmp_path):
    """A dictionary whose layer costs the model nothing to delete has no loss recovered: the Layers and
    What tuning changed pages say why instead of printing a ratio."""
    from .contract_fixture import copy_run

    run = copy_run(app_runs["micro"], tmp_path / "runs" / "flat")
    store = RunStore(run)
    layer = int(store.read("sae_metrics", "model = 'tuned'", order_by="layer")["layer"].iloc[0])
    for table in ("sae_metrics", "crosscoder_metrics"):
        store.write({}, [(f"UPDATE {table} SET loss_recovered = NULL, loss_increase = 0.00026, "
                          "loss_increase_se = 0.00029 WHERE model = 'tuned' AND layer = ?", [layer])])
    at = open_app(run, "views/layers.py")
    said = texts(at)
    for size in store.read("sae_metrics", "model = 'tuned' AND layer = ?", [layer])["dict_size"]:
        assert f"Layer {layer}, {size} features: no loss recovered." in said
    assert "raises the loss by only 0.00026 nats per token, less than 3 standard errors (0.00029 each)" in said
    shown = at.dataframe[0].value
    assert shown.loc[shown["layer"] == layer, "loss_recovered"].isna().all()
    at = open_app(run, "views/diffing.py")
    assert f"Layer {layer}, tuned model: no loss recovered." in texts(at)
    assert "less than 3 standard errors" in texts(at)


def test_the_mean_loss_recovered_says_over_how_many_dictionaries():
    from lfp_engine.report.headline import Headline

    some = Headline("tiny", "vader", 0, sae_mean_loss_recovered=0.9, sae_n_loss_recovered=4, sae_n_dictionaries=6)
    assert some.sae_loss_recovered == ("0.9 (mean over 4 of 6 dictionaries; 2 left out: zeroing their layers barely "
                                       "changes the loss)")
    assert Headline("tiny", "vader", 0, sae_mean_loss_recovered=0.9, sae_n_loss_recovered=6,
                    sae_n_dictionaries=6).sae_loss_recovered == "0.9 (mean over 6 of 6 dictionaries)"
    assert Headline("tiny", "vader", 0, sae_n_loss_recovered=0, sae_n_dictionaries=6).sae_loss_recovered == \
        "none of 6 dictionaries: zeroing their layers barely changes the loss"
    assert Headline("tiny", "vader", 0).sae_loss_recovered is None


def browser_rows(store: RunStore, layer: int, dict_size: int) -> pd.DataFrame:
    """The features the browser should list, filtered and sorted in pandas (not SQL)."""
    features = store.read("features", "model = 'tuned' AND layer = ? AND dict_size = ?", [layer, dict_size])
    return features.sort_values(["twin_cosine", "feature"], ascending=[False, True])


def test_feature_browser_lists_the_dictionarys_features(open_app, app_runs):
    store = RunStore(app_runs["fixture"])
    at = open_app(app_runs["fixture"], "views/features.py")
    layer, dict_size = at.selectbox(key="browser_dictionary").value
    expected = browser_rows(store, layer, dict_size)
    table = at.dataframe[0].value
    assert table["feature"].tolist() == expected["feature"].tolist()[:50]
    assert table["explanation"].tolist() == expected["explanation"].tolist()[:50]
    assert table["twin_cosine"].tolist() == expected["twin_cosine"].tolist()[:50]
    assert f"**{len(expected)}** features match" in texts(at)

    at.toggle(key="browser_descending").set_value(False)
    at.selectbox(key="browser_sort").set_value("density").run()
    ascending = expected.sort_values(["density", "feature"])
    assert at.dataframe[0].value["feature"].tolist() == ascending["feature"].tolist()

    at.selectbox(key="browser_relevance").set_value("relevant").run()
    relevant = ascending[ascending["relevance"].fillna(False).astype(bool)]
    assert at.dataframe[0].value["feature"].tolist() == relevant["feature"].tolist()

    at.selectbox(key="browser_source").set_value("offline").run()
    offline = relevant[relevant["explanation_source"] == "offline"]
    assert at.dataframe[0].value["feature"].tolist() == offline["feature"].tolist()


@pytest.mark.parametrize("search", [
    "'; DROP TABLE features; --", '"great"', "it's", "100%_sure", "%", "_", "' OR '1'='1", "\\", "x' UNION SELECT 1 --",
    "TOKEN 'B'",
])
def test_search_with_quotes_and_sql_is_literal(open_app, app_runs, search):
    store = RunStore(app_runs["fixture"])
    at = open_app(app_runs["fixture"], "views/features.py")
    layer, dict_size = at.selectbox(key="browser_dictionary").value
    at.text_input(key="browser_search").set_value(search).run()
    assert not at.exception
    expected = browser_rows(store, layer, dict_size)
    expected = expected[expected["explanation"].fillna("").str.lower().str.contains(search.lower(), regex=False)]
    assert at.dataframe[0].value["feature"].tolist() == expected["feature"].tolist()
    assert f"**{len(expected)}** features match" in texts(at)
    assert "features" in store.tables()
    if search in HOSTILE_EXPLANATION:
        assert HOSTILE_EXPLANATION in at.dataframe[0].value["explanation"].tolist()


def peaked(word: str) -> Example:
    return Example([" The", " film", " was", f" {word}", "."], [0.0, 0.0, 0.0, 1.0, 0.0])


OFFLINE_FEATURES = {"positive adjectives": ["great", "superb", "lovely"], "numbers": ["7", "10", "1999"],
                    "punctuation": [".", ",", "!"]}
"""A search a person would type, and the tokens of a feature it should find."""


def test_searching_offline_phrases_finds_the_features_that_fire_on_them(open_app, app_runs, tmp_path):
    """Issue 20: offline explanations (made here by the explain stage's own function from features
    with known top tokens, written into a copy of the micro run) are found by the words a person
    searches for, through the browser's query."""
    run = copy_run(app_runs["micro"], tmp_path / "runs" / "offline")
    store = RunStore(run)
    at = open_app(run, "views/features.py")
    layer, dict_size = at.selectbox(key="browser_dictionary").value
    evidence = [Evidence(FeatureKey("tuned", layer, dict_size, i), [peaked(w) for w in words], [], [], 1.0)
                for i, words in enumerate(OFFLINE_FEATURES.values())]
    records = explain_offline(evidence, vader_lexicon(), word_classes(synthetic_world=True, pipeline=None), True,
                              0.3, 0.01, np.random.default_rng(0))
    store.write({}, [("UPDATE features SET explanation = ?, explanation_source = 'offline' WHERE model = 'tuned' "
                      "AND layer = ? AND dict_size = ? AND feature = ?", [r.explanation, layer, dict_size, r.feature])
                     for r in records])
    for i, search in enumerate(OFFLINE_FEATURES):
        assert records[i].explanation.startswith(search)
        at = open_app(run, "views/features.py")
        at.selectbox(key="browser_sort").set_value("feature index")
        at.toggle(key="browser_descending").set_value(False)  # features 0-2 on the first page, whatever else matches
        at.text_input(key="browser_search").set_value(search).run()
        found = at.dataframe[0].value
        assert i in found["feature"].tolist(), (search, records[i].explanation)
        assert found["explanation"].str.contains(search, regex=False).all()


def test_picking_a_row_opens_the_feature(open_app, app_runs):
    at = open_app(app_runs["fixture"], "views/features.py")
    picked = at.dataframe[0].value.iloc[2]
    at.session_state["browser_table"] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    at.run()
    layer, dict_size = at.selectbox(key="layer").value, at.selectbox(key="dict_size").value
    expected = f"Feature {picked['feature']} · layer {layer} · {dict_size}-feature dictionary · tuned model"
    assert at.header[0].value == expected


def test_feature_page_shows_the_stores_numbers_and_escapes_text(open_app, app_runs):
    store = RunStore(app_runs["fixture"])
    first = store.query("SELECT * FROM features WHERE model = 'tuned' ORDER BY layer, dict_size, feature LIMIT 2")
    row = first.iloc[0]
    where = [int(row["layer"]), int(row["dict_size"]), int(row["feature"])]
    key = {"layer": str(where[0]), "dict_size": str(where[1]), "feature": str(where[2])}
    at = open_app(app_runs["fixture"], "views/feature.py", key)
    shown = metrics(at)
    assert shown["Simulation score"] == num(row["simulation_score"], 2)
    assert shown["Detection score"] == num(row["detection_score"], 2)
    assert shown["Twin similarity"] == num(row["twin_cosine"], 3)
    assert shown["Density"] == percent(row["density"], 2)
    assert shown["Tokens fired on"] == num(row["n_firing"])
    assert shown["Max activation"] == num(row["max_activation"])
    weight = store.read("probe_weights", "layer = ? AND dict_size = ? AND feature = ?", where).iloc[0]
    assert shown["Probe weight"] == num(weight["weight"])
    html = "\n".join(h.proto.body for h in at.get("html"))
    assert "&lt;script&gt;alert(&#x27;token&#x27;)&lt;/script&gt;" in html and MARKUP_TOKEN not in html
    assert "&quot;great&quot;" in html  # the explanation, escaped
    examples = store.read("feature_examples", "model = 'tuned' AND layer = ? AND dict_size = ? AND feature = ?", where)
    assert html.count("font-family: ui-monospace") == len(examples)
    assert html.count("outline: 1px solid") == len(examples)  # each example's own peak token, outlined
    first_block = html.split("font-family: ui-monospace")[1]
    first_example = examples[examples["kind"] == "top"].sort_values("rank").iloc[0]  # shown first
    peak_span = first_block.split("<span")[1 + int(first_example["peak_index"])]
    assert "outline" in peak_span
    neighbors = store.read("feature_neighbors", "model = 'tuned' AND layer = ? AND dict_size = ? AND feature = ?",
                           where, order_by="rank")
    assert at.dataframe[0].value["neighbor"].tolist() == neighbors["neighbor"].tolist()

    at.number_input(key="feature").set_value(int(first.iloc[1]["feature"])).run()
    html = "\n".join(h.proto.body for h in at.get("html"))
    assert "&lt;script&gt;alert(&#x27;explanation&#x27;)&lt;/script&gt;" in html and MARKUP_EXPLANATION not in html


def test_feature_page_of_the_base_model_and_of_an_unexplained_run(open_app, app_runs):
    at = open_app(app_runs["fixture"], "views/feature.py", {"model": "base"})
    assert "The probe reads the tuned model's features only." in texts(at)
    at = open_app(app_runs["sae_only"], "views/feature.py")
    shown = texts(at)
    assert "Not explained yet" in shown and "The `explain` stage" in shown and "`probe` stage" in shown


def test_lexicon_page_shows_the_stores_numbers(open_app, app_runs):
    store = RunStore(app_runs["fixture"])
    at = open_app(app_runs["fixture"], "views/lexicon.py")
    probe = store.read("probe_metrics", "metric = 'kendall_tau' OR metric = 'sign_agreement'").set_index(
        ["variant", "subset", "metric"])
    tau, within = probe.loc[("sae", "test", "kendall_tau")], probe.loc[("sae", "test_within", "kendall_tau")]
    sign = probe.loc[("sae", "test", "sign_agreement")]
    shown = metrics(at)
    assert shown["Kendall tau within polarity"] == num(within["value"])
    assert shown["95% confidence interval, within"] == span(within["ci_low"], within["ci_high"])
    assert shown["p against the permutation null"] == p_number(within["p_value"])
    assert shown["Tuned minus base"] == signed(probe.loc[("tuned_minus_base", "test_within", "kendall_tau"), "value"])
    assert shown["Kendall tau, test words"] == num(tau["value"])
    assert shown["95% confidence interval, pooled"] == span(tau["ci_low"], tau["ci_high"])
    assert shown["Knowing polarity alone"] == num(probe.loc[("polarity_only", "test", "kendall_tau"), "value"])
    assert shown["Sign agreement"] == percent(sign["value"])
    baselines = at.dataframe[0].value
    assert baselines.loc["sae", "p (permutation)"] == p_number(tau["p_value"])
    assert baselines.loc["sae", "95% CI"] == span(tau["ci_low"], tau["ci_high"])
    assert "tuned_minus_base" not in baselines.index  # a difference, not a readout: shown in the verdict
    test = store.read("probe_metrics", "subset = 'test' AND variant <> 'tuned_minus_base'")
    for variant in test["variant"].unique():
        assert baselines.loc[variant, "kendall_tau"] == pytest.approx(
            test.query("variant == @variant and metric == 'kendall_tau'")["value"].iloc[0])
    report, recovery = store.read("lfp_divergence", order_by="rank"), store.read("divergence_recovery")
    shown_report = frame_with(at, "rank", "reason")
    assert shown_report["word"].tolist() == report["word"].tolist() and "kind" in shown_report.columns
    assert len(frame_with(at, "model", "value", "ci_low")) == len(store.read("word_values"))
    expected_recovery = recovery.sort_values(["lens", "kind"], ascending=[False, True])
    assert frame_with(at, "lens", "expected")[["lens", "kind", "n_opposite"]].to_numpy().tolist() == \
        expected_recovery[["lens", "kind", "n_opposite"]].to_numpy().tolist()
    shown = [m.value for m in at.markdown]
    assert all(recovery_sentence(recovery, lens) in shown for lens in recovery["lens"].unique())
    calibration = store.read("flag_calibration")
    assert sorted(frame_with(at, "nominal", "n_flagged")["n_flagged"]) == sorted(calibration["n_flagged"])
    policy = store.read("policy_values")
    plotted = next(f for frames in chart_data(at) for f in frames if "policy_value" in f.columns)
    assert sorted(plotted["word"]) == sorted(policy["word"]) and set(plotted["kind"]) == set(policy["kind"])
    lexicon = frame_with(at, "probe_value", "abs_error")
    assert len(lexicon) == len(store.read("lexicon_comparison"))
    at.text_input(key="lexicon_search").set_value("GREAT").run()
    found = frame_with(at, "probe_value", "abs_error")
    expected = store.read("lexicon_comparison")
    assert sorted(found["word"]) == sorted(expected[expected["word"].str.contains("great")]["word"])
    merged = found.merge(expected, on="word", suffixes=("", "_store"))
    assert (merged["probe_value"] == merged["probe_value_store"]).all()
    world = store.query("SELECT count(*) AS n FROM world_lexicon")["n"].iloc[0]
    assert frame_with(at, "corpus_occurrences")["words"].sum() == world


def test_compare_page_puts_two_runs_side_by_side(open_app, app_runs):
    at = open_app(app_runs["fixture"], "views/compare.py")
    at.selectbox(key="compare_with").set_value(app_runs["bare"].resolve()).run()
    table = at.table[0].value
    assert table.loc["Mean reward, tuned model", run_label(app_runs["bare"])] == "not run"
    assert table.loc["Preset", run_label(app_runs["bare"])] == "micro"

    for other in ("micro", "sae_only"):
        at.selectbox(key="compare_with").set_value(app_runs[other].resolve()).run()
        table = at.table[0].value
        assert list(table.columns) == [run_label(app_runs["fixture"]), run_label(app_runs[other])]
        for column, run in zip(table.columns, (app_runs["fixture"], app_runs[other])):
            rewards = RunStore(run).read("rlhf_rewards", "model = 'tuned'").iloc[0]
            assert table.loc["Mean reward, tuned model", column] == num(rewards["mean"])
            assert table.loc["Reward gain from tuning", column] == signed(rewards["mean_difference"])
        for column, run in zip(table.columns, (app_runs["fixture"], app_runs[other])):
            tau = RunStore(run).query("SELECT value FROM probe_metrics WHERE variant = 'sae' AND subset = 'test' "
                                      "AND metric = 'kendall_tau'") if "probe_metrics" in RunStore(run).tables() else None
            expected = "not run" if tau is None else num(tau["value"].iloc[0])
            assert table.loc["Probe Kendall tau on test words", column] == expected
            sae = read_manifest(RunStore(run))["sae"].outputs
            assert table.loc["SAE loss recovered (mean)", column].startswith(
                f"{num(sae['mean_loss_recovered'])} (mean over {sae['n_loss_recovered']} of {sae['n_saes']} dictionaries")
    assert expected == "not run"


@pytest.mark.parametrize("page", PAGES + LIVE_PAGES)
def test_pages_on_a_world_only_run_say_which_stage_fills_them(open_app, app_runs, page):
    at = open_app(app_runs["bare"], page)
    if page == "views/compare.py":  # the first other run is the corrupted one: its error, then another run
        assert "is not a readable DuckDB store" in at.error[0].value
        at.selectbox(key="compare_with").set_value(app_runs["micro"].resolve()).run()
    shown = texts(at)
    assert "lfp run --out" in shown and "stage writes" in shown, shown
    assert not at.error


def test_pages_on_a_run_without_the_probe_name_the_probe_stage(open_app, app_runs):
    for page in ("views/story.py", "views/lexicon.py"):
        at = open_app(app_runs["sae_only"], page)
        assert "The `probe` stage writes `probe_metrics`" in texts(at)


def test_a_corrupted_store_shows_an_error_not_a_traceback(open_app, app_runs):
    at = open_app(app_runs["corrupted"])
    assert at.error and "is not a readable DuckDB store" in at.error[0].value


def test_no_run_found_explains_how_to_make_one(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", [str(MAIN), "--runs", str(tmp_path)])
    at = AppTest.from_file(str(MAIN), default_timeout=60).run()
    assert not at.exception
    assert any("lfp run --preset tiny" in i.value for i in at.info)
