"""The verdict: plain-language answers to the questions a run is made for, each read from measured
numbers, their intervals and their tests, with the numbers beside every sentence.

1. *Did tuning raise the reward?* From the paired comparison of base and tuned completions.
2. *Did tuning teach the model the feedback, in what it prefers to write?* The policy lens (docs/method.md, "The policy lens", table `policy_metrics`): on held-out words, does beta log pi_tuned/pi_base take the
   reward's sign (against 50%) and order words of one polarity like the reward (within-polarity
   Kendall tau against the lexicon's values permuted among the words)? The base model's reading is 0
   by definition, so the reading is itself tuned minus base. DPO tasks: the implicit reward's
   preference accuracy on held-out pairs, beside what TRL logged in training.
3. *Did tuning teach the model the feedback, in how it represents words?* The paper answers with
   the probe's agreement with the reward (section 4.1, tables 3, 4, 10). Agreement alone cannot say
   whether tuning taught it: the answer is read from the probe's *within-polarity* Kendall tau on
   held-out words against its permutation null (pooled tau mostly measures polarity), and from the
   paired difference between the same probe on the tuned and on the base model
   (`tuned_minus_base`). Preference tasks read held-out accuracy and its difference the same way.
4. *Where does it diverge?* The divergence report (`lfp_engine.report.divergence`, table
   `lfp_divergence`): words the policy learned against the reward, and words whose cross-fitted value
   inside the model lies on the other side of zero from their reward, each with the false-discovery
   rate over the words controlled.

Computed once, here, from the store: the dashboard's pages and `lfp report` print the same record.
The thresholds are the constants below and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from lfp_engine.report.divergence import FALSE_DISCOVERY_RATE, read_divergence_report
from lfp_engine.report.formatting import interval, missing, num, p_value, percent, signed
from lfp_engine.report.headline import read_headline
from lfp_engine.run.manifest import read_manifest
from lfp_engine.run.store import RunStore

SIGNIFICANCE = 0.05
"""A test below this p-value counts as evidence; intervals are 95% (= 1 - SIGNIFICANCE)."""
WORDS_LISTED = 5
"""Diverging words named in the answer (the clearest first); the rest are counted."""
REWARD_NAMES = {"vader_reward": "VADER reward", "classifier_reward": "classifier reward",
                "preference_margin": "preference margin"}


@dataclass(frozen=True)
class Finding:
    """One question's answer: `answer` names the case, `headline` says it, `sentences` give the numbers."""

    key: str
    """'reward', 'learned' or 'divergence'."""
    question: str
    answer: str
    headline: str
    sentences: tuple[str, ...]

    @property
    def text(self) -> str:
        """The answer as every surface shows it (page, `lfp report`, `lfp status`)."""
        return " ".join((self.headline, *self.sentences))


@dataclass(frozen=True)
class Verdict:
    """The run's answers, in the order of the questions; a question whose stage has not run is absent."""

    findings: tuple[Finding, ...]

    def get(self, key: str) -> Finding | None:
        return next((f for f in self.findings if f.key == key), None)

    def text(self) -> str:
        """Plain text: each question, then its answer on one line."""
        return "\n\n".join(f"{f.question}\n{f.text}" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"findings": [{**asdict(f), "text": f.text} for f in self.findings]}


@dataclass(frozen=True)
class Reading:
    """One `probe_metrics` row as the verdict reads it."""

    value: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    null_q95: float

    @classmethod
    def of(cls, metrics: pd.DataFrame, variant: str, subset: str, metric: str) -> Reading | None:
        rows = metrics[(metrics["variant"] == variant) & (metrics["subset"] == subset) & (metrics["metric"] == metric)]
        if rows.empty:
            return None
        row = rows.iloc[0]
        return cls(float(row["value"]), float(row["ci_low"]), float(row["ci_high"]), float(row["p_value"]),
                   int(row["n"]), float(row.get("null_q95", float("nan"))))

    @property
    def beats_null(self) -> bool:
        return not missing(self.p_value) and self.p_value < SIGNIFICANCE

    @property
    def side(self) -> str:
        """'above' or 'below' when the interval excludes 0, else 'spans'."""
        if not missing(self.ci_low) and self.ci_low > 0:
            return "above"
        if not missing(self.ci_high) and self.ci_high < 0:
            return "below"
        return "spans"

    def interval(self, show: Callable[[Any], str] = num) -> str:
        return interval(self.ci_low, self.ci_high, show)


