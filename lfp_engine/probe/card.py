"""A fitted probe on disk, with the card that says how it reads the model.

The dashboard applies the probe live (`serving.py`), so it must know which model and dictionaries
fed it, how texts were encoded, and the scale that maps activation deltas into reward units.
Weights go to safetensors, the card to JSON, both written atomically.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lfp_engine.probe.linear import LinearProbe
from lfp_engine.run.atomic import atomic_path, write_text
from lfp_engine.run.errors import StageOrderError


@dataclass(frozen=True)
class ProbeCard:
    """Everything that says how a saved probe reads the model: which model and dictionaries
    fed it, how texts were encoded, and the scale that maps deltas into reward units."""

    model: str
    """'tuned' or 'base': whose activations and SAEs the probe reads."""
    layers: tuple[int, ...]
    widths: tuple[int, ...]
    """Dictionary size per layer (the smaller dictionary of each chosen layer)."""
    kind: str
    target_scale: float
    bos_token_id: int | None
    max_tokens: int


def save_probe(probe: LinearProbe, card: ProbeCard, folder: Path, name: str = "probe") -> None:
    """`name.safetensors` (weights, intercept) + `name.json` (the card), written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"{name}.safetensors") as tmp:
        save_file({"weights": torch.from_numpy(np.ascontiguousarray(probe.weights)),
                   "intercept": torch.tensor([probe.intercept], dtype=torch.float64)}, str(tmp))
    write_text(json.dumps({**asdict(card), "alpha": probe.alpha}, indent=2), folder / f"{name}.json")


def load_probe(folder: Path, name: str = "probe") -> tuple[LinearProbe, ProbeCard]:
    path = folder / f"{name}.safetensors"
    if not path.exists():
        raise StageOrderError(f"{path} is missing: run the `probe` stage first")
    tensors = load_file(str(path))
    data = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    alpha = data.pop("alpha")
    card = ProbeCard(**{**data, "layers": tuple(data["layers"]), "widths": tuple(data["widths"])})
    probe = LinearProbe(weights=tensors["weights"].numpy().astype(np.float64),
                        intercept=float(tensors["intercept"][0]), kind=card.kind, alpha=alpha)
    return probe, card
