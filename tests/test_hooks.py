"""Scoped MLP hooks: they capture and replace what they should, and are always removed."""

from __future__ import annotations

import pytest
import torch

from lfp_engine.models.architecture import final_norm, mlp_modules
from lfp_engine.run.errors import InputError
from lfp_engine.models.hooks import capture_mlp_outputs, replace_mlp_output

from .conftest import tiny_neox


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=3, n_head=2, n_positions=64)).eval()


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


IDS = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 13, 14]])


@pytest.mark.parametrize("make", [tiny_neox, tiny_gpt2])
def test_capture_records_each_layer_and_removes_its_hooks(make):
    model = make()
    with torch.no_grad(), capture_mlp_outputs(model, [0, 2]) as captured:
        model(IDS)
    assert hook_count(model) == 0
    assert set(captured) == {0, 2} and captured[0].shape == (2, 5, 16)
    # The same values as a hook-free recomputation: the MLP of layer 0 applied to its own input.
    (mlp,) = mlp_modules(model, [0]).values()
    inputs = {}
    handle = mlp.register_forward_hook(lambda m, args, out: inputs.setdefault("x", args[0]))
    with torch.no_grad():
        model(IDS)
    handle.remove()
    torch.testing.assert_close(captured[0], mlp(inputs["x"]).detach())


def test_stopping_after_the_last_layer_gives_the_same_outputs():
    model = tiny_neox()
    with torch.no_grad(), capture_mlp_outputs(model, [0, 1]) as full:
        model(IDS)
    with torch.no_grad(), capture_mlp_outputs(model, [0, 1], stop_after_last=True) as early:
        model(IDS)
        raise AssertionError("the forward pass should have stopped after layer 1")
    assert hook_count(model) == 0
    for layer in (0, 1):
        assert torch.equal(full[layer], early[layer])


def test_hooks_are_removed_when_the_block_raises():
    model = tiny_neox()
    with pytest.raises(RuntimeError, match="boom"), capture_mlp_outputs(model, [0, 1, 2]):
        raise RuntimeError("boom")
    assert hook_count(model) == 0
    with pytest.raises(RuntimeError, match="boom"), replace_mlp_output(model, 1, lambda h: h):
        raise RuntimeError("boom")
    assert hook_count(model) == 0

    def failing(h):
        raise ValueError("inside the hook")

    with pytest.raises(ValueError, match="inside the hook"), replace_mlp_output(model, 1, failing):
        model(IDS)
    assert hook_count(model) == 0


def test_replacement_changes_only_what_it_should():
    model = tiny_neox()
    with torch.no_grad():
        clean = model(IDS).logits
        with replace_mlp_output(model, 1, lambda h: h):
            same = model(IDS).logits
        with replace_mlp_output(model, 1, torch.zeros_like):
            zeroed = model(IDS).logits
        positions = torch.zeros_like(IDS, dtype=torch.bool)
        positions[:, 3:] = True
        with replace_mlp_output(model, 1, torch.zeros_like, positions=positions):
            partly = model(IDS).logits
    assert torch.equal(clean, same)
    assert not torch.allclose(clean, zeroed)
    # Causal: positions before the first replaced one see nothing of it; later ones match full zeroing there.
    torch.testing.assert_close(partly[:, :3], clean[:, :3])
    assert not torch.allclose(partly[:, 3:], clean[:, 3:])
    assert hook_count(model) == 0


def test_a_replacement_of_the_wrong_shape_is_refused():
    model = tiny_neox()
    with pytest.raises(ValueError, match="shape"), replace_mlp_output(model, 0, lambda h: h[..., :3]):
        model(IDS)


def test_layer_out_of_range_is_refused():
    model = tiny_neox()
    with pytest.raises(InputError, match=r"layer index \[3\] out of range: the model has layers 0..2"):
        with capture_mlp_outputs(model, [1, 3]):
            pass
    with pytest.raises(InputError, match="out of range"), replace_mlp_output(model, -1, torch.zeros_like):
        pass
    assert hook_count(model) == 0


@pytest.mark.parametrize("make,name", [(tiny_neox, "final_layer_norm"), (tiny_gpt2, "ln_f")])
def test_final_norm_is_found_without_architecture_tables(make, name):
    model = make()
    norm = final_norm(model)
    assert norm is dict(model.named_modules())[next(n for n, _ in model.named_modules() if n.endswith(name))]
