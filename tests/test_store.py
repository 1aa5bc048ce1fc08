"""Atomic writes, the DuckDB store's transactions, and corrupted run folders."""

from __future__ import annotations

import hashlib

import duckdb
import pandas as pd
import pytest

from lfp_engine.run.atomic import atomic_path, sweep_temporaries, write_parquet
from lfp_engine.run.errors import RunFolderError
from lfp_engine.run.manifest import MANIFEST_TABLE, StageRecord, ensure_tables, read_manifest
from lfp_engine.run.store import RunStore


def test_atomic_path_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "weights").write_text("v1")
    assert (target / "weights").read_text() == "v1"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed mid-write")
    assert (target / "weights").read_text() == "v1"  # the old version survives
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"


def test_sweep_removes_leftovers_of_killed_writes(tmp_path):
    (tmp_path / ".model.tmp-123").mkdir()
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / ".corpus.parquet.tmp-9").write_text("partial")
    (tmp_path / "keep.txt").write_text("x")
    removed = sweep_temporaries(tmp_path)
    assert len(removed) == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["keep.txt", "world"]


def test_store_write_is_one_transaction(tmp_path):
    store = RunStore(tmp_path)
    store.write({"a": pd.DataFrame({"x": [1, 2]})})
    with pytest.raises(duckdb.CatalogException):
        store.write({"a": pd.DataFrame({"x": [9]})}, [("INSERT INTO no_such_table VALUES (?)", [1])])
    assert store.read("a")["x"].tolist() == [1, 2]  # the failed write changed nothing
    assert store.read("a", where="x > ?", params=[1])["x"].tolist() == [2]


def test_values_go_in_as_parameters(tmp_path):
    store = RunStore(tmp_path)
    nasty = "'); DROP TABLE a; --"
    store.write({"a": pd.DataFrame({"x": [nasty]})})
    assert store.read("a", where="x = ?", params=[nasty])["x"].tolist() == [nasty]
    with pytest.raises(ValueError):
        store.read("a; DROP TABLE a")


def test_corrupted_store_is_reported_and_left_untouched(tmp_path):
    db = tmp_path / "lfp.duckdb"
    db.write_bytes(b"this is not a database" * 100)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with pytest.raises(RunFolderError, match="not a readable DuckDB store"):
        RunStore(tmp_path).tables()
    with pytest.raises(RunFolderError):
        RunStore(tmp_path).write({"a": pd.DataFrame({"x": [1]})})
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_missing_store_says_how_to_make_one(tmp_path):
    with pytest.raises(RunFolderError, match="lfp run"):
        RunStore(tmp_path / "nothing").query("SELECT 1")


def test_manifest_round_trip_and_corruption(tmp_path):
    store = RunStore(tmp_path)
    ensure_tables(store)
    record = StageRecord(stage="world", status="done", fingerprint="abc", settings={"a": 1}, seed=5,
                         outputs={"layers": [1, 2]}, started_at="t0", finished_at="t1", duration_s=1.5)
    store.write({}, [record.upsert()])
    assert read_manifest(store)["world"] == record
    store.write({}, [(f"UPDATE {MANIFEST_TABLE} SET outputs = ? WHERE stage = ?", ["{not json", "world"])])
    with pytest.raises(RunFolderError, match="corrupted"):
        read_manifest(store)


def test_parquet_writes_are_atomic(tmp_path):
    write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
    assert pd.read_parquet(tmp_path / "t.parquet")["a"].tolist() == [1]
