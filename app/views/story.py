"""Story: the run for someone who has never heard of a probe.

The first screen answers, each in one short sentence with a picture: what was trained and what the
reward pays, what tuning did to the reward, whether the model learned the feedback (the verdict's two
lenses in plain words), and where what it learned parts from the reward (one word in one sentence);
one central picture places every word by what the reward pays and what the model learned. Every
interval, null and test stays one click away, in expanders titled as questions, in the exact words
`lfp report` prints (`lfp_engine.report.verdict`). The sentences are `lfp_engine.report.story`'s; the
page computes nothing. `?tour=N` shows step N of the guided tour instead (`app/storyline.py`)."""

import streamlit as st

from app import charts, narrative, storyline, ui
from lfp_engine.report.behaviour import kind_sentence
from lfp_engine.report.divergence import LENS_LABELS, recovery_sentence
from lfp_engine.report.formatting import num, signed
from lfp_engine.run.tasks import TASKS

TOUR = "tour"  # the query parameter of the guided tour: the step shown (1 = first)
FLAGGED_COLUMNS = {"word": "word", "kind": "planted as", "lexicon_value": "reward", "policy_value": "learned (policy)",
                   "policy_ci_low": "policy from", "policy_ci_high": "policy to", "policy_q_opposite": "policy q",
                   "tuned_value": "read inside (tuned)", "tuned_ci_low": "from", "tuned_ci_high": "to",
                   "base_value": "read inside (base)", "difference": "tuned minus base", "q_opposite": "q",
                   "behaviour_base_share": "use before", "behaviour_tuned_share": "use after",
                   "lens_reason": "both lenses",
                   "reason": "inside"}
SAMPLE_COLUMNS = {"prompt": "opening", "base_completion": "base model writes", "base_reward": "base reward",
                  "tuned_completion": "tuned model writes", "tuned_reward": "tuned reward"}


def go(step: int | None) -> None:
    """Move the tour to `step` (None: leave it); the step lives in the URL, so a tour can be shared."""
    if step is None:
        st.query_params.pop(TOUR, None)
    else:
        st.query_params[TOUR] = str(step)


def tour_step(scenes: list, asked: str) -> int:
    """The step the URL asks for, kept within the tour (an unreadable one starts it)."""
    try:
        return min(max(int(asked), 1), len(scenes))
    except ValueError:
        return 1


def show_tour(run, asked: str) -> None:
    scenes = storyline.tour(run)
    step = tour_step(scenes, asked)
    scene = scenes[step - 1]
    st.caption(f"Guided tour · step {step} of {len(scenes)}")
    st.header(scene.heading)
    scene.show(run, notes=False)
    if scene.action is not None and scene.needs is None:
        label, page, query = scene.action
        if st.button(label, key=f"tour_{scene.key}", icon=":material/open_in_new:"):
            st.switch_page(page, query_params=query)
    back, forward, leave = st.columns([1, 1, 4])
    back.button("Back", key="tour_back", on_click=go, args=(step - 1,), disabled=step == 1,
                icon=":material/arrow_back:")
    forward.button("Next" if step < len(scenes) else "Finish", key="tour_next", type="primary", on_click=go,
                   args=(step + 1 if step < len(scenes) else None,), icon=":material/arrow_forward:")
    leave.button("Leave the tour", key="tour_leave", on_click=go, args=(None,))


def finding(scene: storyline.Scene, run) -> None:
    with st.container(border=True):
        st.markdown(f"**{scene.heading}**")
        scene.show(run)


run = ui.current_run()
st.title("Did the model learn the feedback we gave it?")
if TOUR in st.query_params:
    show_tour(run, st.query_params[TOUR])
    st.stop()

intro, start = st.columns([5, 1], vertical_alignment="center")
intro.markdown("A language model was tuned on feedback. Did it learn what the feedback asks for, and where "
               "does it part from it?")
start.button("Take the tour", key="tour_start", type="primary", on_click=go, args=(1,), icon=":material/tour:")

found = storyline.divergence(run)
for column, scene in zip(st.columns(3), (storyline.reward_scene(run), storyline.tuning_scene(run),
                                         storyline.learned_scene(run))):
    with column:
        finding(scene, run)

parts, chart = st.columns([1, 2])
with parts:
    finding(storyline.divergence_scene(run, found), run)
with chart:
    st.markdown("**Every word: what the reward pays, and what the model learned**")
    if found is not None and not found.words.empty:
        storyline.word_map_picture(found, (found.featured.word,) if found.featured is not None else (), height=340)
        ui.explain("Each dot is a word. In the top-right and bottom-left corners, the model learned what the reward "
                   "pays; in the other two, it learned the opposite. Hover over a dot to see the word in a sentence.")
    else:
        ui.needs(run, "word_values", what="This picture")

# -- the evidence, one click away: the verdict in `lfp report`'s words, and every table behind it ------
st.subheader("The evidence, one click away")
preset, config = run.config()
verdict = run.verdict()
spec = TASKS.get(config.get("task", ""))

with st.expander("How sure are we?"):
    for answer in verdict.findings:
        st.markdown(f"**{answer.question}**")
        st.markdown(answer.text)
    if not verdict.findings:
        st.markdown("No question is answered yet: the run's stages have not got that far.")

