"""Stage `sae`: train the two dictionaries (n and 2n) of every chosen layer, measure them, save them.

For every model whose activations were captured, `lfp_engine.sae.dictionaries.train_and_measure`
trains all its dictionaries in one pass over the training activations and measures them on the
held-out ones; each is written in SAELens format to `saes/layer_<L>_<dict_size>/` (the base
model's under `base_model/saes/`). `train_seconds` is the wall time of a model's joint training
loop, the same for every dictionary trained in it. With several processes the dictionaries train
data-parallel or are placed by layer (`distributed.sae`, `train_and_measure`), and each process
saves the ones it holds into the same folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from lfp_engine.run.distributed import shared_atomic_path
from lfp_engine.run.config import RunConfig
from lfp_engine.run.store import RunPaths
from lfp_engine.sae.activations import ActivationSet
from lfp_engine.sae.dictionaries import MeasuredDictionaries, train_and_measure
from lfp_engine.sae.metrics import loss_recovered_reason, mean_loss_recovered
from lfp_engine.sae.saelens_format import save_sae
from lfp_engine.worlds import WorldRecord

from ..models import load_model, load_tokenizer_of, model_source, run_relative
from ..outputs import ActivationsOutputs, SaeOutputs
from ..stage import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def save_dictionaries(ctx: StageContext, model: str, train: ActivationSet, measured: MeasuredDictionaries) -> None:
    """Every dictionary of `model` in SAELens format, with how it was trained in its metadata."""
    s = ctx.config.sae
    world = WorldRecord.load(ctx.paths.world)
    context_size = ctx.outputs_of(ActivationsOutputs).max_tokens_per_text
    with shared_atomic_path(ctx.paths.saes_of(model), ctx.ranks) as folder:
        for spec, sae in zip(measured.specs, measured.saes):
            save_sae(sae, folder / ctx.paths.sae(spec.layer, spec.d_sae, model).name,
                     model_name=run_relative(ctx, model_source(ctx, model)), hook_name=train.hook_name(spec.layer),
                     metadata={"layer": spec.layer, "l1_coefficient": spec.l1_coefficient,
                               "n_train_examples": s.n_train_examples, "learning_rate": s.learning_rate,
                               "batch_size": s.batch_size, "base_model": run_relative(ctx, world.base_model),
                               "context_size": context_size, "prepend_bos": train.info.bos_token_id is not None,
                               "seed": ctx.seed})


def dictionaries_of(ctx: StageContext, model: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Train, measure and save one model's dictionaries: (metrics, training log, inputs)."""
    folder = ctx.paths.activations_of(model)
    train, evaluation = ActivationSet(folder / "train"), ActivationSet(folder / "eval")
    measured = train_and_measure(train, evaluation, load_model(ctx, model), load_tokenizer_of(ctx).pad_token_id,
                                 ctx.config.sae, ctx.seed, ctx.device, desc=f"train SAEs ({model})", ranks=ctx.ranks,
                                 placement=ctx.config.distributed.sae)
    save_dictionaries(ctx, model, train, measured)
    metrics = measured.metrics
    metrics["sae_path"] = [str(ctx.paths.sae(r.layer, r.dict_size, model).relative_to(ctx.paths.root))
                           for r in metrics.itertuples()]
    metrics.insert(0, "model", model)
    training_log = measured.training_log
    training_log.insert(0, "model", model)
    for r in metrics.itertuples():
        recovered = (f"{r.loss_recovered:.3f}" if pd.notna(r.loss_recovered)
                     else f"none ({loss_recovered_reason(r.loss_increase, r.loss_increase_se)})")
        log.info("%s SAE layer %d, %d features: variance explained %.3f, L0 %.1f, dead %.2f, loss recovered %s",
                 model, r.layer, r.dict_size, r.variance_explained, r.l0, r.dead_fraction, recovered)
    return metrics, training_log, {"layers": train.layers, "n_train_rows": train.n_rows,
                                   "n_eval_rows": evaluation.n_rows}


def run(ctx: StageContext) -> StageResult:
    parts = {model: dictionaries_of(ctx, model) for model in ctx.outputs_of(ActivationsOutputs).models}
    metrics = pd.concat([p[0] for p in parts.values()], ignore_index=True)
    tuned = metrics[metrics["model"] == "tuned"]
    mean_recovered, n_recovered = mean_loss_recovered(tuned["loss_recovered"])
    return StageResult(
        outputs=SaeOutputs(folder=str(ctx.paths.saes), models=list(parts), n_saes=len(tuned),
                           train_seconds=float(tuned["train_seconds"].iloc[0]),
                           mean_variance_explained=float(tuned["variance_explained"].mean()),
                           mean_loss_recovered=mean_recovered, n_loss_recovered=n_recovered,
                           mean_l0=float(tuned["l0"].mean())),
        tables={"sae_metrics": metrics, "sae_training_log": pd.concat([p[1] for p in parts.values()],
                                                                      ignore_index=True)},
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


STAGE = Stage(name="sae", run=run, sections=("sae",), tables=("sae_metrics", "sae_training_log"),
              needs=("activations",), artifacts=sae_artifacts, distributed=True,
              # 2: sae_metrics.l0_scaled (true sparsity as the paper's tables 11 and 12 scale it); 3: loss_increase
              # and loss_increase_se beside loss_recovered, which is NULL where the increase is within the noise
              version=3)
