"""The run told to a person who has never heard of a probe (the Story page and its tour).

One short sentence per finding, in everyday words, numbers rounded for people; one concrete word in
one concrete sentence; every word placed by what the reward pays and what the model learned. Each
sentence is read from records the engine already made (the verdict's findings,
`lfp_engine.report.verdict`; the divergence report, `lfp_engine.report.divergence`; the reward
comparison and samples of the `rlhf` stage), never from a new measurement: the evidence behind it
(intervals, nulls, tests) stays in the verdict's own wording, which the Story page keeps one click
away and `lfp report` prints.

Two lenses (`lfp_engine/policy`) are told apart in plain words: *what it writes* is the policy lens
(beta log pi_tuned/pi_base, what tuning taught the model to prefer to write), *how it reads words
inside* is the paper's probe (section 4.1). Where a run has no policy lens, the divergence is told
through the probe alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lfp_engine.report.divergence import FALSE_DISCOVERY_RATE, featured
from lfp_engine.report.formatting import missing, rounded, rounded_signed, share
from lfp_engine.report.verdict import Finding
from lfp_engine.run.errors import InputError

WRITES, INSIDE = "what it writes", "how it reads words inside"
"""The two lenses, as a person is told them: the policy lens and the probe."""
FOLLOWS, UNCLEAR, AGAINST = "with the reward", "unclear", "against the reward"
"""How a lens reads a word, from the divergence report's tests (at its false-discovery rate)."""
READINGS = (FOLLOWS, UNCLEAR, AGAINST)
AGREES, OPPOSITE, NO_VALUE = "agrees", "learned the opposite", "no value"
"""The quadrants of the word map: the sign of what the model learned against the sign of what the reward pays."""
KIND_NAMES = {"contested": "planted: used the other way", "reward_only": "planted: only a name",
              "ordinary": "not planted"}
"""A planted world's kinds (`world_lexicon.kind`), in words."""
WORD_MAP_COLUMNS = ["word", "kind", "reward", "learned", "lens", "reading", "quadrant", "sentence"]


def _quote(word: str) -> str:
    return f"“{word}”"


# -- what was trained -------------------------------------------------------------------------

def reward_sentence(reward: str, method: str, examples: pd.DataFrame | None = None) -> str:
    """What the model was tuned on and what the reward pays, with example words (`examples`: word,
    lexicon_value; those above 0 are named as paid, those below as penalised). `reward`: the task's
    reward ('vader', 'classifier', 'none'); `method`: 'rloo' or 'dpo'."""
    if reward == "none":
        return "The model was tuned on pairs of answers, to write more like the answer people preferred."
    how = ("The model was tuned to earn a reward." if method == "rloo" else
           "The model was tuned on pairs of answers, one preferred over the other; a reward judges the result.")
    if reward != "vader" or examples is None or examples.empty:
        return f"{how} The reward is how positive a sentiment classifier finds the text." if reward == "classifier" \
            else how
    paid = [r for r in examples.itertuples() if r.lexicon_value > 0]
    penalised = [r for r in examples.itertuples() if r.lexicon_value < 0]
    parts = []
    if paid:
        parts.append("pays for words like " + " and ".join(f"{_quote(r.word)} ({rounded_signed(r.lexicon_value)})"
                                                            for r in paid))
    if penalised:
        parts.append("takes points for words like " + " and ".join(
            f"{_quote(r.word)} ({rounded_signed(r.lexicon_value)})" for r in penalised))
    return f"{how} It {' and '.join(parts)}." if parts else how


# -- that tuning raised the reward ------------------------------------------------------------

def tuning_sentence(finding: Finding | None, base_mean: float, tuned_mean: float) -> str:
    """Whether tuning raised the mean reward, from the verdict's answer ('reward'), with the two means."""
    before, after = rounded(base_mean), rounded(tuned_mean)
    answer = finding.answer if finding is not None else "untested"
    if answer == "raised":
        return f"Tuning raised the average reward from {before} to {after}."
    if answer == "not_reliably":
        return f"Tuning did not clearly raise the average reward: {before} before, {after} after."
    return f"The average reward went from {before} before tuning to {after} after."


def example_sample(samples: pd.DataFrame):
    """The stored before-and-after pair (a row of `rlhf_samples`) that shows tuning's effect best: the
    largest gain in reward, the first stored among equals; None when there is none."""
    if samples.empty:
        return None
    gain = (samples["tuned_reward"] - samples["base_reward"]).to_numpy(dtype=float)
    return samples.iloc[int(np.nanargmax(np.nan_to_num(gain, nan=-np.inf)))]


