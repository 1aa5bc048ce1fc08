"""Stage `activations`: the tuned model's MLP outputs at the most divergent layers, over the corpus.

Two activation sets (see `lfp_engine.sae.activations`): `train/` from the corpus's train split, the
rows the SAEs learn from (the paper's 75,000 per SAE), and `eval/` from its test split, on which
every SAE metric is measured. Texts are taken in a seeded random order until the token budget is
met. Activations come from the tuned model, the one whose feedback patterns we study; the
authors took them from the base model by mistake (METHOD.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from lfp_engine.sae.activations import capture_activations, token_sequences
from lfp_engine.run.atomic import atomic_path
from lfp_engine.run.errors import InputError
from lfp_engine.worlds import CORPUS, read_world_table

from ..models import load_model, load_tokenizer_of, model_source, run_relative
from ..pipeline import Stage, StageContext, StageResult

log = logging.getLogger("lfp")

SETS = (("train", "train", "n_train_tokens"), ("eval", "test", "n_eval_tokens"))
"""(activation set, corpus split it is drawn from, setting of its token budget)."""


def bos_token(tokenizer, prepend: bool) -> int | None:
    """The token fed before each text: the tokenizer's BOS, else its EOS (Pythia's document separator)."""
    if not prepend:
        return None
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def capture_sets(ctx: StageContext, layers: list[int], root: Path, model_name: str = "tuned") -> dict[str, Any]:
    """Capture the train and eval activation sets of `layers` into root/train and root/eval.

    The texts depend only on the stage seed and settings, so the tuned and base models see
    exactly the same tokens, and so does a later capture of other layers (`lfp sae-compare`).
    """
    a = ctx.config.activations
    tokenizer = load_tokenizer_of(ctx)
    model = load_model(ctx, model_name)
    corpus = read_world_table(ctx.paths.world, CORPUS)
    bos = bos_token(tokenizer, a.prepend_bos)
    window = min(a.max_tokens_per_text + (bos is not None), ctx.config.world.max_length,
                 getattr(model.config, "max_position_embeddings", None) or ctx.config.world.max_length)
    max_tokens = window - (bos is not None)
    rng = np.random.default_rng(ctx.seed)
    outputs: dict[str, Any] = {"layers": layers, "max_tokens_per_text": max_tokens}
    for name, split, budget in SETS:
        texts = corpus[corpus["split"] == split]
        if texts.empty:
            raise InputError(f"the corpus has no {split!r} texts to capture activations from")
        texts = texts.iloc[rng.permutation(len(texts))]
        n_tokens = getattr(a, budget)
        info = capture_activations(
            model, token_sequences(tokenizer, texts, n_tokens, max_tokens), layers, root / name,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=bos, batch_size=a.batch_size,
            shard_rows=a.shard_rows, model_name=run_relative(ctx, model_source(ctx, model_name)),
            n_expected=n_tokens)
        if info.n_rows < n_tokens:
            log.warning("the %s split holds only %d tokens of the %d asked for (activations.%s)",
                        split, info.n_rows, n_tokens, budget)
        outputs |= {f"n_{name}_rows": info.n_rows, "d_model": info.d_model}
    return outputs


def run(ctx: StageContext) -> StageResult:
    layers = list(ctx.outputs_of("divergence")["layers"])
    models = list(ctx.config.activations.models)
    captured: dict[str, dict[str, Any]] = {}
    for model in models:
        with atomic_path(ctx.paths.activations_of(model)) as folder:
            captured[model] = capture_sets(ctx, layers, folder, model)
        log.info("%s model: activations of layers %s written to %s", model, layers, ctx.paths.activations_of(model))
    return StageResult(outputs={"folder": str(ctx.paths.activations), "models": models, **captured["tuned"]},
                       inputs={m: model_source(ctx, m) for m in models})


STAGE = Stage(
    name="activations",
    run=run,
    sections=("activations",),
    needs=("world", "rlhf", "divergence"),
    derived=lambda config: {"dtype": config.world.dtype, "max_length": config.world.max_length},
    artifacts=lambda paths, config: [paths.activations_of(m) / name / "activations.json"
                                     for m in config.activations.models for name, _, _ in SETS],
)
