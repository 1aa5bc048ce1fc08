"""Stage `probe`: fit the probe on the implicit reward and measure how far it diverges (paper 3.3, 4.1).

Encodes every triple element with the tuned model and its smaller SAE of each chosen layer,
fits the probe on the train split, and measures it on the test split against the lexicon, next
to four baselines on the same test words: the untrained Xavier probe (the paper's), a probe fit
to shuffled targets, the same probe on raw MLP outputs (no SAE), and the same pipeline on the
*base* model with its own SAEs (did tuning create the pattern?). Writes the probe and the base
model's probe to `probe/` for the dashboard, and the tables of docs/store.md.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from lfp_engine.sae.activations import ActivationSet
from lfp_engine.probe.encoding import Encoder, TokenizedText, tokenize
from lfp_engine.run.errors import StageOrderError
from lfp_engine.models.generation import sample_completions
from lfp_engine.probe.linear import ProbeCard, save_probe
from lfp_engine.probe.measures import (ELEMENTS, ProbeDataset, baselines, build_dataset, fit, lexicon_comparison,
                                       measure, pca_frame, word_counts)
from lfp_engine.sae.saelens_format import find_saes, load_sae
from lfp_engine.worlds import PROMPTS, read_world_table

from ..models import load_model, load_tokenizer_of
from ..pipeline import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def smallest_saes(ctx: StageContext, model: str, layers: list[int]) -> dict:
    """The smaller dictionary of each chosen layer (the probe's input, as in the paper)."""
    found = find_saes(ctx.paths.saes_of(model))
    saes = {}
    for layer in layers:
        sizes = sorted(size for (l, size) in found if l == layer)
        if not sizes:
            raise StageOrderError(f"no {model}-model SAE for layer {layer} in {ctx.paths.saes_of(model)}: "
                                  "run the `sae` stage first")
        saes[layer] = load_sae(found[(layer, sizes[0])], ctx.device)
    return saes


def tokenized_elements(ctx: StageContext, triples: pd.DataFrame, tokenizer, max_tokens: int) -> dict[str, list[TokenizedText]]:
    word = triples["kind"].iloc[0] == "word"
    return {e: tokenize(tokenizer, triples[f"text_{e}"].tolist(),
                        list(zip(triples[f"start_{e}"].astype(int), triples[f"end_{e}"].astype(int), strict=True))
                        if word else None, max_tokens)
            for e in ELEMENTS}


def run(ctx: StageContext) -> StageResult:
    p = ctx.config.probe
    triples = ctx.store.read("triples", order_by="triple_id")
    ctx.outputs_of("features")
    layers = sorted(ctx.outputs_of("divergence")["layers"])
    models = ctx.outputs_of("activations")["models"]
    tokenizer = load_tokenizer_of(ctx)
    train_set = ActivationSet(ctx.paths.activations / "train")
    bos = train_set.info.bos_token_id
    max_tokens = int(ctx.outputs_of("activations")["max_tokens_per_text"])
    texts = tokenized_elements(ctx, triples, tokenizer, max_tokens)
    word_task = triples["kind"].iloc[0] == "word"
    reward_max = float(np.nanmax(np.abs(triples[["value_positive", "value_negative"]].to_numpy(float)))) if word_task else 1.0
    rng = np.random.default_rng(ctx.seed)

    variants: dict[str, ProbeDataset] = {}
    encoders: dict[str, Encoder] = {}
    for variant, model_name in (("sae", "tuned"), ("base_model", "base")):
        if model_name not in models:
            log.warning("no %s-model SAEs (activations.models=%s): the %s baseline is skipped", model_name, models, variant)
            continue
        encoder = Encoder(load_model(ctx, model_name), tokenizer, layers, smallest_saes(ctx, model_name, layers), bos,
                          max_tokens, p.batch_size)
        tuned = variant == "sae"  # the tuned model's passes also give the raw-MLP baseline's inputs
        encoded = {e: encoder.representations(texts[e], desc=f"encode {model_name} {e}", with_raw=tuned)
                   for e in ELEMENTS}
        if tuned:
            variants["raw_mlp"] = build_dataset({e: raw for e, (_, raw) in encoded.items()}, triples, reward_max)
            encoded = {e: codes for e, (codes, _) in encoded.items()}
        variants[variant] = build_dataset(encoded, triples, reward_max)
        encoders[variant] = encoder

    probes = {variant: fit(data, p.cv_folds) for variant, data in variants.items()}
    main = variants["sae"]
    rows: list[dict] = []
    predictions = {}
    for variant, data in variants.items():
        predictions[variant] = probes[variant].predict(data.X)
        rows += measure(variant, data, predictions[variant], p.n_bootstrap, ctx.seed)
    for name, probe in baselines(main, rng, p.cv_folds).items():
        rows += measure(name, main, probe.predict(main.X), p.n_bootstrap, ctx.seed)
    metrics = pd.DataFrame(rows)

    for variant, model_name, name in (("sae", "tuned", "probe"), ("base_model", "base", "base_probe")):
        if variant in probes:
            e = encoders[variant]
            card = ProbeCard(model=model_name, layers=tuple(e.layout.layers), widths=tuple(e.layout.widths),
                             kind=probes[variant].kind, target_scale=variants[variant].scale, bos_token_id=bos,
                             max_tokens=max_tokens)
            save_probe(probes[variant], card, ctx.paths.probe, name)
    log.info("probe written to %s", ctx.paths.probe)

    layout = encoders["sae"].layout
    keys = [layout.feature_of(c) for c in range(layout.total)]
    weights = pd.DataFrame(keys, columns=["layer", "dict_size", "feature"]).assign(weight=probes["sae"].weights)
    predictions_table = pd.DataFrame({
        "triple_id": main.triple_id, "element": main.element, "split": main.split, "word": main.word,
        "lexicon_value": main.lexicon_value, "target": main.target, "prediction": predictions["sae"]})
    tables = {"probe_metrics": metrics, "probe_predictions": predictions_table, "probe_weights": weights,
              "probe_pca": pca_frame(main, p.max_pca_rows, rng)}

    if word_task:
        prompts = read_world_table(ctx.paths.world, PROMPTS)
        eval_prompts = prompts.loc[prompts["purpose"] == "eval", "prompt"].head(p.n_generation_prompts).tolist()
        e = ctx.config.evaluation
        counts = {}
        for model_name in ("tuned", "base"):
            completions = sample_completions(load_model(ctx, model_name), tokenizer, eval_prompts,
                                             max_new_tokens=e.max_new_tokens, min_new_tokens=e.min_new_tokens,
                                             temperature=e.temperature, batch_size=e.batch_size, seed=ctx.seed,
                                             max_length=ctx.config.world.max_length, desc=f"sample {model_name}")
            counts[model_name] = word_counts(completions.texts)
        words = ctx.store.read("contrastive_words")
        tables["lexicon_comparison"] = lexicon_comparison(main, predictions["sae"], words, counts["tuned"],
                                                          counts["base"])

    headline = metrics[(metrics["subset"] == "test") & metrics["metric"].isin(["kendall_tau", "accuracy"])]
    outputs = {f"{r.variant}_{r.metric}": r.value for r in headline.itertuples()}
    outputs |= {f"{r.variant}_{r.metric}_p": r.p_value for r in headline.itertuples() if r.metric == "kendall_tau"}
    outputs |= {"kind": probes["sae"].kind, "alpha": probes["sae"].alpha, "n_features": layout.total,
                "folder": str(ctx.paths.probe)}
    for key in ("sae_kendall_tau", "sae_accuracy"):
        if key in outputs:
            log.info("probe on held-out words/texts: %s = %.3f", key, outputs[key])
    return StageResult(tables=tables, outputs=outputs, inputs={"n_triples": len(triples), "layers": layers})


STAGE = Stage(
    name="probe",
    run=run,
    sections=("probe",),
    needs=("features", "contrastive"),
    derived=lambda config: {"evaluation": config.section("evaluation"), "max_length": config.world.max_length},
    artifacts=lambda paths, config: [paths.probe / "probe.safetensors"],
)
