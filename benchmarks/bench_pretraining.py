"""How much faster is the tiny world's pretraining with bfloat16 matrix products than in float32?

Times `pretrain` (`lfp_engine/worlds/pretraining.py`), the code the world stage runs, on a world's
own corpus and tokenizer with the tiny preset's settings, for `--epochs` passes (default 0.5: about
95 of the preset's 1,144 steps), float32 and bfloat16 in turn, `--repeats` times, so that load on
a shared machine falls on both alike. Reports the seconds per optimizer step (best of the repeats;
each call also measures the held-out loss once, as the stage does, about as long as a few steps)
and the held-out loss each precision reached, and the ratio.

    PYTHONPATH=. python -m benchmarks.bench_pretraining --world runs/tiny/world [--epochs 0.5] [--repeats 3]

`--clock cpu` times this process's CPU time instead of the wall clock: on a machine shared with
other jobs, with OMP_NUM_THREADS=1, it counts this benchmark's work only.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from lfp_engine.models.hub import load_tokenizer
from lfp_engine.run.config import build_config
from lfp_engine.run.presets import preset
from lfp_engine.worlds import CORPUS, read_world_table
from lfp_engine.worlds.build import LOCAL_BASE
from lfp_engine.worlds.pretraining import pretrain

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
PRECISIONS = ("float32", "bfloat16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, required=True, help="a run's world folder (corpus and tokenizer)")
    parser.add_argument("--epochs", type=float, default=0.5, help="passes over the training reviews per call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    corpus = read_world_table(args.world, CORPUS)
    train = corpus.loc[corpus["split"] == "train", "text"].tolist()
    test = corpus.loc[corpus["split"] == "test", "text"].tolist()
    tokenizer = load_tokenizer(str(args.world / LOCAL_BASE))
    settings = dataclasses.replace(build_config([preset("tiny").overrides]).synthetic, pretrain_epochs=args.epochs)
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    results = {}
    for _ in range(args.repeats):
        for precision in PRECISIONS:
            start = clock()
            results[precision] = pretrain(dataclasses.replace(settings, pretrain_precision=precision), tokenizer,
                                          train, test, args.seed, torch.device("cpu"))
            seconds[precision].append((clock() - start) / results[precision].steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, "
          f"{results['float32'].steps} steps of {settings.pretrain_batch_size} x {settings.context_length} tokens")
    for precision in PRECISIONS:
        r = results[precision]
        print(f"{precision:>9}: {min(seconds[precision]) * 1e3:.0f} ms per step (all: "
              f"{', '.join(f'{s * 1e3:.0f}' for s in seconds[precision])}), ran in {r.precision}, "
              f"held-out loss {r.test_loss:.4f}")
    print(f"float32 / bfloat16: {min(seconds['float32']) / min(seconds['bfloat16']):.2f}")


if __name__ == "__main__":
    main()