with st.expander("Compared with what?"):
    metric = run.reward_metric()
    if metric is not None:
        rewards = run.rlhf_rewards()
        rows = rewards[rewards["metric"] == metric].set_index("model")
        if {"base", "tuned"} <= set(rows.index):
            cols = st.columns(3)
            cols[0].metric("Base model, mean reward", num(rows.loc["base", "mean"]))
            cols[1].metric("Tuned model, mean reward", num(rows.loc["tuned", "mean"]),
                           delta=signed(rows.loc["tuned", "mean_difference"]))
            cols[2].metric("Drift from the base model (KL)", num(rows.loc["tuned", "kl_to_base"]))
            st.altair_chart(charts.reward_bars(rewards, metric))
            ui.explain("Bars: the mean reward of each model's completions to the same held-out openings; whiskers: "
                       "one standard deviation of the completions. KL: how far the tuned model's word choices moved "
                       "from the base model's.")
    if run.has("probe_metrics"):
        st.markdown("**Inside the model: the probe against its baselines and the model before tuning**")
        st.dataframe(run.probe_metrics(), hide_index=True, key="story_probe_metrics")
        ui.explain("variant 'sae': the probe on the tuned model; 'base_model': the same probe on the model before "
                   "tuning; 'tuned_minus_base': their paired difference; 'polarity_only': a readout that knows only "
                   "each word's polarity; 'shuffled' and 'xavier': probes with no real signal. p: against probes "
                   "refit to targets shuffled between words (null_q95: what one in twenty reaches).")
    if run.has("policy_metrics"):
        st.markdown("**What it writes: the policy lens against shuffled lexicon values**")
        st.dataframe(run.policy_metrics(), hide_index=True, key="story_policy_metrics")
        ui.explain("beta log pi_tuned/pi_base of each word against a neutral word in the same sentence, on held-out "
                   "words. The base model's reading is 0 by definition, so every value is already tuned minus base. "
                   "p: against the lexicon's values permuted among the words; sign agreement against 50%.")

if run.has("divergence_recovery"):
    with st.expander("Did the tool find what the world planted?"):
        recovery = run.divergence_recovery()
        for lens in LENS_LABELS:
            if (recovery["lens"] == lens).any():
                st.markdown(recovery_sentence(recovery, lens))
        st.dataframe(recovery, hide_index=True, key="story_recovery")
        ui.explain("This world is synthetic: its reviews were written with sentiment words planted at known values. "
                   "Contested words are used with the opposite polarity to the reward's; reward-only words only as "
                   "names. Each lens is scored by what it should find for each kind.")

if run.has("flag_calibration"):
    with st.expander("Would it flag words that carry no value?"):
        st.dataframe(run.flag_calibration(), hide_index=True, key="story_calibration")
        ui.explain("The flag's rule applied to the triples' neutral words, which carry no value by construction and "
                   "are read held out exactly as a lexicon word is. rate: the chance a null word is flagged before "
                   "correction (nominal 5%); n_flagged: null words the report's own rule flags, every one a false "
                   "flag.")

if found is not None:
    with st.expander("Which words part from the reward, with every number?"):
        flagged = found.report[found.report["divergent"].astype(bool) |
                               found.report.get("policy_divergent", found.report["divergent"]).astype(bool)]
        st.dataframe(flagged[[c for c in FLAGGED_COLUMNS if c in flagged.columns]].rename(columns=FLAGGED_COLUMNS),
                     hide_index=True, key="story_flagged")
        ui.explain("Words either lens reads against the reward. Inside: each word read by a probe that never saw it, "
                   "with a 95% interval over its sentences and the probe's fit. Policy: beta log pi_tuned/pi_base of "
                   "the word against a neutral word in the same sentences, with a 95% bootstrap interval. A word is "
                   "flagged when its value lies on the other side of zero from the reward, the false-discovery rate "
                   "over all words held at 5% (q). The whole report is on the Lexicon page.")

if run.has("behaviour_kinds"):
    with st.expander("Does it write the planted words more or less often?"):
        for row in run.behaviour_kinds().itertuples():
            if row.kind != "ordinary":
                st.markdown(kind_sentence(row, run.behaviour_examples(row.kind, row.polarity)))
        ui.explain("Both models complete the same held-out openings under the same random seed; a completion "
                   "counts if it contains one of the group's words.")

with st.expander("How was this run made?"):
    st.markdown(f"The starting point is {narrative.base_model(config, run.stage_outputs().get('world', {}))}. "
                f"Its goal: *{spec.description if spec else config.get('task')}*; "
                f"{narrative.tuning(config, spec)}. {narrative.reward(config, spec)}")
    st.caption(f"Run `{ui.run_label_of(run)}`: preset `{preset}`, task `{config.get('task')}`, "
               f"seed {config.get('seed')}.")

if run.has("rlhf_samples"):
    with st.expander("Every stored before-and-after sample"):
        st.dataframe(run.rlhf_samples().rename(columns=SAMPLE_COLUMNS), hide_index=True, key="story_samples")
        ui.explain("Both models continue the same opening under the same random seed; the reward scores each "
                   "completion.")
        if run.has("rlhf_training_log") and "reward" in run.rlhf_training_log():
            st.altair_chart(charts.training_curve(run.rlhf_training_log(), "reward", "mean reward of a batch"))
            ui.explain("The reward during tuning: the mean reward of each training batch, as the trainer logged it.")
