"""What tuning taught the model to write: how often base and tuned completions use each word.

The paper's figure 4 sets a word's probe error against how often the tuned model generates it;
this module measures the change itself. Base and tuned models complete the *same* held-out
openings under the same seed (as the reward comparison of section 3.1 does), so completion i of
one and completion i of the other form a pair, and every statistic here is paired.

Per word, each pair falls in one of four cells: both completions use the word, neither, only the
base's (b pairs), only the tuned model's (c pairs). Tuning changed nothing about the word exactly
when the two discordant cells are equally likely, so the test is McNemar's exact test: given
b + c, c ~ Binomial(b + c, 1/2), two-sided. The effect size is the change in the share of
completions that use the word, (c - b) / n, with the Agresti-Min interval for paired proportions
(the Wald interval after adding 1/2 to each of the four cells; Agresti & Min 2005), which keeps
its coverage for the rare words most words are. Many words are tested at once, so each p-value
comes with its Benjamini-Hochberg q-value.

Per planted kind (and lexicon polarity) the words are pooled: the share of completions using any
of them, tested the same way; the groups are tested together too, so each group's p-value comes with
its Benjamini-Hochberg q-value over the groups (kinds x polarities) tested, and the plain-words
sentence calls a change measured only when q is below the false-discovery rate. A kind's change only means something beside its control: tuning on
a positive reward makes the model write more praise overall, so "the tuned model writes *sick*
more often" can still mean that it stopped choosing *sick* for praise. The control is the
*competitors*, the ordinary words the group's words compete with for the same slots: for
contested words, the ordinary words of their role used with the same sentiment in the corpus
(contested praise adjectives against ordinary positive adjectives); for reward-only names, the
other names. The group's share among itself and its competitors, base against tuned, with a
paired percentile bootstrap over completions, says whether tuning changed the *choice*.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from lfp_engine.report.divergence import FALSE_DISCOVERY_RATE
from lfp_engine.run.errors import InputError
from lfp_engine.tuning.lexicon import word_tokens
from lfp_engine.worlds.synthetic_reviews import CONTESTED, KINDS, ORDINARY, REWARD_ONLY

WORD_COLUMNS = ["word", "n_completions", "base_count", "tuned_count", "base_share", "tuned_share", "only_base",
                "only_tuned", "share_difference", "ci_low", "ci_high", "p_value", "q_value"]
KIND_COLUMNS = ["kind", "polarity", "used_as", "n_words", "n_completions", "base_count", "tuned_count",
                "base_share", "tuned_share", "only_base", "only_tuned", "share_difference", "ci_low", "ci_high",
                "p_value", "q_value", "n_competitors", "base_choice", "tuned_choice", "choice_difference", "choice_ci_low",
                "choice_ci_high"]


@dataclass(frozen=True)
class Usage:
    """How often each model writes each word, completion by completion; row i of `base` and of
    `tuned` are the two models' completions of the same opening."""

    words: tuple[str, ...]
    base: np.ndarray
    """(n_completions, n_words) counts of each word in each base completion."""
    tuned: np.ndarray
    """The same for the tuned model's completions."""

    @property
    def n(self) -> int:
        return int(self.base.shape[0])

    def columns(self, words: Collection[str]) -> np.ndarray:
        """Indices of `words` (those counted) in `self.words`."""
        wanted = set(words)
        return np.array([i for i, w in enumerate(self.words) if w in wanted], dtype=np.int64)


@dataclass(frozen=True)
class PairedChange:
    """A paired change in how many completions use something (a word, a group of words)."""

    n: int
    base_share: float
    tuned_share: float
    only_base: int
    only_tuned: int
    difference: float
    """tuned_share - base_share."""
    ci_low: float
    ci_high: float
    p_value: float
    """McNemar's exact test, two-sided."""


@dataclass(frozen=True)
class ChoiceChange:
    """Of the words a group competes with (itself included), the share that are the group's words."""

    n_competitors: int
    base: float
    tuned: float
    difference: float
    ci_low: float
    ci_high: float


