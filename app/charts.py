"""The dashboard's charts (altair), each drawn from a frame exactly as the store holds it.

Charts only draw: no value is computed here that the store does not already hold.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from lfp_engine.report.story import READINGS

TUNED, BASE, ACCENT, MUTED = "#d1495b", "#00798c", "#edae49", "#8d99ae"
MODEL_COLORS = alt.Scale(domain=["base", "tuned"], range=[BASE, TUNED])
LAYER_AXIS = alt.Axis(labelAngle=0)
GROUP_COLORS = {"polarity": alt.Scale(domain=["positive", "negative"], range=[BASE, TUNED]),
                "split": alt.Scale(domain=["test", "train"], range=[TUNED, MUTED])}


def reward_bars(rewards: pd.DataFrame, metric: str) -> alt.Chart:
    """Mean reward of base and tuned completions, +- one standard deviation of the completions."""
    frame = rewards[rewards["metric"] == metric]
    base = alt.Chart(frame).encode(y=alt.Y("model:N", sort=["base", "tuned"], title=None))
    bars = base.mark_bar(height=22).encode(
        x=alt.X("mean:Q", title=f"mean {metric.replace('_', ' ')}"),
        color=alt.Color("model:N", scale=MODEL_COLORS, legend=None),
        tooltip=["model", "n", alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("std:Q", format=".3f")])
    spread = base.mark_errorbar(color="#333", ticks=True).encode(x=alt.X("mean:Q", title=None), xError="std:Q")
    return (bars + spread).properties(height=alt.Step(34))


def training_curve(log: pd.DataFrame, column: str, title: str) -> alt.Chart:
    return alt.Chart(log).mark_line(point=True, color=TUNED).encode(
        x=alt.X("step:Q", title="training step"), y=alt.Y(f"{column}:Q", title=title),
        tooltip=["step", alt.Tooltip(f"{column}:Q", format=".3f")]).properties(height=220)


def divergence_bars(divergence: pd.DataFrame, column: str, title: str) -> alt.Chart:
    """Figure 7: per-layer parameter distance, the chosen layers highlighted."""
    frame = divergence.assign(status=divergence["chosen"].map({True: "chosen", False: "not chosen"}))
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("layer:O", title="layer", axis=LAYER_AXIS), y=alt.Y(f"{column}:Q", title=title),
        color=alt.Color("status:N", scale=alt.Scale(domain=["chosen", "not chosen"], range=[TUNED, MUTED]),
                        title=None),
        tooltip=["layer", alt.Tooltip(f"{column}:Q", format=".4g"), "rank", "chosen", "n_params"],
    ).properties(height=260)


def divergence_lines(frames: dict[str, pd.DataFrame], column: str, title: str) -> alt.Chart:
    """Several runs' layer divergence on one axis (runs compared)."""
    frame = pd.concat([f.assign(run=name) for name, f in frames.items()], ignore_index=True)
    return alt.Chart(frame).mark_line(point=alt.OverlayMarkDef(size=90, filled=True)).encode(
        x=alt.X("layer:O", axis=LAYER_AXIS), y=alt.Y(f"{column}:Q", title=title),
        color=alt.Color("run:N", title="run", scale=alt.Scale(range=[TUNED, BASE, ACCENT, MUTED])),
        shape=alt.Shape("chosen:N", title="studied", scale=alt.Scale(domain=[True, False], range=["square", "circle"])),
        tooltip=["run", "layer", alt.Tooltip(f"{column}:Q", format=".4g"), "chosen"]).properties(height=280)