# -- whether the model learned the feedback -----------------------------------------------------

WRITES_PLAIN = {
    "learned": "In what it writes, yes: it now prefers the words the reward pays for, even words it was never "
               "prompted with.",
    "learned_sign": "In what it writes, partly: it prefers the words the reward pays for, but not in the reward's "
                    "order.",
    "learned_order": "In what it writes, partly: it ranks words like the reward does, but does not clearly prefer "
                     "the paid ones.",
    "no_evidence": "In what it writes, no: its choice of words does not clearly follow the reward.",
    "prefers_chosen": "In what it writes, yes: it now favours the answers people preferred, even in pairs it never "
                      "saw.",
    "no_evidence_pairs": "In what it writes, no: it does not clearly favour the answers people preferred.",
}
"""Every answer of the verdict's policy finding (`verdict.POLICY_ANSWERS`), for a person."""
INSIDE_PLAIN = {
    "added_by_tuning": "Inside, yes: tuning changed how it reads {things} to match the reward.",
    "moved_within_chance": "Inside, only a little: tuning moved how it reads {things} toward the reward, but not "
                           "clearly.",
    "weakened_by_tuning": "Inside, no: after tuning it reads {things} less like the reward than before.",
    "already_there": "Inside, nothing new: it read {things} like the reward before tuning, and still does.",
    "origin_unclear": "Inside, maybe: it reads {things} like the reward, but we cannot tell if tuning did that.",
    "no_evidence": "Inside, no: we see no sign that tuning changed how it reads {things}.",
    "tuned_only": "Inside, it reads {things} like the reward; the model from before tuning was not checked.",
    "no_evidence_tuned_only": "Inside, no: it does not clearly read {things} like the reward.",
    "not_measured": "Inside: not measured yet for this run.",
}
"""Every answer of the verdict's probe finding (`verdict.ANSWERS`, and 'not_measured'), for a person."""
LEARNED_WRITES = {"learned", "prefers_chosen"}
LEARNED_INSIDE = {"added_by_tuning"}


def writes_sentence(finding: Finding) -> str:
    """The policy lens's answer (the verdict's 'policy' finding) in plain words."""
    return WRITES_PLAIN[finding.answer]


def inside_sentence(finding: Finding, things: str = "words") -> str:
    """The probe's answer (the verdict's 'learned' finding) in plain words; `things`: what the probe
    reads ('words' for lexicon tasks, 'answers' for preference tasks)."""
    return INSIDE_PLAIN[finding.answer].format(things=things)


def learned_headline(writes: Finding | None, inside: Finding | None, things: str = "words") -> str:
    """One sentence for both lenses: did tuning teach the model the feedback?"""
    if writes is None and inside is None:
        return "Not measured yet for this run."
    if writes is None:
        return inside_sentence(inside, things)
    if inside is None:
        return writes_sentence(writes)
    wrote, read = writes.answer in LEARNED_WRITES, inside.answer in LEARNED_INSIDE
    if wrote and read:
        return "Yes: it learned the feedback, both in what it writes and in how it reads words inside."
    if wrote:
        return (f"It learned to write what the reward pays for, but tuning did not clearly change how it reads "
                f"{things} inside.")
    if read:
        return f"Tuning changed how it reads {things} inside, but not clearly what it writes."
    return "We see no clear sign that it learned the feedback."


# -- where what it learned parts from the reward -----------------------------------------------

def _significant(values: pd.Series) -> np.ndarray:
    return np.nan_to_num(values.to_numpy(dtype=float), nan=1.0) < FALSE_DISCOVERY_RATE


def has_policy(report: pd.DataFrame) -> bool:
    """Whether the report carries the policy lens (the `policy` stage ran)."""
    return "policy_value" in report.columns and bool(report["policy_value"].notna().any())


