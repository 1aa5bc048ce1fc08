"""What some SAE features contribute to one layer's output: their codes times their decoder rows.

Zero ablation (paper table 6) removes exactly this from the layer's output
(`interventions.py`); a crosscoder latent's contribution to the tuned model is the same product on
the paired input (`diffing/paired_forward.py`). Computed once per request and then at every
forward pass, so it is prepared for speed.
"""

from __future__ import annotations

import torch

from lfp_engine.run.errors import InputError
from lfp_engine.sae.autoencoder import THRESHOLDED, SparseAutoencoder


def check_range(features: tuple[int, ...], size: int, what: str) -> None:
    """Refuse feature indices outside a dictionary of `size` (`what` names it in the message)."""
    bad = [f for f in features if not 0 <= int(f) < size]
    if bad:
        raise InputError(f"feature index {bad} out of range for {what}")


class FeatureContribution:
    """What some features contribute to one layer's output: their codes times their decoder rows.

    A ReLU SAE's code depends on its own encoder column alone, and so does a BatchTopK SAE's at
    inference (its own threshold replaces the batch top-k): for these only the chosen columns are
    computed, those of all the layer's dictionaries in one product (generation runs this at every
    step). A top-k SAE's codes depend on each other (the k largest survive), so it is encoded in
    full."""

    def __init__(self, parts: list[tuple[SparseAutoencoder, tuple[int, ...]]]):
        self.topk = []
        columns, biases, thresholds, rows = [], [], [], []
        for sae, features in parts:
            idx = torch.as_tensor(features, dtype=torch.long, device=sae.W_enc.device)
            if sae.architecture == "topk":
                self.topk.append((sae, idx, sae.W_dec[idx].detach()))
                continue
            columns.append(sae.W_enc[:, idx].detach())
            biases.append(sae.b_enc[idx].detach())
            thresholds.append(sae.threshold[idx].detach() if sae.architecture in THRESHOLDED
                              else torch.zeros_like(biases[-1]))
            rows.append(sae.W_dec[idx].detach())
        self.columns = (torch.cat(columns, dim=1), torch.cat(biases), torch.cat(thresholds),
                        torch.cat(rows)) if columns else None

    def removed(self, h: torch.Tensor) -> torch.Tensor:
        """The chosen features' contribution to a layer output h [..., d_in] of their SAEs."""
        removed = None
        if self.columns is not None:
            weights, bias, threshold, decoder = self.columns
            pre = h.to(weights.dtype) @ weights + bias
            removed = torch.where(pre > threshold, torch.relu(pre), torch.zeros_like(pre)) @ decoder
        for sae, idx, decoder in self.topk:
            part = sae.encode(h.to(decoder.dtype))[..., idx] @ decoder
            removed = part if removed is None else removed + part
        return removed
