"""`lfp`: the command line that fills a run's store.

    lfp run --preset tiny --out runs/tiny        every stage, skipping those already done
    lfp run --out runs/tiny --stages rlhf        just some stages (their inputs must be done)
    lfp run --out runs/x --set seed=3 --set rlhf.beta=0.2 --config my.toml
    lfp status runs/tiny                         the run's manifest
    lfp report runs/tiny [--json]                the run's answers: did tuning teach the feedback, where it diverges
    lfp presets                                  the named starting points
    lfp settings [SECTION] [--preset tiny]       every setting: type or choices, default, meaning
    lfp sae-sweep runs/tiny --l1 0.001,0.002     SAEs retrained per L1 coefficient (paper fig. 8)
    lfp sae-compare runs/tiny                    tied vs untied, divergent vs lowest layers (tables 11, 12)
    lfp app runs/tiny [--port 8501]              the dashboard on a run

Settings are resolved before anything is written: a new run starts from its preset; an
existing run continues from the config stored in it, with --config and --set layered on top.
Errors a user can fix print as one line (`lfp: error: ...`) with exit status 2.
"""

from __future__ import annotations

import argparse
import inspect
import ipaddress
import json
import logging
import os
import socket
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lfp_engine.run.config import SECTIONS, RunConfig, build_config, settings_help
from lfp_engine.run.errors import ConfigError, LfpError, RunFolderError
from lfp_engine.run.folder import check_free, open_run
from lfp_engine.run.manifest import read_config, read_manifest
from lfp_engine.run.overrides import known_settings, load_config_file, nest, parse_override
from lfp_engine.run.presets import PRESETS, preset
from lfp_engine.run.store import RunPaths, RunStore

from .launch import LAUNCHERS

log = logging.getLogger("lfp")


def resolve_config(paths: RunPaths, preset_name: str | None, config_file: Path | None,
                   overrides: Sequence[str]) -> tuple[str, RunConfig]:
    stored = read_config(RunStore(paths.root))
    layers: list[dict[str, Any]] = []
    if stored is not None:
        stored_preset, stored_config = stored
        if preset_name and preset_name != stored_preset:
            raise RunFolderError(
                f"{paths.root} is a run of preset {stored_preset!r}, not {preset_name!r}; "
                "choose another --out for a new run"
            )
        name = stored_preset
        # The preset first, then the stored config over it: settings the run was made with
        # stay as they were, and sections added since (new stages) take the preset's values.
        layers += [{"preset": name}, preset(name).overrides, known_settings(stored_config, RunConfig)]
    else:
        name = preset_name or "tiny"
        layers += [{"preset": name}, preset(name).overrides]
    if config_file is not None:
        layers.append(load_config_file(config_file))
    if overrides:
        layers.append(nest(dict(parse_override(o) for o in overrides)))
    config = build_config(layers)
    if config.preset != name:
        raise ConfigError(f"setting preset cannot change an existing run's preset ({name!r}); use --preset for new runs")
    return name, config


