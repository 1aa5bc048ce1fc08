"""Feature: one feature in full. What it is said to mean (and by whom), how often and how strongly
it fires, the texts it fires on, the tokens it pushes the model towards or away from, its nearest
features, and how much the reward probe leans on it. The URL names the feature, so it can be shared."""

import streamlit as st

from app import charts, ui
from lfp_engine.sae.keys import FeatureKey
from lfp_engine.report.formatting import missing, num, percent
from app.markup import highlighted, labelled, note, quoted

run = ui.current_run()
st.title("Feature")
if not ui.needs(run, "features", what="The feature page"):
    st.stop()

models = run.feature_models()
pick_model, pick_layer, pick_size, pick_feature = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
with pick_model:
    model = ui.model_picker(models, key="model", bind="query-params")
dictionaries = run.dictionaries(model)
layers = sorted(int(v) for v in dictionaries["layer"].unique())
layer = pick_layer.selectbox("Layer", layers, key="layer", bind="query-params")
sizes = sorted(int(v) for v in dictionaries.loc[dictionaries["layer"] == layer, "dict_size"])
dict_size = pick_size.selectbox("Dictionary size", sizes, key="dict_size", bind="query-params")
index = pick_feature.number_input("Feature", min_value=0, max_value=dict_size - 1, value=0, step=1, key="feature",
                                  bind="query-params")
key = FeatureKey(model, layer, dict_size, int(index))
row = run.feature(key)
if row is None:
    st.warning(f"Layer {layer}'s {dict_size}-feature dictionary of the {model} model has no feature {index} "
               "in the store.")
    st.stop()

st.header(f"Feature {key.feature} · layer {layer} · {dict_size}-feature dictionary · {model} model")
if missing(row["explanation"]):
    st.info(f"Not explained yet. {ui.how_to_fill(run, 'feature_explanations')}")
else:
    st.html(quoted(str(row["explanation"])))
    relevance = ("relevance not judged" if missing(row["relevance"])
                 else "related to the tuning task" if row["relevance"] else "not related to the tuning task")
    st.caption(f"Explained by `{row['explanation_source']}`; judged {relevance}.")
    if (detail := run.relevance_detail(key)) is not None:
        st.html(note(f"How relevance was judged: {detail}"))
scores = st.columns(4)
scores[0].metric("Simulation score", num(row["simulation_score"], 2))
scores[1].metric("Detection score", num(row["detection_score"], 2))
scores[2].metric("Twin similarity", num(row["twin_cosine"], 3),
                 help=f"Closest feature in the other dictionary of layer {layer}: feature {row['twin_feature']}")
scores[3].metric("Shared", "yes" if row["is_shared"] else "no")
stats = st.columns(4)
stats[0].metric("Density", percent(row["density"], 2))
stats[1].metric("Tokens fired on", num(row["n_firing"]))
stats[2].metric("Max activation", num(row["max_activation"]))
stats[3].metric("Mean activation when firing", num(row["mean_activation"]))
ui.explain("Simulation score: how well activations predicted from the explanation alone correlate with the real "
           "ones; detection score: how well the explanation picks out texts the feature fires on. Density: share "
           "of held-out tokens on which the feature fires.")

histogram, probe = st.columns([3, 2])
with histogram:
    st.subheader("How strongly it fires")
    if ui.needs(run, "feature_histograms", what="The histogram"):
        st.altair_chart(charts.histogram(run.feature_histogram(key)))
        ui.explain("Activations on the held-out tokens where the feature fires.")
with probe:
    st.subheader("Weight in the reward probe")
    if model != "tuned":
        st.info("The probe reads the tuned model's features only.")
    elif ui.needs(run, "probe_weights", what="The probe weight"):
        weight = run.probe_weight(key)
        if weight is None:
            inputs = run.probe_dictionaries()
            names = ", ".join(f"layer {r.layer} ({r.dict_size})" for r in inputs.itertuples())
            st.info(f"This dictionary is not an input of the probe, which reads {names}.")
        else:
            st.metric("Probe weight", num(weight["weight"]))
            st.metric("Rank by size of weight", f"{num(weight['weight_rank'])} of {num(weight['n_inputs'])}")
            ui.explain("Positive: when this feature fires, the probe expects more reward; negative: less. "
                       "Rank 1 is the feature the probe leans on most.")

st.subheader("Where it fires")
if ui.needs(run, "feature_examples", what="The examples"):
    examples = run.feature_examples(key)
    top, spread = st.tabs(["Top activations", "Across the range (quantiles)"])
    scale = float(row["max_activation"]) if not missing(row["max_activation"]) else 0.0
    for tab, kind in ((top, "top"), (spread, "quantile")):
        with tab, st.container(height=560):
            part = examples[examples["kind"] == kind]
            if part.empty:
                st.caption("No examples of this kind.")
            blocks = []
            for example in part.itertuples():
                rank = f"#{example.rank}" if kind == "top" else f"quantile {num(example.quantile, 2)}, #{example.rank}"
                blocks.append(labelled(f"{rank} · activation {num(example.max_activation)} · text {example.text_id}",
                                       highlighted(list(example.tokens), list(example.activations), scale,
                                                   int(example.peak_index))))
            if blocks:  # one element for all examples: the browser draws one block, not dozens
                st.html("".join(blocks))
    ui.explain("Darker shading: stronger activation (relative to the feature's maximum); the outlined token is the "
               "one the example was picked for. Quantile examples show the feature at weaker strengths too.")

st.subheader("Tokens it makes more and less likely")
if ui.needs(run, "feature_logits", what="Boosted and suppressed tokens"):
    st.altair_chart(charts.logit_effects(run.feature_logits(key)))
    ui.explain("The feature's direction read through the model's output layer: which next tokens it pushes up or "
               "down, all else equal.")

st.subheader("Nearest features")
if ui.needs(run, "feature_neighbors", what="The nearest features"):
    neighbors = run.feature_neighbors(key)
    table_key = f"neighbors_of_{model}_{layer}_{dict_size}_{key.feature}"  # a fresh selection per feature

    def open_neighbor() -> None:
        """Runs before the next script run, so the bound feature widget can still be set."""
        rows = st.session_state[table_key].selection.rows
        if rows:
            st.session_state["feature"] = int(neighbors.iloc[rows[0]]["neighbor"])

    st.dataframe(neighbors, hide_index=True, on_select=open_neighbor, selection_mode="single-row", key=table_key,
                 column_config={"neighbor": st.column_config.NumberColumn("feature", format="%d"),
                                "cosine": st.column_config.NumberColumn("similarity", format="%.3f"),
                                "density": st.column_config.NumberColumn("density", format="percent")})
    ui.explain("The features of the same dictionary whose directions are closest to this one (cosine similarity). "
               "Pick a row to open that feature.")
