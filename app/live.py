"""The run's models, SAEs and probes for the live pages: loaded once per process and run.

`st.cache_resource` keeps one `LiveRun` per run folder (and version of its model files) for every
session of the server: the sessions share the models, and `LiveRun` keeps their requests apart
(interventions and captures are per thread). On the GPU when there is one, else the CPU.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from lfp_engine.serving import LiveRun
from lfp_engine.run.store import RunPaths

from .data import RunData

EXAMPLE_TEXT = "The acting was wonderful, but the plot was boring and the ending felt awful."
"""What the playground opens with: words the lexicon rates both ways."""


def _files_version(paths: RunPaths) -> tuple[int, ...]:
    """Changes when a stage rewrites the tuned model, the SAEs, the probes or the crosscoders (not on a
    quiz answer)."""
    folders = (paths.tuned_model, paths.saes, paths.saes_of("base"), paths.probe, paths.crosscoders)
    return tuple(f.stat().st_mtime_ns if f.exists() else 0 for f in folders)


@st.cache_resource(show_spinner="Loading the run's models, SAEs and probes…", max_entries=4)
def _load(root: str, version: tuple[int, ...]) -> LiveRun:
    """`version` is only part of the cache key: rewritten model files load afresh."""
    return LiveRun(Path(root))


def live_run(run: RunData) -> LiveRun:
    paths = RunPaths(run.root)
    return _load(str(paths.root), _files_version(paths))
