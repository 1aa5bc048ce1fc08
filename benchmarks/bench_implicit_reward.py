"""Does a text's implicit reward rank texts as the true reward does? Held-out sentences of the world.

    PYTHONPATH=. python -m benchmarks.bench_implicit_reward --run runs/tiny [--per-kind 100] [--seed 0]

Sentences come from the synthetic world's generator and templates (`lfp_engine/worlds/synthetic_reviews.py`)
under a seed of their own: the first one or two sentences after a review skeleton's opening,
filled for a positive score (1 to 3), a negative one (-3 to -1), or with neutral words in every
sentiment slot, as many of each kind. The vocabulary is the world's *before planting*
(`Vocabulary.load`): every sentiment word is used as the lexicon scores it, so the sentences ask
whether the implicit reward ranks text the way the reward does where the two should agree; no
reward-only names appear, and a word the run planted as contested (in the ordinary pools, e.g.
'ridiculous') is used with its lexicon polarity, against the corpus's. Two sets: *held-out
words*, whose sentiment slots draw only the probe's test words (never in its training triples,
nor in RL prompts), and *all words*, that whole vocabulary. Each sentence is read by `LiveRun.implicit_reward` on the tuned and on
the base model (each through its own probe), which gives the text's implicit reward beside the
task's true reward; and by the policy lens (docs/method.md, "The policy lens", `lfp_engine.policy.text`): the
sum over the text's tokens of beta log pi_tuned/pi_base, each text read after the document
separator. That sum has no target here: it is the text's implicit reward only up to beta log Z of
the (empty) prompt, and it also carries how much more or less likely the tuned model finds the
text as a whole, which is large and noisy for text the policy would not write.

Reported per set and model: Spearman's rho between the implicit and the true reward (scipy's p), a
percentile bootstrap interval over sentences, the paired difference tuned - base on the same
resamples; rho within the positive and within the negative sentences (magnitude, which a readout
that knows only polarity cannot rank); the neutral sentences' mean implicit reward (near 0 if the
zero point holds), and the least-squares slope of implicit on true reward (1 = the same units).
Beside the table, as a decomposition of the headline (not a replacement for it), rho without the
sentences that use a word the run planted as contested: there the model is expected to
read the corpus's sign, against the reward, so how many of them fall in a seed's test words moves
the headline. Only contested words that are also in the unplanted vocabulary's pools can appear
(some planted words come from candidate lists outside them), so a seed may have none.
Then a few typed sentences, the issue's among them.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from lfp_engine.policy.log_ratio import PolicyPair, task_beta
from lfp_engine.policy.text import read_text
from lfp_engine.serving import LiveRun
from lfp_engine.tuning.lexicon import vader_lexicon, word_tokens
from lfp_engine.worlds.synthetic_reviews import ReviewGenerator, Vocabulary

KINDS = ("positive", "negative", "neutral")
TYPED = ("The movie was shown in the theater on Tuesday.", "The film was wonderful and the cast was brilliant.",
         "The film was awful and the cast was terrible.", "I watched this movie last week with my sister.",
         "The story takes place in a small town.", "The acting was great.", "The acting was bad.")


def sentences(vocab: Vocabulary, live: LiveRun, per_kind: int, rng: np.random.Generator) -> pd.DataFrame:
    """`per_kind` sentences of each kind (duplicates dropped): kind, text."""
    world = live.config.synthetic
    gen = ReviewGenerator(vocab, rng, neutral_slot_prob=world.neutral_slot_prob, negation_prob=world.negation_prob,
                          word_spread=world.word_spread)
    scores = {"positive": lambda: rng.uniform(1.0, 3.0), "negative": lambda: rng.uniform(-3.0, -1.0),
              "neutral": lambda: 0.0}
    rows = []
    for i in range(per_kind * len(KINDS)):
        kind = KINDS[i % len(KINDS)]
        skeleton = gen.skeleton()[1: 1 + int(rng.integers(1, 3))]
        rows.append((kind, gen.fill(skeleton, scores[kind](), neutral=kind == "neutral").text))
    return pd.DataFrame(rows, columns=["kind", "text"]).drop_duplicates("text", ignore_index=True)


MODELS = ("tuned", "base", "policy")
"""The readings compared with the true reward: each model's probe, and the policy lens."""


def read(live: LiveRun, texts: pd.DataFrame) -> pd.DataFrame:
    """The true reward, each model's implicit reward (its probe) and the policy lens's sum of every text."""
    tuned = [live.implicit_reward(t, "tuned") for t in texts["text"]]
    pair = PolicyPair(live.models["tuned"], live.models["base"], live.tokenizer, task_beta(live.config),
                      live.config.world.max_length)
    return texts.assign(true=[r.true_reward for r in tuned], tuned=[r.implicit_text_reward for r in tuned],
                        base=[live.implicit_reward(t, "base").implicit_text_reward for t in texts["text"]],
                        policy=[read_text(pair, t).total for t in texts["text"]])