def dictionary_metrics(metrics: pd.DataFrame, columns: dict[str, str]) -> alt.FacetChart:
    """SAE quality metrics per layer, the n and 2n dictionaries side by side, one panel per metric
    (`columns`: column -> title), drawn as one chart."""
    frame = metrics.assign(dictionary=metrics["dict_size"].astype(str)).melt(
        id_vars=["layer", "dictionary"], value_vars=list(columns), var_name="column", value_name="value")
    frame["metric"] = frame["column"].map(columns)
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("layer:O", title="layer", axis=LAYER_AXIS), xOffset="dictionary:N", y=alt.Y("value:Q", title=None),
        color=alt.Color("dictionary:N", title="dictionary size", scale=alt.Scale(range=[BASE, ACCENT])),
        tooltip=["metric", "layer", "dictionary", alt.Tooltip("value:Q", format=".4g")],
    ).properties(width=260, height=170).facet(
        facet=alt.Facet("metric:N", sort=list(columns.values()), title=None), columns=2,
    ).resolve_scale(y="independent")


def l1_sweep(sweep: pd.DataFrame) -> alt.Chart:
    """Figure 8: reconstruction error against sparsity, one line per dictionary, one point per L1."""
    frame = sweep.assign(dictionary=sweep["layer"].astype(str) + " / " + sweep["dict_size"].astype(str))
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("l0_fraction:Q", title="true sparsity (L0 / dictionary size)"),
        y=alt.Y("normalized_mse:Q", title="normalised reconstruction loss"),
        color=alt.Color("dictionary:N", title="layer / size"), order="l1_coefficient:Q",
        tooltip=["l1_coefficient", "layer", "dict_size", alt.Tooltip("normalized_mse:Q", format=".4f"),
                 alt.Tooltip("l0_fraction:Q", format=".3f"),
                 alt.Tooltip("l0_scaled:Q", format=".3f", title="L0 / 100 (the paper's scale)")]).properties(height=300)


def histogram(bins: pd.DataFrame) -> alt.Chart:
    return alt.Chart(bins).mark_bar(color=BASE).encode(
        x=alt.X("bin_left:Q", title="activation (where the feature fires)", bin="binned"),
        x2="bin_right:Q", y=alt.Y("count:Q", title="tokens"),
        tooltip=[alt.Tooltip("bin_left:Q", format=".3f"), alt.Tooltip("bin_right:Q", format=".3f"), "count"],
    ).properties(height=220)


def logit_effects(logits: pd.DataFrame) -> alt.HConcatChart:
    """Next tokens the feature makes more likely (left) and less likely (right), as one chart."""
    def side(direction: str, title: str, color: str) -> alt.Chart:
        return alt.Chart(logits[logits["direction"] == direction], title=title).mark_bar(color=color).encode(
            y=alt.Y("token:N", sort=alt.EncodingSortField("rank"), title=None),
            x=alt.X("effect:Q", title="effect on the logit"),
            tooltip=["token", alt.Tooltip("effect:Q", format=".3f")]).properties(height=alt.Step(24), width=300)

    return alt.hconcat(side("boost", "more likely", TUNED), side("suppress", "less likely", BASE))


def probe_vs_lexicon(words: pd.DataFrame, color: str = "split") -> alt.Chart:
    """Each word's value as the probe reads it against its lexicon value; the dashed diagonal is
    where a probe that had recovered the reward exactly would put every word."""
    low = float(min(words["lexicon_value"].min(), words["probe_value"].min()))
    high = float(max(words["lexicon_value"].max(), words["probe_value"].max()))
    diagonal = alt.Chart(pd.DataFrame({"x": [low, high], "y": [low, high]})).mark_line(
        color="#555", strokeDash=[5, 4]).encode(x="x:Q", y="y:Q")
    points = alt.Chart(words).mark_circle(size=70, opacity=0.8).encode(
        x=alt.X("lexicon_value:Q", title="true value (lexicon)", scale=alt.Scale(domain=[low, high])),
        y=alt.Y("probe_value:Q", title="value the probe reads in the model", scale=alt.Scale(domain=[low, high])),
        color=alt.Color(f"{color}:N", scale=GROUP_COLORS[color]),
        tooltip=["word", "split", alt.Tooltip("lexicon_value:Q", format=".2f"),
                 alt.Tooltip("probe_value:Q", format=".2f"), "n_examples"])
    return (diagonal + points).properties(height=360)


