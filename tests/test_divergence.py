"""Layer discovery across architectures, and per-layer divergence against a direct computation."""

from __future__ import annotations

import pytest
import torch

from lfp_engine.models.architecture import anatomy, mlp_modules
from lfp_engine.tuning.layer_divergence import layer_divergence, top_layers
from lfp_engine.run.errors import InputError

from .conftest import tiny_neox


def _models():
    from transformers import (GPT2Config, GPT2LMHeadModel, GPTNeoConfig, GPTNeoForCausalLM, LlamaConfig,
                              LlamaForCausalLM)

    torch.manual_seed(0)
    return {
        "gpt_neox": (tiny_neox(layers=4), "gpt_neox.layers", "mlp"),
        "gpt2": (GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=3, n_head=2, n_positions=32)),
                 "transformer.h", "mlp"),
        "gpt_neo": (GPTNeoForCausalLM(GPTNeoConfig(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2,
                                                   attention_types=[[["global", "local"], 1]], max_position_embeddings=32)),
                    "transformer.h", "mlp"),
        "llama": (LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                               num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)),
                  "model.layers", "mlp"),
    }


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt2", "gpt_neo", "llama"])
def test_anatomy_is_read_from_the_model(arch):
    model, path, mlp = _models()[arch]
    a = anatomy(model)
    assert (a.layers_path, a.mlp_name) == (path, mlp)
    assert a.n_layers == model.config.num_hidden_layers
    assert set(mlp_modules(model, [0, a.n_layers - 1])) == {0, a.n_layers - 1}
    with pytest.raises(InputError, match="out of range"):
        mlp_modules(model, [a.n_layers])


def _perturbed(model, scale: dict[str, float]):
    import copy

    tuned = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            for prefix, s in scale.items():
                if name.startswith(prefix):
                    p.add_(s * torch.randn_like(p))
    return tuned


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt2", "llama"])
def test_divergence_equals_direct_computation(arch):
    model, path, _ = _models()[arch]
    tuned = _perturbed(model, {f"{path}.1.": 0.5, f"{path}.2.": 0.05})
    table = layer_divergence(model, tuned)
    base_p, tuned_p = dict(model.named_parameters()), dict(tuned.named_parameters())
    for layer in range(model.config.num_hidden_layers):
        names = [n for n in base_p if n.startswith(f"{path}.{layer}.")]
        expected = sum(torch.linalg.matrix_norm(tuned_p[n] - base_p[n]).item() if base_p[n].ndim == 2
                       else torch.linalg.vector_norm(tuned_p[n] - base_p[n]).item() for n in names)
        assert table.loc[table.layer == layer, "divergence"].item() == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert top_layers(table, 2) == [1, 2]
    assert top_layers(table, 1) == [1]


def test_embedding_changes_do_not_count_towards_layers():
    model = tiny_neox(layers=2)
    tuned = _perturbed(model, {"gpt_neox.embed_in": 1.0, "embed_out": 1.0})
    assert layer_divergence(model, tuned)["divergence"].eq(0).all()


def test_divergence_refuses_different_architectures():
    with pytest.raises(InputError, match="same architecture"):
        layer_divergence(tiny_neox(layers=2), tiny_neox(layers=3))
    with pytest.raises(InputError, match="top 5 layers of a model with 2"):
        top_layers(layer_divergence(tiny_neox(layers=2), tiny_neox(layers=2)), 5)
