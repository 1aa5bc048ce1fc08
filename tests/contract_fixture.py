"""FIXTURE DATA, not results: the probe and explain stages' tables, written into a copy of a real
run exactly as docs/store.md specifies them, so the dashboard's pages for those stages can be
built, tested and photographed before the stages exist.

The values are made up from the run's own words and features under a fixed seed: a "probe" whose
per-element predictions are the lexicon value times a factor plus noise, baselines with more
noise, random probe weights, explanations assembled from each feature's top token. Every summary
number (Kendall tau, interval, tuned minus base, sign agreement, MAE, R^2, accuracy) is then
computed from those made-up values with the engine's own functions, so the tables agree with one
another the way the real stages' tables will; the permutation null is made up too (the taus of
random readouts). Two explanations carry hostile text (markup, quotes, SQL) and one
example window a `<script>` token, for the escaping and search tests.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from lfp_engine.run.manifest import StageRecord, now
from lfp_engine.probe.agreement import accuracy_difference_row, agreement_rows, difference_rows, measure_agreement
from lfp_engine.probe.kendall import word_taus
from lfp_engine.probe.measures import MetricRow, metrics_frame, sign_agreement, word_values
from lfp_engine.report.divergence import divergence_table, recovery_table
from lfp_engine.probe.nulls import NullDistribution
from lfp_engine.probe.words import WordSet, stratified_resamples
from lfp_engine.run.store import RunStore

HOSTILE_EXPLANATION = "it's \"great\" -- '; DROP TABLE features; -- 100%_sure"
MARKUP_EXPLANATION = "<script>alert('explanation')</script> <b>bold</b> words"
MARKUP_TOKEN = "<script>alert('token')</script>"
SOURCES = ("llm:fixture-model", "offline")
VARIANT_NOISE = {"sae": 1.0, "raw_mlp": 1.3, "base_model": 1.6, "shuffled": None, "xavier": None}
"""Spread of the made-up predictions around 0.6 x lexicon value, per word and per element again, for
each variant; None: predictions unrelated to the lexicon."""


def copy_run(source: Path, target: Path) -> Path:
    """A copy of a run's store (only the DuckDB file: the app reads nothing else)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "lfp.duckdb", target / "lfp.duckdb")
    return target


def _record(stage: str, outputs: dict) -> tuple[str, list]:
    return StageRecord(stage=stage, status="done", fingerprint="fixture", settings={"fixture": True},
                       outputs={"fixture": True, **outputs}, started_at=now(), finished_at=now(),
                       duration_s=0.0).upsert()


def _simple_rows(variant: str, subset: str, truth: np.ndarray, estimate: np.ndarray) -> list[MetricRow]:
    """Sign agreement, MAE and R^2 of per-word values."""
    residual = estimate - truth
    r2 = 1 - np.sum(residual ** 2) / np.sum((truth - truth.mean()) ** 2) if len(truth) > 1 else np.nan
    return [MetricRow(variant, subset, "sign_agreement", sign_agreement(truth, estimate), len(truth)),
            MetricRow(variant, subset, "mae", float(np.mean(np.abs(residual))), len(truth)),
            MetricRow(variant, subset, "r2", float(r2), len(truth))]


def _agreements(test: pd.DataFrame, estimates: dict[str, np.ndarray], rng: np.random.Generator) -> list[MetricRow]:
    """Kendall-tau rows on the test words through the engine's own functions: one set of resamples for
    every variant, a made-up null (the taus of random readouts), tuned minus base, polarity alone."""
    words = WordSet(words=test["word"].to_numpy(), truth=test["value"].to_numpy(float),
                    positive=test["value"].to_numpy() > 0, rows=np.arange(len(test)), members=np.eye(len(test)))
    resamples = stratified_resamples(words.positive, 200, rng)
    null = NullDistribution(word_taus(words.truth, rng.normal(size=(200, len(test))), words.positive))
    found = {variant: measure_agreement(variant, words, values, resamples, null) for variant, values in estimates.items()}
    polarity = np.where(words.positive, words.truth[words.positive].mean(), words.truth[~words.positive].mean())
    found["polarity_only"] = measure_agreement("polarity_only", words, polarity, resamples[:0], None, random_ties=True)
    rows = [row for agreement in found.values() for row in agreement_rows(agreement)]
    return rows + difference_rows(found["sae"], found["base_model"])


