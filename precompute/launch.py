"""`lfp run --launcher torchrun|accelerate --nproc N`: the same run as N processes on this machine.

A convenience over the launchers people already use (docs/scaling.md): it writes their
command line and becomes it, so Ctrl+C and a killed process reach the launcher, which stops every
process. `torchrun --standalone` rendezvouses on a free local port; `accelerate launch` uses the
user's accelerate config when given one (or when `accelerate config` wrote a default), else plain
data parallelism over N processes. For several machines (Slurm) call either launcher yourself with
the same `-m precompute.cli run ...` arguments.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lfp_engine.run.errors import ConfigError

LAUNCHERS = ("torchrun", "accelerate")


def default_nproc() -> int:
    """One process per GPU; two on a machine without one (each then uses half the cores)."""
    import torch

    return torch.cuda.device_count() or 2


def accelerate_default_config() -> Path:
    """Where `accelerate config` writes its default (what `accelerate launch` reads without --config_file)."""
    from accelerate.commands.config.config_args import default_config_file

    return Path(default_config_file)


def launcher_command(launcher: str, nproc: int, accelerate_config: str | None, run_argv: list[str]) -> list[str]:
    """The command that starts `nproc` processes of `python -m precompute.cli <run_argv>`."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                "-m", "precompute.cli", *run_argv]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(nproc),
               "--num_machines", "1"]
    if accelerate_config:
        if not Path(accelerate_config).is_file():
            raise ConfigError(f"--accelerate-config {accelerate_config}: no such file")
        command += ["--config_file", accelerate_config]
    elif not accelerate_default_config().is_file() and nproc > 1:
        command += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return command + ["--module", "precompute.cli", *run_argv]


def launch(launcher: str, nproc: int | None, accelerate_config: str | None, run_argv: list[str]) -> int:
    """Become the launcher (`os.execv`): its exit status is the run's."""
    if accelerate_config and launcher != "accelerate":
        raise ConfigError("--accelerate-config goes with --launcher accelerate")
    command = launcher_command(launcher, nproc or default_nproc(), accelerate_config, run_argv)
    print(f"lfp: launching {' '.join(command[2:])}", file=sys.stderr, flush=True)
    os.execv(command[0], command)
    return 0  # not reached: the process is the launcher now
