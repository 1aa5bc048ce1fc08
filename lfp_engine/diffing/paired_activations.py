"""The base and tuned models' activations of the same tokens, read as one row each: [x_base; x_tuned].

A crosscoder (Lindsey et al. 2024) reads both models at the same token, so its training rows pair
the two models' MLP outputs token by token. The `activations` stage captures both models from the
same texts, in the same seeded order, cut to the same window (`sae.activations.capture_sets`); this
module checks that (the two indexes must agree row for row: text, position, token, shard and
offset) and then reads the pair as an ordinary activation set twice as wide, so everything that
streams over activations (training batches, statistics, context windows) works on pairs unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lfp_engine.run.errors import InputError, StageOrderError
from lfp_engine.sae.activations import ActivationSet

MODELS = ("base", "tuned")
"""The order of the two blocks of a paired row (and of a crosscoder's decoder blocks)."""
ALIGNED_COLUMNS = ("text_id", "position", "token_id", "shard", "offset")


class PairedActivations(ActivationSet):
    """Rows [x_base; x_tuned] (2 d wide) of the same tokens; the index is the shared one."""

    def __init__(self, base_folder: Path | str, tuned_folder: Path | str):
        if not (Path(base_folder) / "activations.json").exists():
            raise StageOrderError(f"{base_folder} holds no base-model activations: the crosscoder needs both models "
                                  "(activations.models = [tuned, base]), then `lfp run --force activations`")
        super().__init__(tuned_folder)
        self.base = ActivationSet(base_folder)
        mine, theirs = self.info, self.base.info
        if (mine.layers, mine.d_model, mine.n_rows, mine.n_shards) != (theirs.layers, theirs.d_model, theirs.n_rows,
                                                                        theirs.n_shards):
            raise InputError(f"the activations in {tuned_folder} and {base_folder} differ in layers, width or rows: "
                             "re-run the `activations` stage")
        for column in ALIGNED_COLUMNS:
            if not np.array_equal(self.index[column].to_numpy(), self.base.index[column].to_numpy()):
                raise InputError(f"the tuned and base activations were not captured from the same tokens in the same "
                                 f"order (index column {column!r} differs): re-run the `activations` stage")

    @property
    def width(self) -> int:
        """d: the width of one model's activations (a row is 2 d wide)."""
        return self.info.d_model

    @property
    def d_model(self) -> int:
        return 2 * self.info.d_model

    def shard(self, shard: int, layers: Sequence[int]) -> torch.Tensor:
        """[len(layers), rows, 2 d]: the base model's activations, then the tuned model's."""
        return torch.cat([self.base.shard(shard, layers), super().shard(shard, layers)], dim=-1)


@torch.no_grad()
def activation_scales(paired: PairedActivations, layers: Sequence[int], batch_rows: int = 8192) -> np.ndarray:
    """[len(layers), 2]: each model's scale at each layer, sqrt(E ||x||^2 / d) over the rows.

    Dividing by it gives both models' activations the same mean squared norm d, so that a latent's
    decoder norms in the two models are comparable whatever the models' overall scales (the
    normalisation of Lindsey et al. 2024 and Minder et al. 2025)."""
    d = paired.width
    total = torch.zeros(len(layers), 2, dtype=torch.float64)
    for _, x in paired.iter_rows(layers, batch_rows):
        total += x.double().unflatten(-1, (2, d)).pow(2).sum(-1).sum(1)
    scales = (total / (paired.n_rows * d)).sqrt().numpy()
    if not np.all(scales > 0):
        raise InputError(f"a model's activations are all zero at some layer of {list(layers)}")
    return scales
