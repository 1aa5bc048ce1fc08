"""Ready for a GPU: the pipeline, SAE training and the live dashboard, timed on the machine's device.

    PYTHONPATH=. python -m benchmarks.bench_gpu            # on a GPU: the `small` world (about 8 min on an H100)
    PYTHONPATH=. python -m benchmarks.bench_gpu --fast     # anywhere: the micro world (a few minutes on 2 CPU cores)

1. A synthetic world through every stage, one stage at a time in this process: on a GPU the `small`
   preset (Pythia-70m's architecture, pretrained here on the synthetic reviews) with the budget cut
   to minutes (`GPU_BUDGET`); with --fast the `micro` preset. Per stage: seconds and peak memory
   (GPU: `torch.cuda.max_memory_allocated` during the stage; CPU: the process's peak RSS so far).
2. A hub-kind run of the same shape from local files: run 1's pretrained base as a local model
   folder, its reviews as a review file, its tuned model brought along (`tuned_model=`, so `rlhf`
   only evaluates it): the path a Hugging Face model takes, without the network.
3. SAE training throughput on run 1's training activations, the paper's settings (batch 32, lr and
   L1 1e-3): our joint loop over every dictionary of the run, and SAELens's `SAETrainer` on the same
   batches one dictionary at a time when `sae_lens` is importable (benchmarks/bench_sae.py).
4. The live dashboard (`lfp_engine/serving.py`) on the device and on the CPU: the playground's
   implicit reward of a 64-token text and the lab's 8 completions of 20 tokens (unmodified and with
   features ablated), medians of --repeats; and on the device, that ablating nothing through the
   served model's hooks gives the bare model's completions exactly, and the device's implicit
   rewards against the CPU's.
Everything goes to --out/bench_gpu.json and, with --write-docs, into docs/benchmarks.md between
the markers of its "Scale" section (the card's name, or a line saying no GPU was available).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import resource
import shutil
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks.bench_live import median_ms, text_of
from benchmarks.bench_sae import BATCH, time_ours, time_saelens_each, training_inputs
from lfp_engine.models.hub import load_causal_lm
from lfp_engine.run.presets import preset
from lfp_engine.run.store import RunPaths
from lfp_engine.sae.activations import ActivationSet
from lfp_engine.serving import LiveRun
from lfp_engine.validation.ablation import intervened_completions
from lfp_engine.validation.interventions import NO_INTERVENTION, Intervention
from precompute.cli import resolve_config
from precompute.runner import run_stages
from precompute.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench_gpu:start -->", "<!-- bench_gpu:end -->"
GPU_BUDGET = ["synthetic.n_reviews=40000", "rlhf.steps=150", "evaluation.n_prompts=400", "contrastive.n_triples=3000",
              "probe.n_bootstrap=200", "probe.n_generation_prompts=200", "validate.n_prompts=400"]
"""The `small` preset cut to minutes on one GPU; SAEs keep the paper's 75,000 training examples."""
N_TOKENS, N_SAMPLES, NEW_TOKENS = 64, 8, 20


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def peak_memory_mib(device: torch.device) -> float:
    """GPU: the peak allocated since the last reset; CPU: the process's peak resident set so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_each_stage(out: Path, preset_name: str | None, settings: list[str], device: torch.device) -> list[dict]:
    """Every stage of the run at `out`, one `lfp run --stages S` at a time: seconds and peak memory."""
    paths = RunPaths(out)
    rows = []
    for stage in STAGES:
        name, config = resolve_config(paths, preset_name, None, settings)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        outcome = run_stages(paths, config, name, [stage.name])[0]
        rows.append({"stage": stage.name, "status": outcome.status, "seconds": time.perf_counter() - start,
                     "peak_mib": peak_memory_mib(device)})
        logging.getLogger("bench").info("%s: %s in %.1f s", stage.name, outcome.status, rows[-1]["seconds"])
    return rows


def hub_settings(world_run: Path, folder: Path) -> list[str]:
    """Run 1's pretrained base, reviews and tuned model as the local files a hub-kind run reads."""
    reviews = folder / "reviews.parquet"
    folder.mkdir(parents=True, exist_ok=True)
    pd.read_parquet(world_run / "world" / "corpus.parquet")[["text"]].to_parquet(reviews)
    return ["world.kind=hub", f"world.base_model={world_run / 'world' / 'base'}", f"world.corpus={reviews}",
            f"tuned_model={world_run / 'models' / 'tuned'}"]


