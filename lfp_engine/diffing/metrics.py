"""How good is a crosscoder, model by model? The SAE metrics of `sae/metrics.py`, once per model.

On held-out paired rows: variance explained, normalised MSE and MSE of each model's block of the
reconstruction; L0, dead and dense fractions of the shared codes. Spliced-in loss, per model: the
model's next-token cross-entropy with its MLP output at the layer replaced by the crosscoder's
reconstruction for that model, which the crosscoder computes from *both* models' outputs at the same
tokens: before each batch, a forward pass of the other model (stopped after the layer) captures its
output there. Loss recovered = (zero - spliced) / (zero - clean), as for the SAEs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from lfp_engine.diffing.crosscoder import Crosscoder, crosscoder_folder
from lfp_engine.diffing.inputs import DiffingInputs
from lfp_engine.diffing.paired_activations import MODELS, PairedActivations
from lfp_engine.models.hooks import capture_mlp_outputs
from lfp_engine.sae.metrics import EVAL_BATCH_ROWS, ReconstructionTotals, loss_recovered, token_loss, zero_output


@torch.no_grad()
def crosscoder_reconstruction(crosscoder: Crosscoder, evaluation: PairedActivations,
                              dense_threshold: float) -> pd.DataFrame:
    """One row per model: model, n_eval_tokens and the reconstruction metrics of its block."""
    module, d = crosscoder.module, crosscoder.width
    device = module.W_enc.device
    totals = [ReconstructionTotals(d, module.d_sae, device) for _ in MODELS]
    for _, x in evaluation.iter_rows([crosscoder.layer], EVAL_BATCH_ROWS, device):
        z = module.encode(x[0])
        x_hat = module.decode(z)
        for block, total in enumerate(totals):
            total.add(x[0][:, block * d:(block + 1) * d], x_hat[:, block * d:(block + 1) * d], z)
    rows = []
    for model, total in zip(MODELS, totals, strict=True):
        metrics = total.metrics(dense_threshold).as_dict()
        rows.append({"model": model, "n_eval_tokens": metrics.pop("n_tokens"), **metrics})
    return pd.DataFrame(rows)


class PairedSplice:
    """Replace one model's MLP output at the crosscoder's layer by the crosscoder's reconstruction
    of it; `before_batch` captures the other model's output on the same batch first."""

    def __init__(self, crosscoder: Crosscoder, other: nn.Module, block: int):
        self.crosscoder, self.other, self.block = crosscoder, other, block
        self.other_output: torch.Tensor | None = None

    def before_batch(self, ids: torch.Tensor, attention: torch.Tensor) -> None:
        layer = self.crosscoder.layer
        with capture_mlp_outputs(self.other, [layer], stop_after_last=True) as captured:
            self.other(input_ids=ids, attention_mask=attention, use_cache=False)
        self.other_output = captured[layer].float()

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        pair = [self.other_output, h.float()] if self.block == 1 else [h.float(), self.other_output]
        d = self.crosscoder.width
        return self.crosscoder.module(torch.cat(pair, dim=-1))[..., self.block * d:(self.block + 1) * d]


def crosscoder_spliced_losses(models: Mapping[str, nn.Module], pad_token_id: int, evaluation: PairedActivations,
                              crosscoders: Sequence[Crosscoder], batch_size: int) -> pd.DataFrame:
    """layer, model, ce_clean, ce_spliced, ce_zero_ablated, loss_recovered on the held-out texts."""
    sequences = [tokens for _, tokens in evaluation.sequences()]
    common = dict(pad_token_id=pad_token_id, bos_token_id=evaluation.info.bos_token_id, batch_size=batch_size)
    rows = []
    for block, model in enumerate(MODELS):
        clean = token_loss(models[model], sequences, desc=f"LM loss, {model}, clean", **common)
        for crosscoder in crosscoders:
            layer = crosscoder.layer
            zero = token_loss(models[model], sequences, layer=layer, replace=zero_output,
                              desc=f"LM loss, {model}, layer {layer} zeroed", **common)
            splice = PairedSplice(crosscoder, models[MODELS[1 - block]], block)
            spliced = token_loss(models[model], sequences, layer=layer, replace=splice,
                                 before_batch=splice.before_batch, desc=f"LM loss, {model}, crosscoder {layer}",
                                 **common)
            rows.append({"layer": layer, "model": model, "ce_clean": clean, "ce_spliced": spliced,
                         "ce_zero_ablated": zero, "loss_recovered": loss_recovered(clean, spliced, zero)})
    return pd.DataFrame(rows)


def metrics_table(inputs: DiffingInputs, dense_threshold: float, eval_batch_size: int, train_seconds: float,
                  folder: Path) -> pd.DataFrame:
    """`crosscoder_metrics`: one row per layer and model, the reconstruction metrics of the model's
    block beside its spliced-in losses, with the crosscoder's settings and its folder (`folder`: the
    crosscoders' folder as the run records it, relative to the run)."""
    parts = [crosscoder_reconstruction(c, inputs.evaluation, dense_threshold).assign(
        layer=c.layer, dict_size=c.module.d_sae, scale=list(c.scales), score_threshold=c.score_threshold)
        for c in inputs.crosscoders]
    spliced = crosscoder_spliced_losses(inputs.models, inputs.tokenizer.pad_token_id, inputs.evaluation,
                                        inputs.crosscoders, eval_batch_size)
    table = pd.concat(parts, ignore_index=True).merge(spliced, on=["layer", "model"])
    s = inputs.settings
    table = table.assign(architecture=s.architecture, k=s.k if s.architecture == "batchtopk" else None,
                         n_train_examples=s.n_train_examples, train_seconds=train_seconds,
                         crosscoder_path=[str(crosscoder_folder(folder, r.layer, r.dict_size))
                                          for r in table.itertuples()])
    first = ["layer", "dict_size", "model", "architecture", "k"]
    return table[first + [c for c in table.columns if c not in first]]
