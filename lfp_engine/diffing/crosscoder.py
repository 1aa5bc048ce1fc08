"""A crosscoder over the base and tuned models: which features did tuning create, remove or change?

After the paper (whose SAEs read one model each): a crosscoder (Lindsey et al. 2024) is one
dictionary whose encoder reads both models' activations at the same token (their contributions
summed) and whose decoder writes a reconstruction for each model. A latent used only by the tuned
model keeps a decoder in the tuned block and lets the base block shrink to nothing. Here it is an
SAE over the paired rows [x_base; x_tuned] with two decoder blocks (`sae/autoencoder.py`, n_blocks=2),
trained by the same stacked trainer as the paper's SAEs, one crosscoder per chosen layer, with
BatchTopK by default (Minder et al. 2025: the L1 penalty fakes tuned-only latents) and AuxK.

Both models' activations are divided by their scale (`paired_activations.activation_scales`) for
training, so each has mean squared norm d and decoder norms compare across models; the scales are
then folded into the weights, so the saved module reads and writes raw activations (codes are
unchanged by the fold) and the relative norms are computed back in the normalised units
(`Crosscoder.normalized_norms`). Saved in SAELens format as an SAE over the concatenation, with the
scales in its metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lfp_engine.diffing.paired_activations import MODELS, PairedActivations, activation_scales
from lfp_engine.diffing.settings import CrosscoderSettings
from lfp_engine.run.errors import InputError
from lfp_engine.run.precision import effective_precision
from lfp_engine.sae.autoencoder import SparseAutoencoder
from lfp_engine.sae.keys import DictionaryKey
from lfp_engine.sae.saelens_format import CFG, cfg_value, load_sae, save_sae
from lfp_engine.sae.training import SaeSpec, train_saes


@dataclass
class Crosscoder:
    """One layer's crosscoder, in raw activation units, and the scales its norms are read in."""

    layer: int
    module: SparseAutoencoder
    """An SAE over [x_base; x_tuned] with two decoder blocks (base first)."""
    scales: tuple[float, float]
    """(base, tuned) activation scales the crosscoder was trained at (sqrt(E ||x||^2 / d))."""
    score_threshold: float | None = None
    """BatchTopK: the estimated threshold on ReLU(pre) times the latent's normalised decoder weight."""

    @property
    def width(self) -> int:
        return self.module.d_in // 2

    @property
    def key(self) -> DictionaryKey:
        return DictionaryKey(self.layer, self.module.d_sae)

    def decoders(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(d_base, d_tuned), each [d_sae, d]: every latent's direction in each model (raw units)."""
        decoder = self.module.W_dec.detach()
        return decoder[:, :self.width], decoder[:, self.width:]

    def normalized_norms(self) -> torch.Tensor:
        """[d_sae, 2]: each latent's decoder norm in each model, in the normalised units of training."""
        scales = torch.tensor(self.scales, dtype=self.module.W_dec.dtype, device=self.module.W_dec.device)
        return self.module.block_norms().detach() / scales

    def encode_pair(self, base: torch.Tensor, tuned: torch.Tensor) -> torch.Tensor:
        """Codes of the paired activations [..., d] of one token position in both models."""
        return self.module.encode(torch.cat([base, tuned], dim=-1))


@torch.no_grad()
def fold_scales(module: SparseAutoencoder, scales: np.ndarray) -> None:
    """Make a module trained on x / scale read raw x (encoder rows / scale) and write raw x (decoder and
    decoder bias * scale), block by block; pre-activations, codes and thresholds are unchanged."""
    per_dim = torch.as_tensor(np.repeat(scales, module.d_in // len(scales)), dtype=module.W_enc.dtype)
    module.W_enc.div_(per_dim[:, None])
    module.W_dec_free.mul_(per_dim[None, :])
    module.b_dec.mul_(per_dim)


def crosscoder_spec(settings: CrosscoderSettings, layer: int, d_model: int) -> SaeSpec:
    return SaeSpec(layer=layer, d_sae=settings.dict_multiplier * d_model, architecture=settings.architecture,
                   l1_coefficient=settings.l1_coefficient,
                   k=settings.k if settings.architecture == "batchtopk" else None, n_blocks=len(MODELS),
                   auxk_coefficient=settings.auxk_coefficient, auxk_dead_tokens=settings.auxk_dead_tokens,
                   threshold_rate=settings.threshold_rate)


@dataclass
class TrainedCrosscoders:
    crosscoders: list[Crosscoder]
    """One per layer, ascending."""
    log: pd.DataFrame
    """layer, step, loss, mse, sparsity, aux (means over each logging window)."""
    seconds: float


def _normalized(batches: Iterator[torch.Tensor], inverse: torch.Tensor) -> Iterator[torch.Tensor]:
    for batch in batches:
        yield batch * inverse


def train_crosscoders(train: PairedActivations, settings: CrosscoderSettings, seed: int,
                      device: torch.device | str = "cpu", desc: str = "train crosscoders") -> TrainedCrosscoders:
    """One crosscoder per layer of `train`, all layers in one stacked training loop on the paired
    rows, normalised per model and layer; scales folded in afterwards."""
    layers = train.layers
    scales = activation_scales(train, layers)
    if settings.n_train_examples > 20 * train.n_rows:
        raise InputError(f"crosscoder.n_train_examples={settings.n_train_examples} would repeat the "
                         f"{train.n_rows} paired rows more than 20 times")
    inverse = torch.as_tensor(np.repeat(1 / scales, train.width, axis=1), dtype=torch.float32, device=device)
    n_steps = settings.n_train_examples // settings.batch_size
    batches = train.shuffled_batches(layers, settings.batch_size, n_steps, seed, device)
    specs = [crosscoder_spec(settings, layer, train.width) for layer in layers]
    precision = effective_precision(settings.precision, torch.device(device), "crosscoder training")
    trained = train_saes(_normalized(batches, inverse[:, None, :]), layers, specs, train.d_model, n_steps,
                         settings.learning_rate, seed, device, desc=desc, precision=precision)
    crosscoders = []
    for layer, sae, theta, layer_scales in zip(layers, trained.saes, trained.score_thresholds, scales, strict=True):
        sae = sae.cpu()
        fold_scales(sae, layer_scales)
        crosscoders.append(Crosscoder(layer, sae, (float(layer_scales[0]), float(layer_scales[1])), theta))
    log = trained.log.assign(layer=[specs[i].layer for i in trained.log["spec"]]).drop(columns="spec")
    return TrainedCrosscoders(crosscoders, log, trained.seconds)


def save_crosscoder(crosscoder: Crosscoder, folder: Path, *, model_name: str, hook_name: str,
                    metadata: dict[str, Any] | None = None) -> None:
    """SAELens format (an SAE over the concatenation), its layer, models and scales in the metadata."""
    save_sae(crosscoder.module, folder, model_name=model_name, hook_name=hook_name,
             metadata={"layer": crosscoder.layer, "crosscoder_models": list(MODELS), "scales": list(crosscoder.scales),
                       "lfp_batch_threshold": crosscoder.score_threshold, **(metadata or {})})


def load_crosscoder(folder: Path | str, device: torch.device | str = "cpu") -> Crosscoder:
    """A crosscoder written by `save_crosscoder`."""
    cfg = json.loads((Path(folder) / CFG).read_text(encoding="utf-8")) if (Path(folder) / CFG).exists() else {}
    if cfg_value(cfg, "crosscoder_models") != list(MODELS):
        raise InputError(f"{folder} holds no crosscoder over {list(MODELS)}")
    module = load_sae(folder, device)
    scales = cfg_value(cfg, "scales")
    return Crosscoder(int(cfg_value(cfg, "layer")), module, (float(scales[0]), float(scales[1])),
                      cfg_value(cfg, "lfp_batch_threshold"))


def crosscoder_folder(root: Path, layer: int, dict_size: int) -> Path:
    return Path(root) / f"layer_{layer}_{dict_size}"


def load_crosscoders(root: Path | str, device: torch.device | str = "cpu") -> dict[DictionaryKey, Crosscoder]:
    """{(layer, dict_size): crosscoder} of a run's `crosscoders/` folder (empty when there is none)."""
    found = [load_crosscoder(cfg.parent, device) for cfg in sorted(Path(root).glob(f"*/{CFG}"))]
    return {c.key: c for c in found}
