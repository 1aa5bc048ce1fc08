"""Stage `sae`: train the two dictionaries (n and 2n) of every chosen layer, measure them, save them.

All dictionaries train together in one pass over the training activations (`train_saes`), then
each is measured on the held-out activations (`sae_metrics`) and written in SAELens format to
`saes/layer_<L>_<dict_size>/`. The same is done for every model whose activations were captured
(the base model's dictionaries go to `base_model/saes/`). Tables: `sae_metrics` (one row per
model and dictionary) and `sae_training_log` (loss terms over training). `train_seconds` is the
wall time of a model's joint training loop, the same for every dictionary trained in it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from lfp_engine.sae.activations import ActivationSet
from lfp_engine.run.atomic import atomic_path
from lfp_engine.run.config import RunConfig
from lfp_engine.sae.settings import SaeSettings
from lfp_engine.sae.autoencoder import SaeSpec, SparseAutoencoder, TrainedSaes, train_saes
from lfp_engine.sae.metrics import loss_recovered, reconstruction_metrics, token_loss, zero_output
from lfp_engine.sae.saelens_format import save_sae
from lfp_engine.run.store import RunPaths
from lfp_engine.worlds import WorldRecord

from ..models import load_model, load_tokenizer_of, model_source, run_relative
from ..pipeline import Stage, StageContext, StageResult

log = logging.getLogger("lfp")

EVAL_BATCH_ROWS = 8192


def activation_sets(ctx: StageContext, model: str = "tuned") -> tuple[ActivationSet, ActivationSet]:
    """(train, eval) activation sets of a model; the `activations` stage must have run."""
    ctx.outputs_of("activations")
    folder = ctx.paths.activations_of(model)
    return ActivationSet(folder / "train"), ActivationSet(folder / "eval")


def dictionary_specs(settings: SaeSettings, layers: Sequence[int], d_in: int, architecture: str | None = None,
                     l1_coefficient: float | None = None) -> list[SaeSpec]:
    """The n and 2n (per `dict_multipliers`) dictionaries of each layer, as the settings say."""
    architecture = architecture or settings.architecture
    return [SaeSpec(layer=layer, d_sae=m * d_in, architecture=architecture,
                    l1_coefficient=settings.l1_coefficient if l1_coefficient is None else l1_coefficient,
                    k=settings.topk if architecture == "topk" else None)
            for layer in layers for m in settings.dict_multipliers]


def train_dictionaries(train: ActivationSet, specs: Sequence[SaeSpec], settings: SaeSettings, seed: int,
                       device: torch.device, desc: str = "train SAEs") -> TrainedSaes:
    """Train `specs` on the training set with the run's optimiser settings, in one joint loop."""
    layers = sorted({s.layer for s in specs})
    n_steps = settings.n_train_examples // settings.batch_size
    batches = train.shuffled_batches(layers, settings.batch_size, n_steps, seed, device)
    return train_saes(batches, layers, specs, train.d_model, n_steps, settings.learning_rate, seed, device,
                      desc=desc)


def reconstruction_table(evaluation: ActivationSet, specs: Sequence[SaeSpec], saes: Sequence[SparseAutoencoder],
                         settings: SaeSettings, device: torch.device) -> pd.DataFrame:
    """Per dictionary: its spec and its reconstruction, sparsity and feature-health metrics."""
    rows = []
    for spec, sae in zip(specs, saes):
        chunks = (x[0] for _, x in evaluation.iter_rows([spec.layer], EVAL_BATCH_ROWS, device))
        metrics = reconstruction_metrics(sae, chunks, settings.dense_threshold)
        rows.append({"layer": spec.layer, "dict_size": spec.d_sae, "architecture": spec.architecture,
                     "l1_coefficient": spec.l1_coefficient, "n_train_examples": settings.n_train_examples,
                     "n_eval_tokens": metrics.n_tokens, **{k: v for k, v in metrics.as_dict().items()
                                                          if k != "n_tokens"}})
    return pd.DataFrame(rows)


