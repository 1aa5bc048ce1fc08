"""The divergence report: the words whose value inside the model disagrees with the reward's.

The paper reads the implicit reward at words (section 4.1, tables 2 and 9; figure 4 sets each
word's error against how often the tuned model writes it) but never asks which words the model
learned *against* the reward, nor whether tuning put that there. The report does, word by word,
from two measurements of the run:

- `word_values` (stage `probe`): each word's cross-fitted value in the tuned and in the base model,
  read by a probe that never saw the word, with a 95% bootstrap interval over the word's triples,
  and the paired tuned-minus-base difference;
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
with its own q) only describe the case (`CASES`), never change the flag.

The intervals cover a word's contexts (its triples), not the uncertainty of the probe's fit.
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

REPORT_COLUMNS = ["rank", "word", "split", "polarity", "lexicon_value", "tuned_value", "tuned_ci_low", "tuned_ci_high",
                  "base_value", "base_ci_low", "base_ci_high", "difference", "difference_ci_low",
                  "difference_ci_high", "z_opposite", "p_opposite", "q_opposite", "q_agree", "base_q_opposite",
                  "base_q_agree", "difference_q", "behaviour_base_share", "behaviour_tuned_share",
                  "behaviour_difference", "behaviour_ci_low", "behaviour_ci_high", "behaviour_q", "divergent", "case",
                  "reason"]
"""The table `lfp_divergence` (docs/store.md)."""
RECOVERY_COLUMNS = ["evidence", "kind", "n_words", "n_read", "n_flagged", "recall", "recall_ci_low", "recall_ci_high",
                    "precision", "precision_ci_low", "precision_ci_high", "shift", "shift_ci_low", "shift_ci_high"]
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


def divergence_table(word_values: pd.DataFrame, behaviour: pd.DataFrame | None = None) -> pd.DataFrame:
    """`lfp_divergence`: one row per word of the tuned model in `word_values`, ranked, most clearly
    against the reward first (the flag and the cases: module docstring)."""
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
    significant = {name: np.nan_to_num(frame[name].to_numpy(float), nan=1.0) < FALSE_DISCOVERY_RATE
                   for name in ("q_opposite", "q_agree", "base_q_opposite", "base_q_agree", "difference_q")}
    moved = np.where(significant["difference_q"], np.sign(np.nan_to_num(moved_z)), 0.0)
    frame["divergent"] = significant["q_opposite"]
    frame["case"] = [_case(*flags) for flags in zip(significant["q_opposite"], significant["q_agree"],
                                                   significant["base_q_opposite"], significant["base_q_agree"], moved)]
    frame["reason"] = [CASES[row.case] + behaviour_sentence(row) for row in frame.itertuples()]
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


def _recovery_rows(evidence: str, flagged: set[str], read: set[str], truth: pd.DataFrame,
                   shift=None) -> list[dict]:
    rows = []
    for kind, group in truth.groupby("kind", sort=True):
        words = set(group["word"])
        share = proportion(len(words & flagged), len(words))
        moved = shift(words) if shift is not None else (np.nan,) * 3
        rows.append({"evidence": evidence, "kind": kind, "n_words": len(words), "n_read": len(words & read),
                     "n_flagged": len(words & flagged), "recall": share[0], "recall_ci_low": share[1],
                     "recall_ci_high": share[2], "shift": moved[0], "shift_ci_low": moved[1],
                     "shift_ci_high": moved[2]})
    planted = set(truth.loc[truth["kind"] != "ordinary", "word"])
    recall, precision = proportion(len(planted & flagged), len(planted)), proportion(len(planted & flagged),
                                                                                       len(flagged))
    rows.append({"evidence": evidence, "kind": "all", "n_words": len(truth), "n_read": len(read & set(truth["word"])),
                 "n_flagged": len(flagged), "recall": recall[0], "recall_ci_low": recall[1], "recall_ci_high": recall[2],
                 "precision": precision[0], "precision_ci_low": precision[1], "precision_ci_high": precision[2]})
    return rows


def recovery_table(report: pd.DataFrame, truth: pd.DataFrame, n_bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
    """`divergence_recovery`: how much of the world's planted truth (`world_lexicon`: word, kind,
    lexicon_value) the report finds.

    Evidence 'probe' is the report's flag. Evidence 'behaviour' counts the words whose use tuning
    changed toward the reward (q < rate, more often for a positive reward value, less for a
    negative one): the control that shows what the model's behaviour alone can and cannot tell.
    Per kind, recall = the share of the kind's words flagged (for 'ordinary' words: the false
    alarm rate), with a Clopper-Pearson interval; a word the report could not read counts as
    missed; and (evidence 'probe') `shift`, how far tuning moved the kind's values toward the
    reward (`toward_reward`). Row 'all': recall over the planted (non-ordinary) words, precision =
    the share of flags that are planted."""
    missing = {"word", "kind", "lexicon_value"} - set(truth.columns)
    if missing:
        raise InputError(f"the ground truth lacks columns {sorted(missing)}")
    read = set(report["word"])
    rng = np.random.default_rng(seed)
    rows = _recovery_rows("probe", set(report.loc[report["divergent"], "word"]), read, truth,
                          lambda words: toward_reward(report, words, n_bootstrap, rng))
    changed = report[np.nan_to_num(report["behaviour_q"].to_numpy(float), nan=1.0) < FALSE_DISCOVERY_RATE]
    if report["behaviour_q"].notna().any():
        toward = set(changed.loc[np.sign(changed["behaviour_difference"]) == np.sign(changed["lexicon_value"]), "word"])
        rows += _recovery_rows("behaviour", toward, set(report.loc[report["behaviour_q"].notna(), "word"]), truth)
    return pd.DataFrame(rows, columns=RECOVERY_COLUMNS)


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

def recovery_sentence(recovery: pd.DataFrame) -> str:
    """The probe's recovery of a planted world (`divergence_recovery`) in plain words, with the
    false-alarm rate on ordinary words beside it: the control a featured planted word must be read
    against (it is chosen among the planted words, so on its own it shows only that one was found)."""
    probe = recovery[recovery["evidence"] == "probe"].set_index("kind")

    def found(kind: str, label: str) -> str:
        r = probe.loc[kind]
        return (f"{int(r.n_flagged)} of {int(r.n_words)} {label} ({100 * r.recall:.0f}%, 95% CI "
                f"{100 * r.recall_ci_low:.0f} to {100 * r.recall_ci_high:.0f}%)")

    planted = [found(kind, label) for kind, label in (("contested", "contested words"),
                                                      ("reward_only", "reward-only words")) if kind in probe.index]
    text = "Checked against what the world planted, the report flags " + " and ".join(planted)
    if "ordinary" in probe.index:
        text += f", against {found('ordinary', 'ordinary words')} that nobody planted (false alarms)"
    total = probe.loc["all"] if "all" in probe.index else None
    if total is not None and total.n_flagged:
        text += (f"; of its {int(total.n_flagged)} flags, {100 * total.precision:.0f}% are planted words (95% CI "
                 f"{100 * total.precision_ci_low:.0f} to {100 * total.precision_ci_high:.0f}%)")
    return text + "."


REPORT_LISTED = 10
"""Words of the report `lfp report` prints (the most divergent first)."""


def _bracket(value: float, low: float, high: float, digits: int = 3, sign: str = "+") -> str:
    return f"{value:{sign}.{digits}f} [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"


def report_text(report: pd.DataFrame, recovery: pd.DataFrame | None = None, n: int = REPORT_LISTED) -> str:
    """The report's first `n` words and, for a planted world, its recovery, as plain text (`lfp report`)."""
    lines = [f"The divergence report ({len(report)} words, {int(report['divergent'].sum())} divergent; first {n}):",
             f"{'rank':>4}  {'word':<14} {'reward':>6}  {'tuned [95% CI]':<24} {'base':>6}  "
             f"{'tuned-base [95% CI]':<24} {'q opp':>7}  case"]
    for r in report.head(n).itertuples():
        tuned = _bracket(r.tuned_value, r.tuned_ci_low, r.tuned_ci_high)
        moved = _bracket(r.difference, r.difference_ci_low, r.difference_ci_high)
        lines.append(f"{r.rank:>4}  {r.word:<14} {r.lexicon_value:>+6.2f}  {tuned:<24} {r.base_value:>+6.3f}  "
                     f"{moved:<24} {r.q_opposite:>7.2g}  {r.case}")
    if recovery is not None and not recovery.empty:
        lines += ["", "Recovery of the planted words (recall: share of the kind flagged; ordinary: false alarms; "
                  "shift: tuned minus base toward the reward):",
                  f"{'evidence':<10} {'kind':<12} {'words':>5} {'flagged':>7}  {'recall [95% CI]':<22} "
                  f"{'precision [95% CI]':<22} shift [95% CI]"]
        for r in recovery.itertuples():
            precision = _bracket(r.precision, r.precision_ci_low, r.precision_ci_high, 2, "") \
                if np.isfinite(r.precision) else ""
            shift = _bracket(r.shift, r.shift_ci_low, r.shift_ci_high) if np.isfinite(r.shift) else ""
            recall = _bracket(r.recall, r.recall_ci_low, r.recall_ci_high, 2, "")
            lines.append(f"{r.evidence:<10} {r.kind:<12} {r.n_words:>5} {r.n_flagged:>7}  {recall:<22} "
                         f"{precision:<22} {shift}")
    return "\n".join(lines)


def read_divergence_report(store: RunStore) -> pd.DataFrame | None:
    """The run's ranked report: `lfp_divergence` once the word_report stage has run; before that,
    computed from the probe stage's `word_values` (without behaviour); None before the probe
    stage. One place, so `lfp report` and the dashboard never rank a run differently."""
    tables = store.tables()
    if "lfp_divergence" in tables:
        return store.read("lfp_divergence", order_by="rank")
    if "word_values" in tables:
        return divergence_table(store.read("word_values"))
    return None
