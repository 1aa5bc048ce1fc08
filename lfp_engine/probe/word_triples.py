"""Word-substitution triples for the reward tasks (paper 3.3).

A corpus sentence containing a lexicon word, in three versions with that word replaced by a
positive, a neutral and a negative word ("That movie was great / okay / awful"). The words are
split into train and test sets *before* any triple is made, and a triple draws both its positive
and negative word from one split, so no test word is ever seen in training. The neutral word is
absent from the lexicon and fits the slot (same role in the synthetic world, where roles are
known). Occurrences right after a negation ("not bad") are skipped: substituting there would
pair a positive word with a negated, negative reading. The activation at a word depends only on
what precedes it (the model is causal), so each version keeps up to `max_context_chars` of
preceding context and the rest of its sentence.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lfp_engine.probe.triples import triple_frame
from lfp_engine.run.errors import InputError
from lfp_engine.tuning.lexicon import iter_word_spans, word_tokens

NEGATIONS = frozenset({"not", "n't", "never", "no", "nor", "without", "hardly"})
ANY_ROLE = "any"
_SENTENCE_END = re.compile(r"[.!?](\s|$)")


@dataclass(frozen=True)
class WordPools:
    """The lexicon words triples substitute, with their split, and neutral fillers per role."""

    words: pd.DataFrame
    """word, value, role, polarity ('positive'/'negative'), split ('train'/'test')."""
    neutral: Mapping[str, tuple[str, ...]]

    def pools(self) -> dict[tuple[str, str, str], list[str]]:
        """(split, polarity, role) -> sorted words."""
        out: dict[tuple[str, str, str], list[str]] = {}
        for key, group in self.words.groupby(["split", "polarity", "role"]):
            out[key] = sorted(group["word"])
        return out

    def role_of(self) -> dict[str, str]:
        return dict(zip(self.words["word"], self.words["role"], strict=True))


def synthetic_pools(ground_truth: pd.DataFrame, neutral: Mapping[str, Sequence[str]]) -> WordPools:
    """The synthetic world's words; its held-out words (never in RL prompts) are the test words."""
    words = ground_truth.rename(columns={"lexicon_value": "value"})[["word", "value", "role", "polarity"]].copy()
    words["split"] = np.where(ground_truth["heldout"], "test", "train")
    return WordPools(words=words.reset_index(drop=True), neutral={k: tuple(v) for k, v in neutral.items()})


def corpus_pools(texts: Sequence[str], lexicon: Mapping[str, float], neutral: Sequence[str], *, min_count: int,
                 min_abs_value: float, test_fraction: float, rng: np.random.Generator) -> WordPools:
    """Lexicon words frequent enough in a real corpus (IMDb), split per polarity at random."""
    counts: Counter[str] = Counter()
    for tokens in word_tokens(texts):
        counts.update(tokens)
    rows = [{"word": w, "value": lexicon[w], "role": ANY_ROLE, "polarity": "positive" if lexicon[w] > 0 else "negative"}
            for w, n in counts.items()
            if n >= min_count and w in lexicon and w.isalpha() and abs(lexicon[w]) >= min_abs_value]
    words = pd.DataFrame(rows, columns=["word", "value", "role", "polarity"]).sort_values("word").reset_index(drop=True)
    words["split"] = "train"
    for polarity in ("positive", "negative"):
        idx = words.index[words["polarity"] == polarity].to_numpy()
        n_test = max(1, round(test_fraction * len(idx))) if len(idx) > 1 else 0
        words.loc[rng.permutation(idx)[:n_test], "split"] = "test"
    neutral_words = tuple(w for w in neutral if w not in lexicon)
    return WordPools(words=words, neutral={ANY_ROLE: neutral_words})


def find_occurrences(corpus: pd.DataFrame, pools: WordPools, skip_negated: bool = True) -> pd.DataFrame:
    """Every occurrence of a pool word in the corpus: text_id, start, end (chars), word, role."""
    roles = pools.role_of()
    rows = []
    for text_id, spans in zip(corpus["text_id"], iter_word_spans(corpus["text"]), strict=True):
        for i, (token, start, end) in enumerate(spans):
            if token in roles and not (skip_negated and i > 0 and spans[i - 1][0] in NEGATIONS):
                rows.append((int(text_id), start, end, token, roles[token]))
    return pd.DataFrame(rows, columns=["text_id", "start", "end", "word", "role"])


