"""Validation: the paper's checks of the probe against the explanations (tables 6 and 7) and of
tuning against the explanations (appendix B), as the `validate` and `explain` stages stored them."""

import pandas as pd
import streamlit as st

from app import charts, ui
from lfp_engine.report.formatting import interval, num, p_value, signed, span


def times(value: float) -> str:
    """An enrichment ratio, e.g. '2.4x'."""
    return "–" if pd.isna(value) else f"{num(value)}x"


def change(value: float) -> str | None:
    """A metric's delta, or none at all when it is missing (no arrow for a missing number)."""
    return None if pd.isna(value) else signed(value)


run = ui.current_run()
st.title("Validation")
ui.explain("If the probe has found what the model learned from its feedback, the features it relies on should be "
           "the ones whose explanations are about the tuning task: they should fire where the probe expects "
           "reward, and switching them off should cost reward.")

STALE = ("This run's validation tables predate the density-matched controls: run `lfp run --out {run} --stages "
         "validate --force validate` to redo them.")


def say_why(notes: pd.Series) -> None:
    """The tables' own reasons for a missing comparison, once each."""
    for note in dict.fromkeys(notes.dropna()):
        st.info(note)


st.header("Do task-related features fire where the probe expects reward?")
if ui.needs(run, "feature_frequency", what="This check"):
    frequency = run.feature_frequency()
    if "compared_with" not in frequency.columns:
        st.info(STALE.format(run=ui.run_label_of(run)))
    else:
        groups = frequency[frequency["compared_with"].isna()].set_index("group", drop=False)
        test = frequency[frequency["compared_with"].notna()].iloc[0]
        shown = st.columns(3)
        shown[0].metric("Relevant features: enrichment", times(groups.loc["relevant", "enrichment"]),
                        help="rate on strong-reward tokens / rate on all held-out tokens, mean over the features")
        shown[1].metric("Density-matched shared features", times(groups.loc["matched_shared", "enrichment"]))
        shown[2].metric("Relevant > matched (one-sided)", p_value(test["p_value"]), help=str(test["test"]))
        say_why(frequency["note"])
        st.altair_chart(charts.enrichment(groups))
        ui.explain(f"Among the {num(test['n_inputs'])} held-out tokens whose implicit reward the probe puts above "
                   f"{num(test['threshold'])}, how much more often a feature fires than on all held-out tokens (1: "
                   f"no more often). Relevant against matched: {times(test['enrichment'])}, "
                   f"{interval(test['ci_low'], test['ci_high'], times)}. Each relevant feature is compared with the "
                   "shared features of its dictionary nearest to it in density, so that how often a feature fires "
                   "at all does not decide the comparison. The paper's figure is firing_rate (table 7: 19.0% "
                   "against 9.1% for Pythia-70m's average feature, the 'all' row).")
        ui.explain("The strong-reward tokens are chosen by the probe itself, a linear function of these same "
                   "features, so a feature the probe weighs heavily is enriched by construction: this check is "
                   "partly circular.")
        st.dataframe(frequency, hide_index=True, key="validation_frequency")

st.header("Does switching them off cost reward?")
if ui.needs(run, "ablation_results", what="This check"):
    results = run.ablation_results()
    if "compared_with" not in results.columns:
        st.info(STALE.format(run=ui.run_label_of(run)))
    else:
        rows = results.set_index(["condition", results["compared_with"].fillna("")], drop=False)
        shown = st.columns(4)
        shown[0].metric("Mean reward, nothing ablated", num(rows.loc[("none", ""), "mean_reward"]))
        shown[1].metric("Relevant features ablated", num(rows.loc[("relevant", "none"), "mean_reward"]),
                        delta=change(rows.loc[("relevant", "none"), "mean_difference"]))
        shown[2].metric("Density-matched random features", num(rows.loc[("random", "none"), "mean_reward"]),
                        delta=change(rows.loc[("random", "none"), "mean_difference"]))
        versus = rows.loc[("relevant", "random")]
        shown[3].metric("Relevant < random (paired)", p_value(versus["p_value"]),
                        delta=change(versus["mean_difference"]), help=str(versus["test"]))
        say_why(results["note"])
        table = results.assign(**{"95% CI": [span(lo, hi) for lo, hi in zip(results["ci_low"], results["ci_high"])],
                                  "p-value": [p_value(p) if c else "" for c, p in
                                              zip(results["compared_with"].notna(), results["p_value"])]})
        st.dataframe(table[["condition", "compared_with", "n_features", "mean_density", "n_draws", "n_prompts",
                            "mean_reward", "std", "mean_difference", "95% CI", "test", "p-value", "note", "features"]],
                     hide_index=True, key="validation_ablation")
        ui.explain("Completions of the same held-out openings under one seed, scored by the task's reward: with nothing "
                   "ablated, with the relevant features zero-ablated (paper table 6), and with random features "
                   "matched to them in density (for each relevant feature, one of the live features of its "
                   "dictionary that fire about as often; several draws, a control the paper lacks). Relevant against "
                   "random asks whether the relevant features cost more reward than features like them: a paired "
                   "test over openings, and the rank of the relevant set among the random draws.")
        if run.has("ablation_draws"):
            with st.expander("Random draws"):
                st.dataframe(run.ablation_draws(), hide_index=True, key="validation_draws")
    if run.has("ablation_samples"):
        with st.expander("Stored samples"):
            st.dataframe(run.ablation_samples(), hide_index=True, key="validation_samples")

st.header("Did tuning make task-related features more common?")
if ui.needs(run, "explanation_summary", what="This comparison"):
    summary = run.explanation_summary()
    st.dataframe(summary, hide_index=True, key="validation_explanations",
                 column_config={"share_relevant": st.column_config.NumberColumn("share relevant", format="percent")})
    ui.explain("Explanations judged related to the tuning task, among the explained features of each model "
               "(paper appendix B: 21 of 50 in the tuned Pythia-70m against 13 of 50 in the base model).")
