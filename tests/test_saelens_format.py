"""SAELens-format files: bit-exact round trips, tied stays tied, SAELens's own convention loads."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from lfp_engine.run.errors import InputError
from lfp_engine.sae.saelens_format import CFG, WEIGHTS, find_saes, load_sae, read_cfg, save_sae

from .test_sae import random_sae


def exported(architecture: str, k: int | None = None, n_blocks: int = 1):
    """A random SAE of `architecture`; BatchTopK ones get a threshold, as training leaves them."""
    sae = random_sae(architecture, k=k) if n_blocks == 1 else random_sae(architecture, k=k, n_blocks=n_blocks)
    if architecture == "batchtopk":
        sae.set_threshold(0.4)
    return sae


@pytest.mark.parametrize("architecture,k,n_blocks", [("tied", None, 1), ("untied", None, 1), ("topk", 4, 1),
                                                     ("batchtopk", 3, 1), ("batchtopk", 3, 2)])
def test_files_round_trip_bit_exactly(tmp_path, architecture, k, n_blocks):
    sae = exported(architecture, k, n_blocks)
    save_sae(sae, tmp_path / "a", model_name="runs/x/models/tuned", hook_name="gpt_neox.layers.3.mlp",
             metadata={"layer": 3})
    loaded = load_sae(tmp_path / "a")
    assert loaded.architecture == architecture and loaded.k == k and loaded.n_blocks == n_blocks
    for (name, p), (_, q) in zip([*sae.named_parameters(), *sae.named_buffers()],
                                 [*loaded.named_parameters(), *loaded.named_buffers()], strict=True):
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
    (tmp_path / CFG).write_text(json.dumps({"architecture": "gated", "d_in": 2, "d_sae": 2}))
    save_file({"W_enc": torch.zeros(2, 2), "W_dec": torch.zeros(2, 2), "b_enc": torch.zeros(2),
               "b_dec": torch.zeros(2)}, str(tmp_path / WEIGHTS))
    with pytest.raises(InputError, match="gated"):
        load_sae(tmp_path)
    (tmp_path / CFG).write_text(json.dumps({"architecture": "jumprelu", "d_in": 2, "d_sae": 2}))
    with pytest.raises(InputError, match="threshold"):
        load_sae(tmp_path)


def test_a_runs_saes_are_found_by_layer_and_size(tmp_path):
    for layer, size in [(3, 10), (3, 20), (5, 10)]:
        save_sae(random_sae("tied", d_sae=size), tmp_path / f"layer_{layer}_{size}", model_name="m", hook_name="h",
                 metadata={"layer": layer})
    found = find_saes(tmp_path)
    assert sorted(found) == [(3, 10), (3, 20), (5, 10)]
    assert load_sae(found[(3, 20)]).d_sae == 20


def test_batch_topk_is_written_as_saelens_writes_it_a_jumprelu_with_per_latent_thresholds(tmp_path):
    sae = exported("batchtopk", 3)
    save_sae(sae, tmp_path, model_name="m", hook_name="h")
    cfg = read_cfg(tmp_path)
    assert cfg["architecture"] == "jumprelu" and "k" not in cfg
    assert cfg["metadata"]["lfp_architecture"] == "batchtopk" and cfg["metadata"]["k"] == 3
    weights = load_file(str(tmp_path / WEIGHTS))
    torch.testing.assert_close(weights["threshold"], 0.4 / sae.W_dec.norm(dim=1))
    x = torch.randn(9, 6)  # SAELens's JumpReLU encoding, written out
    pre = x @ weights["W_enc"] + weights["b_enc"]
    torch.testing.assert_close(sae.encode(x), torch.relu(pre) * (pre > weights["threshold"]))


def test_a_saelens_jumprelu_sae_loads_for_inference_only(tmp_path):
    torch.manual_seed(1)
    W_enc, W_dec, b_enc, b_dec = torch.randn(6, 10), torch.randn(10, 6), torch.randn(10), torch.randn(6)
    threshold = torch.rand(10)
    save_file({"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec, "threshold": threshold},
              str(tmp_path / WEIGHTS))
    (tmp_path / CFG).write_text(json.dumps({"architecture": "jumprelu", "d_in": 6, "d_sae": 10, "dtype": "float32",
                                            "apply_b_dec_to_input": True, "metadata": {"hook_name": "h"}}))
    sae = load_sae(tmp_path)
    assert sae.architecture == "jumprelu"
    x = torch.randn(4, 6)
    pre = (x - b_dec) @ W_enc + b_enc
    torch.testing.assert_close(sae.encode(x), torch.relu(pre) * (pre > threshold), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="not trained"):
        sae.losses(x, 0.0)


@pytest.mark.parametrize("architecture,k", [("tied", None), ("topk", 4), ("batchtopk", 3)])
def test_saelens_itself_loads_our_files_and_computes_what_we_compute(tmp_path, architecture, k):
    """SAELens (`requirements-test.txt`) reads the exported files with its own loader and encodes and
    decodes as our module does: the BatchTopK SAE as SAELens's JumpReLU inference form."""
    sae_lens = pytest.importorskip("sae_lens", reason="sae-lens is not installed: pip install -r requirements-test.txt")
    ours = exported(architecture, k)
    save_sae(ours, tmp_path, model_name="m", hook_name="blocks.0.hook_mlp_out")
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path), device="cpu")
    expected = {"tied": "StandardSAE", "topk": "TopKSAE", "batchtopk": "JumpReLUSAE"}[architecture]
    assert type(theirs).__name__ == expected
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), ours.encode(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(theirs.decode(ours.encode(x)), ours(x), rtol=1e-5, atol=1e-6)