@dataclass(frozen=True)
class Skill:
    """What the probe checks the model for, as a verb phrase: `does` (it ...), `do` (they ...)."""

    does: str
    do: str


WORD_SKILL = Skill("orders words of the same polarity like the reward",
                   "order words of the same polarity like the reward")
TEXT_SKILL = Skill("tells the preferred answer from the rejected one", "tell the preferred answer from the rejected one")

ANSWERS = {
    "added_by_tuning": "Tuning taught it: the tuned model {does} beyond chance, and more than the base model did.",
    "moved_within_chance": "Tuning moved it, but not past chance: the tuned model {does} more than the base model "
                           "did, yet not beyond chance.",
    "weakened_by_tuning": "Tuning weakened it: the tuned model {does} less than the base model did.",
    "already_there": "The model already knew this before tuning: both models {do} beyond chance, and tuning did "
                     "not measurably change it.",
    "origin_unclear": "The tuned model {does} beyond chance, but the data cannot tell whether tuning added it: the "
                      "base model does not clear chance, yet the two do not measurably differ.",
    "no_evidence": "No evidence either way: the tuned model does not {do} beyond chance, and tuning did not "
                   "measurably change it.",
    "tuned_only": "The tuned model {does} beyond chance; whether tuning added it is not measured (no base-model "
                  "probe).",
    "no_evidence_tuned_only": "No evidence: the tuned model does not {do} beyond chance (and no base-model probe "
                              "measures what tuning changed).",
}
"""Every answer to "did tuning teach the model the feedback?" that the numbers can produce."""


def classify(tuned: Reading, base: Reading | None, difference: Reading | None) -> str:
    """The case of `ANSWERS`: from the tuned-minus-base interval and each model's test against chance."""
    if base is None or difference is None:
        return "tuned_only" if tuned.beats_null else "no_evidence_tuned_only"
    if difference.side == "above":
        return "added_by_tuning" if tuned.beats_null else "moved_within_chance"
    if difference.side == "below":
        return "weakened_by_tuning"
    if tuned.beats_null:
        return "already_there" if base.beats_null else "origin_unclear"
    return "no_evidence"


LEARNED_QUESTION = "Did tuning teach the model the feedback, in how it represents words?"
DIFFERENCE_SIDES = {"above": "the interval lies above 0", "below": "the interval lies below 0",
                    "spans": "the interval includes 0, so the data do not show a change"}


def difference_sentence(difference: Reading, show: Callable[[Any], str], show_signed: Callable[[Any], str]) -> str:
    return (f"Tuned minus base: {show_signed(difference.value)} ({difference.interval(show)}, paired bootstrap "
            f"{p_value(difference.p_value)}); {DIFFERENCE_SIDES[difference.side]}.")


def signed_percent(value: Any) -> str:
    """A difference of two shares, in percentage points with its sign."""
    text = percent(value)
    return text if missing(value) or text.startswith("-") else f"+{text}"


def _signed_two(value: Any) -> str:
    return signed(value, 2)


def polarity_sentence(pooled: Reading, polarity: Reading | None) -> str:
    """Pooled tau beside the score of knowing polarity alone."""
    if polarity is None:
        return f"Pooled over both polarities, tau is {num(pooled.value, 2)} ({pooled.interval(_two)})."
    if pooled.ci_low > polarity.value:
        compared = "more than knowing polarity alone gives"
    elif pooled.ci_high < polarity.value:
        compared = "less than knowing polarity alone gives"
    else:
        compared = "about what knowing polarity alone gives"
    return (f"Pooled over both polarities, tau is {num(pooled.value, 2)} ({pooled.interval(_two)}), against "
            f"{num(polarity.value, 2)} for a readout that knows only each word's polarity: {compared}.")


