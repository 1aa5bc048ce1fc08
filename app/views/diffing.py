"""What tuning changed: the crosscoder over base and tuned (model diffing, after the paper), its latents
by tag, and the tuned-only latents ranked by their link to the reward (when tuning created none, the
latents most tied to the reward), each with its examples, its explanation, its reward link, what
switching it off did, and a link to switch it off in the lab."""

import pandas as pd
import streamlit as st

from app import charts, ui
from app.markup import bullets, highlighted, labelled, quoted
from lfp_engine.diffing.report import scaling_sentence
from lfp_engine.report.formatting import missing, num, p_value, percent, signed, span
from lfp_engine.sae.metrics import loss_recovered_reason
from lfp_engine.sae.keys import FeatureKey

LAB_PAGE = "views/lab.py"

run = ui.current_run()
st.title("What tuning changed")
st.markdown("Here the model before tuning and the model after it are taken apart into the same small pieces, the "
            "patterns each uses to read text. A piece only the tuned model has is something tuning made; each such "
            "piece is then checked against the reward.")
if not ui.needs(run, "crosscoder_latents", what="This page"):
    st.stop()
latents = run.crosscoder_latents()
if not (latents["tag"] == "tuned-only").any():
    st.info("Tuning made no new piece here. What it taught the model shows instead in what the model writes: the "
            "Story and Lexicon pages read that from the two models' own word choices.")
    story_link, lexicon_link, _ = st.columns([1, 1, 3])
    story_link.page_link("views/story.py", label="Open the Story", icon=":material/auto_stories:")
    lexicon_link.page_link("views/lexicon.py", label="Open the Lexicon", icon=":material/dictionary:")

st.header("Which latents belong to which model")
ui.explain("One dictionary of latents, read from the base and the tuned model at once (a crosscoder). A latent whose "
           "direction exists only in the tuned model is something tuning created; one only in the base model, "
           "something it removed; most latents are shared. Each tuned-only latent is then checked against the "
           "reward the model was tuned on.")
counts = latents.pivot_table(index="layer", columns="tag", values="feature", aggfunc="count", fill_value=0)
order = [t for t in ("tuned-only", "base-only", "shared", "changed", "dead") if t in counts.columns]
shown = st.columns(4)
for column, tag in zip(shown, ("tuned-only", "base-only", "shared", "changed")):
    column.metric(f"{tag.capitalize()} latents", num(int(counts[tag].sum()) if tag in counts.columns else 0))
st.altair_chart(charts.relative_norms(latents))
ui.explain("Each latent's decoder norm in the tuned model over the sum of its norms in both (activations scaled to "
           "the same size first). Tags: tuned-only at 0.9 or more, base-only at 0.1 or less, shared within 0.4 to "
           "0.6, changed in between (the cut-points of Minder et al. 2025); dead latents never fire and are left out.")
st.dataframe(counts[order].reset_index(), hide_index=True, key="diffing_counts")
ui.explain(scaling_sentence(latents))

st.header("How well the crosscoder reads each model")
if ui.needs(run, "crosscoder_metrics", what="The crosscoder's quality"):
    quality = run.crosscoder_metrics()
    st.dataframe(quality[["layer", "model", "dict_size", "architecture", "variance_explained", "l0", "dead_fraction",
                          "ce_clean", "ce_spliced", "ce_zero_ablated", "loss_increase", "loss_increase_se",
                          "loss_recovered"]], hide_index=True, key="diffing_quality",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in
                                ("variance_explained", "l0", "dead_fraction", "ce_clean", "ce_spliced", "ce_zero_ablated",
                                 "loss_recovered")}
                 | {c: st.column_config.NumberColumn(format="%.2e") for c in ("loss_increase", "loss_increase_se")})
    for r in quality[quality["loss_recovered"].isna()].itertuples():
        st.markdown(f"**Layer {r.layer}, {r.model} model: no loss recovered.** It is left empty because "
                    f"{loss_recovered_reason(r.loss_increase, r.loss_increase_se)}.")
    ui.explain("Per model: the share of its activations' variance the crosscoder reconstructs, latents active per token "
               "(L0), how much zeroing the layer raises the model's loss (loss increase, nats per token, with its "
               "standard error over the held-out texts), and the loss recovered when the crosscoder's reconstruction "
               "replaces the model's own layer output (1: nothing the model uses is lost; 0: as bad as deleting the "
               "layer; left empty where the loss increase is within the noise, since it is a ratio over it).")

st.header("What tuning created, by link to the reward")
top = run.crosscoder_top()
if top.empty:
    st.info("No latent to describe: the crosscoder stage found no live latent with a measured link to the reward.")
    st.stop()
created = bool((top["tag"] == "tuned-only").any())
if not created:
    st.info("No latent of this run's crosscoder is tuned-only: at the studied layers, tuning created nothing the "
            "crosscoder can separate from what the base model already had. Below instead: the latents most tied to "
            "the reward, whatever their tag; if they are shared, tuning changed how much the model relies on "
            "features it already had, not which features it has.")
plain = [s for s in top["sentence"].tolist() if not missing(s)]
if plain:
    st.subheader("In plain words")
    st.html(bullets(plain))
