"""Does the divergence report find what the planted world hides? The tiny world on several seeds.

For each seed, runs `lfp run --preset tiny --set seed=N` into its own folder (resuming or
skipping what is done; `--collect-only` only reads finished runs), then collects from the store
the recovery of the planted words (`divergence_recovery`), how far tuning moved each kind's
values toward the reward (tuned minus base), the verdict's answers and the run's stage times,
and writes them as a markdown section into docs/benchmarks.md (replacing the section between
the markers) and prints it:

    PYTHONPATH=. python -m benchmarks.bench_planted --root /tmp/planted --seeds 0,1,2

A run costs ~12-20 minutes of 2 CPU cores; run it under the machine's heavy-job lock if shared.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lfp_engine.report.verdict import read_verdict
from lfp_engine.run.manifest import read_manifest
from lfp_engine.run.store import RunStore

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench_planted: begin -->", "<!-- bench_planted: end -->"


@dataclass(frozen=True)
class SeedResult:
    """What one seed's run found."""

    seed: int
    recovery: pd.DataFrame
    answers: dict[str, str]
    """Verdict question key -> its answer's case ('raised', 'already_there', 'opposite_sign', ...)."""
    seconds: float
    """Sum of the stages' recorded times."""


def run_seed(root: Path, seed: int, preset: str) -> Path:
    out = root / f"seed{seed}"
    command = [sys.executable, "-m", "precompute.cli", "run", "--preset", preset, "--out", str(out),
               "--set", f"seed={seed}"]
    subprocess.run(command, check=True)
    return out


def collect(run: Path, seed: int) -> SeedResult:
    store = RunStore(run)
    seconds = sum(r.duration_s or 0.0 for r in read_manifest(store).values())
    answers = {f.key: f.answer for f in read_verdict(store).findings}
    return SeedResult(seed, store.read("divergence_recovery"), answers, seconds)


def _share(row: pd.Series, column: str) -> str:
    return f"{row[column]:.2f} [{row[f'{column}_ci_low']:.2f}, {row[f'{column}_ci_high']:.2f}]"


def _shift(row: pd.Series) -> str:
    return f"{row['shift']:+.3f} [{row['shift_ci_low']:+.3f}, {row['shift_ci_high']:+.3f}]"


def markdown(results: list[SeedResult], preset: str) -> str:
    """The section: one row per seed for the probe's flag, one for the behaviour control."""
    lines = [BEGIN, "", f"## Planted world: what the divergence report recovers (`{preset}`, seeds "
             f"{', '.join(str(r.seed) for r in results)})", "",
             "`PYTHONPATH=. python -m benchmarks.bench_planted --seeds "
             f"{','.join(str(r.seed) for r in results)}` (each seed a full `lfp run --preset {preset} --set seed=N`). "
             "Recall: share of a kind's planted words flagged divergent, 95% Clopper-Pearson interval (for ordinary "
             "words, the false-alarm rate); precision: share of all flags that are planted words. Shift: mean over "
             "the kind's words of sign(reward) x (tuned - base) cross-fitted probe value, 95% bootstrap over "
             "words (> 0: tuning moved them toward the reward). Behaviour (the control): words whose use tuning "
             "changed toward the reward (McNemar, BH q < 0.05).", "",
             "| seed | evidence | contested recall | reward-only recall | ordinary false alarms | precision | "
             "flagged | reward-only shift | contested shift | verdict (reward / learned / divergence) | stage time |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for evidence, table in r.recovery.groupby("evidence", sort=False):
            by = table.set_index("kind")
            verdict = " / ".join(r.answers.get(k, "-") for k in ("reward", "learned", "divergence"))
            shifts = (_shift(by.loc["reward_only"]), _shift(by.loc["contested"])) if evidence == "probe" else ("", "")
            lines.append(f"| {r.seed} | {evidence} | {_share(by.loc['contested'], 'recall')} | "
                         f"{_share(by.loc['reward_only'], 'recall')} | {_share(by.loc['ordinary'], 'recall')} | "
                         f"{_share(by.loc['all'], 'precision') if by.loc['all', 'n_flagged'] else '-'} | "
                         f"{int(by.loc['all', 'n_flagged'])} of {int(by.loc['all', 'n_words'])} | {shifts[0]} | "
                         f"{shifts[1]} | {verdict if evidence == 'probe' else ''} | "
                         f"{f'{r.seconds / 60:.1f} min' if evidence == 'probe' else ''} |")
    return "\n".join([*lines, "", END])


def write_section(section: str, doc: Path = DOC) -> None:
    text = doc.read_text()
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("runs/planted"), help="folder of the seeds' runs")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--collect-only", action="store_true", help="read finished runs, run nothing")
    parser.add_argument("--no-write", action="store_true", help="print the section without writing the docs")
    args = parser.parse_args()
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        run = args.root / f"seed{seed}" if args.collect_only else run_seed(args.root, seed, args.preset)
        results.append(collect(run, seed))
    section = markdown(results, args.preset)
    print(section)
    if not args.no_write:
        write_section(section)


if __name__ == "__main__":
    main()
