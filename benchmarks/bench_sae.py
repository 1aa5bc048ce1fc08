"""How fast are SAE training and activation capture? Against SAELens's trainer and a bare forward pass.

Needs a run whose `activations` stage is done (default runs/tiny) and the `sae-lens` package,
which is not a dependency of LFP Explorer: run it from a separate environment that has both
sae-lens and this repository's requirements, with the same torch:

    python3 -m venv /work/bench-venv
    /work/bench-venv/bin/pip install torch==2.13.0 && /work/bench-venv/bin/pip install sae-lens
    PYTHONPATH=. /work/bench-venv/bin/python -m benchmarks.bench_sae --run runs/tiny

1. SAE training, on the same in-memory activations (the run's training rows, one seeded batch
   order), every dictionary of the run (n and 2n per layer) with the paper's settings (batch 32,
   lr 1e-3, L1 1e-3): ours in one joint loop (tied, the paper's architecture, and untied, the
   same architecture as SAELens's 'standard' SAE), ours one dictionary at a time, and SAELens's
   `SAETrainer` one dictionary at a time and its `MultiSAETrainer` (all in lockstep). Each
   variant's rate is the training's matrix products (`step_flops`: five per dictionary and step)
   per second, and its share of this CPU's own rate on exactly those products, measured here by
   running them alone (`matmul_rate`): what is left is the time spent outside the products.
2. Activation capture of the run's layers (forward pass + hooks + masking + shard files)
   against a bare forward pass of the model over the same batches.
3. Interoperability: SAELens's `SAE.load_from_disk` reads an SAE we saved and computes the same.
Variants alternate within each repeat and the best time of the repeats counts, so a busy
machine slows every variant alike instead of whichever ran during the noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from lfp_engine.sae.activations import (
    ActivationSet,
    capture_activations,
    length_sorted_batches,
    pad_batch,
    token_sequences,
)
from lfp_engine.models.hub import load_causal_lm, load_tokenizer
from lfp_engine.sae.training import SaeSpec, train_saes
from lfp_engine.sae.saelens_format import save_sae
from lfp_engine.worlds import CORPUS, read_world_table

L1, LR, BATCH = 1e-3, 1e-3, 32
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]
"""What every timing reads: wall time, or with `--clock cpu` this process's CPU time, which on a
machine shared with other jobs counts only this benchmark's work (meaningful with one thread,
OMP_NUM_THREADS=1: with several it adds up every thread's time, waiting included)."""


def batches_of(data: torch.Tensor, n_steps: int):
    """[layers, 32, d] batches of `data` ([layers, rows, d], rows already in the batches' order):
    views, as the `sae` stage's batches are views of its shuffled buffer, so no trainer pays for a copy."""
    for step in range(n_steps):
        yield data[:, step * BATCH:(step + 1) * BATCH]


def time_ours(data, layers, specs, n_steps, device: str = "cpu") -> float:
    """Seconds of our joint loop over `specs` (`data` already on `device`)."""
    start = clock()
    train_saes(batches_of(data, n_steps), layers, specs, data.shape[-1], n_steps, LR, seed=0, log_every=500,
               device=device)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return clock() - start


def saelens_sae(d_in: int, d_sae: int, device: str = "cpu"):
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig

    return StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=L1,
                                                         apply_b_dec_to_input=False, device=str(device)))


def trainer_config(n_steps: int, device: str = "cpu"):
    from sae_lens.config import SAETrainerConfig

    # lr_end is normally filled in by SAELens's runner config; constant lr here, as ours.
    return SAETrainerConfig(total_training_samples=n_steps * BATCH, train_batch_size_samples=BATCH, lr=LR,
                            lr_end=LR, device=str(device))


def time_saelens_each(data, specs, layers, n_steps, device: str = "cpu") -> float:
    """Seconds of SAELens's `SAETrainer` on each spec in turn, on the batches ours sees."""
    from sae_lens.training.sae_trainer import SAETrainer

    start = clock()
    for spec in specs:
        i = layers.index(spec.layer)
        provider = (batch[i] for batch in batches_of(data, n_steps))
        SAETrainer(trainer_config(n_steps, device), saelens_sae(data.shape[-1], spec.d_sae, device), provider).fit()
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return clock() - start


def time_saelens_multi(data, specs, layers, n_steps) -> float:
    from sae_lens.training.multi_sae_trainer import MultiSAETrainer

    names = {f"layer{s.layer}_{s.d_sae}": s for s in specs}
    provider = ({f"layer{layer}": batch[i] for i, layer in enumerate(layers)}
                for batch in batches_of(data, n_steps))
    start = clock()
    MultiSAETrainer(trainer_config(n_steps), {n: saelens_sae(data.shape[-1], s.d_sae) for n, s in names.items()},
                    {n: f"layer{s.layer}" for n, s in names.items()}, provider).fit()
    return clock() - start


