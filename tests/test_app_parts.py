"""The dashboard's pure parts: number formatting, escaping of stored text, run discovery and the
feature browser's SQL filters (no Streamlit session needed). The verdict's sentences:
tests/test_verdict.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from app.data import FeatureQuery
from lfp_engine.report.formatting import interval, num, p_value, percent, signed
from app.markup import highlighted, quoted
from app.runs import discover_runs, parse_args


def test_numbers_read_the_same_everywhere():
    assert num(0.123456) == "0.123" and num(np.int64(12345)) == "12,345" and num(12345.6) == "12,346"
    assert num(None) == num(float("nan")) == num(pd.NA) == "–"
    assert signed(0.5) == "+0.5" and signed(-0.5) == "-0.5" and percent(0.4567) == "45.7%"
    assert p_value(0.0004) == "p < 0.001" and p_value(0.0123) == "p = 0.012"
    assert interval(0.1, 0.2) == "95% CI 0.1 to 0.2" and interval(math.nan, 0.2) == "CI n/a"


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