def sae_throughput(run: Path, device: torch.device, n_examples: int) -> list[dict]:
    """Tokens per second of SAE training on the run's activations: ours (all dictionaries in one
    loop) and SAELens's trainer (one at a time), on the same batches in the same order."""
    inputs = training_inputs(ActivationSet(run / "activations" / "train"), n_examples, device)
    data, layers, n_steps, specs, untied = inputs.data, inputs.layers, inputs.n_steps, inputs.tied, inputs.untied
    time_ours(data, layers, specs, min(50, n_steps), str(device))  # warm-up: kernels, thread pool
    variants = {"ours, joint loop, tied (the sae stage)": lambda: time_ours(data, layers, specs, n_steps, str(device)),
                "ours, joint loop, untied": lambda: time_ours(data, layers, untied, n_steps, str(device))}
    try:
        import sae_lens  # noqa: F401

        variants["sae-lens SAETrainer, one at a time (standard = untied)"] = lambda: time_saelens_each(
            data, untied, layers, n_steps, str(device))
    except ImportError:
        logging.getLogger("bench").warning("sae_lens is not importable: SAELens's trainer is not timed")
    rows = []
    for name, timed in variants.items():
        seconds = timed()
        rows.append({"variant": name, "dictionaries": len(specs), "steps": n_steps, "seconds": seconds,
                     "tokens_per_s": n_steps * BATCH / seconds,
                     "dictionary_tokens_per_s": n_steps * BATCH * len(specs) / seconds})
    return rows


def live_requests(run: Path, device: str, repeats: int) -> tuple[LiveRun, dict]:
    """The playground's and the lab's request times on `device` (medians, ms)."""
    live = LiveRun(run, device)
    text = text_of(live, N_TOKENS)
    relevant = {k: tuple(v) for k, v in live.relevant.items() if v} or {min(live.saes): (0, 1)}
    ablate = Intervention(ablate=relevant)
    prompts = live.heldout_prompts[:N_SAMPLES]
    live.sampling = dataclasses.replace(live.sampling, min_new_tokens=NEW_TOKENS)
    playground, _ = median_ms(lambda: live.implicit_reward(text), repeats)
    lab, _ = median_ms(lambda: live.compare_generations(prompts, ablate, N_SAMPLES, NEW_TOKENS), repeats)
    return live, {"device": str(live.device), "playground_ms": playground, "lab_ms": lab,
                  "features_ablated": sum(len(v) for v in relevant.values())}


def ablating_nothing(live: LiveRun, cpu: LiveRun | None) -> dict:
    """On `live`'s device: the served model (intervention and capture hooks installed) with nothing
    ablated against a bare copy of the tuned model (same completions means same rewards); and, when
    `live` is not the CPU (`cpu` given), the implicit reward against the CPU's."""
    prompts = live.heldout_prompts[:N_SAMPLES]
    served, bare = (intervened_completions(model, live.tokenizer, prompts, NO_INTERVENTION, live.saes, live.reward,
                                           live.sampling, seed=0)
                    for model in (live.models["tuned"], load_causal_lm(str(live.models["tuned"].name_or_path),
                                                                       live.device, live.config.world.dtype)))
    check = {"identical_completions": served.texts == bare.texts}
    if cpu is not None:
        text = text_of(live, N_TOKENS)
        ours, theirs = live.implicit_reward(text).tokens["reward"], cpu.implicit_reward(text).tokens["reward"]
        check["implicit_reward_max_abs_difference_vs_cpu"] = float((ours - theirs).abs().max())
    return check


