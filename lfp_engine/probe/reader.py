"""A model read through the probe: its SAEs at the chosen layers, the encoder, and the probe.

The probe reads the smaller dictionary of each chosen layer (paper 3.3). The same assembly serves
the probe stage (encoding the triples, before a probe exists), the validate stage (the probe on
held-out activations) and the dashboard (the implicit reward of typed text), so it is written once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lfp_engine.run.distributed import SINGLE, Ranks
from lfp_engine.probe.card import ProbeCard, load_probe
from lfp_engine.probe.encoding import Encoder
from lfp_engine.probe.linear import LinearProbe
from lfp_engine.run.errors import StageOrderError
from lfp_engine.run.store import RunPaths
from lfp_engine.sae.autoencoder import SparseAutoencoder
from lfp_engine.sae.keys import DictionaryKey
from lfp_engine.sae.saelens_format import find_saes, load_sae

PROBE_FILES = {"tuned": "probe", "base": "base_probe"}
"""Each model's probe in the run's `probe/` folder: the base model's is fit the same way on its own
SAE codes (the probe stage's `base_model` baseline)."""


def probe_dictionaries(saes_folder: Path, layers: Sequence[int], model: str = "tuned") -> dict[int, Path]:
    """{layer: folder} of the smaller dictionary of each layer: the probe's input, as in the paper."""
    found = find_saes(saes_folder)
    chosen = {}
    for layer in layers:
        sizes = sorted(size for (l, size) in found if l == layer)
        if not sizes:
            raise StageOrderError(f"no {model}-model SAE for layer {layer} in {saes_folder}: run the `sae` stage first")
        chosen[layer] = found[(layer, sizes[0])]
    return chosen


def probe_encoder(model: nn.Module, tokenizer, saes: Mapping[int, SparseAutoencoder], bos_token_id: int | None,
                  max_tokens: int, batch_size: int = 32, ranks: Ranks = SINGLE) -> Encoder:
    """The encoder of A(x): `model`'s MLP outputs at the SAEs' layers, through the SAEs (its batches
    dealt out among several processes, if `ranks` says there are)."""
    return Encoder(model, tokenizer, sorted(saes), dict(saes), bos_token_id, max_tokens, batch_size, ranks)


@dataclass
class ProbeReader:
    """One model's implicit reward: its encoder (model + SAEs) and the probe fit on its codes."""

    encoder: Encoder
    probe: LinearProbe
    card: ProbeCard

    @property
    def dictionaries(self) -> tuple[DictionaryKey, ...]:
        """The dictionaries the probe reads, in the order of its inputs."""
        return tuple(DictionaryKey(layer, width) for layer, width in zip(self.card.layers, self.card.widths,
                                                                           strict=True))

    @property
    def saes(self) -> dict[DictionaryKey, SparseAutoencoder]:
        return {key: self.encoder.saes[key.layer] for key in self.dictionaries}

    @classmethod
    def load(cls, paths: RunPaths, model_name: str, model: nn.Module, tokenizer, device: torch.device,
             loaded: Mapping[DictionaryKey, SparseAutoencoder] | None = None) -> ProbeReader:
        """The saved probe of `model_name` ('tuned' or 'base') with its SAEs; `loaded`: SAEs already
        in memory (the dashboard's tuned SAEs), used instead of loading them again."""
        probe, card = load_probe(paths.probe, PROBE_FILES[model_name])
        keys = [DictionaryKey(layer, width) for layer, width in zip(card.layers, card.widths, strict=True)]
        found = find_saes(paths.saes_of(model_name))
        missing = [key for key in keys if key not in found and key not in (loaded or {})]
        if missing:
            raise StageOrderError(f"the {model_name} model's probe reads SAEs {missing} that "
                                  f"{paths.saes_of(model_name)} lacks: run the `sae` stage")
        saes = {key.layer: loaded[key] if loaded and key in loaded else load_sae(found[key], device) for key in keys}
        return cls(probe_encoder(model, tokenizer, saes, card.bos_token_id, card.max_tokens), probe, card)
