"""Does the divergence report find what the planted world hides? The tiny world on several seeds.

For each seed, runs `lfp run --preset tiny --set seed=N` into its own folder (resuming or
skipping what is done; `--collect-only` only reads finished runs), then collects from the store
the recovery of the planted words per lens (`divergence_recovery`: the representation lens, the
policy lens and the behaviour control, each scored by what it should find), the representation
flag's calibration on null words (`flag_calibration`) and, beside it, the same flag under the old
rule (intervals over the word's contexts only, `word_values.se_contexts`), the policy lens's
Spearman with the lexicon on held-out ordinary words, how far tuning moved each kind's probe values
toward the reward, the verdict's answers and the run's stage times, and writes them as a markdown
section into docs/benchmarks.md (replacing the section between the markers) and prints it:

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

from lfp_engine.report.divergence import divergence_table, recovery_table
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
    contexts_only: pd.DataFrame
    """The representation lens's recovery under the old rule: intervals over the word's contexts only."""
    calibration: pd.DataFrame
    spearman: pd.Series
    """The policy lens's Spearman row on held-out ordinary words (`policy_metrics`)."""
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


def contexts_only(store: RunStore) -> pd.DataFrame:
    """The representation lens's recovery had the intervals covered the word's contexts alone (the rule
    before issue 21), on the same run's values."""
    values = store.read("word_values")
    half = 1.959964 * values["se_contexts"]
    narrow = values.assign(ci_low=values["value"] - half, ci_high=values["value"] + half)
    report = divergence_table(narrow, store.read("behaviour_words"))
    recovery = recovery_table(report, store.read("world_lexicon"))
    return recovery[recovery["lens"] == "representation"]


def collect(run: Path, seed: int) -> SeedResult:
    store = RunStore(run)
    seconds = sum(r.duration_s or 0.0 for r in read_manifest(store).values())
    answers = {f.key: f.answer for f in read_verdict(store).findings}
    metrics = store.read("policy_metrics").set_index(["subset", "metric"])
    return SeedResult(seed, store.read("divergence_recovery"), contexts_only(store), store.read("flag_calibration"),
                      metrics.loc[("test_ordinary", "spearman")], answers, seconds)


def _share(row: pd.Series, column: str) -> str:
    return f"{row[column]:.2f} [{row[f'{column}_ci_low']:.2f}, {row[f'{column}_ci_high']:.2f}]"


def _count(row: pd.Series, column: str, share: str) -> str:
    return f"{int(row[column])} of {int(row['n_words'])} ({_share(row, share)})"


def markdown(results: list[SeedResult], preset: str) -> str:
    """The section: per seed, one row per lens (and the representation lens under the old rule)."""
    seeds = ",".join(str(r.seed) for r in results)
    lines = [BEGIN, "", f"## Planted world: what each lens recovers (`{preset}`, seeds {seeds.replace(',', ', ')})", "",
             f"`PYTHONPATH=. python -m benchmarks.bench_planted --seeds {seeds}` (each seed a full "
             f"`lfp run --preset {preset} --set seed=N`). Each lens is scored by what it should find "
             "(docs/store.md, `divergence_recovery`): contested words read against the reward by both lenses; "
             "reward-only words read on the reward's side by the policy and *not* against it inside the model (a "
             "representation flag there is a false alarm); ordinary words read against the reward by neither. "
             "Counts with the share and its 95% Clopper-Pearson interval. Precision: the share of a lens's "
             "against-the-reward readings that are on contested words. 'representation, old rule': the same flag "
             "with intervals over the word's contexts only (before issue 21). Calibration: the chance the flag "
             "fires on a null word (the triples' neutral words, read held out, a reward sign drawn at random), "
             "nominal 5%. Policy Spearman: with the lexicon on held-out ordinary words, 95% bootstrap.", "",
             "| seed | lens | contested against | reward-only on the reward's side | reward-only against | "
             "ordinary against | precision | calibration (nominal 0.05) | policy Spearman | verdict (reward / "
             "policy / learned / divergence) | stage time |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        tables = [(lens, t) for lens, t in r.recovery.groupby("lens", sort=False)]
        tables.insert(1, ("representation, old rule", r.contexts_only))
        for lens, table in tables:
            by = table.set_index("kind")
            first = lens == "representation"
            calibration = r.calibration[r.calibration["model"] == "tuned"]
            cal = (f"{calibration['rate'].iloc[0]:.3f} [{calibration['rate_ci_low'].iloc[0]:.3f}, "
                   f"{calibration['rate_ci_high'].iloc[0]:.3f}], {int(calibration['n_flagged'].iloc[0])} of "
                   f"{int(calibration['n_words'].iloc[0])} flagged") if first and not calibration.empty else ""
            spearman = (f"{r.spearman['value']:.2f} [{r.spearman['ci_low']:.2f}, {r.spearman['ci_high']:.2f}]"
                        if lens == "policy" else "")
            verdict = " / ".join(r.answers.get(k, "-") for k in ("reward", "policy", "learned", "divergence"))
            precision = _share(by.loc["all"], "precision") if by.loc["all", "n_opposite"] else "-"
            lines.append(f"| {r.seed} | {lens} | {_count(by.loc['contested'], 'n_opposite', 'flag_rate')} | "
                         f"{_count(by.loc['reward_only'], 'n_agree', 'recall') if 'policy' in lens else ''} | "
                         f"{_count(by.loc['reward_only'], 'n_opposite', 'flag_rate')} | "
                         f"{_count(by.loc['ordinary'], 'n_opposite', 'flag_rate')} | {precision} | {cal} | {spearman} | "
                         f"{verdict if first else ''} | {f'{r.seconds / 60:.1f} min' if first else ''} |")
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