def count_usage(base_texts: Sequence[str], tuned_texts: Sequence[str], words: Sequence[str]) -> Usage:
    """Count `words` (lower-cased, as the reward's tokenizer reads them) in paired completions."""
    if len(base_texts) != len(tuned_texts):
        raise InputError(f"paired completions needed: {len(base_texts)} base but {len(tuned_texts)} tuned")
    if len(base_texts) < 2:
        raise InputError("a paired comparison needs at least 2 completions of each model")
    vocabulary = tuple(dict.fromkeys(w.lower() for w in words))
    index = {w: i for i, w in enumerate(vocabulary)}

    def matrix(texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(vocabulary)), dtype=np.int64)
        for row, tokens in enumerate(word_tokens(texts)):
            for token, n in Counter(tokens).items():
                if token in index:
                    out[row, index[token]] = n
        return out

    return Usage(words=vocabulary, base=matrix(list(base_texts)), tuned=matrix(list(tuned_texts)))


def mcnemar_exact(only_base: np.ndarray, only_tuned: np.ndarray) -> np.ndarray:
    """Two-sided exact McNemar p-values, elementwise: P(as or more unbalanced discordant pairs)
    under Binomial(b + c, 1/2); 1 where there are no discordant pairs."""
    b = np.asarray(only_base, dtype=np.int64)
    c = np.asarray(only_tuned, dtype=np.int64)
    if (b < 0).any() or (c < 0).any():
        raise InputError("discordant pair counts cannot be negative")
    return np.minimum(1.0, 2.0 * stats.binom.cdf(np.minimum(b, c), b + c, 0.5))


def paired_share_interval(only_base: np.ndarray, only_tuned: np.ndarray, n: int,
                          confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Agresti-Min interval for the paired difference of shares, (c - b) / n: the Wald interval
    after adding 1/2 to each of the four cells of the 2x2 table (n + 2 pairs), clipped to [-1, 1]."""
    if n < 1:
        raise InputError("an interval needs at least one pair")
    b = (np.asarray(only_base, dtype=np.float64) + 0.5) / (n + 2)
    c = (np.asarray(only_tuned, dtype=np.float64) + 0.5) / (n + 2)
    d = c - b
    half = stats.norm.ppf(0.5 + confidence / 2) * np.sqrt(np.maximum(b + c - d**2, 0.0) / (n + 2))
    return np.clip(d - half, -1.0, 1.0), np.clip(d + half, -1.0, 1.0)


def _uses(counts: np.ndarray) -> np.ndarray:
    """Whether each completion uses any of the columns."""
    return counts.sum(axis=1) > 0 if counts.ndim == 2 else counts > 0


def paired_change(base_uses: np.ndarray, tuned_uses: np.ndarray, confidence: float = 0.95) -> PairedChange:
    """The change in the share of completions with a property (e.g. using a word), paired."""
    base_uses, tuned_uses = np.asarray(base_uses, bool), np.asarray(tuned_uses, bool)
    n = len(base_uses)
    b, c = int((base_uses & ~tuned_uses).sum()), int((tuned_uses & ~base_uses).sum())
    low, high = paired_share_interval(np.array(b), np.array(c), n, confidence)
    return PairedChange(n=n, base_share=float(base_uses.mean()), tuned_share=float(tuned_uses.mean()),
                        only_base=b, only_tuned=c, difference=(c - b) / n, ci_low=float(low), ci_high=float(high),
                        p_value=float(mcnemar_exact(np.array(b), np.array(c))))


def word_changes(usage: Usage, confidence: float = 0.95) -> pd.DataFrame:
    """One row per word: counts and shares of completions using it, base and tuned; the change in
    share with its interval; McNemar's exact p and the Benjamini-Hochberg q over all words."""
    base, tuned = usage.base > 0, usage.tuned > 0
    b = (base & ~tuned).sum(axis=0)
    c = (tuned & ~base).sum(axis=0)
    low, high = paired_share_interval(b, c, usage.n, confidence)
    p = mcnemar_exact(b, c)
    frame = pd.DataFrame({
        "word": list(usage.words), "n_completions": usage.n,
        "base_count": usage.base.sum(axis=0), "tuned_count": usage.tuned.sum(axis=0),
        "base_share": base.mean(axis=0), "tuned_share": tuned.mean(axis=0), "only_base": b, "only_tuned": c,
        "share_difference": (c - b) / usage.n, "ci_low": low, "ci_high": high, "p_value": p,
        "q_value": stats.false_discovery_control(p) if len(p) else p,
    })
    return frame[WORD_COLUMNS]


def choice_change(usage: Usage, group: Collection[str], competitors: Collection[str], *, n_bootstrap: int = 2000,
                  confidence: float = 0.95, seed: int = 0) -> ChoiceChange:
    """Of the words of `group` and `competitors` each model writes, the share that are `group`'s,
    base and tuned, with a percentile bootstrap interval of the difference that resamples
    completion pairs (NaN where a model writes none of them)."""
    mine, theirs = usage.columns(group), usage.columns(set(competitors) - set(group))
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, usage.n, size=(n_bootstrap, usage.n))

    def share(counts: np.ndarray, resample: np.ndarray | None = None) -> np.ndarray:
        own, other = counts[:, mine].sum(axis=1), counts[:, theirs].sum(axis=1)
        if resample is None:
            own_total, all_total = own.sum(), own.sum() + other.sum()
        else:
            own_total, all_total = own[resample].sum(axis=-1), (own + other)[resample].sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(own_total / all_total, dtype=np.float64)

    base, tuned = float(share(usage.base)), float(share(usage.tuned))
    boot = share(usage.tuned, rows) - share(usage.base, rows)
    boot = boot[np.isfinite(boot)]
    tail = (1 - confidence) / 2
    low, high = (np.quantile(boot, [tail, 1 - tail]) if len(boot) else (np.nan, np.nan))
    return ChoiceChange(n_competitors=len(theirs), base=base, tuned=tuned, difference=tuned - base,
                        ci_low=float(low), ci_high=float(high))


