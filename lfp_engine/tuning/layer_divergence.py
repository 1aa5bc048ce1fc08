"""Which layers did fine-tuning change most? (paper section 3.2, appendix C)

Per decoder layer: the sum, over the layer's parameter tensors, of the Frobenius norm of
theta_tuned - theta_base. The k layers with the largest sum are where the SAEs are trained.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from lfp_engine.models.architecture import anatomy
from lfp_engine.run.errors import InputError


@torch.no_grad()
def layer_divergence(base: nn.Module, tuned: nn.Module) -> pd.DataFrame:
    """One row per layer: layer, divergence, base_norm, relative (= divergence / base_norm), n_params."""
    a = anatomy(base)
    base_params = dict(base.named_parameters())
    tuned_params = dict(tuned.named_parameters())
    if base_params.keys() != tuned_params.keys():
        raise InputError("base and tuned models have different parameters: not the same architecture")
    rows = []
    for layer in range(a.n_layers):
        prefix = a.layer_prefix(layer)
        names = [n for n in base_params if n.startswith(prefix)]
        divergence = base_norm = 0.0
        n_params = 0
        for name in names:
            b, t = base_params[name], tuned_params[name]
            if b.shape != t.shape:
                raise InputError(f"parameter {name} has shape {tuple(b.shape)} in base, {tuple(t.shape)} in tuned")
            b64 = b.detach().to("cpu", torch.float64)
            divergence += torch.linalg.vector_norm(t.detach().to("cpu", torch.float64) - b64).item()
            base_norm += torch.linalg.vector_norm(b64).item()
            n_params += b.numel()
        rows.append({"layer": layer, "divergence": divergence, "base_norm": base_norm,
                     "relative": divergence / base_norm if base_norm else 0.0, "n_params": n_params})
    return pd.DataFrame(rows)


def top_layers(divergence: pd.DataFrame, k: int) -> list[int]:
    """The k most divergent layers in ascending layer order (ties go to the deeper layer)."""
    if k > len(divergence):
        raise InputError(f"asked for the top {k} layers of a model with {len(divergence)}")
    ranked = divergence.sort_values(["divergence", "layer"], ascending=[False, False])
    return sorted(ranked["layer"].head(k).astype(int).tolist())


def mark_chosen(divergence: pd.DataFrame, k: int) -> tuple[pd.DataFrame, list[int]]:
    """The table with each layer's `rank` by divergence and whether it is `chosen` (one of the k most
    divergent, the layers every later stage studies), and the chosen layers, ascending."""
    chosen = top_layers(divergence, k)
    table = divergence.copy()
    table["rank"] = table["divergence"].rank(ascending=False, method="first").astype(int)
    table["chosen"] = table["layer"].isin(chosen)
    return table, chosen
