"""Feature statistics against brute force over all codes, context windows, and direct logit effects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfp_engine.sae.activations import ActivationSet
from lfp_engine.sae.features import _quantile_samples, context_windows, direct_logit_effects, feature_statistics

from .conftest import tiny_neox
from .test_activations import capture, sequences
from .test_sae import random_sae


def chunked(x: torch.Tensor, size: int):
    def rows():
        return ((start, x[start:start + size]) for start in range(0, len(x), size))

    return rows


def test_statistics_match_brute_force():
    sae = random_sae("tied", d_in=6, d_sae=5, seed=1)
    with torch.no_grad():
        sae.b_enc[4] = -100.0  # dead
    x = torch.randn(500, 6, generator=torch.Generator().manual_seed(0))
    stats = feature_statistics(sae, chunked(x, 64), n_top=7, n_quantiles=4, per_quantile=3, histogram_bins=6,
                               seed=0)
    z = sae.encode(x).detach().double().numpy()
    frame = stats.frame.set_index("feature")
    np.testing.assert_allclose(frame["density"], (z > 0).mean(0))
    np.testing.assert_allclose(frame["max_activation"], z.max(0), rtol=1e-6)
    firing_mean = np.where((z > 0).any(0), z.sum(0) / np.maximum((z > 0).sum(0), 1), 0)
    np.testing.assert_allclose(frame["mean_activation"], firing_mean, rtol=1e-6)
    assert frame.loc[4, "n_firing"] == 0

    top = stats.examples[stats.examples["kind"] == "top"]
    for f in range(4):
        mine = top[top["feature"] == f].sort_values("rank")
        order = np.argsort(-z[:, f], kind="stable")[:7]
        assert mine["row"].tolist() == order.tolist()
        np.testing.assert_allclose(mine["activation"], z[order, f], rtol=1e-6)
    assert (stats.examples["feature"] != 4).all()  # a dead feature has nothing to show

    hist = stats.histogram
    assert set(hist["feature"]) == {0, 1, 2, 3}
    for f in range(4):
        h = hist[hist["feature"] == f]
        expected, _ = np.histogram(z[z[:, f] > 0, f], bins=6, range=(0, z[:, f].max()))
        np.testing.assert_array_equal(h["count"], expected)
        assert h["bin_right"].iloc[-1] == pytest.approx(z[:, f].max(), rel=1e-6)

    quantile = stats.examples[stats.examples["kind"] == "quantile"]
    assert set(quantile["quantile"]) == {0.25, 0.5, 0.75, 1.0}
    for row in quantile.itertuples():
        values = np.sort(z[z[:, row.feature] > 0, row.feature])
        rank = np.searchsorted(values, z[row.row, row.feature], side="right") / len(values)
        assert row.quantile - 0.25 - 0.02 <= rank <= row.quantile + 0.02
    again = feature_statistics(sae, chunked(x, 100), n_top=7, n_quantiles=4, per_quantile=3, histogram_bins=6,
                               seed=0)
    assert again.examples[["feature", "kind", "rank", "row"]].equals(stats.examples[["feature", "kind", "rank", "row"]])


def test_each_quantile_band_keeps_the_rows_with_its_largest_keys():
    """The reservoir sample of pass 3 against brute force: the same uniform keys drawn for every
    (row, feature) entry chunk by chunk, and per feature and band the largest keys among the
    entries that fire in that band, in descending order (-1 fills a band with too few)."""
    sae = random_sae("tied", d_in=6, d_sae=5, seed=2)
    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(3))
    z = sae.encode(x).detach()
    top = z.max(0).values[:, None]
    inner = torch.sort(torch.rand(5, 3, generator=torch.Generator().manual_seed(4)) * top, dim=1).values
    edges = torch.cat([torch.zeros(5, 1), inner, top], dim=1)
    keys, kept = _quantile_samples(sae, chunked(x, 64), edges, 4, 3, seed=9)
    generator = torch.Generator().manual_seed(9)
    u = torch.cat([torch.rand(chunk.shape[0], 5, generator=generator) for _, chunk in chunked(x, 64)()])
    band = (z[..., None] > edges[None, :, 1:-1]).sum(-1)
    for f in range(5):
        for j in range(4):
            members = torch.nonzero((z[:, f] > 0) & (band[:, f] == j)).flatten()
            order = members[torch.argsort(u[members, f], descending=True)][:3]
            n = len(order)
            assert kept[j][:n, f].tolist() == order.tolist()
            assert keys[j][:n, f].tolist() == u[order, f].tolist() and (keys[j][n:, f] == -1).all()


def test_context_windows_stay_in_their_text_and_carry_the_features_codes(tmp_path):
    capture(tmp_path, tiny_neox(), sequences(30), layers=[0, 1], shard_rows=20)
    acts = ActivationSet(tmp_path / "set")
    sae = random_sae("tied", d_in=16, d_sae=8)
    rows = np.arange(acts.n_rows)
    x = acts.gather(1, rows)
    stats = feature_statistics(sae, chunked(x, 50), n_top=3, n_quantiles=2, per_quantile=1, histogram_bins=4, seed=0)
    examples = context_windows(stats.examples, sae, acts, 1, before=3, after=2, batch_rows=17,
                               decode=lambda t: f"<{t}>")
    z = sae.encode(x).detach().numpy()
    index = acts.index
    for e in examples.itertuples():
        text_rows = index.index[index["text_id"] == e.text_id].to_numpy()
        start = e.row - min(3, e.position)
        window = np.arange(start, start + len(e.token_ids))
        assert set(window) <= set(text_rows) and len(e.token_ids) <= 6
        assert e.token_ids == index.loc[window, "token_id"].tolist()
        assert e.tokens == [f"<{t}>" for t in e.token_ids]
        np.testing.assert_allclose(e.activations, z[window, e.feature], rtol=1e-5, atol=1e-7)
        assert e.max_activation == pytest.approx(z[e.row, e.feature], rel=1e-5)
        assert index.loc[e.row, "position"] == e.position


def test_direct_logit_effects_are_the_unembedded_normalised_direction():
    model = tiny_neox()
    directions = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    table = direct_logit_effects(model, directions, k=4)
    norm = model.gpt_neox.final_layer_norm
    centred = directions - directions.mean(1, keepdim=True)
    scaled = centred / torch.sqrt(centred.pow(2).mean(1, keepdim=True) + norm.eps) * norm.weight
    expected = (scaled @ model.lm_head.weight.T).detach()
    for f in range(3):
        boost = table[(table["feature"] == f) & (table["direction"] == "boost")].sort_values("rank")
        suppress = table[(table["feature"] == f) & (table["direction"] == "suppress")].sort_values("rank")
        assert boost["token_id"].tolist() == expected[f].topk(4).indices.tolist()
        assert suppress["token_id"].tolist() == (-expected[f]).topk(4).indices.tolist()
        np.testing.assert_allclose(boost["effect"], expected[f].topk(4).values.numpy(), rtol=1e-4, atol=1e-5)
