"""Shared features across the n and 2n dictionaries, and nearest neighbours, on constructed decoders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lfp_engine.sae.shared_features import decoder_cosines, nearest_neighbors, shared_features, top_shared
from lfp_engine.run.errors import InputError
from lfp_engine.sae.autoencoder import SparseAutoencoder


def untied_with_decoder(rows: torch.Tensor) -> SparseAutoencoder:
    sae = SparseAutoencoder(rows.shape[1], rows.shape[0], "untied")
    with torch.no_grad():
        sae.W_dec_free.copy_(rows)
    return sae


def test_twins_cosines_ranks_and_mean_max_cosine():
    torch.manual_seed(0)
    small_rows = torch.randn(4, 8)
    # The large dictionary holds the small one's features 0 and 2 exactly (scaled, permuted), a noisy copy
    # of feature 1, and unrelated directions.
    noisy = small_rows[1] + 0.3 * torch.randn(8)
    large_rows = torch.cat([torch.randn(3, 8), 2.5 * small_rows[2:3], noisy[None], torch.randn(2, 8), small_rows[0:1]])
    small, large = untied_with_decoder(small_rows), untied_with_decoder(large_rows)
    features, summary = shared_features({8: large, 4: small}, threshold=0.9)

    cos = decoder_cosines(small, large).numpy()
    s = features[features["dict_size"] == 4].set_index("feature")
    assert s.loc[0, "twin_feature"] == 7 and s.loc[2, "twin_feature"] == 3
    assert s.loc[0, "twin_cosine"] == pytest.approx(1.0) and s.loc[2, "twin_cosine"] == pytest.approx(1.0)
    assert s.loc[1, "twin_feature"] == 4
    np.testing.assert_allclose(s["twin_cosine"].to_numpy(), cos.max(1))
    assert set(s.index[s["is_shared"]]) >= {0, 2}
    assert sorted(s["shared_rank"]) == [1, 2, 3, 4]
    assert s.loc[s["twin_cosine"].idxmax(), "shared_rank"] == 1
    large_side = features[features["dict_size"] == 8].set_index("feature")
    np.testing.assert_allclose(large_side["twin_cosine"].to_numpy(), cos.max(0))
    row = summary.set_index("dict_size").loc[4]
    assert row["twin_dict_size"] == 8 and row["mean_max_cosine"] == pytest.approx(cos.max(1).mean())
    assert row["n_shared"] == int((cos.max(1) > 0.9).sum())


def test_top_shared_takes_k_per_layer_and_size():
    frame = pd.DataFrame({"layer": [1] * 4 + [2] * 4, "dict_size": 4, "feature": list(range(4)) * 2,
                          "shared_rank": [3, 1, 4, 2, 2, 1, 3, 4]})
    top = top_shared(frame, 2)
    assert top[["layer", "feature"]].values.tolist() == [[1, 1], [1, 3], [2, 1], [2, 0]]


def test_shared_features_need_two_dictionaries():
    with pytest.raises(InputError, match="two dictionaries"):
        shared_features({4: untied_with_decoder(torch.randn(4, 3))}, 0.5)


def test_nearest_neighbours_exclude_the_feature_itself():
    rows = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1.0, 0], [0, 0, 1.0]])
    table = nearest_neighbors(untied_with_decoder(rows), k=2)
    first = table[table["feature"] == 0].sort_values("rank")
    assert first["neighbor"].tolist()[0] == 1 and (table["neighbor"] != table["feature"]).all()
    assert len(table) == 8 and first["cosine"].is_monotonic_decreasing
