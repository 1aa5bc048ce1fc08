"""How fast are the dashboard's live pages? Model time of the serving layer on a finished run.

    PYTHONPATH=. python -m benchmarks.bench_live --run runs/tiny [--repeats 20] [--device cpu]

1. Playground: `LiveRun.implicit_reward` of a text of exactly 64 tokens on the tuned model (the
   forward pass to the deepest probe layer, SAE codes, probe, drivers, and the true reward).
2. Lab: `LiveRun.compare_generations` of 8 completions of 20 new tokens (min_new_tokens = 20, so
   every completion is that long), unmodified and with the relevant features zero-ablated: two
   sampled batches plus their rewards.
3. The ablation hook's cost: `sample_completions` of the same 8 x 20 tokens by the bare tuned model
   (no hooks at all) against the served model with the relevant features ablated (the validate
   stage's hook: encode, pick the features, subtract their contribution).
Each figure is the median of `--repeats` runs after one warm-up run; the models load once, outside
the timings, as in a running dashboard.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from lfp_engine.models.generation import sample_completions
from lfp_engine.models.hub import load_causal_lm
from lfp_engine.validation.interventions import Intervention, intervening
from lfp_engine.serving import LiveRun

N_TOKENS, N_SAMPLES, NEW_TOKENS = 64, 8, 20


def median_ms(action, repeats: int) -> tuple[float, list[float]]:
    action()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times), times


def text_of(live: LiveRun, n_tokens: int) -> str:
    """Held-out openings joined until the text has `n_tokens` tokens, cut to exactly that many."""
    ids: list[int] = []
    for prompt in live.heldout_prompts:
        ids += live.tokenizer(prompt + ".", add_special_tokens=False)["input_ids"]
        if len(ids) >= n_tokens:
            break
    return live.tokenizer.decode(ids[:n_tokens])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/tiny")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    start = time.perf_counter()
    live = LiveRun(Path(args.run), args.device)
    print(f"run {args.run}: loaded in {time.perf_counter() - start:.1f} s on {live.device}; torch threads "
          f"{torch.get_num_threads()}")

    text = text_of(live, N_TOKENS)
    assert len(live.implicit_reward(text).tokens) == N_TOKENS
    playground, _ = median_ms(lambda: live.implicit_reward(text), args.repeats)

    relevant = Intervention(ablate={k: tuple(v) for k, v in live.relevant.items()})
    n_ablated = sum(len(v) for v in relevant.ablate.values())
    prompts = live.heldout_prompts[:N_SAMPLES]
    live.sampling = dataclasses.replace(live.sampling, min_new_tokens=NEW_TOKENS)
    comparison, _ = median_ms(lambda: live.compare_generations(prompts, relevant, N_SAMPLES, NEW_TOKENS), args.repeats)

    sampling = dataclasses.replace(live.sampling, max_new_tokens=NEW_TOKENS)
    bare = load_causal_lm(str(live.models["tuned"].name_or_path), live.device, live.config.world.dtype)

    def generate(model) -> None:
        sample_completions(model, live.tokenizer, prompts, max_new_tokens=sampling.max_new_tokens,
                           min_new_tokens=sampling.min_new_tokens, temperature=sampling.temperature,
                           batch_size=sampling.batch_size, seed=0, max_length=sampling.max_length)

    def ablated() -> None:
        with intervening(relevant, live.saes):
            generate(live.models["tuned"])

    # interleaved, so drifting load on a shared machine hits both alike
    bare_times, hooked_times = [], []
    for _ in range(args.repeats):
        bare_times.append(median_ms(lambda: generate(bare), 1)[0])
        hooked_times.append(median_ms(ablated, 1)[0])
    plain, hooked = statistics.median(bare_times), statistics.median(hooked_times)

    print(f"| playground: implicit reward of a {N_TOKENS}-token text (tuned model) | {playground:.1f} ms |")
    print(f"| lab: {N_SAMPLES} completions of {NEW_TOKENS} tokens, unmodified + {n_ablated} features ablated, "
          f"with rewards | {comparison:.0f} ms |")
    print(f"| generation, {N_SAMPLES} x {NEW_TOKENS} tokens, bare model (no hooks) | {plain:.1f} ms |")
    print(f"| generation, the same, {n_ablated} features ablated through the hook | {hooked:.1f} ms |")
    print(f"| ablation hook overhead | {100 * (hooked / plain - 1):+.1f}% |")


if __name__ == "__main__":
    main()
