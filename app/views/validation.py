"""Validation: the paper's checks of the probe against the explanations (tables 6 and 7) and of
tuning against the explanations (appendix B), as the `validate` and `explain` stages stored them."""

import streamlit as st

from app import charts, ui
from lfp_engine.report.formatting import num, p_value, percent, signed, span

run = ui.current_run()
st.title("Validation")
ui.explain("If the probe has found what the model learned from its feedback, the features it relies on should be "
           "the ones whose explanations are about the tuning task: they should fire where the probe expects "
           "reward, and switching them off should cost reward.")

st.header("Do task-related features fire where the probe expects reward?")
if ui.needs(run, "feature_frequency", what="This check"):
    frequency = run.feature_frequency().set_index("group", drop=False)
    first = frequency.iloc[0]
    shown = st.columns(3)
    shown[0].metric("Relevant features fire on", percent(frequency.loc["relevant", "firing_rate"]) if
                    "relevant" in frequency.index else "–")
    shown[1].metric("Other features fire on", percent(frequency.loc["other", "firing_rate"]) if
                    "other" in frequency.index else "–")
    shown[2].metric("One-sided test, relevant > other", p_value(first["p_value"]),
                    help=str(first["test"]))
    st.altair_chart(charts.firing_rates(frequency))
    ui.explain(f"Among the {num(first['n_inputs'])} held-out tokens whose implicit reward the probe puts above "
               f"{num(first['threshold'])}, the share on which a feature fires, averaged over the features of each "
               "group (paper table 7: 19.0% against 9.1% for Pythia-70m).")
    st.dataframe(frequency, hide_index=True, key="validation_frequency")

st.header("Does switching them off cost reward?")
if ui.needs(run, "ablation_results", what="This check"):
    results = run.ablation_results()
    rows = results.set_index("condition", drop=False)
    if {"none", "relevant"} <= set(rows.index):
        shown = st.columns(3)
        shown[0].metric("Mean reward, nothing ablated", num(rows.loc["none", "mean_reward"]))
        shown[1].metric("Relevant features ablated", num(rows.loc["relevant", "mean_reward"]),
                        delta=signed(rows.loc["relevant", "mean_difference"]))
        if "random" in rows.index:
            shown[2].metric("As many random features ablated", num(rows.loc["random", "mean_reward"]),
                            delta=signed(rows.loc["random", "mean_difference"]))
    table = results.assign(**{"95% CI": [span(lo, hi) for lo, hi in zip(results["ci_low"], results["ci_high"])],
                              "p-value": [p_value(p) if c != "none" else "" for c, p in
                                          zip(results["condition"], results["p_value"])]})
    st.dataframe(table[["condition", "n_features", "n_prompts", "mean_reward", "std", "mean_difference", "95% CI",
                        "test", "p-value", "features"]], hide_index=True, key="validation_ablation")
    ui.explain("Completions of the same held-out openings under one seed, scored by the task's reward: with nothing "
               "ablated, with the relevant features zero-ablated (paper table 6), and with as many random features "
               "ablated (a control the paper lacks). Each is compared with nothing ablated, opening by opening.")
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
