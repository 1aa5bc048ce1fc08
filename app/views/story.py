"""Story: the run in plain words for a non-specialist. What was trained, that tuning raised the
reward, whether tuning taught the model the feedback it was given, and where what it learned
diverges. The answers are the engine's verdict (`lfp_engine.report.verdict`), word for word what
`lfp report` prints."""

import streamlit as st

from app import charts, narrative, ui
from lfp_engine.report.behaviour import kind_sentence
from lfp_engine.report.divergence import PLANTED, featured, plain_example, recovery_sentence
from lfp_engine.report.formatting import num, signed
from lfp_engine.run.tasks import TASKS

SAMPLES_SHOWN = 5
STORY_COLUMNS = {"word": "word", "kind": "planted as", "lexicon_value": "reward", "tuned_value": "tuned model reads",
                 "tuned_ci_low": "from", "tuned_ci_high": "to", "base_value": "before tuning",
                 "difference": "tuned minus base", "behaviour_base_share": "use before", "behaviour_tuned_share":
                 "use after", "reason": "why"}
SAMPLE_COLUMNS = {"prompt": "opening", "base_completion": "base model writes", "base_reward": "base reward",
                  "tuned_completion": "tuned model writes", "tuned_reward": "tuned reward"}

run = ui.current_run()
preset, config = run.config()
outputs = run.stage_outputs()
spec = TASKS.get(config.get("task", ""))
verdict = run.verdict()

st.title("Did the model learn the feedback we gave it?")
ui.explain("A language model was tuned to please a reward. Here we check, from the inside of the tuned "
           "model, whether what it learned matches the reward it was given, and where it does not.")

st.header("1. What was trained")
st.markdown(f"The starting point is {narrative.base_model(config, outputs.get('world', {}))}. "
            f"Its goal: *{spec.description if spec else config.get('task')}*; "
            f"{narrative.tuning(config, spec)}. {narrative.reward(config, spec)}")
if spec is not None and spec.reward == "vader" and run.has("world_lexicon"):
    extremes = run.lexicon_extremes(4)
    st.markdown("For example: " + ", ".join(f"**{w}** {signed(v, 2)}" for w, v in
                                            zip(extremes["word"], extremes["lexicon_value"])) + ".")
st.caption(f"Run `{ui.run_label_of(run)}`: preset `{preset}`, task `{config.get('task')}`, seed {config.get('seed')}.")

st.header("2. Tuning raised the reward")
metric = run.reward_metric()
if metric is not None:
    rewards = run.rlhf_rewards()
    rows = rewards[rewards["metric"] == metric].set_index("model")
    if {"base", "tuned"} <= set(rows.index):
        base, tuned = rows.loc["base"], rows.loc["tuned"]
        left, right, kl = st.columns(3)
        left.metric("Base model, mean reward", num(base["mean"]))
        right.metric("Tuned model, mean reward", num(tuned["mean"]), delta=signed(tuned["mean_difference"]))
        kl.metric("Drift from the base model (KL)", num(tuned["kl_to_base"]))
        if (finding := verdict.get("reward")) is not None:
            st.markdown(finding.text)
        st.altair_chart(charts.reward_bars(rewards, metric))
        ui.explain("Bars: the mean reward of each model's completions to the same openings; whiskers: one "
                   "standard deviation of the completions. KL measures how far the tuned model's word choices "
                   "moved from the base model's.")
    if run.has("rlhf_training_log") and "reward" in run.rlhf_training_log():
        with st.expander("The reward during tuning"):
            st.altair_chart(charts.training_curve(run.rlhf_training_log(), "reward", "mean reward of a batch"))
            ui.explain("Each point is the mean reward of one training batch, as the trainer logged it.")
    if run.has("rlhf_samples"):
        st.subheader("Before and after, on the same openings")
        samples = run.rlhf_samples().rename(columns=SAMPLE_COLUMNS)
        st.table(samples.head(SAMPLES_SHOWN).style.format(precision=2).hide(axis="index"))
        ui.explain("Both models continue the same opening under the same random seed; the reward scores each "
                   "completion.")
        with st.expander(f"All {len(samples)} stored samples"):
            st.dataframe(samples, hide_index=True)
else:
    ui.needs(run, "rlhf_rewards", what="The before/after comparison")

st.header("3. Did tuning teach the model the feedback?")
ui.explain("We fit a simple linear probe that reads, from the sparse features of the tuned model, how much "
           "reward the model expects a word to earn, then compare that with the true reward on words the probe "
           "was never fitted on. Telling good words from bad ones is easy; the test is whether the model orders "
           "words of the same polarity like the reward, beyond what probes fit to shuffled targets reach, and "
           "whether it does so better than the same probe on the model before tuning.")
if ui.needs(run, "probe_metrics", what="This answer"):
    learned = verdict.get("learned")
    if learned is None:
        st.info("The probe stage recorded neither a Kendall tau nor an accuracy on its test set for the "
                "SAE probe.")
    else:
        st.markdown(learned.text)
    if run.probe_metric("sae", "test", "kendall_tau") is not None and ui.needs(run, "lexicon_comparison",
                                                                               what="The chart"):
        words = run.lexicon_comparison(split="test")
        st.altair_chart(charts.probe_vs_lexicon(words, color="polarity"))
        ui.explain("Each dot is a word. Across: its true reward in the lexicon. Up: the value the probe reads "
                   "in the tuned model. On the dashed diagonal, the two agree exactly; Kendall tau measures "
                   "how well the two orders of the words agree (1 = same order, 0 = unrelated).")
    elif run.probe_metric("sae", "test", "accuracy") is not None and run.has("probe_pca"):
        st.altair_chart(charts.pca(run.probe_pca()))
        ui.explain("The probe's inputs for preferred and rejected answers, flattened to two dimensions: "
                   "the further apart the colours, the more clearly the model separates them.")

if (divergence := verdict.get("divergence")) is not None:
    st.header("4. Where does what it learned diverge from the reward?")
    st.markdown(divergence.text)
    report = run.divergence_report()
    planted = report.loc[report["kind"] != "ordinary", "word"] if "kind" in report.columns else ()
    if (example := featured(report, planted)) is not None:
        st.subheader("One word, in detail")
        st.markdown(plain_example(example) + (" " + PLANTED[example.kind] if getattr(example, "kind", None) in PLANTED
                                               else ""))
        if run.has("divergence_recovery"):
            st.markdown(recovery_sentence(run.divergence_recovery()))
        flagged = report[report["divergent"]]
        st.dataframe(flagged[[c for c in STORY_COLUMNS if c in flagged.columns]].head(10).rename(columns=STORY_COLUMNS),
                     hide_index=True)
    ui.explain("Every word is read by a probe fitted without it (cross-fitting), with a 95% interval over the "
               "sentences it was substituted into. A word diverges when its value lies on the other side of zero "
               "from its reward, tested word by word with the false-discovery rate over all words held at 5%; the "
               "model before tuning, read the same way, says whether tuning put the disagreement there. 'use "
               "before/after': the share of completions of the same openings that contain the word.")
    if run.has("behaviour_kinds"):
        st.subheader("What tuning taught the model to write")
        for row in run.behaviour_kinds().itertuples():
            if row.kind != "ordinary":
                st.markdown(kind_sentence(row, run.behaviour_examples(row.kind, row.polarity)))
        ui.explain("Both models complete the same held-out openings under the same random seed; a completion "
                   "counts if it contains one of the group's words. The competitors: for words used as praise, the "
                   "ordinary praise words of the same role; for names, the world's other names.")