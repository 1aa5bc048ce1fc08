"""FIXTURE DATA, not results: tuned-only crosscoder latents written into a copy of a micro run.

The micro world tunes for a few steps only, so its crosscoder rightly finds no tuned-only latent
and the "What tuning changed" page shows its empty state. To build and test the page's full state,
three live latents of the first layer are re-tagged tuned-only here, with made-up reward links,
ablations and sentences (one carrying markup, for the escaping tests), and the examples of three
SAE features borrowed as theirs. Every number is made up under a fixed seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lfp_engine.run.store import RunStore

from .contract_fixture import MARKUP_EXPLANATION

N_TUNED_ONLY = 3
MARKUP_SENTENCE = "Latent <b>bold</b> exists only after tuning <script>alert('sentence')</script>"


def _ablation_rows(picked: pd.DataFrame, controls: list[int], rng: np.random.Generator) -> pd.DataFrame:
    rows = [{"layer": None, "dict_size": None, "feature": None, "group": "none", "control_for": None, "n_prompts": 24,
             "mean_reward": 0.4, "mean_difference": 0.0, "ci_low": np.nan, "ci_high": np.nan, "test": None,
             "statistic": np.nan, "p_value": np.nan}]
    for group, features in (("top", picked["feature"].tolist()), ("control", controls)):
        for feature, owner in zip(features, picked["feature"], strict=True):
            effect = float(rng.normal(-0.2 if group == "top" else 0.0, 0.05))
            rows.append({"layer": int(picked["layer"].iloc[0]), "dict_size": int(picked["dict_size"].iloc[0]),
                         "feature": int(feature), "group": group, "control_for": int(owner) if group == "control" else
                         None, "n_prompts": 24, "mean_reward": 0.4 + effect, "mean_difference": effect,
                         "ci_low": effect - 0.1, "ci_high": effect + 0.1, "test": "paired t-test, two-sided",
                         "statistic": effect * 10, "p_value": 0.04})
    table = pd.DataFrame(rows)
    for column in ("layer", "dict_size", "feature", "control_for"):
        table[column] = table[column].astype("Int64")
    return table


def add_crosscoder_fixture(run: Path, seed: int = 0) -> Path:
    """Re-tag three latents tuned-only, with reward links, examples, ablations and sentences."""
    rng = np.random.default_rng(seed)
    store = RunStore(run)
    latents = store.read("crosscoder_latents", order_by="layer, feature")
    first = latents[(latents["layer"] == latents["layer"].min()) & (latents["n_firing"] > 0)]
    picked = first.sort_values("density", ascending=False).head(N_TUNED_ONLY)
    controls = first.drop(picked.index).head(N_TUNED_ONLY)["feature"].tolist()
    r = np.array([0.45, -0.3, 0.1])
    latents.loc[picked.index, ["tag", "relative_norm", "norm_base", "specific"]] = ["tuned-only", 0.95, 0.02, True]
    latents.loc[picked.index, ["reward_r", "reward_ci_low", "reward_ci_high", "reward_q"]] = np.c_[
        r, r - 0.12, r + 0.12, [0.001, 0.01, 0.5]]
    latents.loc[picked.index, "reward_rank"] = [1, 2, 3]
    latents.loc[picked.index, "top_rank"] = [1, 2, 3]
    latents.loc[latents.index.difference(picked.index), "top_rank"] = pd.NA
    latents.loc[picked.index, "explanation"] = [MARKUP_EXPLANATION, "positive adjectives: 'great'", "function words: 'the'"]
    latents.loc[picked.index, "explanation_source"] = "offline"
    latents.loc[picked.index, "sentence"] = [MARKUP_SENTENCE, "Latent two exists only after tuning.", pd.NA]
    sae_examples = store.query("SELECT * FROM feature_examples WHERE model = 'tuned' ORDER BY layer, dict_size, "
                               "feature, kind, rank")
    donors = sae_examples["feature"].drop_duplicates().head(N_TUNED_ONLY).tolist()
    examples = pd.concat([sae_examples[sae_examples["feature"] == donor].assign(feature=int(latent))
                          for donor, latent in zip(donors, picked["feature"], strict=True)], ignore_index=True)
    examples = examples.drop(columns="model").assign(layer=int(picked["layer"].iloc[0]),
                                                     dict_size=int(picked["dict_size"].iloc[0]))
    store.write({"crosscoder_latents": latents, "crosscoder_examples": examples,
                 "crosscoder_ablation": _ablation_rows(picked, controls, rng)})
    return run
