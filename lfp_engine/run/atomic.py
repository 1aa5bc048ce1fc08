"""Atomic writes: a file or folder either appears whole under its final name, or not at all.

Everything is written under a temporary sibling name and renamed into place (a rename within a
directory is atomic on POSIX). A process killed mid-write leaves only a temporary, which the
next run sweeps away; it never leaves a half-written model or table that looks finished.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

TMP_MARK = ".tmp-"
OLD_MARK = ".old-"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path (file or folder, as the caller makes it) that replaces `final` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}{OLD_MARK}{os.getpid()}")
        _remove(old)
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
    else:
        os.replace(tmp, final)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_text(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sweep_temporaries(root: Path) -> list[Path]:
    """Remove leftovers of interrupted atomic writes anywhere under `root`."""
    removed = []
    if not root.exists():
        return removed
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.name.startswith(".") and (TMP_MARK in path.name or OLD_MARK in path.name):
            _remove(path)
            removed.append(path)
    return removed
