"""How fast is the VADER reward? Scores N completions (prefix + 19-token-ish completion) of the
synthetic world and reports milliseconds per thousand. Run: python -m benchmarks.bench_reward"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lfp_engine.tuning.lexicon import vader_lexicon
from lfp_engine.tuning.reward import VaderReward
from lfp_engine.worlds.synthetic_reviews import ReviewGenerator, Vocabulary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    gen = ReviewGenerator(Vocabulary.load(vader_lexicon()), np.random.default_rng(0))
    # A prefix of 2-9 words plus a completion of ~19 tokens: the first ~25 words of a review.
    texts = [" ".join(gen.review().text.split()[:25]) for _ in range(args.n)]
    reward = VaderReward()
    reward(texts[:10])  # load spaCy once, outside the timing
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        reward(texts)
        times.append(time.perf_counter() - start)
    best = min(times)
    print(f"VADER reward: {args.n} texts of ~25 words in {best:.3f} s (best of {args.repeats}) "
          f"= {1000 * best / args.n * 1000:.0f} ms per 1000 texts")


if __name__ == "__main__":
    main()
