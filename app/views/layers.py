"""Layers: where tuning changed the model (paper figure 7), which layers were studied, and how
well the sparse autoencoders trained on them reconstruct those layers (appendix F, figure 8)."""

import streamlit as st

from app import charts, ui
from lfp_engine.report.formatting import num
from lfp_engine.sae.metrics import loss_recovered_reason

run = ui.current_run()
st.title("Layers")

st.header("Where did tuning change the model?")
if ui.needs(run, "layer_divergence", what="The layer chart"):
    divergence = run.layer_divergence()
    relative = st.toggle("Relative to the size of the layer's weights", key="relative_divergence",
                         persist_state="session")
    column, title = (("relative", "distance / norm of the base weights") if relative
                     else ("divergence", "parameter distance, base to tuned"))
    st.altair_chart(charts.divergence_bars(divergence, column, title))
    chosen = divergence[divergence["chosen"]]["layer"].tolist()
    st.markdown(f"Layers studied from here on: **{', '.join(str(v) for v in chosen)}** "
                f"(the {len(chosen)} that moved most).")
    ui.explain("For each layer, the size of the change tuning made to its weights (summed over the layer's "
               "weight matrices). The method studies the layers tuning changed most, where the learned "
               "feedback should live.")

st.header("How good are the sparse autoencoders?")
ui.explain("Each studied layer gets two sparse autoencoders (SAEs), dictionaries of n and 2n features that "
           "rebuild the layer's output from a few active features at a time. Good ones explain most of the "
           "variance with few active features, have few dead features, and keep the model's loss close to the "
           "original when spliced in.")
if ui.needs(run, "sae_metrics", what="SAE quality"):
    models = [m for m in ("tuned", "base") if not run.sae_metrics(m).empty]
    model = ui.model_picker(models, key="layers_model", persist_state="session")
    metrics = run.sae_metrics(model)
    st.altair_chart(charts.dictionary_metrics(metrics, {
        "variance_explained": "variance explained", "l0": "active features per token (L0)",
        "dead_fraction": "dead fraction", "loss_recovered": "loss recovered"}))
    st.dataframe(metrics, hide_index=True, column_order=[
        "layer", "dict_size", "architecture", "l1_coefficient", "variance_explained", "normalized_mse", "l0",
        "l0_scaled", "l0_fraction", "dead_fraction", "dense_fraction", "ce_clean", "ce_spliced", "ce_zero_ablated",
        "loss_increase", "loss_increase_se", "loss_recovered", "n_train_examples", "train_seconds"])
    for r in metrics[metrics["loss_recovered"].isna()].itertuples():
        st.markdown(f"**Layer {r.layer}, {r.dict_size} features: no loss recovered.** It is left empty because "
                    f"{loss_recovered_reason(r.loss_increase, r.loss_increase_se)}.")
    ui.explain("Variance explained: share of the layer's output the SAE rebuilds. L0: features active on a "
               "token, on average (the paper's \"true sparsity\"; its tables 11 and 12 report it divided by 100, "
               "l0_scaled here, beside normalized_mse, their reconstruction loss). Dead: features that never fire on "
               "held-out text. Loss increase: how much zeroing the layer raises the model's loss (nats per token; "
               "loss_increase_se, its standard error over the held-out texts). Loss recovered: 1 when the model with "
               "the SAE spliced in predicts as well as the original, 0 when as badly as with the layer zeroed; a "
               "ratio over the loss increase, so left empty where that increase is within the noise.")
    if run.has("shared_features_summary"):
        shared = run.shared_summary(model)
        st.subheader("Features both dictionaries found")
        st.dataframe(shared, hide_index=True, column_config={
            "mean_max_cosine": st.column_config.NumberColumn("mean best twin similarity", format="%.3f"),
            "shared_fraction": st.column_config.NumberColumn("shared fraction", format="%.3f")})
        ui.explain("A feature whose direction has a close twin in the other dictionary (cosine similarity above "
                   "the run's threshold) is more likely a real feature of the model than an accident of training.")

st.header("Sparsity against reconstruction (L1 sweep)")
if ui.needs(run, "sae_l1_sweep", what="The L1 sweep"):
    sweep = run.sae_l1_sweep()
    st.altair_chart(charts.l1_sweep(sweep))
    ui.explain(f"Each line is one dictionary retrained with {sweep['l1_coefficient'].nunique()} sparsity penalties "
               f"({num(sweep['l1_coefficient'].min())} to {num(sweep['l1_coefficient'].max())}): a stronger "
               "penalty leaves fewer features active but rebuilds the layer less exactly (paper figure 8).")
if run.has("sae_comparison"):
    st.subheader("Tied against untied, most divergent against lowest layers")
    comparison = run.sae_comparison()
    first = ["layer_choice", "architecture", "layer", "dict_size", "normalized_mse", "l0_scaled"]
    st.dataframe(comparison, hide_index=True,
                 column_order=first + [c for c in comparison.columns if c not in first])
    ui.explain("The same SAEs trained with tied or untied encoder and decoder, on the layers tuning changed most "
               "and on the lowest layers (paper tables 11 and 12).")