@dataclass(frozen=True)
class TrainingInputs:
    """What every timed SAE-training variant trains on, so that they are compared on the same batches."""

    data: torch.Tensor
    """Every shard of every layer, [layers, rows, d_model], on the device, its rows in a seeded
    random order: the batches' order."""
    layers: list[int]
    n_steps: int
    tied: list[SaeSpec]
    """Two dictionaries per layer (d_model and 2 x d_model latents), tied as the sae stage trains them."""
    untied: list[SaeSpec]


def training_inputs(acts: ActivationSet, n_examples: int, device: str | torch.device = "cpu") -> TrainingInputs:
    layers = acts.layers
    data = torch.cat([acts.shard(s, layers) for s in range(acts.info.n_shards)], dim=1)
    data = data[:, torch.randperm(data.shape[1], generator=torch.Generator().manual_seed(0))].to(device)
    tied = [SaeSpec(layer, size, "tied", L1) for layer in layers for size in (acts.d_model, 2 * acts.d_model)]
    return TrainingInputs(data, layers, min(n_examples, data.shape[1]) // BATCH, tied,
                          [dataclasses.replace(s, architecture="untied") for s in tied])


def step_flops(d_in: int, specs: list[SaeSpec]) -> int:
    """Floating-point operations of one training step's matrix products over every dictionary of
    `specs`: for each, the encoder x W_enc and decoder z W_dec forward (2 B d s each), and backward
    the codes' gradient g W_dec^T, the decoder's z^T g and the encoder's x^T dpre (the input's
    gradient is not needed). Five products of 2 B d s: the work any trainer of these SAEs does."""
    return sum(5 * 2 * BATCH * d_in * spec.d_sae for spec in specs)


def matmul_rate(d_in: int, specs: list[SaeSpec], seconds: float = 1.0) -> float:
    """FLOP/s of this machine on exactly the products of one training step (`step_flops`), as
    batched products over the dictionaries of one size (how the joint loop runs them), run
    back to back with nothing else: the ceiling a trainer of these SAEs could reach here."""
    generator = torch.Generator().manual_seed(0)
    products = []
    for d_sae in sorted({s.d_sae for s in specs}):
        n = sum(s.d_sae == d_sae for s in specs)
        x, g = (torch.randn(n, BATCH, d_in, generator=generator) for _ in range(2))
        z = torch.randn(n, BATCH, d_sae, generator=generator)
        w_enc = torch.randn(n, d_in, d_sae, generator=generator)
        w_dec = torch.randn(n, d_sae, d_in, generator=generator)
        products += [(x, w_enc), (z, w_dec), (g, w_dec.transpose(-1, -2)), (z.transpose(-1, -2), g),
                     (x.transpose(-1, -2), z)]

    def step() -> None:
        for a, b in products:
            torch.bmm(a, b)

    step()
    repeats, start = 0, clock()
    while clock() - start < seconds:
        step()
        repeats += 1
    return step_flops(d_in, specs) * repeats / (clock() - start)


def bench_training(acts: ActivationSet, n_examples: int, repeats: int) -> list[dict]:
    inputs = training_inputs(acts, n_examples)
    data, layers, n_steps, tied, untied = inputs.data, inputs.layers, inputs.n_steps, inputs.tied, inputs.untied
    sizes = (acts.d_model, 2 * acts.d_model)
    flops = step_flops(acts.d_model, tied) * n_steps
    variants = {
        "ours, joint loop, tied (paper)": lambda: time_ours(data, layers, tied, n_steps),
        "ours, joint loop, untied": lambda: time_ours(data, layers, untied, n_steps),
        "ours, one SAE at a time, untied": lambda: sum(time_ours(data, layers, [s], n_steps) for s in untied),
        "sae-lens SAETrainer, one SAE at a time (standard)": lambda: time_saelens_each(data, untied, layers,
                                                                                       n_steps),
        "sae-lens MultiSAETrainer, lockstep (standard)": lambda: time_saelens_multi(data, untied, layers,
                                                                                    n_steps),
    }
    time_ours(data, layers, tied, 50)  # warm-up: thread pool, kernel selection
    times = {name: [] for name in variants}
    rates = []
    for _ in range(repeats):
        rates.append(matmul_rate(acts.d_model, tied))
        for name, fn in variants.items():
            times[name].append(fn())
    ceiling = max(rates)
    task = f"train {len(tied)} SAEs ({len(layers)} layers x {sizes}), {n_steps * BATCH} examples each"
    rows = [{"task": task, "variant": name, "best_s": min(t), "all_s": [round(x, 2) for x in t],
             "gflop_per_s": flops / min(t) / 1e9, "share_of_matmul_rate": flops / min(t) / ceiling}
            for name, t in times.items()]
    return rows + [{"task": task, "variant": "matrix products alone (the ceiling)", "best_s": flops / ceiling,
                    "all_s": [round(flops / r, 2) for r in rates], "gflop_per_s": ceiling / 1e9,
                    "share_of_matmul_rate": 1.0}]


