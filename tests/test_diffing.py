"""Model diffing's readings put together (`lfp_engine.diffing`): each latent's links to the reward
joined without losing a latent, its ranks, and the figures the run's manifest keeps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lfp_engine.diffing.report import comparisons, summarize
from lfp_engine.diffing.tables import linked_latents


def latents_with_links() -> pd.DataFrame:
    latents = pd.DataFrame({"layer": [1, 1, 1, 2, 2], "dict_size": 8, "feature": [0, 1, 2, 0, 1],
                            "tag": ["tuned-only", "shared", "dead", "tuned-only", "base-only"],
                            "specific": [True, True, False, False, True]})
    # Layer 2's latent 1 was never tested against the reward (it fires in too few texts): no row.
    correlations = pd.DataFrame({"layer": [1, 1, 1, 2], "feature": [0, 1, 2, 0], "reward_r": [0.2, -0.6, np.nan, 0.5]})
    weights = pd.DataFrame({"layer": [1, 1, 1, 2, 2], "feature": [0, 1, 2, 0, 1],
                            "probe_weight": [0.1, 0.0, 0.0, -2.0, 3.0]})
    nearest = pd.DataFrame({"layer": [1, 1, 1, 2, 2], "feature": [0, 1, 2, 0, 1], "nearest_sae_feature": [5, 6, 7, 8, 9]})
    return linked_latents(latents, correlations, weights, nearest, n_top=1)


def test_every_latent_keeps_its_links_and_is_ranked_by_them():
    linked = latents_with_links()
    assert linked[["layer", "feature"]].values.tolist() == [[1, 0], [1, 1], [1, 2], [2, 0], [2, 1]]
    assert linked["probe_weight"].tolist() == [0.1, 0.0, 0.0, -2.0, 3.0]  # kept where the reward was not tested
    assert np.isnan(linked.loc[4, "reward_r"]) and linked["nearest_sae_feature"].tolist() == [5, 6, 7, 8, 9]
    # Live latents by |r| (untested last), ties by |probe weight|: (1,1) 0.6, (2,0) 0.5, (1,0) 0.2, (2,1).
    assert linked["reward_rank"].tolist()[:2] == [3, 1] and linked["reward_rank"].tolist()[3:] == [2, 4]
    assert pd.isna(linked.loc[2, "reward_rank"])  # dead
    assert linked["top_rank"].notna().tolist() == [False, False, False, True, False]  # the best tuned-only one


def test_the_summary_counts_what_the_tables_hold():
    linked = latents_with_links()
    metrics = pd.DataFrame({"layer": [1, 1, 2, 2], "model": ["base", "tuned", "base", "tuned"],
                            "variance_explained": [0.9, 0.8, 0.7, 0.6], "loss_recovered": [1.0, 0.5, 0.0, 0.25]})
    summary = summarize(linked, metrics)
    assert summary.n_by_tag == {"tuned-only": 2, "shared": 1, "dead": 1, "base-only": 1}
    assert summary.n_specific == 1  # specific base-only and shared latents do not count
    assert summary.variance_explained == pytest.approx({"base": 0.8, "tuned": 0.7})
    assert summary.loss_recovered == pytest.approx({"base": 0.5, "tuned": 0.375})
    assert summary.top_latents == ["2/8/0"]


def test_the_comparison_sets_the_crosscoder_probe_beside_the_papers():
    probe = pd.DataFrame({"subset": ["test", "test", "train"], "metric": ["kendall_tau", "n_words", "kendall_tau"],
                          "value": [0.42, 30.0, 0.9], "p_value": [0.001, np.nan, 0.0]})
    headline, text = comparisons(probe, {"sae_kendall_tau": 0.5}, pd.Series({1: 2, 2: 1}), latents_with_links())
    assert headline == {"kendall_tau": 0.42, "kendall_tau_p": 0.001}
    assert "test kendall_tau: 0.420 (p 0.001); on the tuned model's SAE codes: 0.500" in text
    assert "layer 1 (rank 2): 1, layer 2 (rank 1): 1" in text