def _two(value: Any) -> str:
    return num(value, 2)


def _readings(metrics: pd.DataFrame, subset: str, metric: str) -> tuple[Reading | None, ...]:
    """The tuned model's, the base model's and their difference's readings of one measure."""
    return tuple(Reading.of(metrics, variant, subset, metric) for variant in ("sae", "base_model", "tuned_minus_base"))


def _answer(tuned: Reading, base: Reading | None, difference: Reading | None, skill: Skill, first: str,
            describe_base: Callable[[Reading], str], show: Callable[[Any], str], show_signed: Callable[[Any], str],
            extra: tuple[str, ...] = ()) -> Finding:
    """The finding: the case's headline, `first` (the tuned model), the base model, the difference, `extra`."""
    sentences = [first]
    if base is not None:
        sentences.append(f"The same probe on the model before tuning: {describe_base(base)}.")
    if difference is not None:
        sentences.append(difference_sentence(difference, show, show_signed))
    answer = classify(tuned, base, difference)
    return Finding("learned", LEARNED_QUESTION, answer, ANSWERS[answer].format(**asdict(skill)),
                   (*sentences, *extra))


HELD_OUT_WORDS = ("held-out words (kept out of the tuning prompts, though the reward paid for them whenever the "
                  "policy wrote them)")
"""What the synthetic world's held-out words are: out of the RL prompts, never out of the reward."""


def learned_from_taus(metrics: pd.DataFrame, held_out_of_tuning: bool) -> Finding | None:
    """The answer for reward tasks, from the within-polarity Kendall taus on the test words."""
    tuned, base, difference = _readings(metrics, "test_within", "kendall_tau")
    if tuned is None:
        return None
    parts = {s: Reading.of(metrics, "sae", f"test_{s}", "kendall_tau") for s in ("positive", "negative")}
    words = HELD_OUT_WORDS if held_out_of_tuning else "held-out words"
    by_polarity = "; ".join(f"{s} words {num(r.value, 2)}" for s, r in parts.items() if r is not None)
    first = (f"On {num(tuned.n)} {words}, the probe on the tuned model {WORD_SKILL.does} with Kendall tau "
             f"{num(tuned.value, 2)} ({tuned.interval(_two)}{'; ' + by_polarity if by_polarity else ''}); probes "
             f"refit to targets shuffled between words reach {num(tuned.null_q95, 2)} one time in twenty "
             f"(permutation {p_value(tuned.p_value)}).")
    pooled = Reading.of(metrics, "sae", "test", "kendall_tau")
    extra = () if pooled is None else (polarity_sentence(pooled, Reading.of(metrics, "polarity_only", "test",
                                                                            "kendall_tau")),)
    return _answer(tuned, base, difference, WORD_SKILL, first,
                   lambda r: f"tau {num(r.value, 2)} ({r.interval(_two)}, permutation {p_value(r.p_value)})",
                   _two, _signed_two, extra)


def outdated_probe(metrics: pd.DataFrame) -> Finding | None:
    """A run whose probe stage predates the controls: it has a pooled tau and nothing to read the answer from."""
    if Reading.of(metrics, "sae", "test", "kendall_tau") is None:
        return None
    return Finding("learned", LEARNED_QUESTION, "not_measured", "Not measured yet.",
                   ("This run's probe stage predates the within-polarity measures, their permutation null and the "
                    "tuned-minus-base difference that the answer is read from: run it again with "
                    "`lfp run --out RUN --stages probe --force probe`.",))


def learned_from_accuracy(metrics: pd.DataFrame) -> Finding | None:
    """The answer for preference tasks, from held-out accuracy (chance 50%) and its tuned-minus-base difference."""
    tuned, base, difference = _readings(metrics, "test", "accuracy")
    if tuned is None:
        return None
    first = (f"On {num(tuned.n)} held-out examples, a probe on the tuned model's features {TEXT_SKILL.does} "
             f"{percent(tuned.value)} of the time, where chance is 50% ({tuned.interval(percent)}, binomial "
             f"{p_value(tuned.p_value)}).")
    return _answer(tuned, base, difference, TEXT_SKILL, first,
                   lambda r: f"{percent(r.value)} ({r.interval(percent)}, binomial {p_value(r.p_value)})",
                   percent, signed_percent)


