"""Reading a crosscoder: which latents tuning created, removed, changed or kept.

- Relative decoder norm (Lindsey et al. 2024): r = ||d_tuned|| / (||d_base|| + ||d_tuned||), in the
  normalised units of training; near 1 the latent writes only into the tuned model, near 0 only into
  the base model, near 1/2 into both. The cosine between d_base and d_tuned says whether a shared
  latent kept its direction.
- Tags, with the cut-points Minder et al. 2025 use (`CrosscoderSettings`): 'tuned-only' (r >= 0.9),
  'base-only' (r <= 0.1), 'shared' (0.4..0.6), 'changed' (between), and 'dead' for latents that
  never fire (their decoders still hold their initialisation and say nothing about the models).
- Latent Scaling (Minder et al. 2025): a latent can look tuned-only because the L1 penalty shrank
  its base decoder to nothing although the base model has the concept (complete shrinkage), or
  because other latents carry it in the base model (latent decoupling). For latent j with codes f_j
  and direction d_j (its tuned decoder; its base decoder for base-only latents), the closed-form
  least-squares scale beta = sum_x f_j <d_j, y(x)> / (||d_j||^2 sum_x f_j^2) measures how much of
  beta f_j d_j each target y needs: the model's reconstruction error with latent j's own
  contribution put back (error), and the model's reconstruction (reconstruction), in each model.
  nu = beta(other model) / beta(own model): near 0, only the own model needs the latent; near 1,
  both do. (As in the science-of-finetuning diffing toolkit.)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from lfp_engine.diffing.crosscoder import Crosscoder
from lfp_engine.diffing.settings import CrosscoderSettings

TAGS = ("tuned-only", "base-only", "shared", "changed", "dead")


@torch.no_grad()
def latent_geometry(crosscoder: Crosscoder) -> pd.DataFrame:
    """feature, norm_base, norm_tuned (normalised units), relative_norm, decoder_cosine."""
    norms = crosscoder.normalized_norms().double()
    base, tuned = (d.double() for d in crosscoder.decoders())
    cosine = torch.nn.functional.cosine_similarity(base, tuned, dim=-1)
    total = norms.sum(-1)
    relative = torch.where(total > 0, norms[:, 1] / total.clamp_min(1e-300), torch.full_like(total, float("nan")))
    return pd.DataFrame({"feature": np.arange(crosscoder.module.d_sae), "norm_base": norms[:, 0].numpy(),
                         "norm_tuned": norms[:, 1].numpy(), "relative_norm": relative.numpy(),
                         "decoder_cosine": cosine.numpy()})


def tag_latents(relative_norm: np.ndarray, alive: np.ndarray, settings: CrosscoderSettings) -> np.ndarray:
    """The tag of each latent from its relative decoder norm (see the module docstring)."""
    r = np.asarray(relative_norm, dtype=np.float64)
    tags = np.full(len(r), "changed", dtype=object)
    tags[np.abs(r - 0.5) <= settings.shared_band] = "shared"
    tags[r >= settings.tuned_only_min] = "tuned-only"
    tags[r <= 1 - settings.tuned_only_min] = "base-only"
    tags[~np.asarray(alive, dtype=bool)] = "dead"
    return tags


class _ScalingSums:
    """Running sums of Latent Scaling over activation rows, for one direction per latent."""

    def __init__(self, directions: torch.Tensor):
        self.directions = directions.double()
        n = directions.shape[0]
        self.code_squares = torch.zeros(n, dtype=torch.float64)
        self.sums = {name: torch.zeros(n, dtype=torch.float64) for name in
                     ("error_base", "error_tuned", "reconstruction_base", "reconstruction_tuned")}

    def add(self, codes: torch.Tensor, errors: tuple[torch.Tensor, torch.Tensor],
            reconstructions: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.code_squares += codes.pow(2).sum(0)
        for name, y in (("error_base", errors[0]), ("error_tuned", errors[1]),
                        ("reconstruction_base", reconstructions[0]), ("reconstruction_tuned", reconstructions[1])):
            self.sums[name] += (codes * (y @ self.directions.T)).sum(0)

    def ratios(self, own: int, decoders: tuple[torch.Tensor, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """(nu_error, nu_reconstruction) with `own` the model (0 base, 1 tuned) whose decoder is the
        direction; the error targets get latent j's own contribution f_j d_j^model put back."""
        names = ("base", "tuned")
        other = 1 - own
        put_back = [self.code_squares * (self.directions * d.double()).sum(-1) for d in decoders]
        error = [self.sums[f"error_{names[m]}"] + put_back[m] for m in (0, 1)]
        reconstruction = [self.sums[f"reconstruction_{names[m]}"] for m in (0, 1)]
        with np.errstate(divide="ignore", invalid="ignore"):
            nu_error = (error[other] / error[own]).numpy()
            nu_reconstruction = (reconstruction[other] / reconstruction[own]).numpy()
        dead = (self.code_squares == 0).numpy()
        nu_error[dead], nu_reconstruction[dead] = np.nan, np.nan
        return nu_error, nu_reconstruction


@torch.no_grad()
def latent_scaling(crosscoder: Crosscoder, rows: Iterable[torch.Tensor], tags: np.ndarray) -> pd.DataFrame:
    """feature, scaling_error_ratio, scaling_reconstruction_ratio (nu, Minder et al. 2025) of every
    latent over paired activation rows ([n, 2 d] chunks): the tuned decoder is the direction, except
    for base-only latents (their base decoder, and nu = beta_tuned / beta_base)."""
    module, d = crosscoder.module, crosscoder.width
    decoders = tuple(x.double().cpu() for x in crosscoder.decoders())
    per_direction = [_ScalingSums(decoders[0]), _ScalingSums(decoders[1])]
    for x in rows:
        x = x.to(module.W_enc.device)
        codes = module.encode(x)
        x_hat = module.decode(codes).double().cpu()
        x = x.double().cpu()
        codes = codes.double().cpu()
        reconstructions = (x_hat[:, :d], x_hat[:, d:])
        errors = (x[:, :d] - reconstructions[0], x[:, d:] - reconstructions[1])
        for sums in per_direction:
            sums.add(codes, errors, reconstructions)
    tuned_error, tuned_reconstruction = per_direction[1].ratios(1, decoders)
    base_error, base_reconstruction = per_direction[0].ratios(0, decoders)
    base_only = np.asarray(tags) == "base-only"
    return pd.DataFrame({"feature": np.arange(module.d_sae),
                         "scaling_error_ratio": np.where(base_only, base_error, tuned_error),
                         "scaling_reconstruction_ratio": np.where(base_only, base_reconstruction,
                                                                  tuned_reconstruction)})


def specific(tags: np.ndarray, nu_error: np.ndarray, nu_reconstruction: np.ndarray,
             settings: CrosscoderSettings) -> np.ndarray:
    """True for tuned-only and base-only latents that Latent Scaling confirms: the other model needs
    less than `scaling_ratio_max` of them in its error and in its reconstruction."""
    cut = settings.scaling_ratio_max
    one_sided = np.isin(np.asarray(tags), ("tuned-only", "base-only"))
    with np.errstate(invalid="ignore"):
        return one_sided & (np.abs(nu_error) < cut) & (np.abs(nu_reconstruction) < cut)