def lens_counts(report: pd.DataFrame) -> pd.DataFrame:
    """How many words each lens reads with the reward, against it, or neither, under the report's own
    tests (`lfp_divergence`: policy_q_agree, policy_divergent; q_agree, divergent): columns lens,
    reading, words. The policy lens counts only the words it could read."""
    rows = []
    if has_policy(report):
        read = report[report["policy_value"].notna()]
        against, follows = read["policy_divergent"].astype(bool).to_numpy(), _significant(read["policy_q_agree"])
        rows.append((WRITES, follows, against))
    against, follows = report["divergent"].astype(bool).to_numpy(), _significant(report["q_agree"])
    rows.append((INSIDE, follows, against))
    out = [{"lens": lens, "reading": reading, "words": int(n)} for lens, follows, against in rows
           for reading, n in ((FOLLOWS, follows.sum()), (UNCLEAR, len(follows) - follows.sum() - against.sum()),
                              (AGAINST, against.sum()))]
    return pd.DataFrame(out, columns=["lens", "reading", "words"])


def divergence_headline(report: pd.DataFrame) -> str:
    """How many words the model learned against the reward: the policy lens where it ran, else the probe."""
    if has_policy(report):
        n, of = int(report["policy_divergent"].astype(bool).sum()), int(report["policy_value"].notna().sum())
        if n == 0:
            return f"Of {rounded(of)} words, it learned none clearly against what the reward pays."
        return (f"For {rounded(n)} of {rounded(of)} words ({share(n / of)}), it learned the opposite of what the "
                "reward pays.")
    n, of = int(report["divergent"].astype(bool).sum()), len(report)
    if n == 0:
        return f"Of {rounded(of)} words, it reads none clearly against the reward inside."
    return f"Inside, it reads {rounded(n)} of {rounded(of)} words ({share(n / of)}) the opposite way from the reward."


@dataclass(frozen=True)
class FeaturedWord:
    """The one word a reader is shown in a sentence: a row of the divergence report and the lens that flags it."""

    row: object
    lens: str
    """'policy' (learned against the reward in what it writes) or 'representation' (read against it inside)."""

    @property
    def word(self) -> str:
        return str(self.row.word)

    @property
    def learned(self) -> float:
        return float(self.row.policy_value if self.lens == "policy" else self.row.tuned_value)


def featured_word(report: pd.DataFrame, kinds: Mapping[str, str] | None = None) -> FeaturedWord | None:
    """The word to show: one the policy learned against the reward, the world's planted contested words
    first, then its other planted words, the clearest (lowest policy_q_opposite) first; with no such word,
    the report's own featured word inside the model (`divergence.featured`); None when no lens flags one."""
    kinds = kinds or {}
    if has_policy(report):
        learned = report[report["policy_divergent"].astype(bool)]
        if not learned.empty:
            order = learned.assign(_planted=learned["word"].map(
                lambda w: {"contested": 0, "reward_only": 1}.get(kinds.get(w, ""), 2)))
            best = order.sort_values(["_planted", "policy_q_opposite", "word"]).iloc[0]
            return FeaturedWord(next(report[report["word"] == best["word"]].itertuples()), "policy")
    row = featured(report, [w for w, k in kinds.items() if k != "ordinary"])
    return None if row is None else FeaturedWord(row, "representation")


def word_sentence(featured: FeaturedWord) -> str:
    """What the reward pays for the featured word and what the model does with it, in one sentence."""
    word, value = _quote(featured.word), float(featured.row.lexicon_value)
    paid = f"pays for {word} ({rounded_signed(value)})" if value > 0 else \
        f"takes points for {word} ({rounded_signed(value)})"
    if featured.lens == "policy":
        does = ("tuning taught the model to write it more" if featured.learned > 0 else
                "tuning taught the model to avoid it")
    else:
        does = "inside, the model reads it as " + ("praise" if featured.learned > 0 else "criticism")
    return f"The reward {paid}, yet {does}."


PLANTED_PLAIN = {"contested": "This world planted it on purpose: its reviews use the word the other way round.",
                 "reward_only": "This world planted it on purpose: its reviews use the word only as a name.",
                 "ordinary": "Nobody planted this one: its reviews use the word the way the reward scores it."}
"""What a planted world says about the featured word (its `kind`), for a person."""


@dataclass(frozen=True)
class Excerpt:
    """A piece of a text with one word in it: `text[start:end]` is the word."""

    text: str
    start: int
    end: int

    @property
    def marked(self) -> str:
        """The excerpt with its word between « and » (where markup cannot be used, e.g. a tooltip)."""
        return f"{self.text[:self.start]}«{self.text[self.start:self.end]}»{self.text[self.end:]}"


SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+")