def markdown(results: dict) -> str:
    """The docs section: what ran where, and the tables."""
    lines = [START, "", f"Device: **{results['device']}**, {results['date']}. Command: `{results['command']}`."]
    if not results["gpu"]:
        lines += ["", "**No GPU was available** to the session that made these figures: they are the CPU figures "
                      "of the script's fast mode (`--fast`: the micro world instead of `small`). On a GPU run "
                      "`PYTHONPATH=. python -m benchmarks.bench_gpu --write-docs` ([scaling.md](scaling.md))."]
    for key, title in (("world_run", "Synthetic world, stage by stage"), ("hub_run", "Hub-kind run from local files")):
        run = results[key]
        memory = "GPU memory allocated, peak of the stage" if results["gpu"] else "process peak RSS so far"
        lines += ["", f"**{title}** ({run['what']}; total {sum(r['seconds'] for r in run['stages']):.0f} s):", "",
                  f"| stage | seconds | {memory} (MiB) |", "|---|---|---|"]
        lines += [f"| {r['stage']} | {r['seconds']:.1f} | {r['peak_mib']:.0f} |" for r in run["stages"]]
    lines += ["", f"**SAE training** on the world run's training activations ({results['sae'][0]['dictionaries']} "
                  f"dictionaries, {results['sae'][0]['steps']} steps of {BATCH}):", "",
              "| variant | seconds | tokens/s | dictionary-tokens/s |", "|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['seconds']:.2f} | {r['tokens_per_s']:,.0f} | {r['dictionary_tokens_per_s']:,.0f} |"
              for r in results["sae"]]
    if not any(r["variant"].startswith("sae-lens") for r in results["sae"]):
        lines += ["", "`sae_lens` was not importable where this ran, so SAELens's trainer was not timed beside ours "
                      "(the Sparse autoencoders section above compares them on the CPU, `benchmarks/bench_sae.py`)."]
    lines += ["", "**Live dashboard** (medians; models loaded once beforehand):", "",
              "| device | playground: 64-token implicit reward | lab: 8 x 20 tokens, unmodified + ablated |",
              "|---|---|---|"]
    lines += [f"| {r['device']} | {r['playground_ms']:.1f} ms | {r['lab_ms']:.0f} ms |" for r in results["live"]]
    check = results["ablating_nothing"]
    against_cpu = check.get("implicit_reward_max_abs_difference_vs_cpu")
    lines += ["", f"Ablating nothing on {results['live'][0]['device']}: completions (and so rewards) identical to "
                  f"the bare model's: {check['identical_completions']}"
                  + (f"; implicit reward, largest difference to the CPU's: {against_cpu:.2e}." if against_cpu is not None
                     else "."),
              "", END]
    return "\n".join(lines)


def write_docs(section: str) -> None:
    text = DOCS.read_text(encoding="utf-8")
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    DOCS.write_text(before + section + after, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="the micro world, for a CPU (default: small, for a GPU)")
    parser.add_argument("--out", default="benchmarks/out/gpu", help="folder for the runs and bench_gpu.json")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more settings for run 1")
    parser.add_argument("--write-docs", action="store_true", help="replace the Scale section of docs/benchmarks.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name, budget = ("micro", []) if args.fast else ("small", GPU_BUDGET)
    results = {"device": device_name(device), "gpu": device.type == "cuda", "date": time.strftime("%Y-%m-%d"),
               "command": "PYTHONPATH=. python -m benchmarks.bench_gpu" + (" --fast" if args.fast else "")}
    world = {"what": f"preset {name}: {preset(name).summary}", "stages": run_each_stage(out / name, name,
                                                                                        budget + args.set, device)}
    results["world_run"] = world
    hub = hub_settings(out / name, out / "files")
    results["hub_run"] = {"what": f"the {name} world's base and tuned models as local files, tuned_model given",
                          "stages": run_each_stage(out / "hub", name, hub, device)}
    results["sae"] = sae_throughput(out / name, device, 75000)
    served, on_device = live_requests(out / name, str(device), args.repeats)
    results["live"] = [on_device]
    on_cpu = None
    if device.type == "cuda":
        on_cpu, timings = live_requests(out / name, "cpu", args.repeats)
        results["live"].append(timings)
    results["ablating_nothing"] = ablating_nothing(served, on_cpu)
    (out / "bench_gpu.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    section = markdown(results)
    print(section)
    if args.write_docs:
        write_docs(section)


if __name__ == "__main__":
    main()
