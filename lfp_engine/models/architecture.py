"""Where a causal LM keeps its decoder layers and their MLP blocks, read off the model itself.

The config says how many decoder layers there are (`num_hidden_layers`, which GPT-Neo's
`num_layers` and GPT-2's `n_layer` alias); the module tree holds exactly one `ModuleList` of
that length carrying the bulk of the weights. Inside a layer, the MLP block is the child whose
name says so (`mlp` in GPT-NeoX, GPT-Neo, GPT-2, Llama, Gemma; `feed_forward`/`ffn` elsewhere).
No per-architecture table: a new Hugging Face architecture works if it follows these
conventions, and fails with a clear message if it does not.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lfp_engine.run.errors import InputError

MLP_NAMES = ("mlp", "feed_forward", "ffn", "ff")


def num_layers(model: nn.Module) -> int:
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    n = getattr(text_config, "num_hidden_layers", None)
    if not isinstance(n, int) or n < 1:
        raise InputError(f"{type(model).__name__}: its config does not say how many layers it has")
    return n


@dataclass(frozen=True)
class Anatomy:
    layers_path: str
    """Dotted path of the ModuleList of decoder layers, e.g. 'gpt_neox.layers'."""
    n_layers: int
    mlp_name: str
    """Name of the MLP child inside each layer, e.g. 'mlp'."""

    def layer_prefix(self, layer: int) -> str:
        return f"{self.layers_path}.{layer}."

    def mlp_path(self, layer: int) -> str:
        """Module path of a layer's MLP (the `hook_name` that SAELens-style files record)."""
        return f"{self.layers_path}.{layer}.{self.mlp_name}"


def anatomy(model: nn.Module) -> Anatomy:
    n = num_layers(model)
    lists = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.ModuleList) and len(module) == n]
    if not lists:
        raise InputError(f"{type(model).__name__}: found no list of {n} decoder layers in the module tree")
    path, layers = max(lists, key=lambda item: sum(p.numel() for p in item[1].parameters()))
    names = [name for name, _ in layers[0].named_children()]
    mlp = next((name for name in names if name.lower() in MLP_NAMES), None)
    if mlp is None:
        raise InputError(f"{type(model).__name__}: no MLP block among a layer's children {names}")
    return Anatomy(layers_path=path, n_layers=n, mlp_name=mlp)


def mlp_modules(model: nn.Module, layers: list[int]) -> dict[int, nn.Module]:
    """The MLP block of each requested layer, with a clear error for an index out of range."""
    a = anatomy(model)
    bad = [layer for layer in layers if not 0 <= layer < a.n_layers]
    if bad:
        raise InputError(f"layer index {bad} out of range: the model has layers 0..{a.n_layers - 1}")
    return {layer: model.get_submodule(a.mlp_path(layer)) for layer in layers}


NORM_MARKERS = ("norm", "ln_f")


def final_norm(model: nn.Module) -> nn.Module:
    """The normalisation applied to the residual stream just before the unembedding.

    Found as the last normalisation module (by registration order) outside the decoder layers:
    `final_layer_norm` in GPT-NeoX, `ln_f` in GPT-Neo and GPT-2, `norm` in Llama and Gemma.
    """
    a = anatomy(model)
    inside = f"{a.layers_path}."
    candidates = [module for name, module in model.named_modules()
                  if name and not name.startswith(inside) and name != a.layers_path
                  and any(marker in name.rsplit(".", 1)[-1].lower() or marker in type(module).__name__.lower()
                          for marker in NORM_MARKERS)]
    if not candidates:
        raise InputError(f"{type(model).__name__}: found no final normalisation module outside the decoder layers")
    return candidates[-1]
