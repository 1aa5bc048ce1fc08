"""The stage contract: what a stage is, what it is given, and what it hands back.

A stage is a function from a `StageContext` to a `StageResult`. It declares the tables it writes
(`Stage.tables`: the store's contract, docs/store.md, is checked against these declarations), the
stages whose results it reads (`needs`), and the typed summary it records in the run manifest
(`StageResult.outputs`, a `StageOutputs` record). Later stages read an earlier stage's summary as
attributes of that record (`ctx.outputs_of(DivergenceOutputs).layers`), never as dictionary keys.
The runner (`runner.py`) fingerprints, skips, runs and records stages; see docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pandas as pd
import torch

from lfp_engine.run.config import RunConfig
from lfp_engine.run.distributed import SINGLE, Ranks
from lfp_engine.run.errors import RunFolderError, StageOrderError
from lfp_engine.run.manifest import StageRecord, fingerprint
from lfp_engine.run.store import RunPaths, RunStore

USABLE = ("done", "incomplete")
"""Statuses whose results later stages may read; only 'done' counts as up to date."""

O = TypeVar("O", bound="StageOutputs")


@dataclass(frozen=True)
class StageOutputs:
    """A stage's summary in the manifest: headline numbers and where its files went.

    Subclasses name their stage (`stage`) and list their fields; the manifest stores them as JSON
    (`to_record`) and later stages get them back typed (`from_record`)."""

    stage: ClassVar[str]

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls: type[O], data: dict[str, Any]) -> O:
        """Rebuild from the manifest's JSON; nested records come back as their dataclasses. A field
        the record lacks (a run made by an older version) is an error naming the stage to redo."""
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                    continue
                raise RunFolderError(f"the manifest record of stage {cls.stage!r} lacks {f.name!r} (made by an "
                                     f"older version): run `lfp run --force {cls.stage}`")
            values[f.name] = _revive(data[f.name], hints[f.name])
        return cls(**values)


def _revive(value: Any, annotation: Any) -> Any:
    """JSON back into a dataclass where the annotation names one (also inside `X | None`)."""
    if value is None:
        return None
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    for option in options:
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            hints = typing.get_type_hints(option)
            return option(**{k: _revive(v, hints[k]) for k, v in value.items() if k in hints})
    return value


@dataclass
class StageContext:
    """Everything a stage is given: where the run lives, its settings, seed and device, and the
    manifest as it stood when the stage started (the summaries of the stages it needs)."""

    paths: RunPaths
    store: RunStore
    config: RunConfig
    seed: int
    device: torch.device
    manifest: dict[str, StageRecord]
    ranks: Ranks = SINGLE
    """This process's place among the run's processes (`lfp_engine.run.distributed`): a stage that
    shares its work deals it out through it; only rank 0's result is recorded."""

    def outputs_of(self, outputs: type[O]) -> O:
        """The typed summary of an earlier stage, which must have finished."""
        record = self.manifest.get(outputs.stage)
        if record is None or record.status not in USABLE:
            raise StageOrderError(f"stage {outputs.stage!r} has not finished: run "
                                  f"`lfp run --out {self.paths.root} --stages {outputs.stage}`")
        return outputs.from_record(record.outputs)


@dataclass
class StageResult:
    """What a stage hands back; the runner commits it with the stage's manifest record in one
    transaction."""

    outputs: StageOutputs
    """The summary recorded in the manifest."""
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Tables to (re)write; each must be one the stage declares."""
    inputs: dict[str, Any] = field(default_factory=dict)
    """What the stage read (model locations, counts), for the manifest."""
    statements: list[tuple[str, list[Any]]] = field(default_factory=list)
    """Parameterised SQL run in the stage's transaction (e.g. creating a table no stage owns)."""
    complete: bool = True
    """False when some of the work failed (e.g. LLM requests): the stage's results are kept and
    usable downstream, but the stage runs again on the next `lfp run` to finish the rest."""


def no_artifacts(paths: RunPaths, config: RunConfig) -> Sequence[Path]:
    return ()


def no_derived(config: RunConfig) -> Any:
    return None


@dataclass(frozen=True)
class Stage:
    """One step of a run (docs/guide.md, "What a run is")."""

    name: str
    run: Callable[[StageContext], StageResult | None]
    """The stage's work. With several processes, only rank 0's result is recorded (a stage that
    shares its work may return None on the other ranks)."""
    sections: tuple[str, ...]
    """Config sections (or top-level keys) whose values change this stage's results."""
    tables: tuple[str, ...] = ()
    """Tables of the store this stage writes (docs/store.md)."""
    needs: tuple[str, ...] = ()
    """Stages whose results this one reads; they must be done first."""
    version: int = 1
    """Bumped when the stage's code changes what it produces, so old runs redo it."""
    artifacts: Callable[[RunPaths, RunConfig], Sequence[Path]] = no_artifacts
    """Files that must exist for a 'done' record to count."""
    derived: Callable[[RunConfig], Any] = no_derived
    """Values derived from settings outside `sections` that still change the results."""
    distributed: bool = False
    """Whether every process runs the stage, sharing its work through `StageContext.ranks`; else
    rank 0 runs it alone while the others wait (docs/scaling.md)."""

    def fingerprint(self, config: RunConfig, upstream: dict[str, str]) -> str:
        return fingerprint({
            "stage": self.name,
            "version": self.version,
            "seed": config.seed,
            "settings": {s: config.section(s) for s in self.sections},
            "derived": self.derived(config),
            "upstream": {n: upstream[n] for n in self.needs},
        })