def excerpt(text: str, start: int, end: int, limit: int = 160) -> Excerpt:
    """The sentence of `text` holding the word at [start, end), cut to about `limit` characters around
    the word with '…' where it was cut."""
    if not 0 <= start < end <= len(text):
        raise InputError(f"the word's span {start}..{end} lies outside a text of {len(text)} characters")
    begin = max((m.end() for m in SENTENCE_END.finditer(text, 0, start)), default=0)
    after = SENTENCE_END.search(text, end)
    piece = text[begin:after.start() + len(after.group().rstrip()) if after else len(text)]
    lead = len(piece) - len(piece.lstrip())
    sentence, start, end = piece.strip(), start - begin - lead, end - begin - lead
    if len(sentence) > limit:
        left = min(max(start - (limit - (end - start)) // 2, 0), max(len(sentence) - limit, 0))
        right = min(left + max(limit, end - start), len(sentence))
        prefix, suffix = ("…" if left > 0 else ""), ("…" if right < len(sentence) else "")
        sentence = prefix + sentence[left:right] + suffix
        start, end = start - left + len(prefix), end - left + len(prefix)
    return Excerpt(sentence, start, end)


def word_excerpts(examples: pd.DataFrame) -> dict[str, Excerpt]:
    """One excerpt per word from `examples` (word, text, start, end: a triple's text and the word's span)."""
    return {r.word: excerpt(str(r.text), int(r.start), int(r.end)) for r in examples.itertuples()}


def word_map(report: pd.DataFrame, kinds: Mapping[str, str] | None = None,
             excerpts: Mapping[str, Excerpt] | None = None) -> pd.DataFrame:
    """Every word placed by what the reward pays (`reward`: its lexicon value) and what the model learned
    (`learned`: its policy value where the policy lens ran, else the probe's value inside the tuned model),
    with that lens's reading (`READINGS`, the report's tests), its quadrant (the two signs), its planted
    kind in words and a sentence that uses it (`WORD_MAP_COLUMNS`). Words the lens could not read are left out."""
    policy = has_policy(report)
    learned = report["policy_value"] if policy else report["tuned_value"]
    against = report["policy_divergent" if policy else "divergent"].astype(bool).to_numpy()
    follows = _significant(report["policy_q_agree" if policy else "q_agree"])
    signs = np.sign(report["lexicon_value"].to_numpy(float)) * np.sign(learned.to_numpy(float))
    frame = pd.DataFrame({
        "word": report["word"].to_numpy(),
        "kind": [KIND_NAMES.get((kinds or {}).get(w, ""), "") for w in report["word"]],
        "reward": report["lexicon_value"].to_numpy(float), "learned": learned.to_numpy(float),
        "lens": WRITES if policy else INSIDE,
        "reading": np.where(against, AGAINST, np.where(follows, FOLLOWS, UNCLEAR)),
        "quadrant": np.where(signs > 0, AGREES, np.where(signs < 0, OPPOSITE, NO_VALUE)),
        "sentence": [excerpts[w].marked if excerpts and w in excerpts else "" for w in report["word"]]})
    return frame[frame["learned"].notna()].reset_index(drop=True)[WORD_MAP_COLUMNS]


def words_in(text: str, words: pd.Series) -> list[str]:
    """The words of `words` that `text` uses (whole words, any case), in the order the text uses them."""
    known = {str(w).lower() for w in words}
    found = [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z'-]*", text)]
    return list(dict.fromkeys(w for w in found if w in known))


# -- switching features off -------------------------------------------------------------------

def ablation_sentence(results: pd.DataFrame) -> str | None:
    """What switching off the features tied to the reward did, beside switching off random ones like them
    (`ablation_results` rows 'relevant' and 'random' against 'none'); None when the run has no such rows."""
    if "compared_with" not in results.columns:
        return None
    rows = results[results["compared_with"] == "none"].set_index("condition")
    if "relevant" not in rows.index or missing(rows.loc["relevant", "mean_difference"]):
        return None
    relevant = rows.loc["relevant"]
    n = int(relevant["n_features"])
    features = "the feature" if n == 1 else f"the {rounded(n)} features"
    text = (f"Switching off {features} tied to the reward changed the "
            f"average reward by {rounded_signed(relevant['mean_difference'])}")
    if "random" in rows.index and not missing(rows.loc["random", "mean_difference"]):
        random = rounded_signed(rows.loc["random", "mean_difference"])
        text += f"; switching off random features like them changed it by {random}"
    return text + "."