POLICY_QUESTION = "Did tuning teach the model the feedback, in what it prefers to write?"
POLICY_ANSWERS = {
    "learned": "Yes: what the tuned model prefers to write follows the reward on held-out words, in sign and in "
               "order within each polarity, beyond chance.",
    "learned_sign": "Partly: the tuned model prefers to write held-out words on the reward's side beyond chance, but "
                    "does not order words of one polarity like the reward beyond chance.",
    "learned_order": "Partly: the tuned model orders held-out words of one polarity like the reward beyond chance, "
                     "but does not prefer them on the reward's side beyond chance.",
    "no_evidence": "No evidence: what the tuned model prefers to write does not follow the reward on held-out words "
                   "beyond chance.",
    "prefers_chosen": "Yes: the tuned model implicitly rewards the preferred answer of held-out pairs beyond chance.",
    "no_evidence_pairs": "No evidence: the tuned model does not implicitly reward the preferred answer of held-out pairs "
                         "beyond chance.",
}
"""Every answer to "did tuning teach the model the feedback, in what it prefers to write?"."""


def learned_by_policy(metrics: pd.DataFrame, beta: float | None, trl_accuracy: float | None) -> Finding | None:
    """The policy lens's answer (`policy_metrics`): word tasks from sign agreement and the within-polarity
    tau on held-out words, each against its control; preference tasks from the implicit reward's
    preference accuracy on held-out pairs (or the contrastive rewrites), against 50%."""
    scale = f"beta log pi_tuned/pi_base, beta {num(beta)}" if beta is not None else "beta log pi_tuned/pi_base"
    tau = Reading.of(metrics, "policy", "test_within", "kendall_tau")
    sign = Reading.of(metrics, "policy", "test", "sign_agreement")
    if tau is not None and sign is not None:
        sentences = [f"On {num(sign.n)} {HELD_OUT_WORDS}, the policy's implicit reward ({scale}: how much more the "
                     f"tuned model than the base model prefers to write the word than a neutral one in the same "
                     f"sentence) takes the reward's sign for {percent(sign.value)} of them ({sign.interval(percent)}, "
                     f"binomial against 50% {p_value(sign.p_value)}).",
                     f"It orders words of the same polarity like the reward with Kendall tau {num(tau.value, 2)} "
                     f"({tau.interval(_two)}); the lexicon's values shuffled among the words reach {num(tau.null_q95, 2)} "
                     f"one time in twenty ({p_value(tau.p_value)}).",
                     "The base model prefers nothing by this measure (its reading is 0 by definition), so every "
                     "reading is what tuning changed."]
        absorbed = Reading.of(metrics, "policy", "all", "absorbed_share")
        if absorbed is not None:
            sentences.append(f"Over all {num(absorbed.n)} words, the policy absorbed {percent(absorbed.value, 0)} of "
                             f"the reward's own difference between the word and a neutral one ({absorbed.interval(percent)}; "
                             f"100% would be the optimum of its tuning objective).")
        answer = ("learned" if sign.beats_null and tau.beats_null else "learned_sign" if sign.beats_null
                  else "learned_order" if tau.beats_null else "no_evidence")
        return Finding("policy", POLICY_QUESTION, answer, POLICY_ANSWERS[answer], tuple(sentences))
    pairs = Reading.of(metrics, "policy", "test", "preference_accuracy") or \
        Reading.of(metrics, "policy", "test_triples", "preference_accuracy")
    if pairs is None:
        return None
    what = "held-out preference pairs" if Reading.of(metrics, "policy", "test", "preference_accuracy") is not None \
        else "held-out rewrites (positive against negative)"
    sentence = (f"On {num(pairs.n)} {what}, the policy's implicit reward ({scale}) is higher for the preferred answer "
                f"{percent(pairs.value)} of the time, where chance is 50% ({pairs.interval(percent)}, binomial "
                f"{p_value(pairs.p_value)}).")
    if trl_accuracy is not None:
        sentence += f" TRL's DPO trainer logged {percent(trl_accuracy)} on its last training batches."
    answer = "prefers_chosen" if pairs.beats_null else "no_evidence_pairs"
    return Finding("policy", POLICY_QUESTION, answer, POLICY_ANSWERS[answer], (sentence,))


