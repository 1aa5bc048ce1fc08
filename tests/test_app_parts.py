"""The dashboard's pure parts: number formatting, the plain-language sentences, escaping of stored
text, run discovery and the feature browser's SQL filters (no Streamlit session needed)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from app.data import FeatureQuery
from lfp_engine.report.formatting import interval, num, p_value, percent, signed
from app.markup import highlighted, quoted
from lfp_engine.report.verdict import feedback_learned_accuracy, feedback_learned_tau, reward_change
from app.runs import discover_runs, parse_args


def test_numbers_read_the_same_everywhere():
    assert num(0.123456) == "0.123" and num(np.int64(12345)) == "12,345" and num(12345.6) == "12,346"
    assert num(None) == num(float("nan")) == num(pd.NA) == "–"
    assert signed(0.5) == "+0.5" and signed(-0.5) == "-0.5" and percent(0.4567) == "45.7%"
    assert p_value(0.0004) == "p < 0.001" and p_value(0.0123) == "p = 0.012"
    assert interval(0.1, 0.2) == "95% CI 0.1 to 0.2" and interval(math.nan, 0.2) == "CI n/a"


def tau_row(value, p, low, high, n=33):
    return {"value": value, "p_value": p, "ci_low": low, "ci_high": high, "n": n}


@pytest.mark.parametrize("row, verdict", [
    (tau_row(0.41, 0.0004, 0.22, 0.58), "Partly"),
    (tau_row(0.62, 0.0001, 0.5, 0.7), "Largely"),
    (tau_row(0.04, 0.26, -0.1, 0.2), "Not detectably"),
    (tau_row(0.3, 0.01, -0.02, 0.5), "Not detectably"),  # an interval reaching 0 is no evidence
])
def test_the_answer_reads_the_stored_significance(row, verdict):
    sentence = feedback_learned_tau(row, held_out_of_tuning=True)
    assert sentence.startswith(verdict + ":")
    assert f"Kendall tau {num(row['value'], 2)}" in sentence and "on 33 words" in sentence
    if verdict == "Partly":
        assert sentence == ("Partly: on 33 words that tuning never showed the model and the probe was never fitted "
                            "on, the ranking the probe reads out of the tuned model agrees with the true reward "
                            "(Kendall tau 0.41, 95% CI 0.22 to 0.58, p < 0.001).")


def test_accuracy_answer_and_reward_change():
    sentence = feedback_learned_accuracy({"value": 0.95, "p_value": 1e-9, "ci_low": 0.9, "ci_high": 0.99, "n": 60})
    assert sentence.startswith("Largely:") and "95.0% of the time, where chance is 50%" in sentence
    tuned = {"n": 400, "mean": 2.1, "mean_difference": 1.8, "ci_low": 1.5, "ci_high": 2.1, "test": "paired t-test",
             "p_value": 1e-6}
    assert reward_change(tuned, {"mean": 0.3}, "vader_reward").startswith("Yes. On 400 held-out openings")
    assert reward_change({**tuned, "p_value": 0.4}, {"mean": 0.3}, "vader_reward").startswith("Not reliably.")


def test_stored_text_is_escaped():
    html = highlighted(["<script>alert(1)</script>", " & ", "**bold**"], [0.5, 1.0, 0.0], scale=1.0, marked=1)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&amp;" in html
    assert "rgba(237, 174, 73, 0.50)" in html and html.count("outline") == 1
    assert "&lt;b&gt;" in quoted("<b>x</b>") and "&quot;" in quoted('say "hi"')


def test_run_discovery_lists_runs_under_runs_and_beside_the_given_one(tmp_path, monkeypatch):
    for name in ("b", "a", "not-a-run"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    for name in ("a", "b"):
        (tmp_path / "runs" / name / "lfp.duckdb").write_bytes(b"")
    (tmp_path / "elsewhere" / "x").mkdir(parents=True)
    (tmp_path / "elsewhere" / "x" / "lfp.duckdb").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert [p.name for p in discover_runs(parse_args([]))] == ["a", "b"]
    args = parse_args(["--run", "elsewhere/x", "--server.port", "1"])
    assert [p.name for p in discover_runs(args)] == ["x", "a", "b"]
    assert [p.name for p in discover_runs(parse_args(["--runs", "elsewhere"]))] == ["x"]


def test_browser_filters_are_parameters_never_sql():
    query = FeatureQuery("tuned", 3, 128, search="'; DROP TABLE features; --", relevance="relevant",
                         shared_only=True, source="llm:x")
    where, params = query.where()
    assert "DROP" not in where and "llm:x" not in where
    assert params == ["tuned", 3, 128, "'; DROP TABLE features; --", "llm:x"]