def error_vs_frequency(words: pd.DataFrame) -> alt.Chart:
    """Figure 4: how wrong the probe is about a word against how often the tuned model writes it."""
    return alt.Chart(words).mark_circle(size=60, opacity=0.8).encode(
        x=alt.X("generation_count:Q", scale=alt.Scale(type="symlog"),
                title="times the tuned model generated the word"),
        y=alt.Y("abs_error:Q", title="|probe value - lexicon value|"),
        color=alt.Color("split:N", scale=GROUP_COLORS["split"]),
        tooltip=["word", "split", "generation_count", "base_generation_count",
                 alt.Tooltip("abs_error:Q", format=".2f")]).properties(height=300)


def metric_by_variant(metrics: pd.DataFrame, metric: str) -> alt.Chart:
    """One metric of the probe and of every baseline, with its confidence interval where known."""
    frame = metrics[metrics["metric"] == metric]
    base = alt.Chart(frame).encode(y=alt.Y("variant:N", sort=None, title=None))
    bars = base.mark_bar().encode(
        x=alt.X("value:Q", title=metric.replace("_", " ")),
        color=alt.condition(alt.datum.variant == "sae", alt.value(TUNED), alt.value(MUTED)),
        tooltip=["variant", "subset", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("p_value:Q", format=".3g"),
                 alt.Tooltip("ci_low:Q", format=".3f"), alt.Tooltip("ci_high:Q", format=".3f"), "n"])
    return (bars + base.mark_rule(color="#333").encode(x="ci_low:Q", x2="ci_high:Q")).properties(
        height=alt.Step(30))


def pca(points: pd.DataFrame) -> alt.Chart:
    """Figure 5: the probe's inputs in their first two principal components."""
    return alt.Chart(points).mark_circle(size=40, opacity=0.7).encode(
        x="pc1:Q", y="pc2:Q", color=alt.Color("label:N", scale=alt.Scale(range=[BASE, TUNED])),
        tooltip=["triple_id", "element", "split", "label"]).properties(height=320)


def token_rewards(models: dict[str, pd.DataFrame], pieces: list[str]) -> alt.Chart:
    """Implicit reward per token position, one line per model, on one text."""
    frame = pd.concat([t[["position", "reward"]].assign(model=name, token=pieces) for name, t in models.items()],
                      ignore_index=True)
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("position:Q", title="token position"), y=alt.Y("reward:Q", title="implicit reward"),
        color=alt.Color("model:N", scale=MODEL_COLORS),
        tooltip=["model", "position", "token", alt.Tooltip("reward:Q", format=".3f")]).properties(height=240)


def reward_pairs(samples: pd.DataFrame) -> alt.Chart:
    """Each sample's reward unmodified (across) against modified (up): on the diagonal, no change."""
    low = float(min(samples["unmodified_reward"].min(), samples["modified_reward"].min()))
    high = float(max(samples["unmodified_reward"].max(), samples["modified_reward"].max()))
    diagonal = alt.Chart(pd.DataFrame({"x": [low, high], "y": [low, high]})).mark_line(
        color="#555", strokeDash=[5, 4]).encode(x="x:Q", y="y:Q")
    points = alt.Chart(samples.reset_index(names="sample")).mark_circle(size=70, color=TUNED, opacity=0.8).encode(
        x=alt.X("unmodified_reward:Q", title="reward, unmodified model", scale=alt.Scale(domain=[low, high])),
        y=alt.Y("modified_reward:Q", title="reward, modified model", scale=alt.Scale(domain=[low, high])),
        tooltip=["sample", alt.Tooltip("unmodified_reward:Q", format=".3f"),
                 alt.Tooltip("modified_reward:Q", format=".3f"), alt.Tooltip("difference:Q", format=".3f")])
    return (diagonal + points).properties(height=300)


