"""LFP Explorer dashboard: `streamlit run app/main.py -- --run runs/tiny` (or `lfp app runs/tiny`).

This script runs on every interaction: it draws the run picker in the sidebar, then hands over to
the page the user is on (`st.navigation`). Errors a user can act on (a missing, corrupted or
locked store) show as a message in place of the page, never as a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts this file's folder on sys.path, not the repository: add the repository
# so `app` and `lfp_engine` import the same way as under `lfp app` or an installed package.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.runs import parse_args, run_label  # noqa: E402
from app.ui import RUN_KEY, available_runs  # noqa: E402
from lfp_engine.run.errors import LfpError  # noqa: E402

PAGES = [
    ("views/story.py", "Story", ":material/auto_stories:"),
    ("views/layers.py", "Layers", ":material/layers:"),
    ("views/features.py", "Feature browser", ":material/table_rows:"),
    ("views/feature.py", "Feature", ":material/neurology:"),
    ("views/lexicon.py", "Lexicon", ":material/dictionary:"),
    ("views/playground.py", "Implicit reward", ":material/edit_note:"),
    ("views/diffing.py", "What tuning changed", ":material/difference:"),
    ("views/lab.py", "Ablation lab", ":material/science:"),
    ("views/validation.py", "Validation", ":material/fact_check:"),
    ("views/quiz.py", "Explanation quiz", ":material/quiz:"),
    ("views/compare.py", "Compare runs", ":material/compare_arrows:"),
]


def run_picker() -> None:
    """The sidebar's run selector: the run from the command line first, then those under runs/."""
    runs = [str(r) for r in available_runs()]
    if not runs:
        st.sidebar.info(f"No runs under {parse_args(sys.argv[1:]).runs_root}.")
        return
    if st.session_state.get(RUN_KEY) not in runs:
        st.session_state[RUN_KEY] = runs[0]
    st.sidebar.selectbox("Run", runs, key=RUN_KEY, format_func=lambda r: run_label(Path(r)), bind="query-params")


def main() -> None:
    st.set_page_config(page_title="LFP Explorer", page_icon=":material/neurology:", layout="wide")
    page = st.navigation([st.Page(path, title=title, icon=icon, default=i == 0)
                          for i, (path, title, icon) in enumerate(PAGES)])
    run_picker()
    try:
        page.run()
    except LfpError as err:
        st.error(str(err))


if __name__ == "__main__":  # `streamlit run` executes this file as __main__; importing it starts nothing
    main()
