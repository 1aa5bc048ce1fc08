"""Widgets and messages every page shares: the chosen run, guidance for missing tables, pickers.

A table a stage has not written yet is never an error: the page says which `lfp` command fills
it and carries on with what is there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

from lfp_engine.sae.keys import FeatureKey

from .data import RunData
from .runs import discover_runs, parse_args, run_label

RUN_KEY = "run"
"""Session key of the run picker (the sidebar's selectbox, rendered on every page)."""

FEATURE_PAGE = "views/feature.py"


def available_runs() -> list[Path]:
    """The runs the picker offers: the command line's `--run` first, then those under `--runs`."""
    return discover_runs(parse_args(sys.argv[1:]))


def current_run() -> RunData:
    """The run the sidebar picked; stops the page with guidance when there is none."""
    chosen = st.session_state.get(RUN_KEY)
    if not chosen:
        st.info("No run to show. Make one with `lfp run --preset tiny --out runs/tiny`, then start the "
                "dashboard with `lfp app runs/tiny`.")
        st.stop()
    return RunData(chosen)


def run_label_of(run: RunData) -> str:
    return run_label(Path(run.root))


def how_to_fill(run: RunData, table: str) -> str:
    """One sentence naming the `lfp` command that writes `table` into this run."""
    from precompute.stages import EXPERIMENT_TABLES, table_writers  # the stages import the models: only on need

    folder = run_label_of(run)
    if table in EXPERIMENT_TABLES:
        return f"`{EXPERIMENT_TABLES[table]} {folder}` writes `{table}`."
    stage = table_writers().get(table, "?")
    return (f"The `{stage}` stage writes `{table}`: run `lfp run --out {folder}` "
            f"(it runs `{stage}` and any earlier stage that has not run yet).")


def needs(run: RunData, *tables: str, what: str = "This part") -> bool:
    """True when every table is there with rows; otherwise show what fills the first missing one."""
    for table in tables:
        if not run.has(table):
            st.info(f"{what} needs `{table}`, which this run does not have yet. {how_to_fill(run, table)}")
            return False
    return True


def explain(text: str) -> None:
    """The one or two plain sentences under a number or chart that say what it means."""
    st.caption(text)


def model_picker(models: list[str], key: str, **keep: str) -> str:
    """Tuned model first and by default; the base model's features are the appendix-B comparison.
    `keep`: how the choice outlives the page (`persist_state=` or `bind=`, as for any widget). The
    options show as they are named in the store: a bound widget puts its label in the URL."""
    return st.radio("Model", models, key=key, horizontal=True, **keep,
                    help="tuned: the model after tuning, the one the method studies; base: the model before tuning")


def open_feature(key: FeatureKey) -> None:
    st.switch_page(FEATURE_PAGE, query_params={name: str(value) for name, value in key._asdict().items()})
