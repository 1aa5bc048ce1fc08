"""Word classes of a feature's top tokens, for the offline explanation (paper 3.4 asks an LLM what
a feature fires on; without one, `offline.py` says it from the feature's own statistics, and a
person searching the feature browser for "positive adjectives" needs the word "adjectives").

Which offline source can honestly say that a word is an adjective? No trained spaCy pipeline can
be installed from PyPI (`en_core_web_sm` is published elsewhere, and this tool downloads nothing),
so each word's class comes from the first of these sources that knows it:

1. spaCy's lexical attributes of `spacy.blank("en")` (`is_punct`, `like_num`): rules over a word's
   characters and a fixed list of number words, exact for what they claim: punctuation, numbers.
2. The synthetic world's own grammar (`data/tiny_world/vocabulary.json`, read through
   `Vocabulary.load`): every word the world writes fills a slot of a known role (sentiment and
   neutral adjectives, verbs and nouns; aspects, roles, relatives and places, which are nouns;
   names; genres). Ground truth rather than a guess, but only for the words the world writes, and
   only on a synthetic world.
3. A trained spaCy pipeline, when the user has an English one installed (`en_core_web_sm` and the
   like, found by `spacy.util.get_installed_models`; detected, never required): its tagger's part
   of speech of the word *alone*, out of context, so an ambiguous word ("work", "kind") takes the
   reading the tagger prefers without a sentence.
4. spaCy's stop-word list (`is_stop`): "function words" (the, a, was, and, not, ...).

A word none of these knows has no class, and the explanation then says "words": on a hub model
without a trained pipeline, content words are never given a part of speech nobody measured.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ADJECTIVES, VERBS, NOUNS, NAMES, ADVERBS = "adjectives", "verbs", "nouns", "names", "adverbs"
NUMBERS, PUNCTUATION, FUNCTION_WORDS, GENRES = "numbers", "punctuation", "function words", "genres"
WORLD_ROLES = {"adjective": ADJECTIVES, "verb": VERBS, "noun": NOUNS, "name": NAMES}
"""The synthetic world's sentiment and neutral slot roles, as classes."""
WORLD_CONTEXT = {"aspect": NOUNS, "role": NOUNS, "person": NOUNS, "place": NOUNS, "name": NAMES, "genre": GENRES}
"""The world's context slots whose words have one class (in this order: 'detective' is a role
before it is a genre); time phrases, years and durations are left to the lexical attributes."""
UNIVERSAL_POS = {"ADJ": ADJECTIVES, "VERB": VERBS, "AUX": VERBS, "NOUN": NOUNS, "PROPN": NAMES, "ADV": ADVERBS,
                 "NUM": NUMBERS, "PUNCT": PUNCTUATION, "DET": FUNCTION_WORDS, "ADP": FUNCTION_WORDS,
                 "PRON": FUNCTION_WORDS, "CCONJ": FUNCTION_WORDS, "SCONJ": FUNCTION_WORDS, "PART": FUNCTION_WORDS}
"""A trained pipeline's universal part-of-speech tags, as classes (others: no class)."""


@functools.cache
def _blank_vocab() -> Any:  # spaCy's Vocab
    import spacy

    return spacy.blank("en").vocab


def installed_pipeline() -> str | None:
    """The first (by name) trained English spaCy pipeline installed as a package, if any."""
    import spacy

    return next((name for name in sorted(spacy.util.get_installed_models()) if name.startswith("en_")), None)


@dataclass(frozen=True)
class WordClasses:
    """word (lower-cased) -> class, from the sources of the module docstring, in their order."""

    world: Mapping[str, str] = field(default_factory=dict)
    """The synthetic world's words and their classes (empty for other worlds)."""
    pipeline: Any = None
    """A loaded trained spaCy pipeline (`spacy.Language`) with a tagger, or None."""
    sources: str = ""
    """The sources used (`class_sources`), for the log."""

    def of(self, word: str) -> str | None:
        lexeme = _blank_vocab()[word]
        if lexeme.is_punct:
            return PUNCTUATION
        if lexeme.like_num:
            return NUMBERS
        if word in self.world:
            return self.world[word]
        if self.pipeline is not None:
            tagged = UNIVERSAL_POS.get(self.pipeline(word)[0].pos_) if word.strip() else None
            if tagged is not None:
                return tagged
        return FUNCTION_WORDS if lexeme.is_stop else None



def class_sources(synthetic_world: bool, pipeline: str | None) -> str:
    """Which sources give classes, with the pipeline's version where it is a package: part of the
    explain stage's fingerprint, so installing a pipeline redoes the explanations."""
    import spacy

    used = ["spaCy lexical attributes"]
    if synthetic_world:
        used.append("the synthetic world's word roles")
    if pipeline is not None:
        version = spacy.util.get_package_version(pipeline) if spacy.util.is_package(pipeline) else None
        used.append(f"spaCy pipeline {pipeline}" + (f" {version}" if version else ""))
    return ", ".join(used)


def world_word_classes() -> dict[str, str]:
    """Every word the synthetic world writes in a slot of one class (sentiment words of every kind,
    candidates for planting included, neutral fillers, one-word context fillers), lower-cased.
    A word in two pools keeps the first class: sentiment pools, then neutral, then context."""
    from lfp_engine.tuning.lexicon import vader_lexicon
    from lfp_engine.worlds.synthetic_reviews import Vocabulary

    vocab = Vocabulary.load(vader_lexicon())
    classes: dict[str, str] = {}
    for word in (*vocab.sentiment, *vocab.candidates):
        classes.setdefault(word.word.lower(), WORLD_ROLES[word.role])
    for role, words in vocab.neutral.items():
        for w in words:
            classes.setdefault(w.lower(), WORLD_ROLES[role])
    for slot, cls in WORLD_CONTEXT.items():
        for w in vocab.context.get(slot, ()):
            if " " not in w:
                classes.setdefault(w.lower(), cls)
    return classes


def word_classes(synthetic_world: bool, pipeline: str | None) -> WordClasses:
    """Word classes from the world's grammar when it is synthetic and from the trained spaCy
    pipeline `pipeline` (a package name or a folder) when given."""
    loaded = None
    if pipeline is not None:
        import spacy

        loaded = spacy.load(pipeline, exclude=["parser", "ner", "lemmatizer", "senter"])
    return WordClasses(world=world_word_classes() if synthetic_world else {}, pipeline=loaded,
                       sources=class_sources(synthetic_world, pipeline))


def available_word_classes(synthetic_world: bool) -> WordClasses:
    """The word classes this machine can give: the world's, and an installed English pipeline's."""
    return word_classes(synthetic_world, installed_pipeline())