REWARD_QUESTION = "Did tuning raise the reward?"


def reward_change(tuned: Any, base: Any, metric: str) -> Finding:
    """Did tuning raise the reward? From the tuned row of rlhf_rewards (it holds the paired test)."""
    name = REWARD_NAMES.get(metric, metric.replace("_", " "))
    sentence = (f"On {num(tuned['n'])} held-out openings, the tuned model's completions average a {name} of "
                f"{num(tuned['mean'])} against {num(base['mean'])} for the base model: a difference of "
                f"{signed(tuned['mean_difference'])} ({interval(tuned['ci_low'], tuned['ci_high'])}, "
                f"{tuned['test']} {p_value(tuned['p_value'])}).")
    if missing(tuned["p_value"]):
        return Finding("reward", REWARD_QUESTION, "untested", "Untested.", (sentence,))
    if tuned["p_value"] < SIGNIFICANCE and tuned["mean_difference"] > 0:
        return Finding("reward", REWARD_QUESTION, "raised", "Yes.", (sentence,))
    return Finding("reward", REWARD_QUESTION, "not_reliably", "Not reliably.", (sentence,))


DIVERGENCE_QUESTION = "Where does what the model learned diverge from the reward?"
CASE_SUMMARIES = {"opposite_before_tuning": "read against the reward before tuning too, unchanged by it",
                  "moved_toward_not_across": "were moved toward the reward by tuning, but not across zero",
                  "moved_away": "were moved further against the reward by tuning",
                  "turned_by_tuning": "read with the reward before tuning",
                  "opposite_after_tuning": "had no clear reading before tuning"}
"""How the answer counts the divergent words of each case of `lfp_engine.report.divergence.CASES`."""


def _word(row: Any) -> str:
    return (f"'{row.word}' (reward {signed(row.lexicon_value, 2)}) reads {signed(row.tuned_value, 2)} "
            f"({interval(row.tuned_ci_low, row.tuned_ci_high, _two)}) in the tuned model and "
            f"{signed(row.base_value, 2)} ({interval(row.base_ci_low, row.base_ci_high, _two)}) before tuning")


def _learned_word(row: Any) -> str:
    return (f"'{row.word}' (reward {signed(row.lexicon_value, 2)}) {signed(row.policy_value, 2)} "
            f"({interval(row.policy_ci_low, row.policy_ci_high, _two)})")


LENS_SUMMARIES = {"agrees": "are preferred as the reward pays and read that way inside",
                  "prefers_as_paid": "are preferred as the reward pays, with no clear reading inside",
                  "prefers_as_paid_reads_opposite": "are preferred as the reward pays but still read the other way "
                                                    "inside",
                  "learned_opposite": "were learned against the reward",
                  "no_preference": "show no learned preference"}
"""How the answer counts the words of each `lfp_engine.report.divergence.LENS_CASES` case."""


