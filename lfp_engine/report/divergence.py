"""The divergence report: the words whose value inside the model disagrees with the reward's.

The paper reads the implicit reward at words (section 4.1, tables 2 and 9; figure 4 sets each
word's error against how often the tuned model writes it) but never asks which words the model
learned *against* the reward, nor whether tuning put that there. The report does, word by word,
through two lenses (docs/method.md, "The policy lens") and a control:

- `word_values` (stage `probe`): each word's cross-fitted value in the tuned and in the base model,
  read by a probe that never saw the word, with a 95% bootstrap interval over the word's triples,
  and the paired tuned-minus-base difference;
- `policy_values` (stage `policy`, where it ran): what tuning taught the model to prefer to write,
  beta log pi_tuned/pi_base of the word's triples against their neutral versions, with a 95%
  bootstrap interval over the triples;
- `behaviour_words` (stage `behaviour`, where it ran): the change in how often the model writes the
  word, with McNemar's p and its Benjamini-Hochberg q.

**The flag** (fixed before the planted world's recovery was looked at, and not tuned to it): a
word is `divergent` when the tuned model's value lies on the opposite side of zero from the
reward's value, with the false-discovery rate over all words of the report held at
`FALSE_DISCOVERY_RATE`. Per word, the bootstrap interval gives a standard error (its width over
2 x 1.96, the normal approximation of the bootstrap distribution of a mean), the one-sided
p-value of "the value is on the reward's side or at 0" is Phi(sign(reward) x value / se), and
the Benjamini-Hochberg q over the words must fall below the rate. The same test of the base
model's value, a test of the reward's side, and a two-sided test of the paired difference (each
with its own q) only describe the case (`CASES`), never change the flag. The policy lens is
flagged by the same rule (`policy_divergent`, its own false-discovery control), and the two lenses
together give each word its plain-words case (`LENS_CASES`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from lfp_engine.run.errors import InputError
from lfp_engine.run.store import RunStore
from lfp_engine.statistics import percentile_interval, proportion, resampled_means

FALSE_DISCOVERY_RATE = 0.05
"""Benjamini-Hochberg level of every test of the report (the flag's included)."""
Z = float(stats.norm.ppf(0.975))
"""Half-width of a 95% interval in standard errors."""
DIFFERENCE_MODEL = "tuned_minus_base"
"""The `word_values` model of the paired difference."""

CASES = {
    "opposite_before_tuning": "The model read it against the reward before tuning, and tuning did not measurably "
                              "change that.",
    "moved_toward_not_across": "Tuning moved it toward the reward, but not across zero: the tuned model still "
                               "reads it against the reward.",
    "moved_away": "Tuning moved it further against the reward.",
    "turned_by_tuning": "The model read it with the reward's sign before tuning, and reads it against the reward "
                        "after.",
    "opposite_after_tuning": "The tuned model reads it against the reward; before tuning its reading was not "
                             "clear, and tuning's change is not measurable.",
    "attached_by_tuning": "Tuning attached the reward's value, which the model lacked before.",
    "agrees": "The model reads it with the reward's sign.",
    "moved_toward": "Tuning moved it toward the reward, but its value is not clearly on the reward's side.",
    "unclear": "The model attaches no clear value to it: its interval includes 0.",
}
"""Every `case` of a word, and the plain sentence its `reason` starts with."""

LENS_CASES = {
    "agrees": "Tuning taught it to prefer the word as the reward pays for it, and inside it reads the word that way "
              "too.",
    "prefers_as_paid": "Tuning taught it to prefer the word as the reward pays for it, though inside it attaches no "
                       "clear value to it.",
    "prefers_as_paid_reads_opposite": "Tuning taught it to prefer the word as the reward pays for it, but inside it "
                                      "still reads the word the other way.",
    "learned_opposite": "Tuning taught it the opposite of what the reward pays: it learned to favour the word where "
                        "the reward penalises it, or to avoid it where the reward pays for it.",
    "no_preference": "Tuning left no measurable preference for or against the word.",
}
"""Every `lens_case` of a word (what it learned to write, beside how it reads the word inside), and the
plain sentence its `lens_reason` starts with."""

REPORT_COLUMNS = ["rank", "word", "split", "polarity", "lexicon_value", "tuned_value", "tuned_ci_low", "tuned_ci_high",
                  "base_value", "base_ci_low", "base_ci_high", "difference", "difference_ci_low",
                  "difference_ci_high", "z_opposite", "p_opposite", "q_opposite", "q_agree", "base_q_opposite",
                  "base_q_agree", "difference_q", "behaviour_base_share", "behaviour_tuned_share",
                  "behaviour_difference", "behaviour_ci_low", "behaviour_ci_high", "behaviour_q", "divergent", "case",
                  "reason", "policy_value", "policy_ci_low", "policy_ci_high", "policy_q_opposite", "policy_q_agree",
                  "policy_divergent", "lens_case", "lens_reason"]
"""The table `lfp_divergence` (docs/store.md)."""
LENSES = ("representation", "policy", "behaviour")
"""What each lens reads: the probe's cross-fitted value inside the tuned model, the policy's implicit
reward, and (a control) the change in how often the model writes the word."""
EXPECTED = {
    "representation": {"contested": "opposite", "reward_only": "not_opposite", "ordinary": "not_opposite"},
    "policy": {"contested": "opposite", "reward_only": "agrees", "ordinary": "not_opposite"},
    "behaviour": {"contested": "opposite", "reward_only": "agrees", "ordinary": "not_opposite"},
}
"""What each lens should find for each planted kind (docs/method.md, "The planted world"). Contested words are
written against the reward in the corpus, so the model reads them against it inside and tuning cannot
easily turn that: both lenses should read them opposite. Reward-only words carry no value in the
corpus: inside, the model should read none (a representation flag there is a false alarm), while the
policy can learn the reward's side of them. Ordinary words agree with the reward; a flag there is a
false alarm of any lens."""
RECOVERY_COLUMNS = ["lens", "kind", "expected", "n_words", "n_read", "n_opposite", "n_agree", "recall", "recall_ci_low",
                    "recall_ci_high", "flag_rate", "flag_rate_ci_low", "flag_rate_ci_high", "precision",
                    "precision_ci_low", "precision_ci_high", "shift", "shift_ci_low", "shift_ci_high"]
"""The table `divergence_recovery` (docs/store.md)."""
WORD_VALUE_NEEDS = {"word", "model", "split", "polarity", "lexicon_value", "value", "ci_low", "ci_high"}


def q_values(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values over the finite p-values; NaN stays NaN (an untestable word)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(len(p), np.nan)
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = stats.false_discovery_control(p[finite])
    return out


def side_z(value: np.ndarray, ci_low: np.ndarray, ci_high: np.ndarray, reward: np.ndarray) -> np.ndarray:
    """sign(reward) x value / se, se from the 95% interval: negative when the value lies against the
    reward. NaN where the reward is 0 or the interval is missing or of zero width."""
    se = (np.asarray(ci_high, float) - np.asarray(ci_low, float)) / (2 * Z)
    sign = np.sign(np.asarray(reward, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = sign * np.asarray(value, float) / se
    return np.where((sign != 0) & (se > 0), z, np.nan)


@dataclass(frozen=True)
class SideTests:
    """One model's words tested for either side of zero against the reward, with q over the words."""

    z: np.ndarray
    p_opposite: np.ndarray
    q_opposite: np.ndarray
    q_agree: np.ndarray

    @classmethod
    def of(cls, value, ci_low, ci_high, reward) -> SideTests:
        z = side_z(value, ci_low, ci_high, reward)
        p_opposite = stats.norm.cdf(z)
        return cls(z, p_opposite, q_values(p_opposite), q_values(stats.norm.sf(z)))


def _model(values: pd.DataFrame, model: str, value: str, prefix: str) -> pd.DataFrame:
    """One model's value and interval per word, named `value`, `<prefix>ci_low`, `<prefix>ci_high`."""
    mine = values[values["model"] == model].set_index("word")
    if mine.index.has_duplicates:
        raise InputError(f"word_values holds a word twice for model {model!r}")
    return mine[["value", "ci_low", "ci_high"]].rename(columns={"value": value, "ci_low": f"{prefix}ci_low",
                                                                "ci_high": f"{prefix}ci_high"})


def _case(divergent: bool, agree: bool, base_opposite: bool, base_agree: bool, moved: float) -> str:
    """The case of `CASES`; `moved` is +1 (tuning moved the value toward the reward), -1 (away) or 0."""
    if divergent:
        if moved > 0:
            return "moved_toward_not_across"
        if base_agree:
            return "turned_by_tuning"
        if moved < 0:
            return "moved_away"
        return "opposite_before_tuning" if base_opposite else "opposite_after_tuning"
    if agree:
        return "attached_by_tuning" if moved > 0 and not base_agree else "agrees"
    return "moved_toward" if moved > 0 else "unclear"


def behaviour_sentence(row) -> str:
    """What tuning did to the word's use, in plain words ('' when the change is not significant)."""
    q = row.behaviour_q
    if not np.isfinite(q) or q >= FALSE_DISCOVERY_RATE:
        return ""
    more = "more" if row.behaviour_difference > 0 else "less"
    return (f" Tuning made the model write it {more} often ({100 * row.behaviour_base_share:.1f}% of completions "
            f"before, {100 * row.behaviour_tuned_share:.1f}% after, q {q:.2g}).")


def _lens_case(policy_opposite: bool, policy_agree: bool, reads_opposite: bool, reads_agree: bool) -> str:
    """The case of `LENS_CASES`: what the policy learned to write, beside how the model reads the word."""
    if policy_opposite:
        return "learned_opposite"
    if not policy_agree:
        return "no_preference"
    if reads_opposite:
        return "prefers_as_paid_reads_opposite"
    return "agrees" if reads_agree else "prefers_as_paid"


def lens_sentence(row) -> str:
    """The word's `lens_case` in plain words, with what the representation says where it adds to it."""
    text = LENS_CASES[row.lens_case]
    if row.lens_case == "learned_opposite" and row.divergent:
        text += " Inside, it reads the word against the reward too."
    return text


def divergence_table(word_values: pd.DataFrame, behaviour: pd.DataFrame | None = None,
                     policy: pd.DataFrame | None = None) -> pd.DataFrame:
    """`lfp_divergence`: one row per word of the tuned model in `word_values`, ranked, most clearly
    against the reward first (the flag and the cases: module docstring); with `policy_values`, each
    word's policy value, its own flag and the case of both lenses together."""
    missing = WORD_VALUE_NEEDS - set(word_values.columns)
    if missing:
        raise InputError(f"word_values lacks columns {sorted(missing)}")
    tuned = word_values[word_values["model"] == "tuned"]
    if tuned.empty:
        raise InputError("word_values holds no word of the tuned model")
    frame = tuned[["word", "split", "polarity", "lexicon_value"]].set_index("word").join(
        [_model(word_values, "tuned", "tuned_value", "tuned_"), _model(word_values, "base", "base_value", "base_"),
         _model(word_values, DIFFERENCE_MODEL, "difference", "difference_")]).reset_index()
    reward = frame["lexicon_value"].to_numpy(float)
    mine = SideTests.of(frame["tuned_value"], frame["tuned_ci_low"], frame["tuned_ci_high"], reward)
    base = SideTests.of(frame["base_value"], frame["base_ci_low"], frame["base_ci_high"], reward)
    moved_z = side_z(frame["difference"], frame["difference_ci_low"], frame["difference_ci_high"], reward)
    difference_q = q_values(2 * stats.norm.sf(np.abs(moved_z)))
    frame = frame.assign(z_opposite=mine.z, p_opposite=mine.p_opposite, q_opposite=mine.q_opposite, q_agree=mine.q_agree,
                         base_q_opposite=base.q_opposite, base_q_agree=base.q_agree, difference_q=difference_q)
    frame = _with_behaviour(frame, behaviour)
    frame = _with_policy(frame, policy)
    significant = {name: np.nan_to_num(frame[name].to_numpy(float), nan=1.0) < FALSE_DISCOVERY_RATE
                   for name in ("q_opposite", "q_agree", "base_q_opposite", "base_q_agree", "difference_q",
                                "policy_q_opposite", "policy_q_agree")}
    moved = np.where(significant["difference_q"], np.sign(np.nan_to_num(moved_z)), 0.0)
    frame["divergent"] = significant["q_opposite"]
    frame["case"] = [_case(*flags) for flags in zip(significant["q_opposite"], significant["q_agree"],
                                                   significant["base_q_opposite"], significant["base_q_agree"], moved)]
    frame["reason"] = [CASES[row.case] + behaviour_sentence(row) for row in frame.itertuples()]
    frame["policy_divergent"] = significant["policy_q_opposite"]
    frame["lens_case"] = pd.Series([_lens_case(*flags) if np.isfinite(v) else None for v, *flags in
                          zip(frame["policy_value"], significant["policy_q_opposite"], significant["policy_q_agree"],
                              significant["q_opposite"], significant["q_agree"])], index=frame.index, dtype=object)
    frame["lens_reason"] = [lens_sentence(row) if isinstance(row.lens_case, str) else None
                            for row in frame.itertuples()]
    order = frame.assign(_z=frame["z_opposite"].fillna(np.inf)).sort_values(["_z", "word"]).index
    frame = frame.loc[order].reset_index(drop=True)
    frame["rank"] = np.arange(1, len(frame) + 1)
    return frame[REPORT_COLUMNS]


def _with_behaviour(frame: pd.DataFrame, behaviour: pd.DataFrame | None) -> pd.DataFrame:
    names = {"base_share": "behaviour_base_share", "tuned_share": "behaviour_tuned_share",
             "share_difference": "behaviour_difference", "ci_low": "behaviour_ci_low", "ci_high": "behaviour_ci_high",
             "q_value": "behaviour_q"}
    if behaviour is None:
        return frame.assign(**{column: np.nan for column in names.values()})
    return frame.merge(behaviour[["word", *names]].rename(columns=names), on="word", how="left")


def _with_policy(frame: pd.DataFrame, policy: pd.DataFrame | None) -> pd.DataFrame:
    """The policy lens's value and interval per word, tested for either side like the tuned value."""
    names = {"policy_value": "policy_value", "ci_low": "policy_ci_low", "ci_high": "policy_ci_high"}
    if policy is None:
        return frame.assign(**{column: np.nan for column in (*names.values(), "policy_q_opposite", "policy_q_agree")})
    frame = frame.merge(policy[["word", *names]].rename(columns=names), on="word", how="left")
    tests = SideTests.of(frame["policy_value"], frame["policy_ci_low"], frame["policy_ci_high"],
                         frame["lexicon_value"].to_numpy(float))
    return frame.assign(policy_q_opposite=tests.q_opposite, policy_q_agree=tests.q_agree)


def toward_reward(report: pd.DataFrame, words: set[str], n_bootstrap: int, rng: np.random.Generator,
                  ) -> tuple[float, float, float]:
    """The mean over `words` of sign(reward) x (tuned - base), how far tuning moved their values
    toward the reward (in the probe's units), with a 95% percentile bootstrap over the words."""
    mine = report[report["word"].isin(words)]
    shift = (np.sign(mine["lexicon_value"]) * mine["difference"]).to_numpy(float)
    shift = shift[np.isfinite(shift)]
    if len(shift) == 0:
        return (np.nan, np.nan, np.nan)
    low, high = percentile_interval(resampled_means(shift, n_bootstrap, rng))
    return (float(shift.mean()), low, high)


@dataclass(frozen=True)
class LensReading:
    """Which words one lens read, and which it found against / with the reward (q < the rate)."""

    read: set[str]
    opposite: set[str]
    agree: set[str]

    @classmethod
    def of(cls, report: pd.DataFrame, lens: str) -> LensReading | None:
        """The lens's reading from the report's columns (None when the lens was not measured)."""
        if lens == "representation":
            read = report["tuned_value"].notna()
            return cls(set(report.loc[read, "word"]), set(report.loc[report["divergent"], "word"]),
                       set(report.loc[_significant(report["q_agree"]), "word"]))
        if lens == "policy":
            read = report["policy_value"].notna()
            return None if not read.any() else cls(set(report.loc[read, "word"]),
                                                   set(report.loc[report["policy_divergent"], "word"]),
                                                   set(report.loc[_significant(report["policy_q_agree"]), "word"]))
        read = report["behaviour_q"].notna()
        if not read.any():
            return None
        changed = report[_significant(report["behaviour_q"])]
        toward = np.sign(changed["behaviour_difference"]) == np.sign(changed["lexicon_value"])
        return cls(set(report.loc[read, "word"]), set(changed.loc[~toward, "word"]), set(changed.loc[toward, "word"]))


def _significant(q: pd.Series) -> np.ndarray:
    return np.nan_to_num(q.to_numpy(float), nan=1.0) < FALSE_DISCOVERY_RATE


def _lens_rows(lens: str, reading: LensReading, truth: pd.DataFrame, shift=None) -> list[dict]:
    """Per planted kind: how many words the lens read against / with the reward, the share with the
    outcome it should find (`EXPECTED`, recall) and the share read against the reward (flag rate);
    row 'all': recall over the words it should read opposite, precision = the share of its opposite
    readings on such words. A word the lens could not read counts as missed and as not flagged."""
    expected = EXPECTED[lens]
    rows = []
    for kind, group in truth.groupby("kind", sort=True):
        words = set(group["word"])
        outcome = expected.get(kind, "not_opposite")
        hits = {"opposite": words & reading.opposite, "agrees": words & reading.agree,
                "not_opposite": (words & reading.read) - reading.opposite}[outcome]
        recall, flagged = proportion(len(hits), len(words)), proportion(len(words & reading.opposite), len(words))
        moved = shift(words) if shift is not None else (np.nan,) * 3
        rows.append({"lens": lens, "kind": kind, "expected": outcome, "n_words": len(words),
                     "n_read": len(words & reading.read), "n_opposite": len(words & reading.opposite),
                     "n_agree": len(words & reading.agree), "recall": recall[0], "recall_ci_low": recall[1],
                     "recall_ci_high": recall[2], "flag_rate": flagged[0], "flag_rate_ci_low": flagged[1],
                     "flag_rate_ci_high": flagged[2], "shift": moved[0], "shift_ci_low": moved[1],
                     "shift_ci_high": moved[2]})
    targets = set(truth.loc[truth["kind"].map(lambda k: expected.get(k) == "opposite"), "word"])
    found = targets & reading.opposite
    recall, precision = proportion(len(found), len(targets)), proportion(len(found), len(reading.opposite))
    rows.append({"lens": lens, "kind": "all", "expected": "opposite", "n_words": len(truth),
                 "n_read": len(reading.read & set(truth["word"])), "n_opposite": len(reading.opposite),
                 "n_agree": len(reading.agree), "recall": recall[0], "recall_ci_low": recall[1],
                 "recall_ci_high": recall[2], "precision": precision[0], "precision_ci_low": precision[1],
                 "precision_ci_high": precision[2]})
    return rows


def recovery_table(report: pd.DataFrame, truth: pd.DataFrame, n_bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
    """`divergence_recovery`: how much of the world's planted truth (`world_lexicon`: word, kind,
    lexicon_value) each lens finds, scored by what it should find (`EXPECTED`). The representation
    lens also gets `shift`, how far tuning moved each kind's values toward the reward
    (`toward_reward`); the behaviour lens is the control that shows what the change in the model's
    word use alone can tell."""
    missing = {"word", "kind", "lexicon_value"} - set(truth.columns)
    if missing:
        raise InputError(f"the ground truth lacks columns {sorted(missing)}")
    rng = np.random.default_rng(seed)
    rows = []
    for lens in LENSES:
        reading = LensReading.of(report, lens)
        if reading is not None:
            shift = (lambda words: toward_reward(report, words, n_bootstrap, rng)) if lens == "representation" else None
            rows += _lens_rows(lens, reading, truth, shift)
    return pd.DataFrame(rows, columns=RECOVERY_COLUMNS)


CALIBRATION_COLUMNS = ["lens", "null", "model", "n_words", "n_past_level", "rate", "rate_ci_low", "rate_ci_high",
                       "nominal", "n_flagged"]
"""The table `flag_calibration` (docs/store.md)."""
NULL_WORDS = "neutral_words"
"""The null of `calibration_table`: the triples' neutral words, read held out (`lfp_engine.probe.crossfit`)."""


def calibration_table(nulls: pd.DataFrame) -> pd.DataFrame:
    """`flag_calibration`: the flag's rule on words with no true divergence. The null words (the
    triples' neutral words, target 0 by construction, read held out exactly as a lexicon word is,
    `null_word_values`) get a reward of either sign at random; a calibrated one-sided test at the
    boundary (true value 0) then fires at the nominal rate. Per model: `rate`, the chance a null word
    is flagged at level `FALSE_DISCOVERY_RATE` before any correction (the share of words whose |z|
    passes the one-sided level, halved: only one of the two signs can fire), with a Clopper-Pearson
    interval; `n_flagged`, the null words the report's own rule (Benjamini-Hochberg over the words,
    both signs tested) would flag, where every flag is a false one."""
    rows = []
    level = float(stats.norm.ppf(1 - FALSE_DISCOVERY_RATE))
    for model, group in nulls.groupby("model", sort=False):
        z = side_z(group["value"], group["ci_low"], group["ci_high"], np.ones(len(group)))
        z = z[np.isfinite(z)]
        past = int(np.sum(np.abs(z) > level))
        share = proportion(past, len(z))
        q = q_values(np.concatenate([stats.norm.cdf(z), stats.norm.sf(z)]))
        rows.append({"lens": "representation", "null": NULL_WORDS, "model": model, "n_words": len(z),
                     "n_past_level": past, "rate": share[0] / 2, "rate_ci_low": share[1] / 2,
                     "rate_ci_high": share[2] / 2, "nominal": FALSE_DISCOVERY_RATE,
                     "n_flagged": int(np.sum(q < FALSE_DISCOVERY_RATE))})
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)


def _reads(value: float, low: float, high: float) -> str:
    return f"{value:+.2f} (95% interval {low:+.2f} to {high:+.2f})"


def plain_example(row) -> str:
    """One word of the report (a row of `lfp_divergence`) told in plain sentences, with its numbers."""
    meaning = "praise" if row.tuned_value > 0 else "criticism"
    scored = "a positive" if row.lexicon_value > 0 else "a negative"
    text = (f"Take '{row.word}'. The reward counts it as {scored} word ({row.lexicon_value:+.1f}), but inside the "
            f"tuned model it reads {_reads(row.tuned_value, row.tuned_ci_low, row.tuned_ci_high)}: the model "
            f"treats it as {meaning}.")
    if np.isfinite(row.base_value):
        text += f" Before tuning it read {_reads(row.base_value, row.base_ci_low, row.base_ci_high)}"
        if np.isfinite(row.difference):
            text += f"; tuned minus base: {_reads(row.difference, row.difference_ci_low, row.difference_ci_high)}"
        text += "."
    return f"{text} {CASES[row.case]}{behaviour_sentence(row)}"


def featured(report: pd.DataFrame, prefer: Collection[str] = ()):
    """The divergent word a reader is shown first (a row of `report`, ranked): among the words in
    `prefer` if any is divergent (e.g. a planted world's planted words), the highest-ranked one whose
    use tuning measurably changed, else the highest-ranked one; None when none is divergent."""
    flagged = report[report["divergent"].astype(bool)]
    if flagged["word"].isin(set(prefer)).any():
        flagged = flagged[flagged["word"].isin(set(prefer))]
    if flagged.empty:
        return None
    changed = flagged[np.nan_to_num(flagged["behaviour_q"].to_numpy(float), nan=1.0) < FALSE_DISCOVERY_RATE]
    return next((changed if not changed.empty else flagged).itertuples())


PLANTED = {"contested": "The world planted it as a contested word: the reviews use it with the opposite polarity "
                        "to the reward's, so this is a divergence the report should find.",
           "reward_only": "The world planted it as a reward-only word: the reviews use it only as a name, so before "
                          "tuning it should carry no value.",
           "ordinary": "The world did not plant it: the reviews use it the way the reward scores it, so this flag "
                       "is a false alarm of the report, or something the model learned that nobody planted."}
"""What a planted world's ground truth says about a word of the report (its `kind`)."""

LENS_LABELS = {"representation": "Inside the model (the probe)", "policy": "In what it learned to write (the policy)",
               "behaviour": "In how often it writes each word (behaviour, a control)"}
KIND_LABELS = {"contested": "contested words", "reward_only": "reward-only words", "ordinary": "ordinary words"}
OUTCOME_LABELS = {"opposite": "read against the reward", "agrees": "read on the reward's side",
                  "not_opposite": "not read against the reward"}


def _share(n: int, of: int, share: float, low: float, high: float) -> str:
    return f"{n} of {of} ({100 * share:.0f}%, 95% CI {100 * low:.0f} to {100 * high:.0f}%)"


def recovery_sentence(recovery: pd.DataFrame, lens: str = "representation") -> str:
    """One lens's recovery of a planted world (`divergence_recovery`) in words: per planted kind, how
    many words it reads as it should and how many it reads against the reward (for kinds that should
    not be, false alarms), and the share of its against-the-reward readings on words planted to be."""
    rows = recovery[recovery["lens"] == lens].set_index("kind")
    parts = []
    for kind, label in KIND_LABELS.items():
        if kind not in rows.index:
            continue
        r = rows.loc[kind]
        if r.expected == "not_opposite":
            parts.append(f"{label}: {_share(int(r.n_opposite), int(r.n_words), r.flag_rate, r.flag_rate_ci_low, r.flag_rate_ci_high)} "
                         f"read against the reward (false alarms)")
        else:
            hits = int(r.n_opposite) if r.expected == "opposite" else int(r.n_agree)
            parts.append(f"{label}: {_share(hits, int(r.n_words), r.recall, r.recall_ci_low, r.recall_ci_high)} "
                         f"{OUTCOME_LABELS[r.expected]}, as planted")
    text = f"{LENS_LABELS[lens]}, checked against what the world planted: " + "; ".join(parts)
    if "all" in rows.index and rows.loc["all", "n_opposite"]:
        r = rows.loc["all"]
        text += (f". Of its {int(r.n_opposite)} readings against the reward, {100 * r.precision:.0f}% are on words "
                 f"planted to be read so (95% CI {100 * r.precision_ci_low:.0f} to {100 * r.precision_ci_high:.0f}%)")
    return text + "."


REPORT_LISTED = 10
"""Words of the report `lfp report` prints (the most divergent first)."""


def _bracket(value: float, low: float, high: float, digits: int = 3, sign: str = "+") -> str:
    return f"{value:{sign}.{digits}f} [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"


def report_text(report: pd.DataFrame, recovery: pd.DataFrame | None = None, n: int = REPORT_LISTED) -> str:
    """The report's first `n` words and, for a planted world, its recovery per lens, as plain text (`lfp report`)."""
    policy = report["policy_value"].notna().any()
    lines = [f"The divergence report ({len(report)} words, {int(report['divergent'].sum())} read against the reward "
             f"inside the model" + (f", {int(report['policy_divergent'].sum())} learned against it by the policy"
                                    if policy else "") + f"; first {n}):",
             f"{'rank':>4}  {'word':<14} {'reward':>6}  {'tuned [95% CI]':<24} {'base':>6}  "
             f"{'tuned-base [95% CI]':<24} {'q opp':>7}  " + (f"{'policy [95% CI]':<24} " if policy else "") + "case"]
    for r in report.head(n).itertuples():
        tuned = _bracket(r.tuned_value, r.tuned_ci_low, r.tuned_ci_high)
        moved = _bracket(r.difference, r.difference_ci_low, r.difference_ci_high)
        learned = (f"{_bracket(r.policy_value, r.policy_ci_low, r.policy_ci_high):<24} " if policy else "")
        lines.append(f"{r.rank:>4}  {r.word:<14} {r.lexicon_value:>+6.2f}  {tuned:<24} {r.base_value:>+6.3f}  "
                     f"{moved:<24} {r.q_opposite:>7.2g}  {learned}{r.case}" + (f" / {r.lens_case}" if policy else ""))
    if recovery is not None and not recovery.empty:
        lines += ["", "Recovery of the planted words, per lens (expected: what the lens should find for the kind; "
                  "recall: share of the kind found so; flagged: share read against the reward; precision: share of "
                  "the against-the-reward readings on words planted to be; shift: tuned minus base toward the reward):",
                  f"{'lens':<15} {'kind':<12} {'expected':<13} {'words':>5} {'opp':>4} {'agree':>5}  "
                  f"{'recall [95% CI]':<19} {'flagged [95% CI]':<19} {'precision [95% CI]':<19} shift [95% CI]"]
        for r in recovery.itertuples():
            shown = [_bracket(v, lo, hi, 2, "") if np.isfinite(v) else ""
                     for v, lo, hi in ((r.recall, r.recall_ci_low, r.recall_ci_high),
                                       (r.flag_rate, r.flag_rate_ci_low, r.flag_rate_ci_high),
                                       (r.precision, r.precision_ci_low, r.precision_ci_high))]
            shift = _bracket(r.shift, r.shift_ci_low, r.shift_ci_high) if np.isfinite(r.shift) else ""
            lines.append(f"{r.lens:<15} {r.kind:<12} {r.expected:<13} {r.n_words:>5} {r.n_opposite:>4} {r.n_agree:>5}  "
                         f"{shown[0]:<19} {shown[1]:<19} {shown[2]:<19} {shift}")
    return "\n".join(lines)


def read_divergence_report(store: RunStore) -> pd.DataFrame | None:
    """The run's ranked report: `lfp_divergence` once the word_report stage has run; before that,
    computed from the probe stage's `word_values` (without behaviour); None before the probe
    stage (with the policy lens where its stage ran). One place, so `lfp report` and the dashboard
    never rank a run differently."""
    tables = store.tables()
    if "lfp_divergence" in tables:
        return store.read("lfp_divergence", order_by="rank")
    if "word_values" in tables:
        return divergence_table(store.read("word_values"),
                                policy=store.read("policy_values") if "policy_values" in tables else None)
    return None