def bench_capture(run: Path, layers: list[int], n_tokens: int, batch_size: int, repeats: int) -> list[dict]:
    model = load_causal_lm(str(run / "models" / "tuned"))
    tokenizer = load_tokenizer(str(run / "models" / "tuned"))
    corpus = read_world_table(run / "world", CORPUS)
    sequences = list(token_sequences(tokenizer, corpus[corpus["split"] == "train"], n_tokens, 127))
    bos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id

    @torch.inference_mode()
    def bare() -> float:
        start = clock()
        for batch in length_sorted_batches(sequences, batch_size):
            ids, attention, _ = pad_batch([s for _, s in batch], pad, bos, "cpu")
            model(input_ids=ids, attention_mask=attention, use_cache=False)
        return clock() - start

    def capture() -> float:
        folder = Path(tempfile.mkdtemp())
        start = clock()
        capture_activations(model, sequences, layers, folder / "set", pad_token_id=pad, bos_token_id=bos,
                            batch_size=batch_size, shard_rows=16384, model_name="bench")
        seconds = clock() - start
        shutil.rmtree(folder)
        return seconds

    bare()  # warm-up
    times = {"bare forward pass": [], f"capture layers {layers} to shards": []}
    for _ in range(repeats):
        times["bare forward pass"].append(bare())
        times[f"capture layers {layers} to shards"].append(capture())
    n = sum(len(s) for _, s in sequences)
    return [{"task": f"{n} tokens, batches of {batch_size} texts", "variant": name, "best_s": min(t),
             "all_s": [round(x, 2) for x in t]} for name, t in times.items()]


def check_interop(acts: ActivationSet) -> float:
    """Max |difference| between our reconstruction and SAELens's for an SAE we saved (trained briefly)."""
    from sae_lens import SAE

    layers = acts.layers[:1]
    data = acts.shard(0, layers)
    order = torch.randperm(data.shape[1], generator=torch.Generator().manual_seed(0))
    sae = train_saes(batches_of(data[:, order], 50), layers, [SaeSpec(layers[0], 2 * acts.d_model, "tied", L1)],
                     acts.d_model, 50, LR, seed=0).saes[0]
    folder = Path(tempfile.mkdtemp())
    save_sae(sae, folder, model_name="bench", hook_name=acts.hook_name(layers[0]), metadata={"layer": layers[0]})
    theirs = SAE.load_from_disk(str(folder))
    x = data[0, :1000]
    with torch.no_grad():
        difference = (theirs(x) - sae(x)).abs().max().item()
    shutil.rmtree(folder)
    return difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/tiny")
    parser.add_argument("--examples", type=int, default=75000, help="training examples per SAE (the paper's)")
    parser.add_argument("--capture-tokens", type=int, default=30000)
    parser.add_argument("--capture-batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/out/sae.json")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or this process's CPU time (on a shared machine, with OMP_NUM_THREADS=1)")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    run = Path(args.run)
    acts = ActivationSet(run / "activations" / "train")
    rows = bench_training(acts, args.examples, args.repeats)
    rows += bench_capture(run, acts.layers, args.capture_tokens, args.capture_batch, args.repeats)
    frame = pd.DataFrame(rows)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock")
    print(frame[["task", "variant", "best_s", "all_s", "gflop_per_s", "share_of_matmul_rate"]].to_string(index=False))
    best = dict(zip(frame["variant"], frame["best_s"]))
    ratios = {
        "sae-lens SAETrainer / ours joint tied": best["sae-lens SAETrainer, one SAE at a time (standard)"]
        / best["ours, joint loop, tied (paper)"],
        "sae-lens SAETrainer / ours joint untied": best["sae-lens SAETrainer, one SAE at a time (standard)"]
        / best["ours, joint loop, untied"],
        "sae-lens SAETrainer / ours one at a time, untied": best["sae-lens SAETrainer, one SAE at a time (standard)"]
        / best["ours, one SAE at a time, untied"],
        "sae-lens MultiSAETrainer / ours joint untied": best["sae-lens MultiSAETrainer, lockstep (standard)"]
        / best["ours, joint loop, untied"],
        "capture / bare forward": best[f"capture layers {acts.layers} to shards"] / best["bare forward pass"],
    }
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")
    difference = check_interop(acts)
    print(f"SAELens SAE.load_from_disk on our file: max |x_hat difference| = {difference:.2e}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "ratios": ratios, "interop_max_difference": difference,
                                          "clock": args.clock, "threads": torch.get_num_threads()}, indent=2))


if __name__ == "__main__":
    main()
