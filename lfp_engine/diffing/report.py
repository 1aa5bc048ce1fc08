"""What the crosscoder found, in words: one sentence per top latent, and the stage's closing note.

A sentence says, for a reader who knows no interpretability: whether the latent exists only after
tuning (and whether Latent Scaling, Minder et al. 2025, backs that) or in both models, what it fires on (its
explanation), how the reward of texts moves with it (the correlation's interval and its false-discovery q-value),
and what switching
it off in the tuned model did to the reward, beside the density-matched control. An interval that
contains zero is said as "no evidence", never as an effect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from lfp_engine.report.formatting import num, signed


def _interval(low: float, high: float) -> str:
    return f"95% interval {signed(low)} to {signed(high)}"


def _excludes_zero(low: float, high: float) -> bool:
    return not (math.isnan(low) or math.isnan(high)) and (low > 0 or high < 0)


def reward_clause(r: float, low: float, high: float, q: float) -> str:
    """The correlation with the reward, called a link only when its interval excludes zero *and* it
    survives the false-discovery control over every latent of its layer (q < 0.05): the top latents
    are chosen by this very correlation, so chance alone puts large ones there."""
    if math.isnan(r):
        return "its link to the reward could not be measured (it fires in too few texts)"
    if not _excludes_zero(low, high) or not q < 0.05:
        return f"texts where it fires more earn no more and no less reward that we can tell (r = {signed(r)}, " \
               f"{_interval(low, high)}, q = {num(q, 2)} over all latents tested)"
    direction = "more" if r > 0 else "less"
    return f"texts where it fires more (for their length) earn {direction} reward (r = {signed(r)}, {_interval(low, high)}, " \
           f"q = {num(q, 2)})"


def ablation_clause(effect: pd.Series | None, control: pd.Series | None) -> str:
    if effect is None:
        return ""
    low, high = float(effect["ci_low"]), float(effect["ci_high"])
    if _excludes_zero(low, high):
        verb = "raised" if effect["mean_difference"] > 0 else "lowered"
        text = f"; switching it off in the tuned model {verb} the reward by {num(abs(effect['mean_difference']))}"
    else:
        text = "; switching it off in the tuned model changed the reward by no measurable amount"
    text += f" ({signed(effect['mean_difference'])}, {_interval(low, high)})"
    if control is not None:
        text += f", against {signed(control['mean_difference'])} for a latent that fires as often"
    return text


def presence_clause(latent: pd.Series) -> str:
    """What the crosscoder says of where the latent lives: only after tuning, or in both models."""
    share = latent["norm_base"] / latent["norm_tuned"] if latent["norm_tuned"] > 0 else float("nan")
    if latent["tag"] == "tuned-only":
        scaling = ("and the base model's activations need almost none of it" if latent["specific"] else
                   "though the base model's own activations still need a good part of it, so tuning may have only "
                   "moved it")
        return f"exists only after tuning (its direction in the base model is {share:.0%} as long), {scaling}"
    if latent["tag"] == "base-only":
        return "exists only before tuning: the tuned model no longer uses it"
    return (f"is used by both models (in the base model its direction is {share:.0%} as long as in the tuned "
            f"model, and points the same way to cosine {latent['decoder_cosine']:.2f}): tuning did not create it")


def plain_sentence(latent: pd.Series, effect: pd.Series | None = None, control: pd.Series | None = None) -> str:
    """One sentence about a latent (a `crosscoder_latents` row), for a non-specialist."""
    what = latent.get("explanation")
    what = f"; it {what}" if isinstance(what, str) and what else ""
    return (f"Latent {int(latent['feature'])} of layer {int(latent['layer'])} {presence_clause(latent)}{what}; "
            f"{reward_clause(latent['reward_r'], latent['reward_ci_low'], latent['reward_ci_high'], latent['reward_q'])}"
            f"{ablation_clause(effect, control)}.")


def latent_sentences(latents: pd.DataFrame, ablation: pd.DataFrame | None) -> pd.Series:
    """One plain sentence for each top latent (`top_rank` set; NULL for the others), with its ablation
    and its control's when `ablation` (`crosscoder_ablation`) has them."""
    out = pd.Series(pd.NA, index=latents.index, dtype="string")
    for index, row in latents[latents["top_rank"].notna()].iterrows():
        effect = control = None
        if ablation is not None:
            same = ablation[ablation["layer"] == row["layer"]]
            hits = same[(same["group"] == "top") & (same["feature"] == row["feature"])]
            controls = same[(same["group"] == "control") & (same["control_for"] == row["feature"])]
            effect = hits.iloc[0] if len(hits) else None
            control = controls.iloc[0] if len(controls) else None
        out[index] = plain_sentence(row, effect, control)
    return out


def tag_counts(latents: pd.DataFrame) -> pd.DataFrame:
    """Latents per layer and tag (columns: the tags), with totals."""
    counts = latents.pivot_table(index="layer", columns="tag", values="feature", aggfunc="count", fill_value=0)
    counts.loc["all"] = counts.sum()
    return counts