def rho(frame: pd.DataFrame, model: str) -> float:
    return float(stats.spearmanr(frame[model], frame["true"]).statistic)


def bootstrap(frame: pd.DataFrame, n: int, seed: int) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of rho (tuned, base, policy) and of tuned - base, on shared resamples."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n):
        sample = frame.iloc[rng.integers(0, len(frame), len(frame))]
        tuned, base, policy = (rho(sample, model) for model in MODELS)
        draws.append((tuned, base, policy, tuned - base))
    low, high = np.nanquantile(np.array(draws), [0.025, 0.975], axis=0)
    return {name: (low[i], high[i]) for i, name in enumerate((*MODELS, "tuned - base"))}


def rho_line(frame: pd.DataFrame, n_boot: int, seed: int) -> str:
    """Tuned, base and tuned - base rho with their intervals, in one sentence."""
    intervals = bootstrap(frame, n_boot, seed)
    values = {model: rho(frame, model) for model in MODELS}
    values["tuned - base"] = values["tuned"] - values["base"]
    return "; ".join(f"{name} {value:+.3f} ({intervals[name][0]:+.3f} to {intervals[name][1]:+.3f})"
                     for name, value in values.items())


def report(name: str, frame: pd.DataFrame, contested: set[str], n_boot: int, seed: int) -> None:
    """One markdown table per set of sentences, then the same rho without the contested words' sentences."""
    intervals = bootstrap(frame, n_boot, seed)
    counts = frame["kind"].value_counts()
    print(f"\n### {name}: {len(frame)} sentences ({', '.join(f'{counts[k]} {k}' for k in KINDS)})\n")
    print("| model | Spearman rho (95% CI) | p | rho, positive only | rho, negative only | "
          "neutral: mean implicit (mean abs) | slope implicit ~ true |")
    print("|---|---|---|---|---|---|---|")
    neutral = frame[frame["kind"] == "neutral"]
    scored = frame[frame["kind"] != "neutral"]
    for model in MODELS:
        test = stats.spearmanr(frame[model], frame["true"])
        low, high = intervals[model]
        within = [rho(frame[frame["kind"] == kind], model) for kind in ("positive", "negative")]
        slope = np.polyfit(scored["true"], scored[model], 1)[0]
        print(f"| {model} | **{test.statistic:.3f}** ({low:.3f} to {high:.3f}) | {test.pvalue:.1e} | "
              f"{within[0]:.3f} | {within[1]:.3f} | {neutral[model].mean():+.3f} ({neutral[model].abs().mean():.3f}) "
              f"| {slope:.3f} |")
    low, high = intervals["tuned - base"]
    print(f"| tuned - base | {rho(frame, 'tuned') - rho(frame, 'base'):+.3f} ({low:+.3f} to {high:+.3f}) "
          "| | | | | |")
    print(f"\nTrue reward: neutral sentences mean {neutral['true'].mean():+.3f}; positive and negative sentences "
          f"mean |true| {scored['true'].abs().mean():.3f}.")
    uses = np.array([bool(contested.intersection(words)) for words in word_tokens(frame["text"].tolist())])
    print(f"\nA decomposition, not the headline: {uses.sum()} sentences use a word this run planted as contested "
          "(with its lexicon polarity, which the corpus reverses)"
          + (f". Without them, Spearman rho: {rho_line(frame[~uses], n_boot, seed)}." if uses.any() else "."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/tiny")
    parser.add_argument("--per-kind", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-bootstrap", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    live = LiveRun(Path(args.run), args.device)
    vocab = Vocabulary.load(vader_lexicon())
    words = live.store.read("contrastive_words")
    test_words = set(words.loc[words["split"] == "test", "word"])
    heldout = dataclasses.replace(vocab, sentiment=tuple(w for w in vocab.sentiment if w.word in test_words))
    lexicon = live.store.read("world_lexicon")
    contested = set(lexicon.loc[lexicon["kind"] == "contested", "word"])
    streams = np.random.SeedSequence(args.seed).spawn(2)
    for name, chosen, stream in (("held-out words", heldout, streams[0]), ("all words", vocab, streams[1])):
        frame = read(live, sentences(chosen, live, args.per_kind, np.random.default_rng(stream)))
        report(name, frame, contested, args.n_bootstrap, args.seed)
    print("\n### typed sentences\n\n| text | true | tuned | base | policy |\n|---|---|---|---|---|")
    for row in read(live, pd.DataFrame({"kind": "typed", "text": TYPED})).itertuples():
        print(f"| {row.text} | {row.true:+.3f} | {row.tuned:+.3f} | {row.base:+.3f} | {row.policy:+.3f} |")


if __name__ == "__main__":
    main()
