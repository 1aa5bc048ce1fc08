"""SAELens-format files: bit-exact round trips, tied stays tied, SAELens's own convention loads."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from lfp_engine.run.errors import InputError
from lfp_engine.sae.saelens_format import CFG, WEIGHTS, find_saes, load_sae, read_cfg, save_sae

from .test_sae import random_sae


@pytest.mark.parametrize("architecture,k", [("tied", None), ("untied", None), ("topk", 4)])
def test_files_round_trip_bit_exactly(tmp_path, architecture, k):
    sae = random_sae(architecture, k=k)
    save_sae(sae, tmp_path / "a", model_name="runs/x/models/tuned", hook_name="gpt_neox.layers.3.mlp",
             metadata={"layer": 3})
    loaded = load_sae(tmp_path / "a")
    assert loaded.architecture == architecture and loaded.k == k
    for (name, p), (_, q) in zip(sae.named_parameters(), loaded.named_parameters()):
        assert torch.equal(p, q), name
    save_sae(loaded, tmp_path / "b", model_name="runs/x/models/tuned", hook_name="gpt_neox.layers.3.mlp",
             metadata={"layer": 3})
    assert (tmp_path / "a" / WEIGHTS).read_bytes() == (tmp_path / "b" / WEIGHTS).read_bytes()
    assert read_cfg(tmp_path / "a") == read_cfg(tmp_path / "b")
    x = torch.randn(5, 6)
    assert torch.equal(sae(x), loaded(x))


def test_layout_is_saelens_and_tied_exports_the_transpose(tmp_path):
    sae = random_sae("tied", d_in=6, d_sae=10)
    save_sae(sae, tmp_path, model_name="EleutherAI/pythia-70m", hook_name="gpt_neox.layers.2.mlp")
    weights = load_file(str(tmp_path / WEIGHTS))
    assert weights["W_enc"].shape == (6, 10) and weights["W_dec"].shape == (10, 6)
    assert weights["b_enc"].shape == (10,) and weights["b_dec"].shape == (6,)
    assert torch.equal(weights["W_dec"], weights["W_enc"].T)
    cfg = json.loads((tmp_path / CFG).read_text())
    assert cfg["architecture"] == "standard" and cfg["d_in"] == 6 and cfg["d_sae"] == 10
    assert cfg["apply_b_dec_to_input"] is False
    assert cfg["metadata"]["model_name"] == "EleutherAI/pythia-70m"
    assert cfg["metadata"]["hook_name"] == "gpt_neox.layers.2.mlp"
    loaded = load_sae(tmp_path)
    assert [n for n, _ in loaded.named_parameters()] == ["W_enc", "b_enc", "b_dec"]


def test_a_tied_file_whose_decoder_was_edited_is_refused(tmp_path):
    save_sae(random_sae("tied"), tmp_path, model_name="m", hook_name="h")
    weights = load_file(str(tmp_path / WEIGHTS))
    weights["W_dec"][0, 0] += 1
    save_file(weights, str(tmp_path / WEIGHTS))
    with pytest.raises(InputError, match="not W_enc transposed"):
        load_sae(tmp_path)


def test_a_saelens_standard_sae_that_subtracts_b_dec_loads_equivalently(tmp_path):
    torch.manual_seed(0)
    W_enc, W_dec, b_enc, b_dec = torch.randn(6, 10), torch.randn(10, 6), torch.randn(10), torch.randn(6)
    save_file({"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec}, str(tmp_path / WEIGHTS))
    (tmp_path / CFG).write_text(json.dumps({"architecture": "standard", "d_in": 6, "d_sae": 10, "dtype": "float32",
                                            "apply_b_dec_to_input": True, "metadata": {"hook_name": "h"}}))
    sae = load_sae(tmp_path)
    x = torch.randn(4, 6)
    expected = torch.relu((x - b_dec) @ W_enc + b_enc) @ W_dec + b_dec
    torch.testing.assert_close(sae(x), expected, rtol=1e-5, atol=1e-5)
    assert sae.architecture == "untied"


def test_not_an_sae_folder_is_refused_clearly(tmp_path):
    with pytest.raises(InputError, match="no cfg.json"):
        load_sae(tmp_path)
    (tmp_path / CFG).write_text(json.dumps({"architecture": "jumprelu", "d_in": 2, "d_sae": 2}))
    save_file({"W_enc": torch.zeros(2, 2), "W_dec": torch.zeros(2, 2), "b_enc": torch.zeros(2),
               "b_dec": torch.zeros(2)}, str(tmp_path / WEIGHTS))
    with pytest.raises(InputError, match="jumprelu"):
        load_sae(tmp_path)


def test_a_runs_saes_are_found_by_layer_and_size(tmp_path):
    for layer, size in [(3, 10), (3, 20), (5, 10)]:
        save_sae(random_sae("tied", d_sae=size), tmp_path / f"layer_{layer}_{size}", model_name="m", hook_name="h",
                 metadata={"layer": layer})
    found = find_saes(tmp_path)
    assert sorted(found) == [(3, 10), (3, 20), (5, 10)]
    assert load_sae(found[(3, 20)]).d_sae == 20