def comparisons(probe_metrics: pd.DataFrame, sae_headline: Mapping[str, float], divergence_rank: pd.Series,
                latents: pd.DataFrame) -> tuple[dict[str, float], str]:
    """The probe on crosscoder codes beside the paper's probe on the tuned model's SAE codes (same test
    split), and the layers' tuned-only latents beside the divergence ranking of the layers.

    Returns (headline, text): the crosscoder probe's test measures with their p-values as
    '<measure>_p', and the comparison in lines. `probe_metrics`: `crosscoder_probe_metrics` rows;
    `sae_headline`: the probe stage's headline; `divergence_rank`: each layer's divergence rank."""
    test = probe_metrics[(probe_metrics["subset"] == "test")
                         & probe_metrics["metric"].isin(["kendall_tau", "accuracy"])]
    headline = {r.metric: r.value for r in test.itertuples()}
    headline |= {f"{r.metric}_p": r.p_value for r in test.itertuples()}
    sae = {m: sae_headline.get("sae_" + m, float("nan")) for m in headline}
    lines = [f"probe on crosscoder codes, test {m}: {v:.3f} (p {headline[m + '_p']:.2g}); on the tuned model's SAE "
             f"codes: {sae[m]:.3f}" for m, v in headline.items() if not m.endswith("_p")]
    per_layer = latents[latents["tag"] == "tuned-only"].groupby("layer").size()
    lines.append("tuned-only latents by layer (divergence rank): " + ", ".join(
        f"layer {layer} (rank {divergence_rank.get(layer, '?')}): {int(per_layer.get(layer, 0))}"
        for layer in sorted(latents["layer"].unique())))
    return headline, "\n".join(lines)


def closing_note(latents: pd.DataFrame, ablation: pd.DataFrame | None, comparison: str, n_top: int) -> str:
    """The stage's summary: counts per tag, the top latents (tuned-only ones, or when tuning created
    none the latents most tied to the reward) with their reward links and the nearest feature of the
    paper's probe, and `comparison` (the probe on crosscoder codes beside the paper's, tuned-only
    latents by layer beside the divergence ranking)."""
    lines = ["latents per layer and tag:", tag_counts(latents).to_string()]
    top = latents[latents["top_rank"].notna()].sort_values("top_rank").head(n_top)
    if not (latents["tag"] == "tuned-only").any():
        lines.append("no tuned-only latent: at these layers the crosscoder finds nothing that tuning created; the "
                     f"relative decoder norms of the live latents span {latents.loc[latents['tag'] != 'dead', 'relative_norm'].min():.3f}"
                     f"..{latents.loc[latents['tag'] != 'dead', 'relative_norm'].max():.3f}. The latents most tied "
                     "to the reward instead:")
    for row in top.itertuples():
        effect = ""
        if ablation is not None:
            hit = ablation[(ablation["group"] == "top") & (ablation["layer"] == row.layer)
                           & (ablation["feature"] == row.feature)]
            if not hit.empty:
                h = hit.iloc[0]
                effect = f", ablated: {signed(h.mean_difference)} [{signed(h.ci_low)}, {signed(h.ci_high)}]"
        lines.append(f"#{int(row.top_rank)} layer {row.layer} latent {row.feature} ({row.tag}, relative norm "
                     f"{row.relative_norm:.3f}, specific {bool(row.specific)}): reward r {signed(row.reward_r)} "
                     f"[{signed(row.reward_ci_low)}, {signed(row.reward_ci_high)}] q {num(row.reward_q, 2)}, probe weight "
                     f"rank {row.probe_weight_rank}{effect}; nearest feature of the paper's SAE: "
                     f"{row.nearest_sae_feature} (cosine {row.nearest_sae_cosine:.2f}, probe weight rank "
                     f"{row.nearest_sae_probe_rank}); {row.explanation or 'not explained'}")
    lines.append(comparison)
    return "\n".join(lines)


@dataclass(frozen=True)
class DiffingSummary:
    """What the run's manifest keeps of its model diffing (the `crosscoder` stage's summary, which
    documents each field)."""

    n_by_tag: dict[str, int]
    n_specific: int
    variance_explained: dict[str, float]
    loss_recovered: dict[str, float]
    top_latents: list[str]


def summarize(latents: pd.DataFrame, metrics: pd.DataFrame) -> DiffingSummary:
    """Latents per tag, the tuned-only ones Latent Scaling confirms, each model's variance explained
    and loss recovered averaged over layers (`metrics`: `crosscoder_metrics`), and the top latents by
    reward as 'layer/dict_size/feature', best first."""
    top = latents[latents["top_rank"].notna()].sort_values("top_rank")
    by_model = metrics.groupby("model")
    return DiffingSummary(
        n_by_tag={str(k): int(v) for k, v in latents["tag"].value_counts().items()},
        n_specific=int((latents["specific"] & (latents["tag"] == "tuned-only")).sum()),
        variance_explained={str(k): float(v) for k, v in by_model["variance_explained"].mean().items()},
        loss_recovered={str(k): float(v) for k, v in by_model["loss_recovered"].mean().items()},
        top_latents=[f"{r.layer}/{r.dict_size}/{r.feature}" for r in top.itertuples()])
