"""The run manifest: what each stage did, with what settings and inputs, and when.

A stage's record carries a fingerprint (a hash of its settings, seed, stage version and the
fingerprints of the stages it reads), so a re-run can tell "done with these inputs" (skip)
from "done with other inputs" (redo, and everything downstream). The run's own config is kept
beside it, so `lfp run --out RUN` continues a run without repeating its options.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from lfp_engine.run.errors import RunFolderError
from lfp_engine.run.store import RunStore

MANIFEST_TABLE = "run_manifest"
CONFIG_TABLE = "run_config"

_MANIFEST_COLUMNS = ("stage", "status", "fingerprint", "settings", "seed", "inputs", "outputs", "versions",
                     "started_at", "finished_at", "duration_s", "error")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fingerprint(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for package in ("lfp-explorer", "torch", "transformers", "trl", "datasets", "duckdb", "numpy"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


@dataclass
class StageRecord:
    stage: str
    status: str
    """'running', 'done', 'incomplete' (finished with failures to retry) or 'failed'."""
    fingerprint: str
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str | None = None
    duration_s: float | None = None
    error: str | None = None

    def upsert(self) -> tuple[str, list[Any]]:
        """A parameterised statement that writes this record (for `RunStore.write`)."""
        values = asdict(self)
        for key in ("settings", "inputs", "outputs", "versions"):
            values[key] = json.dumps(values[key], sort_keys=True, default=str)
        placeholders = ", ".join("?" for _ in _MANIFEST_COLUMNS)
        return (f"INSERT OR REPLACE INTO {MANIFEST_TABLE} ({', '.join(_MANIFEST_COLUMNS)}) VALUES ({placeholders})",
                [values[c] for c in _MANIFEST_COLUMNS])


MANIFEST_DDL = (
    f"CREATE TABLE IF NOT EXISTS {MANIFEST_TABLE} (stage VARCHAR PRIMARY KEY, status VARCHAR, fingerprint VARCHAR, "
    "settings VARCHAR, seed BIGINT, inputs VARCHAR, outputs VARCHAR, versions VARCHAR, started_at VARCHAR, "
    "finished_at VARCHAR, duration_s DOUBLE, error VARCHAR)",
    [],
)
CONFIG_DDL = (
    f"CREATE TABLE IF NOT EXISTS {CONFIG_TABLE} (id INTEGER PRIMARY KEY, preset VARCHAR, config VARCHAR, "
    "created_at VARCHAR, lfp_version VARCHAR)",
    [],
)


def ensure_tables(store: RunStore) -> None:
    store.write({}, [MANIFEST_DDL, CONFIG_DDL])


def read_manifest(store: RunStore) -> dict[str, StageRecord]:
    """All stage records; a manifest that does not parse is reported, never repaired silently."""
    if not store.exists() or MANIFEST_TABLE not in store.tables():
        return {}
    frame = store.read(MANIFEST_TABLE)
    missing = set(_MANIFEST_COLUMNS) - set(frame.columns)
    if missing:
        raise RunFolderError(f"{store.path}: the run manifest lacks columns {sorted(missing)}; it is corrupted")
    records = {}
    for row in frame.to_dict("records"):
        try:
            for key in ("settings", "inputs", "outputs", "versions"):
                row[key] = json.loads(row[key]) if row[key] else {}
            row["seed"] = int(row["seed"]) if row["seed"] == row["seed"] else 0
            for key in ("finished_at", "duration_s", "error"):
                if row[key] != row[key]:  # NaN from pandas
                    row[key] = None
            records[row["stage"]] = StageRecord(**{c: row[c] for c in _MANIFEST_COLUMNS})
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise RunFolderError(
                f"{store.path}: the manifest record of stage {row.get('stage')!r} is corrupted ({err}); "
                "the run folder is left untouched"
            ) from None
    return records


def read_config(store: RunStore) -> tuple[str, dict[str, Any]] | None:
    """(preset, config as stored) or None for a new run folder."""
    if not store.exists() or CONFIG_TABLE not in store.tables():
        return None
    frame = store.read(CONFIG_TABLE)
    if frame.empty:
        return None
    try:
        return str(frame.iloc[0]["preset"]), json.loads(frame.iloc[0]["config"])
    except (json.JSONDecodeError, TypeError) as err:
        raise RunFolderError(f"{store.path}: the stored run config is corrupted ({err})") from None


def config_statement(preset: str, config: dict[str, Any], version: str) -> tuple[str, list[Any]]:
    return (f"INSERT OR REPLACE INTO {CONFIG_TABLE} (id, preset, config, created_at, lfp_version) "
            "VALUES (1, ?, ?, ?, ?)", [preset, json.dumps(config, sort_keys=True), now(), version])