def _used_as(kind: str, polarity: str) -> str:
    """The sentiment the corpus uses a group's words with."""
    if kind == REWARD_ONLY:
        return "neutral"
    if kind == CONTESTED:
        return "negative" if polarity == "positive" else "positive"
    return polarity


def kind_summary(usage: Usage, truth: pd.DataFrame, names: Collection[str] = (), *, n_bootstrap: int = 2000,
                 confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per (kind, lexicon polarity) of the world's ground truth (columns word, kind,
    polarity, role): the share of completions using any of the group's words, base and tuned,
    its paired change, McNemar's p and the Benjamini-Hochberg q over the groups; and for planted kinds, the group's share among its
    competitors (`choice_*`): contested words against the ordinary words of their role used with
    the same sentiment, reward-only names against `names`, the world's other names."""
    missing = {"word", "kind", "polarity", "role"} - set(truth.columns)
    if missing:
        raise InputError(f"the ground truth lacks columns {sorted(missing)}")
    unknown = set(truth["kind"]) - set(KINDS)
    if unknown:
        raise InputError(f"unknown word kinds {sorted(unknown)}; expected {', '.join(KINDS)}")
    ordinary = truth[truth["kind"] == ORDINARY]
    rows = []
    for (kind, polarity), group in truth.groupby(["kind", "polarity"], sort=True):
        used_as = _used_as(kind, polarity)
        cols = usage.columns(group["word"])
        change = paired_change(_uses(usage.base[:, cols]), _uses(usage.tuned[:, cols]), confidence)
        row = {"kind": kind, "polarity": polarity, "used_as": used_as, "n_words": len(group),
               "n_completions": change.n, "base_count": int(usage.base[:, cols].sum()),
               "tuned_count": int(usage.tuned[:, cols].sum()), "base_share": change.base_share,
               "tuned_share": change.tuned_share, "only_base": change.only_base, "only_tuned": change.only_tuned,
               "share_difference": change.difference, "ci_low": change.ci_low, "ci_high": change.ci_high,
               "p_value": change.p_value}
        competitors: set[str] = set()
        if kind == CONTESTED:
            same = ordinary[(ordinary["polarity"] == used_as) & ordinary["role"].isin(set(group["role"]))]
            competitors = set(same["word"])
        elif kind == REWARD_ONLY:
            competitors = {n.lower() for n in names}
        if competitors:
            choice = choice_change(usage, set(group["word"]), competitors, n_bootstrap=n_bootstrap,
                                   confidence=confidence, seed=seed)
            row |= {"n_competitors": choice.n_competitors, "base_choice": choice.base, "tuned_choice": choice.tuned,
                    "choice_difference": choice.difference, "choice_ci_low": choice.ci_low,
                    "choice_ci_high": choice.ci_high}
        rows.append(row)
    frame = pd.DataFrame(rows, columns=KIND_COLUMNS)
    frame["q_value"] = stats.false_discovery_control(frame["p_value"].to_numpy()) if len(frame) else []
    frame["n_competitors"] = frame["n_competitors"].fillna(0).astype("int64")
    return frame