def enrichment(groups: pd.DataFrame) -> alt.Chart:
    """Table 7's control: each group's mean enrichment (rate on strong-reward inputs / rate on all)
    with its bootstrap interval, against 1 (no preference for the strong inputs)."""
    order = ["relevant", "matched_shared", "all"]
    frame = groups[["group", "n_features", "firing_rate", "enrichment", "ci_low", "ci_high"]]
    y = alt.Y("group:N", sort=order, title=None)
    bars = alt.Chart(frame).mark_bar().encode(
        y=y, x=alt.X("enrichment:Q", title="enrichment: firing rate on strong-reward inputs / on all inputs"),
        color=alt.condition(alt.datum.group == "relevant", alt.value(TUNED), alt.value(MUTED)),
        tooltip=["group", "n_features", alt.Tooltip("enrichment:Q", format=".2f"),
                 alt.Tooltip("firing_rate:Q", format=".1%", title="firing rate on strong inputs")])
    ci = alt.Chart(frame).mark_rule(color="#333").encode(y=y, x="ci_low:Q", x2="ci_high:Q")
    one = alt.Chart(pd.DataFrame({"x": [1.0]})).mark_rule(color="#555", strokeDash=[5, 4]).encode(x="x:Q")
    return (bars + ci + one).properties(height=alt.Step(30))


TAG_COLORS = alt.Scale(domain=["tuned-only", "changed", "shared", "base-only", "dead"],
                       range=[TUNED, ACCENT, MUTED, BASE, "#d9d9d9"])


def relative_norms(latents: pd.DataFrame) -> alt.Chart:
    """The classic crosscoder picture (Lindsey et al. 2024): latents by relative decoder norm
    ||d_tuned|| / (||d_base|| + ||d_tuned||), coloured by tag, one row of bars per layer."""
    frame = latents[latents["tag"] != "dead"]
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("relative_norm:Q", bin=alt.Bin(extent=[0, 1], step=0.025),
                title="relative decoder norm (0: base only, 0.5: both, 1: tuned only)"),
        y=alt.Y("count():Q", title="latents", scale=alt.Scale(type="symlog")),
        color=alt.Color("tag:N", scale=TAG_COLORS, title=None),
        row=alt.Row("layer:O", title="layer"),
        tooltip=["layer", "tag", alt.Tooltip("count():Q", title="latents")],
    ).properties(height=120, width=640)


# -- the Story page and its tour: pictures for people ---------------------------------------------

READING_COLORS = alt.Scale(domain=list(READINGS),
                           range=[BASE, "#c9ced6", TUNED])
"""The readings of `lfp_engine.report.story.READINGS`."""


def example_words(words: pd.DataFrame) -> alt.Chart:
    """A few words and what the reward pays for each (teal: paid, red: penalised)."""
    frame = words.assign(sign=words["lexicon_value"].map(lambda v: "paid" if v > 0 else "penalised"))
    return alt.Chart(frame).mark_bar(height=16).encode(
        y=alt.Y("word:N", sort=None, title=None, axis=alt.Axis(labelFontSize=13)),
        x=alt.X("lexicon_value:Q", title="what the reward pays"),
        color=alt.Color("sign:N", scale=alt.Scale(domain=["paid", "penalised"], range=[BASE, TUNED]), legend=None),
        tooltip=["word", alt.Tooltip("lexicon_value:Q", title="reward", format="+.1f")]).properties(
        height=alt.Step(24))


def before_after(base: float, tuned: float) -> alt.Chart:
    """The mean reward before and after tuning, as two bars."""
    frame = pd.DataFrame({"model": ["before tuning", "after tuning"], "reward": [base, tuned]})
    return alt.Chart(frame).mark_bar(height=16).encode(
        y=alt.Y("model:N", sort=None, title=None, axis=alt.Axis(labelFontSize=13)),
        x=alt.X("reward:Q", title="average reward"),
        color=alt.Color("model:N", scale=alt.Scale(domain=["before tuning", "after tuning"], range=[BASE, TUNED]),
                        legend=None),
        tooltip=["model", alt.Tooltip("reward:Q", format=".2g")]).properties(height=alt.Step(24))