def divergence_from_report(report: pd.DataFrame) -> Finding | None:
    """The answer from the divergence report (`lfp_divergence`, ranked): how many words the policy
    learned against the reward, and how many the tuned model reads against it inside, each under the
    report's flag, the clearest named first, and what tuning did to them."""
    if report.empty:
        return None
    flagged = report[report["divergent"]]
    n_agree = int((report["q_agree"] < FALSE_DISCOVERY_RATE).sum())
    inside = (f"Inside the model, each of {num(len(report))} words is read by a probe that never saw it, with a 95% "
              f"interval over its triples and the probe's fit, and tested for either side of zero with the "
              f"false-discovery rate over the words held at {percent(FALSE_DISCOVERY_RATE)}: {num(n_agree)} read with "
              f"the reward's sign, {num(len(report) - n_agree - len(flagged))} are unclear and {num(len(flagged))} "
              f"read against it.")
    sentences = []
    policy = report["policy_value"].notna()
    learned = report[report["policy_divergent"].astype(bool)]
    if policy.any():
        n_with = int((report["policy_q_agree"] < FALSE_DISCOVERY_RATE).sum())
        sentences.append(f"In what it learned to write, tested the same way: {num(n_with)} of {num(int(policy.sum()))} "
                         f"words are preferred on the reward's side, {num(int(policy.sum()) - n_with - len(learned))} "
                         f"show no clear preference and {num(len(learned))} were learned against the reward.")
        if not learned.empty:
            clearest = learned.sort_values("policy_q_opposite").head(WORDS_LISTED)
            sentences.append("Learned against the reward most clearly: "
                             + "; ".join(_learned_word(r) for r in clearest.itertuples()) + ".")
        cases = report["lens_case"].value_counts()
        sentences.append("Both lenses together: " + "; ".join(f"{num(cases[case])} {summary}" for case, summary
                                                              in LENS_SUMMARIES.items() if case in cases) + ".")
    sentences.append(inside)
    if not flagged.empty:
        cases = flagged["case"].value_counts()
        how = "; ".join(f"{num(cases[case])} {summary}" for case, summary in CASE_SUMMARIES.items() if case in cases)
        sentences += ["Read against the reward most clearly: "
                      + "; ".join(_word(r) for r in flagged.head(WORDS_LISTED).itertuples()) + ".",
                      f"Of the {num(len(flagged))}: {how}."]
    if flagged.empty and learned.empty:
        return Finding("divergence", DIVERGENCE_QUESTION, "nowhere_clear",
                       "Nowhere clearly: no word is learned or read against the reward.", tuple(sentences))
    headline = f"In {num(len(flagged))} of {num(len(report))} words, the tuned model reads the opposite sign of the reward."
    if policy.any():
        headline = (f"The policy learned {num(len(learned))} of {num(int(policy.sum()))} words against the reward; "
                    f"inside, the tuned model reads {num(len(flagged))} of {num(len(report))} with the opposite sign "
                    f"of the reward.")
    return Finding("divergence", DIVERGENCE_QUESTION, "opposite_sign", headline, tuple(sentences))


def _trl_accuracy(store: RunStore, tables: set[str]) -> float | None:
    """The last preference accuracy TRL's DPO trainer logged (training batches), if it logged one."""
    if "rlhf_training_log" not in tables:
        return None
    log = store.read("rlhf_training_log", order_by="step")
    if "rewards_accuracies" not in log.columns or log["rewards_accuracies"].dropna().empty:
        return None
    return float(log["rewards_accuracies"].dropna().iloc[-1])


def read_verdict(store: RunStore) -> Verdict:
    """The run's answers, each once its stage has run."""
    findings: list[Finding | None] = []
    tables = store.tables()
    metric = read_headline(store).reward_metric
    if metric is not None:
        rewards = store.read("rlhf_rewards", where="metric = ?", params=[metric]).set_index("model")
        if {"base", "tuned"} <= set(rewards.index):
            findings.append(reward_change(rewards.loc["tuned"], rewards.loc["base"], metric))
    if "policy_metrics" in tables:
        policy = read_manifest(store).get("policy")
        beta = policy.outputs.get("beta") if policy is not None else None
        findings.append(learned_by_policy(store.read("policy_metrics"), beta, _trl_accuracy(store, tables)))
    if "probe_metrics" in tables:
        metrics = store.read("probe_metrics")
        findings.append(learned_from_taus(metrics, "world_lexicon" in tables) or learned_from_accuracy(metrics)
                        or outdated_probe(metrics))
    report = read_divergence_report(store)
    if report is not None:
        findings.append(divergence_from_report(report))
    return Verdict(tuple(f for f in findings if f is not None))