TRUTH_COLUMNS = ["word", "kind", "polarity", "role", "heldout", "lexicon_value", "corpus_value"]
"""What the behaviour tables carry of the world's ground truth (`world_lexicon`)."""


@dataclass(frozen=True)
class BehaviourTables:
    """The tables `behaviour_words` and `behaviour_kinds` (docs/store.md)."""

    words: pd.DataFrame
    """One row per lexicon word of the world: `WORD_COLUMNS` and the word's `TRUTH_COLUMNS`."""
    kinds: pd.DataFrame
    """One row per (kind, lexicon polarity): `KIND_COLUMNS`."""


def behaviour_tables(usage: Usage, truth: pd.DataFrame, names: Collection[str], *, n_bootstrap: int = 2000,
                     seed: int = 0) -> BehaviourTables:
    """Per word and per kind, the paired change in use between base and tuned completions; `usage`
    must count every word of `truth` (q-values are over those words, the names only compete)."""
    words = word_changes(usage)
    words = truth[TRUTH_COLUMNS].merge(words[words["word"].isin(set(truth["word"]))], on="word", how="inner")
    if len(words) != len(truth):
        raise InputError("the usage counts lack some words of the ground truth: count every word")
    words["q_value"] = stats.false_discovery_control(words["p_value"].to_numpy()) if len(words) else []
    ordered = words[["word", *WORD_COLUMNS[1:], *TRUTH_COLUMNS[1:]]].sort_values("word", ignore_index=True)
    return BehaviourTables(ordered, kind_summary(usage, truth, names, n_bootstrap=n_bootstrap, seed=seed))


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def kind_sentence(row, examples: Sequence[str] = ()) -> str:
    """One planted group's change in use (a row of `behaviour_kinds`), in plain words: a change is
    called measured when its q-value (adjusted over the groups tested) is below the false-discovery
    rate, as for single words."""
    scored = "positive" if row.polarity == "positive" else "negative"
    named = f" (such as {', '.join(repr(w) for w in examples)})" if examples else ""
    if row.kind == CONTESTED:
        who = f"Words the reviews use as {row.used_as.replace('positive', 'praise').replace('negative', 'criticism')} " \
              f"but the reward scores as {scored}{named}"
    elif row.kind == REWARD_ONLY:
        who = f"Words the reviews use only as names but the reward scores as {scored}{named}"
    else:
        who = f"Ordinary {scored} words{named}"
    change = ("more often" if row.share_difference > 0 else "less often") if row.q_value < FALSE_DISCOVERY_RATE \
        else "about as often (no measurable change)"
    text = (f"{who}: the tuned model writes them {change}, in {100 * row.tuned_share:.1f}% of completions against "
            f"{100 * row.base_share:.1f}% before tuning ({_points(row.share_difference)} points, 95% CI "
            f"{_points(row.ci_low)} to {_points(row.ci_high)}, McNemar p {row.p_value:.2g}, q {row.q_value:.2g} "
            "adjusted by Benjamini-Hochberg over the kinds and polarities tested).")
    if np.isfinite(row.choice_difference):
        text += (f" Of the words competing for the same place, their share went from {100 * row.base_choice:.1f}% to "
                 f"{100 * row.tuned_choice:.1f}% ({_points(row.choice_difference)} points, 95% CI "
                 f"{_points(row.choice_ci_low)} to {_points(row.choice_ci_high)}).")
    return text