def lens_bars(counts: pd.DataFrame) -> alt.FacetChart:
    """Per lens, the share of words it reads with the reward, neither way, or against it (one stacked bar
    each, the lens named above its bar)."""
    order = list(READING_COLORS.domain)
    return alt.Chart(counts.assign(order=counts["reading"].map(order.index))).mark_bar(height=16).encode(
        x=alt.X("words:Q", stack="normalize", title=None, axis=alt.Axis(format="%", tickCount=4)),
        color=alt.Color("reading:N", scale=READING_COLORS, title=None,
                        legend=alt.Legend(orient="bottom", direction="horizontal", columns=2, labelLimit=140,
                                          columnPadding=6)),
        order="order:Q", tooltip=["lens", "reading", "words"]).properties(height=18, width=230).facet(
        row=alt.Row("lens:N", sort=list(dict.fromkeys(counts["lens"])), title=None,
                    header=alt.Header(labelAngle=0, labelOrient="top", labelAnchor="start", labelFontSize=13,
                                      labelPadding=2)), spacing=6)


def word_map(words: pd.DataFrame, learned_title: str, labelled: tuple[str, ...] = (), height: int = 430) -> alt.Chart:
    """Every word by what the reward pays (across) and what the model learned (up), coloured by how the
    lens reads it, shaped by its planted kind; the quadrants named in words; hover for the word in a
    sentence. `labelled`: words written beside their dot."""
    x_pad = max(float(words["reward"].abs().max()), 1e-9) * 1.08
    y_pad = max(float(words["learned"].abs().max()), 1e-9) * 1.15
    x = alt.X("reward:Q", title="what the reward pays for the word", scale=alt.Scale(domain=[-x_pad, x_pad]))
    y = alt.Y("learned:Q", title=learned_title, scale=alt.Scale(domain=[-y_pad, y_pad]))
    zero = pd.DataFrame({"v": [0.0]})
    rules = (alt.Chart(zero).mark_rule(color="#888").encode(x=alt.X("v:Q", scale=alt.Scale(domain=[-x_pad, x_pad])))
             + alt.Chart(zero).mark_rule(color="#888").encode(y=alt.Y("v:Q", scale=alt.Scale(domain=[-y_pad, y_pad]))))
    corners = pd.DataFrame({"reward": [x_pad, -x_pad, -x_pad, x_pad], "learned": [y_pad, -y_pad, y_pad, -y_pad],
                            "label": ["agrees", "agrees", "learned the opposite", "learned the opposite"],
                            "align": ["right", "left", "left", "right"],
                            "baseline": ["top", "bottom", "top", "bottom"]})
    labels = [alt.Chart(corners[corners["align"] == side]).mark_text(
        align=side, dx=-6 if side == "right" else 6, fontSize=14, fontWeight="bold", color="#555",
        baseline=alt.expr("datum.baseline"), dy=0).encode(x=x, y=y, text="label:N") for side in ("right", "left")]
    planted = bool(words["kind"].astype(bool).any())
    points = alt.Chart(words).mark_point(filled=True, opacity=0.85).encode(
        x=x, y=y, color=alt.Color("reading:N", scale=READING_COLORS, title="the model", legend=alt.Legend(
            orient="right")),
        shape=alt.Shape("kind:N", title="the word", legend=alt.Legend(orient="right", labelLimit=220)) if planted else
        alt.value("circle"),
        size=(alt.condition(alt.datum.kind == "not planted", alt.value(45), alt.value(110)) if planted else
              alt.value(60)),
        tooltip=[alt.Tooltip("word:N"), alt.Tooltip("sentence:N", title="in a sentence"),
                 alt.Tooltip("reward:Q", title="the reward pays", format="+.2g"),
                 alt.Tooltip("learned:Q", title="the model learned", format="+.2g"),
                 alt.Tooltip("kind:N", title="planted?"), alt.Tooltip("reading:N", title="reading")])
    layers = [rules, *labels, points]
    if labelled:
        shown = words[words["word"].isin(labelled)]
        layers.append(alt.Chart(shown).mark_text(align="left", dx=8, fontSize=13, fontWeight="bold").encode(
            x=x, y=y, text="word:N"))
    return alt.layer(*layers).properties(height=height)