def _cycle(words: list[str], rng: np.random.Generator) -> Iterator[str]:
    """Every word in turn, reshuffled each round: all words get nearly equal numbers of triples."""
    if not words:
        raise InputError("an empty word pool cannot supply substitutes")
    while True:
        yield from rng.permutation(words).tolist()


_ARTICLE_BEFORE = re.compile(r"(?:^|(?<=\s))([Aa])n? $")


def _agree_article(before: str, word: str) -> str:
    """'a' or 'an' before the substituted word, as its first letter asks."""
    article = "an" if word[:1].lower() in "aeiou" else "a"
    return _ARTICLE_BEFORE.sub(lambda m: (m.group(1) + article[1:]) + " ", before)


class _Substitutes:
    """Per (kind, role), an endless balanced stream of substitute words from one split."""

    def __init__(self, by_key: dict[tuple[str, str, str], list[str]], neutral: Mapping[str, tuple[str, ...]],
                 split: str, rng: np.random.Generator):
        self.by_key, self.neutral, self.split, self.rng = by_key, neutral, split, rng
        self.streams: dict[tuple[str, str], Iterator[str]] = {}

    def next(self, kind: str, role: str) -> str:
        key = (kind, role)
        if key not in self.streams:
            words = list(self.neutral[role]) if kind == "neutral" else self.by_key[(self.split, kind, role)]
            self.streams[key] = _cycle(words, self.rng)
        return next(self.streams[key])


def _context(text: str, start: int, end: int, max_chars: int) -> tuple[str, str]:
    """Preceding context (cut at a word boundary) and the rest of the word's sentence."""
    begin = max(0, start - max_chars)
    if begin > 0:
        space = text.find(" ", begin)
        begin = space + 1 if 0 <= space < start else begin
    match = _SENTENCE_END.search(text, end)
    stop = match.start() + 1 if match else len(text)
    return text[begin:start], text[end:stop]


def word_triples(corpus: pd.DataFrame, pools: WordPools, n_triples: int, rng: np.random.Generator,
                 max_context_chars: int = 600, skip_negated: bool = True) -> pd.DataFrame:
    """`n_triples` substitution triples, shared between the splits in proportion to their words."""
    occ = find_occurrences(corpus, pools, skip_negated)
    if occ.empty:
        raise InputError("no corpus text contains a word of the lexicon pools: nothing to build triples from")
    texts = dict(zip(corpus["text_id"], corpus["text"], strict=True))
    value = dict(zip(pools.words["word"], pools.words["value"], strict=True))
    n_words = pools.words["split"].value_counts()
    by_key = pools.pools()
    rows = []
    for split in ("train", "test"):
        n = round(n_triples * n_words.get(split, 0) / len(pools.words))
        roles = [r for r in occ["role"].unique()
                 if by_key.get((split, "positive", r)) and by_key.get((split, "negative", r)) and pools.neutral.get(r)]
        usable = occ[occ["role"].isin(roles)]
        if n == 0 or usable.empty:
            continue
        picks = usable.iloc[rng.integers(0, len(usable), size=n)]
        supply = _Substitutes(by_key, pools.neutral, split, rng)
        for o in picks.itertuples():
            before, after = _context(texts[o.text_id], o.start, o.end, max_context_chars)
            capital = texts[o.text_id][o.start].isupper()
            row = {"kind": "word", "split": split, "source_id": o.text_id, "generator": "substitution",
                   "role": o.role, "original_word": o.word, "grade": None}
            for kind in ("positive", "neutral", "negative"):
                word = supply.next(kind, o.role)
                shown = word.capitalize() if capital else word
                prefix = _agree_article(before, word)
                row[f"word_{kind}"] = word
                row[f"text_{kind}"] = prefix + shown + after
                row[f"start_{kind}"] = len(prefix)
                row[f"end_{kind}"] = len(prefix) + len(shown)
            row["value_positive"] = value[row["word_positive"]]
            row["value_negative"] = value[row["word_negative"]]
            rows.append(row)
    return triple_frame(rows)
