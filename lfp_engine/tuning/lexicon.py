"""The VADER lexicon and the word tokenizer the paper's reward uses.

The reward reads *raw* lexicon means (-4..+4, ten human ratings averaged per word), not
VADER's sentence-level heuristics (negation, boosters, capitals): equation 3 of the paper sums
token values. Tokens come from spaCy's rule-based English tokenizer, lower-cased; the paper used
`en_core_web_md`, whose tokenizer is the same as `spacy.blank("en")`'s, so no model download.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import vaderSentiment


def vader_lexicon_path() -> Path:
    """The lexicon file shipped inside the `vaderSentiment` package."""
    return Path(vaderSentiment.__file__).parent / "vader_lexicon.txt"


@functools.cache
def vader_lexicon() -> Mapping[str, float]:
    """word -> mean human rating, read once per process (read-only: callers share it)."""
    values: dict[str, float] = {}
    with vader_lexicon_path().open(encoding="utf-8") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2 and parts[0]:
                values[parts[0]] = float(parts[1])
    return MappingProxyType(values)


@functools.cache
def _spacy_tokenizer():  # noqa: ANN202 - spaCy's Tokenizer type is not exported stably
    import spacy

    return spacy.blank("en").tokenizer


def word_tokens(texts: Iterable[str], batch_size: int = 512) -> Iterator[list[str]]:
    """Lower-cased spaCy tokens of each text, streamed in batches (the reward's unit of text)."""
    for doc in _spacy_tokenizer().pipe(texts, batch_size=batch_size):
        yield [token.lower_ for token in doc]


def iter_word_spans(texts: Iterable[str], batch_size: int = 512) -> Iterator[list[tuple[str, int, int]]]:
    """(lower-cased token, start char, end char) of each text's tokens, streamed in batches."""
    for doc in _spacy_tokenizer().pipe(texts, batch_size=batch_size):
        yield [(t.lower_, t.idx, t.idx + len(t.text)) for t in doc]


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """The spans of one text: for showing values in place."""
    return next(iter_word_spans([text]))