def _setup_logging(verbose: bool, process: int = 0) -> None:
    """Log to the console (the run's log file is `run.folder.open_run`'s, once it holds the folder).
    Processes other than rank 0 of a distributed run (`process` > 0) log warnings and errors only,
    each line marked with the process, so the console tells one run's story once."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    marker = f"[process {process}] " if process else ""
    console.setFormatter(logging.Formatter(f"%(asctime)s {marker}%(name)s: %(message)s", "%H:%M:%S"))
    console.setLevel(logging.WARNING if process else logging.DEBUG if verbose else logging.INFO)
    root.addHandler(console)
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_run(args: argparse.Namespace) -> int:
    out = Path(args.out or f"runs/{args.preset or 'tiny'}")
    paths = RunPaths(out)
    # Before anything else, and in a launched process before its process group forms, so no process
    # of this run holds the folder yet: another run that does is named at once.
    check_free(paths)
    name, config = resolve_config(paths, args.preset, Path(args.config) if args.config else None, args.set or [])
    if (args.nproc or args.accelerate_config) and not args.launcher:
        raise ConfigError("--nproc and --accelerate-config go with --launcher torchrun or accelerate")
    selected = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    force = [s.strip() for s in args.force.split(",") if s.strip()] if args.force else []
    if args.launcher:
        from .launch import launch
        from .runner import check_run

        check_run(paths, config, selected, force)  # here, before any process starts: one line, nothing made
        return launch(args.launcher, args.nproc, args.accelerate_config, run_arguments(args, out))
    from lfp_engine.run.distributed import disconnect, from_environment

    ranks = from_environment()
    if ranks.rank:  # only rank 0 shows progress bars; set before tqdm is first imported
        os.environ.setdefault("TQDM_DISABLE", "1")
    from .runner import run_stages

    _setup_logging(args.verbose, ranks.rank)
    try:
        outcomes = run_stages(paths, config, name, selected, force, ranks)
    finally:
        disconnect()
    for o in outcomes:
        log.info("%-12s %s%s", o.stage, o.status, f" in {o.duration_s:.1f} s" if o.status != "skipped" else "")
    log.info("results in %s; `lfp status %s` shows the manifest", paths.db, out)
    return 0


def run_arguments(args: argparse.Namespace, out: Path) -> list[str]:
    """The `lfp run` arguments that each launched process gets: these (the run folder `cmd_run`
    resolved), without the launcher's own."""
    argv = ["run", "--out", str(out)]
    for option in ("preset", "stages", "force", "config"):
        if getattr(args, option):
            argv += [f"--{option}", getattr(args, option)]
    for setting in args.set or []:
        argv += ["--set", setting]
    return argv + (["--verbose"] if args.verbose else [])


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def cmd_status(args: argparse.Namespace) -> int:
    from lfp_engine.report.verdict import read_verdict

    from .stages import STAGES

    paths = RunPaths(args.run)
    store = RunStore(paths.root)
    if not store.exists():
        raise RunFolderError(f"{paths.root} is not a run folder (no {store.path.name})")
    stored = read_config(store)
    manifest = read_manifest(store)
    if args.json:
        print(json.dumps({"preset": stored[0] if stored else None, "config": stored[1] if stored else None,
                          "stages": {k: v.__dict__ for k, v in manifest.items()}}, indent=2, default=str))
        return 0
    if stored:
        config = stored[1]
        print(f"run {paths.root}: preset {stored[0]}, task {config.get('task')}, seed {config.get('seed')}")
    for stage in STAGES:
        record = manifest.get(stage.name)
        if record is None:
            print(f"  {stage.name:<12} not run")
            continue
        timing = f"{record.duration_s:7.1f} s" if record.duration_s is not None else "        "
        print(f"  {stage.name:<12} {record.status:<8} {timing}  {record.finished_at or record.started_at}")
        if record.error:
            print(f"      error: {record.error}")
        for key, value in record.outputs.items():
            if not isinstance(value, (dict, list)) or len(str(value)) < 60:
                print(f"      {key}: {_short(value)}")
    answers = read_verdict(store).text()
    if answers:
        print(f"\n{answers}")
    return 0


NO_ANSWERS = "No answers yet: the `rlhf` and `probe` stages give them (`lfp run --out {run}`)."


def cmd_report(args: argparse.Namespace) -> int:
    """The verdict (`lfp_engine.report.verdict`): the same record the Story and Lexicon pages show."""
    from lfp_engine.report.divergence import report_text
    from lfp_engine.report.verdict import read_verdict

    paths = _run_folder(args.run)
    store = RunStore(paths.root)
    preset, config = read_config(store) or ("?", {})
    verdict = read_verdict(store)
    if args.json:
        print(json.dumps({"run": str(paths.root), "preset": preset, "task": config.get("task"),
                          "seed": config.get("seed"), **verdict.to_dict()}, indent=2))
        return 0
    print(f"run {paths.root}: preset {preset}, task {config.get('task')}, seed {config.get('seed')}\n")
    print(verdict.text() or NO_ANSWERS.format(run=args.run))
    tables = store.tables()
    if "lfp_divergence" in tables:
        recovery = store.read("divergence_recovery") if "divergence_recovery" in tables else None
        print("\n" + report_text(store.read("lfp_divergence", order_by="rank"), recovery))
    return 0


