"""How good is a crosscoder, model by model? The SAE metrics of `sae/metrics.py`, once per model.

On held-out paired rows: variance explained, normalised MSE and MSE of each model's block of the
reconstruction; L0, dead and dense fractions of the shared codes. Spliced-in loss, per model: the
model's next-token cross-entropy with its MLP output at the layer replaced by the crosscoder's
reconstruction for that model, which the crosscoder computes from *both* models' outputs at the same
tokens: the other model's output is the held-out paired row the activations stage captured for that
token (`PairedSplice`), so the other model need not run again. Loss recovered = (zero - spliced) /
(zero - clean), as for the SAEs (and, as for them, left empty where zeroing the layer raises the
loss by less than the noise floor, `sae.metrics.MIN_INCREASE_STANDARD_ERRORS`), against the clean and
zero-ablated losses the `sae` stage measured on the same texts (`sae_metrics`), read back rather
than measured again.
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
from lfp_engine.run.errors import InputError
from lfp_engine.sae.metrics import (EVAL_BATCH_ROWS, LossRecovered, ReconstructionTotals, ReferenceLosses,
                                    reference_losses, text_losses)


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
    """Replace one model's MLP output at the crosscoder's layer by the crosscoder's reconstruction of
    it from both models' outputs; the other model's comes from the held-out paired rows. `text_losses`
    replays the held-out texts in row order, so each batch's text tokens are the next rows, which
    `before_batch` places at the batch's text positions."""

    def __init__(self, crosscoder: Crosscoder, evaluation: PairedActivations, block: int):
        self.crosscoder, self.block = crosscoder, block
        d, other = crosscoder.width, 1 - block
        self.rows = torch.cat([x[0][:, other * d:(other + 1) * d]
                               for _, x in evaluation.iter_rows([crosscoder.layer], EVAL_BATCH_ROWS)])
        self.used = 0
        self.other_output: torch.Tensor | None = None

    def before_batch(self, ids: torch.Tensor, attention: torch.Tensor, text: torch.Tensor) -> None:
        n = int(text.sum())
        if self.used + n > len(self.rows):
            raise InputError("the held-out texts have more tokens than their captured rows: re-run `activations`")
        other = torch.zeros(*text.shape, self.crosscoder.width, device=text.device)
        other[text] = self.rows[self.used:self.used + n].to(text.device)
        self.used += n
        self.other_output = other

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        pair = [self.other_output, h.float()] if self.block == 1 else [h.float(), self.other_output]
        d = self.crosscoder.width
        return self.crosscoder.module(torch.cat(pair, dim=-1))[..., self.block * d:(self.block + 1) * d]


def crosscoder_spliced_losses(models: Mapping[str, nn.Module], pad_token_id: int, evaluation: PairedActivations,
                              crosscoders: Sequence[Crosscoder], batch_size: int,
                              references: Mapping[tuple[str, int], ReferenceLosses] | None = None) -> pd.DataFrame:
    """layer, model and the `LossRecovered` of the crosscoder spliced into that model, on the held-out
    texts. `references`: the clean and zero-ablated losses by (model, layer), measured here when not given."""
    sequences = [tokens for _, tokens in evaluation.sequences()]
    common = dict(pad_token_id=pad_token_id, bos_token_id=evaluation.info.bos_token_id, batch_size=batch_size)
    layers = [c.layer for c in crosscoders]
    rows = []
    for block, model in enumerate(MODELS):
        known = references or {(model, layer): reference for layer, reference in
                               reference_losses(models[model], sequences, layers, **common).items()}
        for crosscoder in crosscoders:
            layer, reference = crosscoder.layer, known[(model, crosscoder.layer)]
            splice = PairedSplice(crosscoder, evaluation, block)
            spliced = text_losses(models[model], sequences, layer=layer, replace=splice,
                                  before_batch=splice.before_batch, desc=f"LM loss, {model}, crosscoder {layer}",
                                  **common)
            if splice.used != len(splice.rows):
                raise InputError("the held-out texts have fewer tokens than their captured rows: re-run `activations`")
            rows.append({"layer": layer, "model": model, **LossRecovered.measure(reference, spliced.mean).as_dict()})
    return pd.DataFrame(rows)


def stored_references(sae_metrics: pd.DataFrame, evaluation: PairedActivations,
                      layers: Sequence[int]) -> dict[tuple[str, int], ReferenceLosses] | None:
    """The clean and zero-ablated losses by (model, layer) that the `sae` stage measured on the same
    held-out texts (its rows with as many eval tokens), or None when it lacks any of `layers`."""
    same = sae_metrics[sae_metrics["n_eval_tokens"] == evaluation.n_rows]
    found = {(str(r.model), int(r.layer)): ReferenceLosses(float(r.ce_clean), float(r.ce_zero_ablated),
                                                           float(r.loss_increase), float(r.loss_increase_se))
             for r in same.itertuples()}
    return found if all((model, layer) in found for model in MODELS for layer in layers) else None


def metrics_table(inputs: DiffingInputs, dense_threshold: float, eval_batch_size: int, train_seconds: float,
                  folder: Path, sae_metrics: pd.DataFrame) -> pd.DataFrame:
    """`crosscoder_metrics`: one row per layer and model, the reconstruction metrics of the model's
    block beside its spliced-in losses, with the crosscoder's settings and its folder (`folder`: the
    crosscoders' folder as the run records it, relative to the run; `sae_metrics`: the `sae` stage's
    table, whose reference losses are reused)."""
    parts = [crosscoder_reconstruction(c, inputs.evaluation, dense_threshold).assign(
        layer=c.layer, dict_size=c.module.d_sae, scale=list(c.scales), score_threshold=c.score_threshold)
        for c in inputs.crosscoders]
    references = stored_references(sae_metrics, inputs.evaluation, [c.layer for c in inputs.crosscoders])
    spliced = crosscoder_spliced_losses(inputs.models, inputs.tokenizer.pad_token_id, inputs.evaluation,
                                        inputs.crosscoders, eval_batch_size, references)
    table = pd.concat(parts, ignore_index=True).merge(spliced, on=["layer", "model"])
    s = inputs.settings
    table = table.assign(architecture=s.architecture, k=s.k if s.architecture == "batchtopk" else None,
                         n_train_examples=s.n_train_examples, train_seconds=train_seconds,
                         crosscoder_path=[str(crosscoder_folder(folder, r.layer, r.dict_size))
                                          for r in table.itertuples()])
    first = ["layer", "dict_size", "model", "architecture", "k"]
    return table[first + [c for c in table.columns if c not in first]]
