"""Stage `probe`: fit the probe on the implicit reward and measure how far it diverges (paper 3.3, 4.1).

Encodes every triple element with the tuned model and its smaller SAE of each chosen layer (and
the base model with its own, for the baseline), and the tokens of the probe's zero point
(`lfp_engine.probe.zero_point`), fits the probe and its baselines (`lfp_engine.probe.variants`),
and measures them on the test split against the lexicon. Writes the probe and the base model's probe
to `probe/` for the dashboard, and the tables of docs/store.md. With several processes the
encoding's batches are dealt out among them; the fits, the files and the tables are rank 0's alone.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from lfp_engine.models.generation import Sampling
from lfp_engine.probe.card import ProbeCard, save_probe
from lfp_engine.probe.encoding import Encoder
from lfp_engine.probe.measures import generation_counts, headline, lexicon_comparison, pca_frame
from lfp_engine.probe.reader import PROBE_FILES, probe_dictionaries, probe_encoder
from lfp_engine.probe.variants import MODEL_OF_VARIANT, ProbeFits, encode_variants, fit_variants, tokenized_elements
from lfp_engine.probe.zero_point import context_tokens
from lfp_engine.sae.activations import ActivationSet
from lfp_engine.sae.saelens_format import load_sae
from lfp_engine.worlds import PROMPTS, read_world_table

from ..models import load_model, load_tokenizer_of
from ..outputs import ActivationsOutputs, ContrastiveOutputs, DivergenceOutputs, ProbeOutputs
from ..stage import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def encoders(ctx: StageContext, layers: list[int], bos: int | None, max_tokens: int) -> dict[str, Encoder]:
    """The encoder of each model the run has SAEs for, through its smaller dictionary per layer."""
    models = ctx.outputs_of(ActivationsOutputs).models
    out = {}
    for variant, model in MODEL_OF_VARIANT.items():
        if model not in models:
            log.warning("no %s-model SAEs (activations.models=%s): the %s baseline is skipped", model, models, variant)
            continue
        folders = probe_dictionaries(ctx.paths.saes_of(model), layers, model)
        saes = {layer: load_sae(folder, ctx.device) for layer, folder in folders.items()}
        out[variant] = probe_encoder(load_model(ctx, model), load_tokenizer_of(ctx), saes, bos, max_tokens,
                                     ctx.config.probe.batch_size, ctx.ranks)
    return out


def save_probes(ctx: StageContext, fits: ProbeFits, used: dict[str, Encoder], bos: int | None, max_tokens: int) -> None:
    for variant, encoder in used.items():
        card = ProbeCard(model=MODEL_OF_VARIANT[variant], layers=encoder.layout.layers, widths=encoder.layout.widths,
                         kind=fits.probes[variant].kind, target_scale=fits.datasets[variant].scale, bos_token_id=bos,
                         max_tokens=max_tokens)
        save_probe(fits.on_codes(variant), card, ctx.paths.probe, PROBE_FILES[card.model])
    log.info("probe written to %s", ctx.paths.probe)


def generation_table(ctx: StageContext, word_values: pd.DataFrame) -> pd.DataFrame:
    """The reconstructed lexicon from the cross-fitted values, with how often each model writes each word (figure 4)."""
    prompts = read_world_table(ctx.paths.world, PROMPTS)
    prompts = prompts.loc[prompts["purpose"] == "eval", "prompt"].head(ctx.config.probe.n_generation_prompts).tolist()
    counts = {model: generation_counts(load_model(ctx, model), load_tokenizer_of(ctx), prompts,
                                       Sampling.of(ctx.config), ctx.seed, desc=f"sample {model}")
              for model in ("tuned", "base")}
    return lexicon_comparison(word_values, ctx.store.read("contrastive_words"), counts["tuned"], counts["base"])


def run(ctx: StageContext) -> StageResult | None:
    p = ctx.config.probe
    kind = ctx.outputs_of(ContrastiveOutputs).kind
    triples = ctx.store.read("triples", order_by="triple_id")
    layers = sorted(ctx.outputs_of(DivergenceOutputs).layers)
    bos = ActivationSet(ctx.paths.activations / "train").info.bos_token_id
    max_tokens = ctx.outputs_of(ActivationsOutputs).max_tokens_per_text
    texts = tokenized_elements(triples, kind, load_tokenizer_of(ctx), max_tokens)
    rng = np.random.default_rng(ctx.seed)
    used = encoders(ctx, layers, bos, max_tokens)
    # word triples: the shared tokens before each neutral word join the zero point, on a stream of their own
    context = None if kind != "word" else context_tokens(
        triples, load_tokenizer_of(ctx), max_tokens, set(ctx.store.read("contrastive_words")["word"]),
        p.neutral_tokens_per_triple, np.random.default_rng([ctx.seed, 4]))
    datasets = encode_variants(used, texts, triples, kind, context)
    if not ctx.ranks.is_main:
        return None
    fits = fit_variants(datasets, p, ctx.seed, rng)
    save_probes(ctx, fits, used, bos, max_tokens)
    tables = {"probe_metrics": fits.metrics, "probe_predictions": fits.predictions_table(),
              "probe_weights": fits.weights_table(used["sae"].layout),
              "probe_pca": pca_frame(fits.main, p.max_pca_rows, rng)}
    if kind == "word":
        tables |= {"lexicon_comparison": generation_table(ctx, fits.word_values), "word_values": fits.word_values}
        if fits.null_word_values is not None:
            tables["null_word_values"] = fits.null_word_values
    numbers = headline(fits.metrics)
    for key in ("sae_kendall_tau_within", "tuned_minus_base_kendall_tau_within", "sae_accuracy"):
        if key in numbers:
            log.info("probe on held-out words/texts: %s = %.3f", key, numbers[key])
    probe = fits.probes["sae"]
    return StageResult(outputs=ProbeOutputs(kind=probe.kind, alpha=probe.alpha, n_features=used["sae"].layout.total,
                                            folder=str(ctx.paths.probe), headline=numbers),
                       tables=tables, inputs={"n_triples": len(triples), "layers": layers})


STAGE = Stage(
    name="probe",
    run=run,
    sections=("probe",),
    tables=("probe_metrics", "probe_predictions", "probe_weights", "probe_pca", "lexicon_comparison", "word_values",
            "null_word_values"),
    needs=("features", "contrastive"),
    # 5: the zero point's rows cross-validated by text, the tuned and base probes at one shared strength;
    # 6: codes on one scale per model, word intervals with the fit's uncertainty, null words, figure 4 cross-fitted
    version=6,
    derived=lambda config: {"evaluation": config.section("evaluation"), "max_length": config.world.max_length},
    artifacts=lambda paths, config: [paths.probe / "probe.safetensors"],
    distributed=True,
)