def cmd_presets(_: argparse.Namespace) -> int:
    for p in PRESETS.values():
        print(f"{p.name:<14} {p.summary}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    """Every setting with its type or choices, its default and its docstring, read from the code."""
    values = build_config([{"preset": args.preset}, preset(args.preset).overrides]).to_dict() if args.preset else None
    heading = None
    for row in settings_help(args.section):
        section, _, key = row.key.rpartition(".")
        if section != heading:
            heading = section
            print(f"[{section or 'run'}] {inspect.getdoc(SECTIONS.get(section, RunConfig)).splitlines()[0]}")
        line = f"  {row.key} ({row.type}) = {json.dumps(row.default)}"
        value = None if values is None else values[section][key] if section else values[key]
        if values is not None and value != row.default:
            line += f"   [{args.preset}: {json.dumps(value)}]"
        print(line)
        print(textwrap.indent(textwrap.fill(" ".join(row.doc.split()), width=94), "      "))
    return 0


def _run_folder(run: str) -> RunPaths:
    """The paths of an existing run, or a one-line error saying how to make it."""
    paths = RunPaths(run)
    if not RunStore(paths.root).exists():
        raise RunFolderError(f"{paths.root} is not a run folder (no lfp.duckdb): make one with `lfp run --out {run}`")
    return paths


def _existing_run(args: argparse.Namespace) -> tuple[RunPaths, RunConfig]:
    """An existing run and its config, for an experiment that writes into it (hold it with `open_run`)."""
    paths = _run_folder(args.run)
    check_free(paths)
    _, config = resolve_config(paths, None, None, args.set or [])
    _setup_logging(args.verbose)
    return paths, config


def _print_table(frame) -> None:
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def _parse_numbers(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def cmd_sae_sweep(args: argparse.Namespace) -> int:
    from .experiments import l1_sweep, summary

    paths, config = _existing_run(args)
    coefficients = _parse_numbers(args.l1, "--l1")
    with open_run(paths):
        table = l1_sweep(paths, config, coefficients)
        RunStore(paths.root).write({"sae_l1_sweep": table})
        log.info("wrote table sae_l1_sweep (%d rows) to %s", len(table), paths.db)
    _print_table(summary(table, ["l1_coefficient"]))
    return 0


def cmd_sae_compare(args: argparse.Namespace) -> int:
    from .experiments import compare, summary

    paths, config = _existing_run(args)
    with open_run(paths):
        table = compare(paths, config)
        RunStore(paths.root).write({"sae_comparison": table})
        log.info("wrote table sae_comparison (%d rows) to %s", len(table), paths.db)
    _print_table(summary(table, ["layer_choice", "architecture"]))
    return 0


LOOPBACK = "localhost"
"""Where `lfp app` listens unless told otherwise: this machine only (Streamlit's own default is every
interface, which would let anyone on the network load models, run generation and write quiz answers)."""


def streamlit_command(run: Path, port: int, address: str) -> list[str]:
    """`streamlit run app/main.py -- --run RUN`, headless, on `address`: the user opens the printed address."""
    import app

    return [sys.executable, "-m", "streamlit", "run", str(Path(app.__file__).parent / "main.py"),
            "--server.headless", "true", "--server.port", str(port), "--server.address", address,
            "--browser.gatherUsageStats", "false", "--", "--run", str(run)]


def is_loopback(address: str) -> bool:
    """Whether `address` reaches this machine only (a name is resolved; one that does not resolve is not)."""
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(address, None)}
    except OSError:
        return False
    return bool(resolved) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in resolved)


def _port_free(port: int, address: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def cmd_app(args: argparse.Namespace) -> int:
    paths = _run_folder(args.run)
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {args.port}")
    if not args.address.strip():
        raise ConfigError("--address is empty: give a host name or IP address (default localhost)")
    if not _port_free(args.port, args.address):
        raise ConfigError(f"port {args.port} is in use (another dashboard?): choose another with --port")
    host = args.address if args.address not in ("0.0.0.0", "::") else socket.gethostname()
    if not is_loopback(args.address):
        print(f"lfp: warning: listening on {args.address}: anyone who can reach this machine on port {args.port} can "
              "use the dashboard, load models, run generation and write quiz answers; share it behind an "
              "authenticating proxy or with Streamlit's authentication (docs/guide.md, Sharing the dashboard)",
              file=sys.stderr, flush=True)
    print(f"LFP Explorer on {paths.root}: open http://{host}:{args.port} in a browser (Ctrl+C stops it)", flush=True)
    command = streamlit_command(paths.root, args.port, args.address)
    # Become the server: Ctrl+C and signals reach it directly, and no orphan outlives `lfp app`.
    os.execv(command[0], command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lfp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) the pipeline's stages")
    run.add_argument("--preset", help=f"starting point for a new run: {', '.join(PRESETS)} (default tiny)")
    run.add_argument("--out", help="run folder (default runs/<preset>)")
    run.add_argument("--stages", help="comma-separated stages to run (default: all)")
    run.add_argument("--force", help="comma-separated stages to redo even when up to date")
    run.add_argument("--config", help="TOML or JSON file of settings")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting (repeatable)")
    run.add_argument("--launcher", choices=LAUNCHERS,
                     help="run as --nproc processes on this machine, started by torchrun or accelerate launch "
                          "(docs/scaling.md; for several machines call them yourself)")
    run.add_argument("--nproc", type=int, help="processes for --launcher (default: one per GPU, else 2)")
    run.add_argument("--accelerate-config", help="accelerate's config file for --launcher accelerate (default: "
                                                 "accelerate's own default config, else data parallel)")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=cmd_run)
    status = sub.add_parser("status", help="print a run's manifest")
    status.add_argument("run", help="run folder")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    report = sub.add_parser("report", help="the run's answers: did tuning teach the model the feedback, and where "
                                           "does it diverge (the Story page's verdict)")
    report.add_argument("run", help="run folder")
    report.add_argument("--json", action="store_true", help="the same answers as JSON")
    report.set_defaults(func=cmd_report)
    presets = sub.add_parser("presets", help="list the presets")
    presets.set_defaults(func=cmd_presets)
    settings = sub.add_parser("settings", help="every setting: its type or choices, default and meaning")
    settings.add_argument("section", nargs="?", help="only this section (e.g. sae) or top-level setting (e.g. task)")
    settings.add_argument("--preset", help="also show where this preset's value differs from the default")
    settings.set_defaults(func=cmd_settings)
    sweep = sub.add_parser("sae-sweep", help="retrain the run's SAEs for several L1 coefficients (paper figure 8)")
    sweep.add_argument("run", help="run folder (its `activations` stage must be done)")
    sweep.add_argument("--l1", default="0.001,0.002,0.004,0.006,0.008,0.01",
                       help="comma-separated L1 coefficients (default: the paper's range 0.001..0.01)")
    compare = sub.add_parser("sae-compare",
                             help="tied vs untied SAEs on the most divergent vs the lowest layers (tables 11, 12)")
    compare.add_argument("run", help="run folder (its `activations` stage must be done)")
    for command, func in ((sweep, cmd_sae_sweep), (compare, cmd_sae_compare)):
        command.add_argument("--set", action="append", metavar="KEY=VALUE",
                             help="override a setting for this experiment only, e.g. sae.n_train_examples=20000")
        command.add_argument("-v", "--verbose", action="store_true")
        command.set_defaults(func=func)
    dashboard = sub.add_parser("app", help="start the dashboard on a run (Streamlit)")
    dashboard.add_argument("run", help="run folder to open first (the sidebar lists the others under runs/)")
    dashboard.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    dashboard.add_argument("--address", default=LOOPBACK,
                           help="address to listen on (default localhost: this machine only; 0.0.0.0 opens the "
                                "dashboard to every network the machine is on; see docs/guide.md, Sharing the "
                                "dashboard)")
    dashboard.set_defaults(func=cmd_app)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LfpError as err:
        print(f"lfp: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lfp: interrupted; `lfp run` again resumes at the first unfinished stage", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
