"""Which run the dashboard shows: the command line it was started with and the runs on disk.

`streamlit run app/main.py -- --run runs/tiny` passes everything after `--` to the script, so
the app reads its own arguments from `sys.argv`. A run is any folder holding `lfp.duckdb`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lfp_engine.run.store import DB_NAME


@dataclass(frozen=True)
class AppArgs:
    run: Path | None
    """The run to open first (None: the first one found)."""
    runs_root: Path
    """Where the run picker looks for runs."""


def parse_args(argv: Sequence[str]) -> AppArgs:
    """The app's own options; unknown ones are ignored (Streamlit and test runners add theirs)."""
    parser = argparse.ArgumentParser(prog="app/main.py", add_help=False)
    parser.add_argument("--run", help="run folder to open")
    parser.add_argument("--runs", help="folder whose sub-folders the run picker lists (default ./runs)")
    known, _ = parser.parse_known_args(list(argv))
    run = Path(known.run).expanduser().resolve() if known.run else None
    root = Path(known.runs).expanduser().resolve() if known.runs else (Path.cwd() / "runs").resolve()
    return AppArgs(run=run, runs_root=root)


def is_run(folder: Path) -> bool:
    return (folder / DB_NAME).is_file()


def discover_runs(args: AppArgs) -> list[Path]:
    """Runs under the runs folder and beside the run given on the command line, that one first."""
    found: list[Path] = []
    if args.run is not None:
        found.append(args.run)
    for root in (args.runs_root, args.run.parent if args.run is not None else None):
        if root is not None and root.is_dir():
            found += sorted(p.resolve() for p in root.iterdir() if p.is_dir() and is_run(p))
    return list(dict.fromkeys(found))


def run_label(run: Path) -> str:
    """How a run is named in the picker: its path relative to the working folder when inside it."""
    try:
        return str(run.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(run)
