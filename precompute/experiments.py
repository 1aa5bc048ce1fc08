"""SAE experiments of the paper's appendix F, run on demand over a finished run's activations.

- `l1_sweep` (figure 8): the run's dictionaries retrained for each L1 coefficient; per
  coefficient the normalised reconstruction loss and the true sparsity, as L0 / 100 (the paper's
  scale, `l0_scaled`) and as L0 / dictionary size (`l0_fraction`).
- `compare` (tables 11 and 12): tied vs untied weights, on the most divergent layers vs the
  lowest layers (0..k-1, captured afresh from the same texts as the run's activations).
Every variant trains in one joint loop (one pass over the activations for all of them) and is
measured on the held-out activations, exactly as the `sae` stage measures its dictionaries.
Nothing here changes the run's SAEs; the results are tables (`sae_l1_sweep`, `sae_comparison`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import replace

import pandas as pd

from lfp_engine.models.hub import resolve_device
from lfp_engine.run.config import RunConfig
from lfp_engine.run.errors import InputError
from lfp_engine.run.manifest import read_manifest
from lfp_engine.run.seeding import derive_seed
from lfp_engine.run.store import RunPaths, RunStore
from lfp_engine.sae.activations import ActivationSet, capture_sets
from lfp_engine.sae.dictionaries import dictionary_specs, train_dictionaries
from lfp_engine.sae.metrics import reconstruction_table
from lfp_engine.worlds import CORPUS, read_world_table

from .models import load_model, load_tokenizer_of, model_source, run_relative
from .outputs import ActivationsOutputs
from .stage import StageContext

log = logging.getLogger("lfp")

SUMMARY_COLUMNS = ["normalized_mse", "l0_scaled", "l0_fraction", "variance_explained", "l0", "dead_fraction"]
"""The paper's two figures first: reconstruction loss and true sparsity as tables 11 and 12 scale it."""


def stage_context(paths: RunPaths, config: RunConfig, stage: str) -> StageContext:
    """The context a stage of this run would get, seed included, for work outside the pipeline."""
    store = RunStore(paths.root)
    return StageContext(paths=paths, store=store, config=config, seed=derive_seed(config.seed, stage),
                        device=resolve_device(config.device), manifest=read_manifest(store))


def l1_sweep(paths: RunPaths, config: RunConfig, coefficients: Sequence[float]) -> pd.DataFrame:
    """One row per (l1_coefficient, layer, dict_size): metrics of a dictionary trained with it."""
    if not coefficients or any(c < 0 for c in coefficients):
        raise InputError(f"L1 coefficients must be a non-empty list of numbers >= 0, got {list(coefficients)}")
    ctx = stage_context(paths, config, "sae")
    ctx.outputs_of(ActivationsOutputs)  # the activations must be there
    train, evaluation = ActivationSet(paths.activations / "train"), ActivationSet(paths.activations / "eval")
    specs = [spec for c in dict.fromkeys(coefficients)
             for spec in dictionary_specs(config.sae, train.layers, train.d_model, l1_coefficient=c)]
    trained = train_dictionaries(train, specs, config.sae, ctx.seed, ctx.device, desc="L1 sweep")
    table = reconstruction_table(evaluation, specs, trained.saes, config.sae, ctx.device)
    return table.assign(train_seconds=trained.seconds)


def compare(paths: RunPaths, config: RunConfig) -> pd.DataFrame:
    """One row per (layer_choice, architecture, layer, dict_size); layer_choice is 'most_divergent'
    (the run's layers) or 'lowest' (as many layers, counted from the bottom)."""
    ctx = stage_context(paths, config, "activations")
    divergent = ctx.outputs_of(ActivationsOutputs).layers
    lowest = list(range(len(divergent)))
    scratch = paths.work / "sae-compare"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        capture_sets(load_model(ctx, "tuned"), load_tokenizer_of(ctx), read_world_table(paths.world, CORPUS),
                     sorted(set(divergent) | set(lowest)), scratch, config.activations, config.world.max_length,
                     ctx.seed, model_name=run_relative(ctx, model_source(ctx, "tuned")))
        train, evaluation = ActivationSet(scratch / "train"), ActivationSet(scratch / "eval")
        sae_ctx = replace(ctx, seed=derive_seed(config.seed, "sae"))
        specs = [spec for architecture in ("tied", "untied")
                 for spec in dictionary_specs(config.sae, train.layers, train.d_model, architecture=architecture)]
        trained = train_dictionaries(train, specs, config.sae, sae_ctx.seed, sae_ctx.device, desc="tied vs untied")
        table = reconstruction_table(evaluation, specs, trained.saes, config.sae, sae_ctx.device)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    choices = [table[table["layer"].isin(layers)].assign(layer_choice=name)
               for name, layers in (("most_divergent", divergent), ("lowest", lowest))]
    out = pd.concat(choices, ignore_index=True).assign(train_seconds=trained.seconds)
    return out[["layer_choice"] + [c for c in out.columns if c != "layer_choice"]]


def summary(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Means over layers and dictionary sizes, as the paper reports them."""
    return table.groupby(by, sort=False)[SUMMARY_COLUMNS].mean().reset_index()
