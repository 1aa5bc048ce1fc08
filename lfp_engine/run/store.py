"""A run's store: one DuckDB file in the run folder, plus the run folder's layout.

The pipeline writes each stage's tables and its manifest record in one transaction, so a stage
is in the store whole or not at all (DuckDB rolls back an uncommitted transaction when a killed
writer's file is reopened). Connections are short-lived: the writer holds the file only while
it writes, so `lfp status` and the dashboard can read between writes; a writer that finds the
file busy retries for a while, then says who holds it.

Table names come from code, never from users, and are checked to be plain identifiers; every
value goes in through parameters or registered data frames, never string formatting.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from lfp_engine.run.errors import RunFolderError, StoreBusyError

DB_NAME = "lfp.duckdb"
MODELS = ("tuned", "base")
"""The two models of a run whose activations can be captured and encoded."""
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LOCK_RETRY_S = 30.0


def _check_identifier(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


class RunPaths:
    """Where things live inside a run folder (a contract between stages and the app)."""

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser().resolve()

    @property
    def db(self) -> Path:
        return self.root / DB_NAME

    @property
    def log(self) -> Path:
        return self.root / "lfp.log"

    @property
    def lock(self) -> Path:
        """Locked by the process writing the run, which it names (`run/folder.py`)."""
        return self.root / "lfp.lock"

    @property
    def world(self) -> Path:
        return self.root / "world"

    @property
    def base_model(self) -> Path:
        return self.world / "base"

    @property
    def tuned_model(self) -> Path:
        return self.root / "models" / "tuned"

    def model_root(self, model: str) -> Path:
        """Where a model's activations and SAEs live: the run folder for the tuned model (the one
        the method studies), `base_model/` for the base model's (baselines, appendix B)."""
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        return self.root if model == "tuned" else self.root / "base_model"

    def activations_of(self, model: str) -> Path:
        """Captured MLP outputs: `train/` (SAE training rows) and `eval/` (held-out rows)."""
        return self.model_root(model) / "activations"

    def saes_of(self, model: str) -> Path:
        return self.model_root(model) / "saes"

    @property
    def activations(self) -> Path:
        return self.activations_of("tuned")

    @property
    def saes(self) -> Path:
        return self.saes_of("tuned")

    def sae(self, layer: int, dict_size: int, model: str = "tuned") -> Path:
        """Folder of one SAE (SAELens format): saes/layer_<L>_<dict_size>."""
        return self.saes_of(model) / f"layer_{layer}_{dict_size}"

    @property
    def probe(self) -> Path:
        """The probe's weights and card (`probe.*`), and the base model's (`base_probe.*`)."""
        return self.root / "probe"

    @property
    def crosscoders(self) -> Path:
        """The crosscoders over base and tuned: crosscoders/layer_<L>_<dict_size> (SAELens format)."""
        return self.root / "crosscoders"

    def resolve(self, source: str) -> str:
        """A model location as the run recorded it: './...' is inside the run folder (which can be
        moved or copied whole); anything else is a path or hub id as given."""
        return str((self.root / source).resolve()) if source.startswith("./") else source

    @property
    def work(self) -> Path:
        """Scratch space of trainers (checkpoints, logs); safe to delete."""
        return self.root / ".work"


class RunStore:
    def __init__(self, root: Path | str):
        self.paths = RunPaths(root)

    @property
    def path(self) -> Path:
        return self.paths.db

    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def connect(self, read_only: bool = True, retry_s: float = LOCK_RETRY_S) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the store, turning DuckDB's failures into messages a user can act on.

        A store in use in a way that excludes this connection (another process writing; in this
        process, connections of the other mode: DuckDB refuses a read-write and a read-only
        connection to one file side by side) is retried for `retry_s`, then `StoreBusyError`.
        """
        if read_only and not self.path.exists():
            raise RunFolderError(f"{self.paths.root} has no store ({DB_NAME}): run `lfp run --out {self.paths.root}` first")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + retry_s
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except (duckdb.Error, RuntimeError) as err:
                text = str(err)
                busy = isinstance(err, duckdb.Error) and ("lock" in text.lower() or "different configuration" in text)
                if busy and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                if busy:
                    raise StoreBusyError(
                        f"{self.path} is in use (an `lfp run` or a dashboard writing, or this dashboard reading "
                        f"while it saves): {text}") from None
                raise RunFolderError(
                    f"{self.path} is not a readable DuckDB store ({text}); it is left untouched. "
                    "Move it aside to start the run afresh."
                ) from None
        try:
            yield con
        finally:
            con.close()

    # -- reading ----------------------------------------------------------------------------

    def tables(self) -> set[str]:
        if not self.exists():
            return set()
        with self.connect() as con:
            return {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}

    def has_table(self, name: str) -> bool:
        return name in self.tables()

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(sql, params or []).df()

    def read(self, table: str, where: str = "", params: Sequence[Any] | None = None,
             order_by: str = "") -> pd.DataFrame:
        """SELECT * from a table; `where`/`order_by` are code-written SQL, values go in `params`."""
        sql = f"SELECT * FROM {_check_identifier(table)}"
        if where:
            sql += f" WHERE {where}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        return self.query(sql, params)

    # -- writing ----------------------------------------------------------------------------

    def write(self, tables: Mapping[str, pd.DataFrame], statements: Sequence[tuple[str, Sequence[Any]]] = (),
              retry_s: float = LOCK_RETRY_S) -> None:
        """Replace `tables` and run parameterised `statements`, all in one transaction."""
        with self.connect(read_only=False, retry_s=retry_s) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for name, frame in tables.items():
                    view = f"_incoming_{_check_identifier(name)}"
                    con.register(view, frame)
                    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {view}")
                    con.unregister(view)
                for sql, params in statements:
                    con.execute(sql, list(params))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def drop(self, names: Sequence[str]) -> None:
        with self.connect(read_only=False) as con:
            for name in names:
                con.execute(f"DROP TABLE IF EXISTS {_check_identifier(name)}")
