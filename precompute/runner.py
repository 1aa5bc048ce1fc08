"""The runner: the stages in order, each skipped when done with the same inputs, resumable.

Stages follow the contract of `stage.py`. The runner
- fingerprints the stage (its config sections, seed, version, and the fingerprints of the
  stages it reads), and skips it when the manifest holds a 'done' record with that
  fingerprint whose files still exist;
- otherwise marks it 'running', runs it, and commits its tables together with its 'done'
  record in one transaction; files the stage writes go through `lfp_engine.run.atomic`;
- on failure records 'failed' with the error and stops, leaving earlier stages intact.
A run killed at any moment therefore resumes at the first stage not recorded done, and
because every stage is seeded from the run seed, ends with the same results. Before any of this
the run is checked, reading only (`check_run`), and its folder opened by `run.folder.open_run`:
made, locked against a second writer, and logged to, once.

Launched as several processes (`lfp_engine.run.distributed`), every process runs this loop: rank 0
alone reads and writes the store and decides what to skip, and tells the others; a stage declared
`distributed` runs in every process, sharing its work, any other in rank 0 while the rest wait. A
process killed mid-stage takes the launcher's whole job down with it (torchrun and accelerate stop
the others), which leaves the stage recorded 'running': the next `lfp run`, with any number of
processes, does it again.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch

from lfp_engine import __version__
from lfp_engine.run.atomic import sweep_temporaries
from lfp_engine.run.config import RunConfig
from lfp_engine.run.distributed import SINGLE, Ranks, connect
from lfp_engine.run.errors import StageOrderError
from lfp_engine.run.folder import open_run
from lfp_engine.run.tasks import task_spec
from lfp_engine.worlds.build import check_world_sources
from lfp_engine.models.hub import resolve_device
from lfp_engine.run.manifest import StageRecord, config_statement, ensure_tables, library_versions, now, read_manifest
from lfp_engine.run.seeding import derive_seed, seed_everything
from lfp_engine.run.store import RunPaths, RunStore

from .stage import USABLE, Stage, StageContext
from .stages import STAGES

log = logging.getLogger("lfp")


@dataclass
class StageOutcome:
    stage: str
    status: str
    """'done' (ran now), 'skipped' (up to date) or 'failed'."""
    duration_s: float = 0.0


def _check_selection(stages: list[Stage], selected: Sequence[str] | None) -> list[Stage]:
    names = [s.name for s in stages]
    if not selected:
        return stages
    unknown = [s for s in selected if s not in names]
    if unknown:
        raise StageOrderError(f"unknown stage(s) {unknown}; stages are: {', '.join(names)}")
    return [s for s in stages if s.name in selected]


def _order_error(stage: Stage, missing: list[str], paths: RunPaths) -> StageOrderError:
    return StageOrderError(f"stage {stage.name!r} needs {missing} to be done first: run "
                           f"`lfp run --out {paths.root} --stages {','.join(missing + [stage.name])}`")


def _check_prerequisites(chosen: list[Stage], manifest: dict[str, StageRecord], paths: RunPaths) -> None:
    """Refuse, before writing anything, a stage whose inputs are neither done nor about to run."""
    available = {name for name, record in manifest.items() if record.status in USABLE}
    for stage in chosen:
        missing = [n for n in stage.needs if n not in available]
        if missing:
            raise _order_error(stage, missing, paths)
        available.add(stage.name)


def check_run(paths: RunPaths, config: RunConfig, selected: Sequence[str] | None = None,
              force: Sequence[str] = ()) -> None:
    """Every check a run can fail before it writes anything: the selection, the stages' inputs in
    the manifest, and, when the world is to be built, that its sources can be reached (README: bad
    input touches nothing). Reads only."""
    chosen = _check_selection(STAGES, selected)
    manifest = read_manifest(RunStore(paths.root))
    _check_prerequisites(chosen, manifest, paths)
    world = next(s for s in STAGES if s.name == "world")
    if world in chosen and not _up_to_date(world, world.fingerprint(config, {}), manifest, force, paths, config):
        check_world_sources(config, task_spec(config.task))


def run_stages(paths: RunPaths, config: RunConfig, preset: str, selected: Sequence[str] | None = None,
               force: Sequence[str] = (), ranks: Ranks = SINGLE) -> list[StageOutcome]:
    """Run (or skip) the selected stages in pipeline order; see the module docstring.

    With several processes (`ranks`, from the launcher) every process calls this: rank 0 alone reads
    and writes the store and decides what runs, and tells the others; a stage that shares its work
    runs on all of them, any other on rank 0 while the rest wait. Nothing is written before
    `check_run` passes; then the run folder is made, locked and logged to (`run.folder.open_run`)."""
    store = RunStore(paths.root)
    chosen = _check_selection(STAGES, selected)
    device = ranks.device(resolve_device(config.device))
    connect(ranks, device, config.distributed.timeout_minutes)
    ranks.from_main(partial(check_run, paths, config, selected, force))
    with open_run(paths, ranks):
        manifest = ranks.from_main(lambda: _start_run(paths, store, config, preset))
        return _run_chosen(chosen, manifest, paths, store, config, force, device, ranks)


def _run_chosen(chosen: list[Stage], manifest: dict[str, StageRecord], paths: RunPaths, store: RunStore,
                config: RunConfig, force: Sequence[str], device: torch.device, ranks: Ranks) -> list[StageOutcome]:
    current: dict[str, str] = {}  # fingerprints of stages that are up to date in this run
    outcomes: list[StageOutcome] = []
    for stage in STAGES:
        if stage not in chosen:
            record = manifest.get(stage.name)
            if record is not None and record.status in USABLE:
                current[stage.name] = record.fingerprint
            continue
        missing = [n for n in stage.needs if n not in current]
        if missing:
            raise _order_error(stage, missing, paths)
        fp = stage.fingerprint(config, current)
        current[stage.name] = fp
        if ranks.from_main(partial(_up_to_date, stage, fp, manifest, force, paths, config)):
            log.info("stage %-12s up to date (fingerprint %s), skipped", stage.name, fp)
            outcomes.append(StageOutcome(stage.name, "skipped"))
            continue
        duration = _run_one(stage, fp, paths, store, config, device, manifest, ranks)
        manifest = ranks.from_main(partial(read_manifest, store))
        outcomes.append(StageOutcome(stage.name, manifest[stage.name].status, duration))
    return outcomes


def _start_run(paths: RunPaths, store: RunStore, config: RunConfig, preset: str) -> dict[str, StageRecord]:
    """In the held run folder: leftovers of interrupted writes swept away, the config recorded.
    Returns the manifest."""
    log.info("run folder %s (preset %s, seed %d, task %s)", paths.root, preset, config.seed, config.task)
    for leftover in sweep_temporaries(paths.root):
        log.info("removed the leftover of an interrupted write: %s", leftover)
    ensure_tables(store)
    store.write({}, [config_statement(preset, config.to_dict(), __version__)])
    return read_manifest(store)


def _up_to_date(stage: Stage, fp: str, manifest: dict[str, StageRecord], force: Sequence[str], paths: RunPaths,
                config: RunConfig) -> bool:
    record = manifest.get(stage.name)
    return (record is not None and record.status == "done" and record.fingerprint == fp
            and stage.name not in force and all(p.exists() for p in stage.artifacts(paths, config)))


def _run_one(stage: Stage, fp: str, paths: RunPaths, store: RunStore, config: RunConfig, device: torch.device,
             manifest: dict[str, StageRecord], ranks: Ranks) -> float:
    """Run one stage and, on rank 0, record it; returns its duration in seconds."""
    seed = derive_seed(config.seed, stage.name)
    settings = {s: config.section(s) for s in stage.sections}
    record = StageRecord(stage=stage.name, status="running", fingerprint=fp, settings=settings, seed=seed,
                         versions=library_versions(), started_at=now())
    ranks.from_main(partial(store.write, {}, [record.upsert()]))
    here = ranks.is_main or stage.distributed
    shared = f", {ranks.size} processes" if ranks.distributed and stage.distributed else ""
    log.info("stage %-12s running (seed %d, device %s%s)", stage.name, seed, device, shared)
    seed_everything(seed)
    start = time.monotonic()
    ctx = StageContext(paths=paths, store=store, config=config, seed=seed, device=device, manifest=manifest,
                       ranks=ranks)
    try:
        result = stage.run(ctx) if here else None
        if ranks.is_main:
            undeclared = sorted(set(result.tables) - set(stage.tables))
            if undeclared:
                raise RuntimeError(f"stage {stage.name!r} wrote tables it does not declare: {undeclared}")
    except BaseException as err:
        if ranks.is_main:
            record.status = "failed"
            record.error = "".join(traceback.format_exception_only(type(err), err)).strip()
            record.finished_at = now()
            record.duration_s = time.monotonic() - start
            store.write({}, [record.upsert()])
        else:
            log.error("stage %s failed in process %d: %s", stage.name, ranks.rank, err)
        raise
    if not ranks.is_main:
        return time.monotonic() - start
    record.status = "done" if result.complete else "incomplete"
    record.inputs = result.inputs
    record.outputs = result.outputs.to_record()
    record.finished_at = now()
    record.duration_s = time.monotonic() - start
    store.write(result.tables, [*result.statements, record.upsert()])
    for name, frame in result.tables.items():
        log.info("stage %-12s wrote table %s (%d rows) to %s", stage.name, name, len(frame), store.path)
    log.info("stage %-12s %s in %.1f s", stage.name, record.status, record.duration_s)
    return record.duration_s
