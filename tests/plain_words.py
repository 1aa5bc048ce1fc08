"""Plain-language checks of what a page shows a person (issue 20):
its length in words, the statistician's words it must not use, and its Flesch reading ease.

Flesch reading ease (Flesch 1948) is 206.835 - 1.015 (words / sentences) - 84.6 (syllables / words):
100 reads like a children's book, 60-70 is plain English (a 13- to 15-year-old reads it easily), under
30 reads like an academic paper. It is computed here rather than with a package (`textstat` would
do it with a dictionary-backed syllable count through `pyphen`) so the check needs nothing new
installed, and every rule is in sight:

- a *word* is a run of letters (with inner apostrophes or hyphens); numbers and symbols are not words,
  in the count of words as in the count of syllables (a reader takes "0.69" in at a glance);
- a *sentence* ends at '.', '!' or '?' followed by a space or the end, and at every line break (a
  heading, a label, a legend entry is a sentence of its own, as a screen reader reads it);
- syllables are counted by the usual vowel-group rule: groups of one or two vowels (y included), after
  dropping a silent final 'e', 'es' or 'ed' (not after 'l': 'ta-ble'), at least one per word.
"""

from __future__ import annotations

import re

JARGON = {
    "p =": re.compile(r"\bp\s*[=<>≤]"),
    "q =": re.compile(r"\bq\s*[=<>≤]"),
    "CI": re.compile(r"\bCI\b"),
    "tau": re.compile(r"\btau\b", re.IGNORECASE),
    "Kendall": re.compile(r"\bKendall", re.IGNORECASE),
    "bootstrap": re.compile(r"\bbootstrap", re.IGNORECASE),
    "permutation": re.compile(r"\bpermutation", re.IGNORECASE),
    "Benjamini": re.compile(r"\bBenjamini", re.IGNORECASE),
    "FDR": re.compile(r"\bFDR\b"),
    "Spearman": re.compile(r"\bSpearman", re.IGNORECASE),
    "ridge": re.compile(r"\bridge\b", re.IGNORECASE),
}
"""The statistician's words a person must not meet outside an expander, each matched as a whole word
('CI' and 'FDR' in capitals only, so 'circle' or 'ciphers' pass; 'ridge' not inside 'bridge'), and
'p' or 'q' followed by a comparison ('p = 0.2', 'p < 0.001')."""
MAX_WORDS = 700
MIN_READING_EASE = 60.0

WORD = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*")
SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")


def words(text: str) -> list[str]:
    return WORD.findall(text)


def sentences(text: str) -> list[str]:
    """The text's sentences (those holding at least one word)."""
    parts = [piece for line in text.splitlines() for piece in SENTENCE_END.split(line)]
    return [p for p in parts if WORD.search(p)]


def syllables(word: str) -> int:
    """Syllables of an English word by the vowel-group rule (module docstring)."""
    word = re.sub(r"[^a-z]", "", word.lower())
    if len(word) <= 3:
        return 1
    word = re.sub(r"(?:[^laeiouy]es|[^laeiouy]ed|[^laeiouy]e)$", "", word)
    word = re.sub(r"^y", "", word)
    return max(1, len(re.findall(r"[aeiouy]{1,2}", word)))


def reading_ease(text: str) -> float:
    """Flesch reading ease of `text` (module docstring)."""
    found = words(text)
    if not found:
        raise ValueError("no words to read")
    return (206.835 - 1.015 * len(found) / len(sentences(text))
            - 84.6 * sum(syllables(w) for w in found) / len(found))


def jargon(text: str) -> list[str]:
    """The statistician's words `text` uses (`JARGON`)."""
    return [name for name, pattern in JARGON.items() if pattern.search(text)]


def plain_problems(text: str, max_words: int = MAX_WORDS) -> list[str]:
    """What keeps `text` from being plain: too long, jargon, too hard to read (empty when plain)."""
    problems = []
    if len(words(text)) > max_words:
        problems.append(f"{len(words(text))} words (at most {max_words})")
    if used := jargon(text):
        problems.append(f"statistician's words {used}")
    if (ease := reading_ease(text)) < MIN_READING_EASE:
        problems.append(f"Flesch reading ease {ease:.1f} (at least {MIN_READING_EASE:g})")
    return problems