def ablation_bars(results: pd.DataFrame) -> alt.Chart:
    """The mean reward with nothing switched off, with the features tied to the reward switched off,
    and with random features like them switched off (`ablation_results`: 'none', and each against it)."""
    names = {"none": "nothing switched off", "relevant": "features tied to the reward off",
             "random": "random features like them off"}
    against_none = results["compared_with"].isna() | (results["compared_with"] == "none")
    frame = results[against_none & results["condition"].isin(names)]
    frame = frame.assign(what=frame["condition"].map(names))
    return alt.Chart(frame).mark_bar(height=16).encode(
        y=alt.Y("what:N", sort=list(names.values()), title=None, axis=alt.Axis(labelFontSize=13, labelLimit=260)),
        x=alt.X("mean_reward:Q", title="average reward"),
        color=alt.condition(alt.datum.condition == "relevant", alt.value(TUNED), alt.value(MUTED)),
        tooltip=["what", alt.Tooltip("mean_reward:Q", format=".2g")]).properties(height=alt.Step(26))


KIND_COLORS = alt.Scale(domain=["ordinary", "contested", "reward_only"], range=[MUTED, TUNED, ACCENT])


def policy_vs_lexicon(values: pd.DataFrame) -> alt.Chart:
    """Each word's policy value (what tuning taught the model to prefer to write) against its lexicon
    value, with its 95% interval, coloured by the kind the world planted (`policy_values`)."""
    frame = values.assign(kind=values["kind"].fillna("word"))
    x = alt.X("lexicon_value:Q", title="what the reward pays (lexicon value)")
    color = alt.Color("kind:N", scale=KIND_COLORS if frame["kind"].isin(KIND_COLORS.domain).all() else alt.Undefined,
                      title="planted as")
    whiskers = alt.Chart(frame).mark_rule(opacity=0.35).encode(x=x, y="ci_low:Q", y2="ci_high:Q", color=color)
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="#888").encode(y="y:Q")
    points = alt.Chart(frame).mark_circle(size=55, opacity=0.85).encode(
        x=x, y=alt.Y("policy_value:Q", title="what tuning taught it to write"),
        color=color, tooltip=["word", "kind", "split", alt.Tooltip("lexicon_value:Q", format="+.2f"),
                              alt.Tooltip("policy_value:Q", format="+.3f"), alt.Tooltip("ci_low:Q", format="+.3f"),
                              alt.Tooltip("ci_high:Q", format="+.3f"), "n_triples",
                              alt.Tooltip("reward_difference:Q", format="+.3f")])
    return (zero + whiskers + points).properties(height=360)


def sentence_words(words: pd.DataFrame, order: tuple[str, ...], learned_title: str) -> alt.HConcatChart:
    """The words of one sentence (rows of the word map): what the reward pays for each, and beside it what
    the model learned, each on its own axis."""
    def side(column: str, title: str) -> alt.Chart:
        return alt.Chart(words).mark_bar(height=16).encode(
            y=alt.Y("word:N", sort=list(order), title=None, axis=alt.Axis(labelFontSize=13)),
            x=alt.X(f"{column}:Q", title=title),
            color=alt.condition(f"datum.{column} > 0", alt.value(BASE), alt.value(TUNED)),
            tooltip=["word", alt.Tooltip(f"{column}:Q", format="+.2g")]).properties(height=alt.Step(26), width=300)

    return alt.hconcat(side("reward", "what the reward pays"), side("learned", learned_title))