table = pd.DataFrame({
    "rank": top["top_rank"], "layer": top["layer"], "latent": top["feature"], "tag": top["tag"],
    "explanation": top["explanation"], "relative norm": top["relative_norm"], "confirmed": top["specific"],
    "reward r": top["reward_r"], "95% CI": [span(lo, hi) for lo, hi in zip(top["reward_ci_low"], top["reward_ci_high"])],
    "q": top["reward_q"], "probe weight rank": top["probe_weight_rank"], "ablated: reward change": top["ablation_effect"]})
picked = st.dataframe(table, hide_index=True, key="diffing_top", on_select="rerun", selection_mode="single-row",
                      column_config={c: st.column_config.NumberColumn(format="%.3f") for c in
                                     ("relative norm", "reward r", "q", "ablated: reward change")})
ui.explain("Ranked by how strongly the latent's activation in a text goes with the text's reward (r, over the held-out "
           "texts both models read, for texts of the same length; q: the false-discovery-controlled p-value over all "
           "latents of the layer), then by "
           "the weight the paper's probe puts on it when fit on crosscoder codes. Confirmed: Latent Scaling agrees the "
           "base model does not need it. Pick a row to read the latent.")
rows = picked.selection.rows if picked is not None else []
latent = top.iloc[rows[0] if rows else 0]
layer, dict_size, feature = int(latent["layer"]), int(latent["dict_size"]), int(latent["feature"])

st.subheader(f"Latent {feature} · layer {layer} · {dict_size}-latent crosscoder")
if not missing(latent["sentence"]):
    st.html(quoted(str(latent["sentence"])))
if not missing(latent["explanation"]):
    st.html(labelled(f"Explanation by {latent['explanation_source']}", quoted(str(latent["explanation"]))))
facts = st.columns(4)
facts[0].metric("Relative decoder norm", num(latent["relative_norm"]), help="1: the latent writes only into the tuned "
                "model")
facts[1].metric("Base direction vs tuned", num(latent["decoder_cosine"]), help="cosine of its two decoder directions")
facts[2].metric("Fires on", percent(latent["density"], 2), help="share of training tokens")
facts[3].metric("Latent Scaling, base / tuned", num(latent["scaling_error_ratio"]),
                help="how much of the latent the base model's error needs, relative to the tuned model's")
links = st.columns(4)
links[0].metric("Reward correlation r", signed(latent["reward_r"]), help=f"95% CI "
                f"{span(latent['reward_ci_low'], latent['reward_ci_high'])}; q-value {p_value(latent['reward_q'])}")
links[1].metric("Probe weight", num(latent["probe_weight"]), help=f"rank {latent['probe_weight_rank']} by size")
links[2].metric("Reward change when switched off", signed(latent["ablation_effect"]),
                help=f"95% CI {span(latent['ablation_ci_low'], latent['ablation_ci_high'])}")
links[3].metric("Same for a control latent", signed(latent["control_effect"]),
                help="a latent of the same layer, not tuned-only, that fires about as often")
to_lab, to_feature = st.columns(2)
if to_lab.button("Switch it off in the ablation lab", key="diffing_to_lab", icon=":material/science:"):
    st.switch_page(LAB_PAGE, query_params={"crosscoder": f"{layer}/{dict_size}/{feature}"})
if not missing(latent["nearest_sae_feature"]):
    nearest = FeatureKey("tuned", layer, int(latent["nearest_sae_dict_size"]), int(latent["nearest_sae_feature"]))
    if to_feature.button(f"Open the nearest feature of the paper's SAE ({nearest.label}, cosine "
                         f"{num(latent['nearest_sae_cosine'], 2)}, probe weight rank "
                         f"{num(latent['nearest_sae_probe_rank'])})", key="diffing_to_feature"):
        ui.open_feature(nearest)

examples = run.crosscoder_examples(layer, dict_size, feature)
scale = float(latent["max_activation"]) if not missing(latent["max_activation"]) else 0.0
blocks = [labelled(f"#{e.rank} · activation {num(e.max_activation)} · text {e.text_id}" if e.kind == "top" else
                   f"quantile {num(e.quantile, 2)}, #{e.rank} · text {e.text_id}",
                   highlighted(list(e.tokens), list(e.activations), scale, int(e.peak_index)))
          for e in examples.itertuples()]
with st.container(height=420):
    if blocks:
        st.html("".join(blocks))
    else:
        st.caption("No stored examples.")
ui.explain("Where it fires on the training texts: darker shading, stronger activation; the outlined token is the one "
           "the example was picked for.")

st.header("The paper's probe, fit on crosscoder codes")
if ui.needs(run, "crosscoder_probe_metrics", what="The probe on crosscoder codes"):
    probe = run.crosscoder_probe_metrics()
    probe = probe.assign(**{"95% CI": [span(lo, hi) for lo, hi in zip(probe["ci_low"], probe["ci_high"])],
                            "p-value": [p_value(p) for p in probe["p_value"]]})
    st.dataframe(probe[["variant", "subset", "metric", "value", "95% CI", "p-value", "n"]], hide_index=True,
                 key="diffing_probe", column_config={"value": st.column_config.NumberColumn(format="%.3f")})
    ui.explain("The same triples, fit and measures as the paper's probe, with crosscoder codes (both models read at "
               "once) in place of the tuned model's SAE codes ('sae'), on words the probes were never fit on.")
