"""Saving and loading SAEs in SAELens's on-disk format, so our dictionaries are usable elsewhere.

A folder with `cfg.json` and `sae_weights.safetensors` holding W_enc [d_in, d_sae], W_dec
[d_sae, d_in], b_enc [d_sae], b_dec [d_in] (SAELens 6 layout: `architecture` 'standard' or
'topk', `metadata` with model_name and hook_name). Our SAEs encode x W_enc + b_enc without first
subtracting b_dec, so the cfg says `apply_b_dec_to_input: false`.

A tied SAE is written with W_dec = W_enc^T (SAELens has no tied architecture: to it, it is a
standard SAE that happens to be tied), and `metadata.lfp_architecture = 'tied'`; our loader
checks that the two are exactly transposes and rebuilds the one-parameter tied module. Files
from SAELens itself load too: a standard SAE that subtracts b_dec before encoding has that
folded into b_enc (b_enc - b_dec W_enc), which is exact up to float rounding.

A BatchTopK SAE is written as SAELens writes its own BatchTopK SAEs after training: as a
'jumprelu' SAE (SAELens 6 has no inference form of BatchTopK) whose `threshold` tensor holds each
latent's threshold on its pre-activation; `metadata.lfp_architecture = 'batchtopk'`, `metadata.k`
and `metadata.lfp_batch_threshold` (the threshold on ReLU(pre) * decoder weight) say how it was
trained, and our loader rebuilds the BatchTopK module from them. A JumpReLU SAE of SAELens's own
loads as an inference-only 'jumprelu' module. A crosscoder (`metadata.lfp_blocks` > 1) is a valid
SAE over the concatenation of its models' activations, and is written the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lfp_engine.run.errors import InputError
from lfp_engine.sae.autoencoder import THRESHOLDED, SparseAutoencoder
from lfp_engine.sae.keys import DictionaryKey

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
FORMAT_VERSION = "6.0.0"
"""The SAELens version whose layout we write (its loader treats older cfgs differently)."""

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


SAELENS_ARCHITECTURE = {"tied": "standard", "untied": "standard", "topk": "topk", "batchtopk": "jumprelu",
                        "jumprelu": "jumprelu"}
"""The SAELens architecture each of ours is written as."""


def sae_cfg(sae: SparseAutoencoder, *, model_name: str, hook_name: str, metadata: dict[str, Any] | None = None,
            ) -> dict[str, Any]:
    """The cfg.json content for `sae`; `metadata` adds provenance (layer, l1, run, base model...)."""
    cfg: dict[str, Any] = {
        "architecture": SAELENS_ARCHITECTURE[sae.architecture],
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": str(sae.W_enc.dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": FORMAT_VERSION,
            "sae_lens_training_version": None,
            "model_name": model_name,
            "hook_name": hook_name,
            "hook_head_index": None,
            "lfp_architecture": sae.architecture,
            **({"k": sae.k} if sae.architecture == "batchtopk" else {}),
            **({"lfp_blocks": sae.n_blocks} if sae.n_blocks > 1 else {}),
            **(metadata or {}),
        },
    }
    if sae.architecture == "topk":
        cfg["k"] = sae.k
        cfg["rescale_acts_by_decoder_norm"] = False
    return cfg


def save_sae(sae: SparseAutoencoder, folder: Path, *, model_name: str, hook_name: str,
             metadata: dict[str, Any] | None = None) -> None:
    """Write `sae` into `folder` (created). Callers wanting atomicity pass a temporary folder."""
    if sae.stack is not None:
        raise ValueError("save one SAE at a time (`stack.member(i)`)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {
        "W_enc": sae.W_enc.detach().cpu().contiguous(),
        "W_dec": sae.W_dec.detach().cpu().contiguous(),
        "b_enc": sae.b_enc.detach().cpu().contiguous(),
        "b_dec": sae.b_dec.detach().cpu().contiguous(),
    }
    if sae.architecture in THRESHOLDED:
        weights["threshold"] = sae.threshold.detach().cpu().contiguous()
    save_file(weights, str(folder / WEIGHTS))
    cfg = sae_cfg(sae, model_name=model_name, hook_name=hook_name, metadata=metadata)
    (folder / CFG).write_text(json.dumps(cfg, indent=2), encoding="utf-8")


def read_cfg(folder: Path) -> dict[str, Any]:
    path = Path(folder) / CFG
    if not path.exists():
        raise InputError(f"{folder} is not an SAE folder in SAELens format (no {CFG})")
    return json.loads(path.read_text(encoding="utf-8"))


def cfg_value(cfg: dict[str, Any], key: str) -> Any:
    """A metadata value, from `metadata` (SAELens >= 6) or the top level (older files)."""
    return cfg.get("metadata", {}).get(key, cfg.get(key))


def _architecture(folder: Path, cfg: dict[str, Any], weights: dict[str, torch.Tensor]) -> str:
    """Our architecture for a file: SAELens's 'topk'; 'jumprelu', which is our 'batchtopk' when we
    wrote it; 'standard', tied when we wrote it tied (checked) and untied otherwise."""
    kind = cfg.get("architecture", "standard")
    if kind not in ("standard", "topk", "jumprelu"):
        raise InputError(f"{folder}: SAELens architecture {kind!r} is not supported (standard, topk and jumprelu are)")
    ours = cfg_value(cfg, "lfp_architecture")
    if kind == "topk":
        return "topk"
    if kind == "jumprelu":
        if "threshold" not in weights:
            raise InputError(f"{folder / WEIGHTS}: a jumprelu SAE needs a `threshold` tensor")
        return "batchtopk" if ours == "batchtopk" else "jumprelu"
    if ours == "tied" and not torch.equal(weights["W_dec"], weights["W_enc"].T):
        raise InputError(f"{folder}: marked tied but W_dec is not W_enc transposed")
    return "tied" if ours == "tied" else "untied"


def load_sae(folder: Path | str, device: torch.device | str = "cpu") -> SparseAutoencoder:
    """Read an SAE in SAELens format (ours, or SAELens's own 'standard', 'topk' and 'jumprelu' SAEs)."""
    folder = Path(folder)
    cfg = read_cfg(folder)
    if not (folder / WEIGHTS).exists():
        raise InputError(f"{folder} has {CFG} but no {WEIGHTS}")
    weights = load_file(str(folder / WEIGHTS))
    missing = {"W_enc", "W_dec", "b_enc", "b_dec"} - set(weights)
    if missing:
        raise InputError(f"{folder / WEIGHTS} lacks tensors {sorted(missing)}")
    if cfg.get("normalize_activations", "none") not in ("none", None):
        raise InputError(f"{folder}: activation normalisation {cfg['normalize_activations']!r} is not supported")
    W_enc, W_dec, b_enc, b_dec = (weights[k] for k in ("W_enc", "W_dec", "b_enc", "b_dec"))
    d_in, d_sae = W_enc.shape
    if W_dec.shape != (d_sae, d_in) or b_enc.shape != (d_sae,) or b_dec.shape != (d_in,):
        raise InputError(f"{folder}: inconsistent shapes W_enc {tuple(W_enc.shape)}, W_dec {tuple(W_dec.shape)}, "
                         f"b_enc {tuple(b_enc.shape)}, b_dec {tuple(b_dec.shape)}")
    architecture = _architecture(folder, cfg, weights)
    if cfg.get("apply_b_dec_to_input", True):
        b_enc = b_enc - b_dec @ W_enc
    dtype = _DTYPES.get(str(cfg.get("dtype", "")).removeprefix("torch."), W_enc.dtype)
    k = cfg.get("k") if architecture == "topk" else cfg_value(cfg, "k")
    sae = SparseAutoencoder(d_in, d_sae, architecture, k=k, dtype=dtype, n_blocks=int(cfg_value(cfg, "lfp_blocks") or 1))
    with torch.no_grad():
        sae.W_enc.copy_(W_enc)
        sae.b_enc.copy_(b_enc)
        sae.b_dec.copy_(b_dec)
        if not sae.tied:
            sae.W_dec_free.copy_(W_dec)
        if architecture in THRESHOLDED:
            sae.threshold.copy_(weights["threshold"])
    return sae.to(device).eval()


def find_saes(folder: Path | str) -> dict[DictionaryKey, Path]:
    """{(layer, dict_size): SAE folder} of the SAEs under `folder` (a run's `saes/`), from their cfgs."""
    found = {}
    for cfg_path in sorted(Path(folder).glob(f"*/{CFG}")):
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        layer = cfg_value(cfg, "layer")
        if layer is not None:
            found[DictionaryKey(int(layer), int(cfg["d_sae"]))] = cfg_path.parent
    return found


def load_saes_by_layer(folder: Path | str, layers: Sequence[int],
                       device: torch.device | str = "cpu") -> dict[int, dict[int, SparseAutoencoder]]:
    """{layer: {dict_size: SAE}} of the SAEs under `folder` at `layers`, sizes ascending."""
    found = find_saes(folder)
    return {layer: {size: load_sae(path, device) for (l, size), path in sorted(found.items()) if l == layer}
            for layer in layers}
