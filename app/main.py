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


def auth_configured() -> bool:
    """Whether the server is set up for Streamlit's own authentication: an `[auth]` section in its
    `.streamlit/secrets.toml` (docs/guide.md, "Sharing the dashboard")."""
    try:
        return "auth" in st.secrets
    except FileNotFoundError:  # no secrets.toml at all: authentication is off
        return False


def signed_in() -> bool:
    """With Streamlit's authentication configured, only a logged-in visitor sees the run (the live
    pages load models and run generation, the quiz writes to the store); the others get a log-in
    button and nothing else. Without it, everyone who reaches the server is let in: `lfp app` then
    listens on this machine only unless given `--address`."""
    if not auth_configured():
        return True
    if st.user.is_logged_in:
        st.sidebar.caption(f"Signed in as {st.user.get('email') or st.user.get('name') or 'you'}")
        st.sidebar.button("Log out", on_click=st.logout)
        return True
    st.title("LFP Explorer")
    st.write("This dashboard is shared with a team: log in to open it.")
    st.button("Log in", key="login", on_click=st.login)
    return False


def main() -> None:
    st.set_page_config(page_title="LFP Explorer", page_icon=":material/neurology:", layout="wide")
    if not signed_in():
        return
    page = st.navigation([st.Page(path, title=title, icon=icon, default=i == 0)
                          for i, (path, title, icon) in enumerate(PAGES)])
    run_picker()
    try:
        page.run()
    except LfpError as err:
        st.error(str(err))


if __name__ == "__main__":  # `streamlit run` executes this file as __main__; importing it starts nothing
    main()
