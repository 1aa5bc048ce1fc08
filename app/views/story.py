"""Story: the run in plain words for a non-specialist. What was trained, that tuning raised the
reward, and whether the model learned the feedback it was given."""

import streamlit as st

from app import charts, narrative, ui
from lfp_engine.report import verdict
from lfp_engine.report.formatting import num, signed
from lfp_engine.run.tasks import TASKS

SAMPLES_SHOWN = 5
SAMPLE_COLUMNS = {"prompt": "opening", "base_completion": "base model writes", "base_reward": "base reward",
                  "tuned_completion": "tuned model writes", "tuned_reward": "tuned reward"}

run = ui.current_run()
preset, config = run.config()
outputs = run.stage_outputs()
spec = TASKS.get(config.get("task", ""))

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
        st.markdown(verdict.reward_change(tuned, base, metric))
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

st.header("3. Did the model learn the feedback?")
ui.explain("We fit a simple linear probe that reads, from the sparse features of the tuned model, how much "
           "reward the model expects a word to earn, then compare that with the true reward on words the probe "
           "was never fitted on.")
if ui.needs(run, "probe_metrics", what="This answer"):
    tau = run.probe_metric("sae", "test", "kendall_tau")
    accuracy = run.probe_metric("sae", "test", "accuracy")
    if tau is not None:
        held_out = run.has("world_lexicon")
        st.markdown(f"**{verdict.feedback_learned_tau(tau, held_out)}**")
        if ui.needs(run, "lexicon_comparison", what="The chart"):
            words = run.lexicon_comparison(split="test")
            st.altair_chart(charts.probe_vs_lexicon(words, color="polarity"))
            ui.explain("Each dot is a word. Across: its true reward in the lexicon. Up: the value the probe reads "
                       "in the tuned model. On the dashed diagonal, the two agree exactly; Kendall tau measures "
                       "how well the two orders of the words agree (1 = same order, 0 = unrelated).")
    elif accuracy is not None:
        st.markdown(f"**{verdict.feedback_learned_accuracy(accuracy)}**")
        if run.has("probe_pca"):
            st.altair_chart(charts.pca(run.probe_pca()))
            ui.explain("The probe's inputs for preferred and rejected answers, flattened to two dimensions: "
                       "the further apart the colours, the more clearly the model separates them.")
    else:
        st.info("The probe stage recorded neither a Kendall tau nor an accuracy on its test set for the "
                "SAE probe.")
