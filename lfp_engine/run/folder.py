"""A run folder opened for writing: made, locked and logged to once, in one place, before anything
is written (docs/architecture.md, "The stage contract").

Without this, two things go wrong. A run of several processes on a folder that does not exist yet
fails at once: the main process's log handler opens `lfp.log` before any process has made the
folder. And a second `lfp run` on a folder whose run is still going goes ahead: it sweeps the
running stage's temporaries away as leftovers of an interrupted write and writes beside it. So
every writer of a run folder (`lfp run`, `lfp sae-sweep`, `lfp sae-compare`) opens it with
`open_run`, which, in the main process (rank 0) alone,

1. makes the folder;
2. takes an exclusive lock on `lfp.lock` in it (`fcntl.flock`), and writes its pid there. The lock
   belongs to the open file, so the operating system releases it when the process ends, however it
   ends: a killed run leaves no stale lock, whatever pid the file still names. A second writer finds
   the lock taken and stops with `run folder X is in use by another lfp run (pid N)`, having changed
   nothing (it opens the lock file without writing to it);
3. then logs to `lfp.log` in the folder;

while the other processes of the run wait for it, and stop with the same error if it fails.

Readers (the dashboard, `lfp status`, `lfp report`) never take the lock: DuckDB's own file lock
keeps their reads apart from the writer's short transactions (`store.py`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from lfp_engine.run.errors import RunFolderError
from lfp_engine.run.store import RunPaths

if TYPE_CHECKING:  # the distributed module imports torch, which `check_free`'s callers need not
    from lfp_engine.run.distributed import Ranks

log = logging.getLogger(__name__)

LOCK_RETRY_S = 1.0
"""How long a writer retries a taken lock before refusing: long enough to outlast `check_free`'s
momentary probe of the lock by another process, far shorter than any run."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _refusal(paths: RunPaths, fd: int) -> RunFolderError:
    """The error for a folder whose lock another process holds; the pid is what the holder wrote."""
    os.lseek(fd, 0, os.SEEK_SET)
    pid = os.read(fd, 64).decode(errors="replace").strip()
    who = f"pid {pid}" if pid.isdigit() else "pid unknown"
    return RunFolderError(f"run folder {paths.root} is in use by another lfp run ({who}); wait for it to finish, "
                          f"or stop it, then run again (`lfp status {paths.root}` shows where it is)")


def check_free(paths: RunPaths) -> None:
    """Raise `RunFolderError` when another process holds the run folder; creates and changes nothing."""
    try:
        fd = os.open(paths.lock, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refusal(paths, fd) from None
    finally:
        os.close(fd)  # closing releases the probe's shared lock


def _lock(paths: RunPaths) -> int:
    """Make the folder and take its lock; the open lock file's descriptor (closing it unlocks)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + LOCK_RETRY_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            error = _refusal(paths, fd)
            os.close(fd)
            raise error from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@contextmanager
def open_run(paths: RunPaths, ranks: Ranks | None = None) -> Iterator[RunPaths]:
    """Hold the run folder for writing (see the module docstring) for the duration of the block;
    `ranks`: this process's place in a run of several processes (None: a single process)."""
    from lfp_engine.run.distributed import SINGLE

    ranks = ranks or SINGLE
    held: list[int] = []
    ranks.from_main(lambda: held.append(_lock(paths)))
    handler: logging.Handler | None = None
    if held:
        handler = logging.FileHandler(paths.log, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logging.getLogger().addHandler(handler)
        log.info("run folder %s held by process %d", paths.root, os.getpid())
    try:
        yield paths
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
        for fd in held:
            os.close(fd)