def spliced_losses(ctx: StageContext, evaluation: ActivationSet, specs: Sequence[SaeSpec],
                   saes: Sequence[SparseAutoencoder], model_name: str = "tuned") -> pd.DataFrame:
    """ce_clean, ce_spliced, ce_zero_ablated and loss_recovered per dictionary, on the eval texts."""
    model = load_model(ctx, model_name)
    sequences = [tokens for _, tokens in evaluation.sequences()]
    common = dict(pad_token_id=load_tokenizer_of(ctx).pad_token_id, bos_token_id=evaluation.info.bos_token_id, batch_size=ctx.config.sae.eval_batch_size)
    clean = token_loss(model, sequences, desc="LM loss, clean", **common)
    zero = {layer: token_loss(model, sequences, layer=layer, replace=zero_output,
                              desc=f"LM loss, layer {layer} zeroed", **common)
            for layer in sorted({s.layer for s in specs})}
    rows = []
    for spec, sae in zip(specs, saes):
        spliced = token_loss(model, sequences, layer=spec.layer, replace=lambda h, sae=sae: sae(h.float()),
                             desc=f"LM loss, SAE {spec.layer}/{spec.d_sae}", **common)
        rows.append({"layer": spec.layer, "dict_size": spec.d_sae, "ce_clean": clean, "ce_spliced": spliced,
                     "ce_zero_ablated": zero[spec.layer],
                     "loss_recovered": loss_recovered(clean, spliced, zero[spec.layer])})
    return pd.DataFrame(rows)


def dictionaries_of(ctx: StageContext, model: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Train, measure and save one model's dictionaries: (metrics, training log, inputs)."""
    s = ctx.config.sae
    train, evaluation = activation_sets(ctx, model)
    specs = dictionary_specs(s, train.layers, train.d_model)
    trained = train_dictionaries(train, specs, s, ctx.seed, ctx.device, desc=f"train SAEs ({model})")
    metrics = reconstruction_table(evaluation, specs, trained.saes, s, ctx.device)
    metrics = metrics.merge(spliced_losses(ctx, evaluation, specs, trained.saes, model), on=["layer", "dict_size"])
    metrics["train_seconds"] = trained.seconds

    world = WorldRecord.load(ctx.paths.world)
    with atomic_path(ctx.paths.saes_of(model)) as folder:
        for spec, sae in zip(specs, trained.saes):
            path = folder / ctx.paths.sae(spec.layer, spec.d_sae, model).name
            save_sae(sae.cpu(), path, model_name=run_relative(ctx, model_source(ctx, model)),
                     hook_name=train.hook_name(spec.layer),
                     metadata={"layer": spec.layer, "l1_coefficient": spec.l1_coefficient,
                               "n_train_examples": s.n_train_examples, "learning_rate": s.learning_rate,
                               "batch_size": s.batch_size, "base_model": run_relative(ctx, world.base_model),
                               "context_size": ctx.outputs_of("activations")["max_tokens_per_text"],
                               "prepend_bos": train.info.bos_token_id is not None,
                               "seed": ctx.seed})
    metrics["sae_path"] = [str(ctx.paths.sae(r.layer, r.dict_size, model).relative_to(ctx.paths.root))
                           for r in metrics.itertuples()]
    metrics.insert(0, "model", model)
    training_log = trained.log.assign(layer=[specs[i].layer for i in trained.log["spec"]],
                                      dict_size=[specs[i].d_sae for i in trained.log["spec"]]).drop(columns="spec")
    training_log.insert(0, "model", model)
    for r in metrics.itertuples():
        log.info("%s SAE layer %d, %d features: variance explained %.3f, L0 %.1f, dead %.2f, loss recovered %.3f",
                 model, r.layer, r.dict_size, r.variance_explained, r.l0, r.dead_fraction, r.loss_recovered)
    return metrics, training_log, {"layers": train.layers, "n_train_rows": train.n_rows,
                                   "n_eval_rows": evaluation.n_rows}


def run(ctx: StageContext) -> StageResult:
    parts = {model: dictionaries_of(ctx, model) for model in ctx.outputs_of("activations")["models"]}
    metrics = pd.concat([p[0] for p in parts.values()], ignore_index=True)
    tuned = metrics[metrics["model"] == "tuned"]
    return StageResult(
        tables={"sae_metrics": metrics, "sae_training_log": pd.concat([p[1] for p in parts.values()], ignore_index=True)},
        outputs={"folder": str(ctx.paths.saes), "models": list(parts), "n_saes": len(tuned),
                 "train_seconds": float(tuned["train_seconds"].iloc[0]),
                 "mean_variance_explained": float(tuned["variance_explained"].mean()),
                 "mean_loss_recovered": float(tuned["loss_recovered"].mean()),
                 "mean_l0": float(tuned["l0"].mean())},
        inputs=parts["tuned"][2],
    )


def sae_artifacts(paths: RunPaths, config: RunConfig) -> list[Path]:
    """The cfg of every SAE the stage writes (the layers are in the stored activation set)."""
    info = paths.activations / "train" / "activations.json"
    if not info.exists():
        return [info]
    train = ActivationSet(paths.activations / "train")
    return [paths.sae(layer, m * train.d_model, model) / "cfg.json" for model in config.activations.models
            for layer in train.layers for m in config.sae.dict_multipliers]


STAGE = Stage(name="sae", run=run, sections=("sae",), needs=("activations",), artifacts=sae_artifacts)
