"""Saving quiz answers: the row written, names and choices checked, and a store that another
connection holds is waited for briefly, then reported as busy (never a crash, never a hang)."""

from __future__ import annotations

import threading
import time

import duckdb
import pandas as pd
import pytest

from lfp_engine.explain.annotation import NONE_OF_THE_ABOVE, agreement, annotator_name, record_answer
from lfp_engine.run.errors import InputError, StoreBusyError
from lfp_engine.run.store import RunStore

QUESTION = {"question_id": "q1", "options": ["a", "b", "c", "d", NONE_OF_THE_ABOVE], "correct_option": 2}


@pytest.fixture
def store(tmp_path) -> RunStore:
    store = RunStore(tmp_path)
    store.write({"features": pd.DataFrame({"feature": [0]})})
    return store


def test_answers_are_appended_with_their_verdict(store):
    record_answer(store, QUESTION, "  Ada\n Lovelace ", 2)
    record_answer(store, QUESTION, "Bob", 4)
    rows = store.read("annotations", order_by="created_at")
    assert rows["annotator"].tolist() == ["Ada Lovelace", "Bob"]
    assert rows["is_correct"].tolist() == [True, False] and rows["chose_none"].tolist() == [False, True]
    summary = agreement(rows)
    assert summary["accuracy"] == 0.5 and summary["none_rate"] == 0.5 and summary["agreement"] == 0.0


@pytest.mark.parametrize("name, message", [("", "enter your name"), (" \t\n", "enter your name"),
                                           ("\x00\x07", "enter your name"), ("x" * 81, "at most 80")])
def test_bad_names_are_refused(name, message):
    with pytest.raises(InputError, match=message):
        annotator_name(name)


def test_markup_and_emoji_in_a_name_are_kept_as_text(store):
    record_answer(store, QUESTION, "<b>Zoë</b> 🎬'; DROP TABLE annotations; --", 0)
    assert store.read("annotations")["annotator"].tolist() == ["<b>Zoë</b> 🎬'; DROP TABLE annotations; --"]


@pytest.mark.parametrize("choice", [-1, 5])
def test_a_choice_that_is_no_option_is_refused(store, choice):
    with pytest.raises(InputError, match="not one of the 5 options"):
        record_answer(store, QUESTION, "Ada", choice)


def test_a_store_held_open_elsewhere_is_reported_busy(store):
    """A read-only connection in this process (the dashboard reading) excludes a writer."""
    reader = duckdb.connect(str(store.path), read_only=True)
    try:
        start = time.monotonic()
        with pytest.raises(StoreBusyError, match="in use"):
            record_answer(store, QUESTION, "Ada", 1, retry_s=0.3)
        assert time.monotonic() - start < 5
    finally:
        reader.close()
    assert "annotations" not in store.tables()


def test_the_write_waits_for_a_reader_to_let_go(store):
    reader = duckdb.connect(str(store.path), read_only=True)
    threading.Timer(0.3, reader.close).start()
    record_answer(store, QUESTION, "Ada", 1, retry_s=10)
    assert len(store.read("annotations")) == 1