def _word_values(values: pd.DataFrame, model: str, noise: float, rng: np.random.Generator) -> pd.DataFrame:
    """A made-up `word_values` of one model: the per-word values with an interval of their noise."""
    half = np.abs(rng.normal(0.3 * noise, 0.1, len(values)))
    return pd.DataFrame({"word": values.index, "model": model, "split": values["split"].to_numpy(),
                         "polarity": values["polarity"].to_numpy(), "lexicon_value": values["value"].to_numpy(),
                         "value": values["probe_value"].to_numpy(), "ci_low": values["probe_value"].to_numpy() - half,
                         "ci_high": values["probe_value"].to_numpy() + half, "n_examples": 12})


def regression_probe_tables(store: RunStore, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """probe_predictions, lexicon_comparison, probe_metrics and word_values of a VADER-task
    (regression) probe."""
    triples = store.query("SELECT triple_id, split, word_positive, word_negative, value_positive, value_negative "
                          "FROM triples WHERE kind = 'word' ORDER BY triple_id")
    words = store.query("SELECT word, value, role, polarity, split FROM contrastive_words")
    elements = pd.concat([
        pd.DataFrame({"triple_id": triples["triple_id"], "element": element, "split": triples["split"],
                      "word": triples[f"word_{element}"], "lexicon_value": triples[f"value_{element}"]})
        for element in ("positive", "negative")], ignore_index=True)
    elements["target"] = elements["lexicon_value"] + rng.normal(0, 0.5, len(elements))
    metric_rows, comparison, estimates, word_tables = [], None, {}, []
    for variant, noise in VARIANT_NOISE.items():
        lexicon = elements["lexicon_value"].to_numpy()
        if noise is None:
            prediction = rng.normal(0, 1.5, len(elements))
        else:
            word_bias = dict(zip(words["word"], rng.normal(0, noise, len(words))))
            prediction = (0.6 * lexicon + elements["word"].map(word_bias).to_numpy()
                          + rng.normal(0, noise, len(elements)))
        per_word = word_values(prediction, elements["word"].tolist()).rename("probe_value")
        values = words.set_index("word").join(per_word, how="inner").sort_index()
        test = values[values["split"] == "test"]
        estimates[variant] = test["probe_value"].to_numpy()
        for subset, part in (("test", test), ("train", values[values["split"] == "train"]),
                             ("test_positive", test[test["value"] > 0]), ("test_negative", test[test["value"] < 0])):
            metric_rows += _simple_rows(variant, subset, part["value"].to_numpy(), part["probe_value"].to_numpy())
        if variant in ("sae", "base_model"):
            word_tables.append(_word_values(values, "tuned" if variant == "sae" else "base", noise, rng))
        if variant == "sae":
            elements["prediction"] = prediction
            comparison = values.reset_index()
    metric_rows += _agreements(test.reset_index(), estimates, rng)
    counts = elements.groupby("word").size().rename("n_examples")
    comparison = comparison.join(counts, on="word").rename(columns={"value": "lexicon_value"})
    comparison["abs_error"] = (comparison["probe_value"] - comparison["lexicon_value"]).abs()
    comparison["generation_count"] = rng.poisson(4 + 6 * comparison["lexicon_value"].clip(lower=0))
    comparison["base_generation_count"] = rng.poisson(4, len(comparison))
    return {
        "probe_predictions": elements[["triple_id", "element", "split", "word", "lexicon_value", "target",
                                       "prediction"]],
        "lexicon_comparison": comparison[["word", "split", "polarity", "role", "lexicon_value", "probe_value",
                                          "abs_error", "n_examples", "generation_count", "base_generation_count"]],
        "probe_metrics": metrics_frame(metric_rows),
        "word_values": pd.concat(word_tables, ignore_index=True),
    }


def logistic_probe_tables(rng: np.random.Generator, n_test: int = 60) -> dict[str, pd.DataFrame]:
    """probe_metrics (accuracy, and tuned minus base) and probe_pca of a preference-task (logistic) probe."""
    rows, hits = [], {}
    for variant, noise in VARIANT_NOISE.items():
        correct = int(n_test * (0.5 if noise is None else min(0.98, 1.1 - noise / 4)))
        hits[variant] = rng.permutation(np.arange(n_test) < correct)
        accuracy = correct / n_test
        half = 1.96 * np.sqrt(accuracy * (1 - accuracy) / n_test)
        rows.append(MetricRow(variant, "test", "accuracy", accuracy, n_test,
                              p_value=stats.binomtest(correct, n_test, 0.5, alternative="greater").pvalue,
                              ci_low=max(0.0, accuracy - half), ci_high=min(1.0, accuracy + half), test="binomial"))
    rows.append(accuracy_difference_row(hits["sae"], hits["base_model"], np.arange(n_test) // 2, 200, rng))
    labels = np.repeat([1, 0], n_test)
    pca = pd.DataFrame({"triple_id": np.tile(np.arange(n_test), 2), "element": np.where(labels, "positive", "negative"),
                        "split": "test", "label": np.where(labels, "preferred", "rejected"),
                        "pc1": rng.normal(0, 1, 2 * n_test) + 2.0 * labels, "pc2": rng.normal(0, 1, 2 * n_test)})
    return {"probe_metrics": metrics_frame(rows), "probe_pca": pca}


def probe_weights(store: RunStore, rng: np.random.Generator) -> pd.DataFrame:
    """Weights on the smaller dictionary of each layer of the tuned model (the probe's inputs)."""
    inputs = store.query("SELECT layer, dict_size, feature FROM features WHERE model = 'tuned' AND dict_size = "
                         "(SELECT min(dict_size) FROM features WHERE model = 'tuned') ORDER BY layer, feature")
    return inputs.assign(weight=rng.normal(0, 0.2, len(inputs)))


def explanation_tables(store: RunStore, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """feature_explanations, and features rewritten with the explanation columns filled."""
    features = store.query("SELECT * FROM features ORDER BY model DESC, layer, dict_size, feature")
    top = store.query("SELECT model, layer, dict_size, feature, tokens, activations FROM feature_examples "
                      "WHERE kind = 'top' AND rank = 1")
    peak = {(r.model, r.layer, r.dict_size, r.feature): str(r.tokens[int(np.argmax(r.activations))]).strip()
            for r in top.itertuples()}
    explained = []
    for i, r in enumerate(features.itertuples()):
        token = peak.get((r.model, r.layer, r.dict_size, r.feature), "")
        explanation = (HOSTILE_EXPLANATION if i == 0 else MARKUP_EXPLANATION if i == 1
                       else f"the token '{token}' and words around it" if token else "no clear pattern")
        explained.append({"model": r.model, "layer": r.layer, "dict_size": r.dict_size, "feature": r.feature,
                          "source": SOURCES[i % 2], "explanation": explanation,
                          "relevance": bool(rng.random() < 0.3), "relevance_detail": "fixture",
                          "simulation_score": float(rng.uniform(-0.1, 0.8)),
                          "detection_score": float(rng.uniform(0.4, 0.95)), "status": "ok", "error": None})
    explanations = pd.DataFrame(explained)
    keys = ["model", "layer", "dict_size", "feature"]
    filled = features.drop(columns=["explanation", "explanation_source", "relevance", "simulation_score",
                                    "detection_score"]).merge(
        explanations.rename(columns={"source": "explanation_source"})[
            keys + ["explanation", "explanation_source", "relevance", "simulation_score", "detection_score"]],
        on=keys, how="left")
    return {"feature_explanations": explanations, "features": filled[list(features.columns)]}


def plant_markup_example(store: RunStore) -> tuple[str, list]:
    """Replace the first token of the first tuned feature's top example with a `<script>` token."""
    first = store.query("SELECT layer, dict_size, feature FROM features WHERE model = 'tuned' "
                        "ORDER BY layer, dict_size, feature LIMIT 1").iloc[0]
    return ("UPDATE feature_examples SET tokens = list_concat([?], tokens[2:]) WHERE model = 'tuned' "
            "AND kind = 'top' AND rank = 1 AND layer = ? AND dict_size = ? AND feature = ?",
            [MARKUP_TOKEN, int(first["layer"]), int(first["dict_size"]), int(first["feature"])])


def add_contract_tables(run: Path, *, probe: str = "regression", explain: bool = True, seed: int = 0) -> Path:
    """Write the fixture probe (and explain) tables into `run`'s store; `probe`: 'regression',
    'logistic' or '' for none."""
    store = RunStore(run)
    rng = np.random.default_rng(seed)
    tables: dict[str, pd.DataFrame] = {}
    statements = []
    if probe:
        tables |= regression_probe_tables(store, rng) if probe == "regression" else logistic_probe_tables(rng)
        tables["probe_weights"] = probe_weights(store, rng)
        statements.append(_record("probe", {"kind": probe}))
    if explain:
        tables |= explanation_tables(store, rng)
        statements += [_record("explain", {"n_explained": len(tables["feature_explanations"])}),
                       plant_markup_example(store)]
    if "word_values" in tables:  # the word_report stage's tables, of these word values
        behaviour = store.read("behaviour_words") if "behaviour_words" in store.tables() else None
        tables["lfp_divergence"] = divergence_table(tables["word_values"], behaviour)
        tables["divergence_recovery"] = recovery_table(tables["lfp_divergence"], store.read("world_lexicon"))
    if probe == "logistic":  # a preference task has no per-word tables
        store.drop(sorted(store.tables() & {"lexicon_comparison", "word_values", "lfp_divergence",
                                            "divergence_recovery"}))
    store.write(tables, statements)
    return run

