"""Stage `crosscoder`: what tuning changed, latent by latent, tied to the reward (model diffing).

After the paper, which studies each model through its own SAEs: one crosscoder per chosen layer over
the base and tuned models' activations of the same tokens (`lfp_engine.sae.crosscoder`), its latents
tagged tuned-only / base-only / shared / changed by their decoders and checked by Latent Scaling
(`model_diffing`), measured model by model (`crosscoder_metrics`), and tied to the reward three ways:
the correlation of each latent with the reward of held-out texts (`reward_correlation`), its weight
in the paper's probe fit on crosscoder codes (`lfp_engine.probe.crosscoder_probe`), and, for the
tuned-only latents with the strongest link, the reward when it is switched off in the tuned model
beside a density-matched control (`lfp_engine.validation.crosscoder_ablation`). The tuned-only
latents are explained by the explain stage's explainer and described in one sentence each.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from lfp_engine.explain.evidence import dictionary_evidence
from lfp_engine.explain.explainer import explain_offline, explain_with_llm, records_frame
from lfp_engine.explain.llm import ResponseCache, Usage, endpoint_from_settings
from lfp_engine.explain.word_classes import available_word_classes
from lfp_engine.models.generation import Sampling
from lfp_engine.models.hub import token_strings
from lfp_engine.probe.crosscoder_probe import CrosscoderEncoder, fit_crosscoder_probe, sample_triples
from lfp_engine.probe.reader import probe_dictionaries
from lfp_engine.probe.variants import tokenized_elements
from lfp_engine.run.atomic import atomic_path
from lfp_engine.run.errors import StageOrderError
from lfp_engine.run.seeding import derive_seed
from lfp_engine.run.tasks import task_spec
from lfp_engine.sae.crosscoder import Crosscoder, crosscoder_folder, save_crosscoder, train_crosscoders
from lfp_engine.sae.crosscoder_metrics import crosscoder_reconstruction, crosscoder_spliced_losses
from lfp_engine.sae.crosscoder_report import closing_note, latent_sentences
from lfp_engine.sae.crosscoder_tables import (READ_TAGS, latent_examples, latent_statistics, latent_table,
                                              nearest_sae_features, rank_by_reward, top_by_reward)
from lfp_engine.sae.features import FeatureStatistics
from lfp_engine.sae.paired_activations import PairedActivations
from lfp_engine.sae.saelens_format import load_sae
from lfp_engine.sae.reward_correlation import (REWARD_COLUMNS, reward_correlations, text_lengths, text_rewards,
                                               text_totals, texts_of)
from lfp_engine.tuning.lexicon import vader_lexicon
from lfp_engine.tuning.reward import build_reward
from lfp_engine.validation.crosscoder_ablation import LatentAblation, density_matched_controls, latent_ablations
from lfp_engine.validation.paired_forward import PairedModels
from lfp_engine.worlds import PROMPTS, read_world_table

from ..models import load_model, load_tokenizer_of, model_source, run_relative
from ..outputs import ActivationsOutputs, ContrastiveOutputs, CrosscoderOutputs, ProbeOutputs
from ..stage import Stage, StageContext, StageResult
from .explain import endpoint_fingerprint

log = logging.getLogger("lfp")
TABLES = ("crosscoder_metrics", "crosscoder_training_log", "crosscoder_latents", "crosscoder_examples",
          "crosscoder_ablation", "crosscoder_probe_metrics")


def paired_sets(ctx: StageContext) -> tuple[PairedActivations, PairedActivations]:
    """The train and eval pairs; the crosscoder needs the base model's activations too."""
    if "base" not in ctx.outputs_of(ActivationsOutputs).models:
        raise StageOrderError("the crosscoder reads both models: set activations.models=[tuned, base] and run "
                              f"`lfp run --out {ctx.paths.root} --force activations`")
    return tuple(PairedActivations(ctx.paths.activations_of("base") / name, ctx.paths.activations_of("tuned") / name)
                 for name in ("train", "eval"))


def save_all(ctx: StageContext, crosscoders: list[Crosscoder], train: PairedActivations) -> None:
    s = ctx.config.crosscoder
    with atomic_path(ctx.paths.crosscoders) as folder:
        for crosscoder in crosscoders:
            save_crosscoder(crosscoder, crosscoder_folder(folder, crosscoder.layer, crosscoder.module.d_sae),
                            model_name=run_relative(ctx, model_source(ctx, "tuned")),
                            hook_name=train.hook_name(crosscoder.layer),
                            metadata={"base_model_name": run_relative(ctx, model_source(ctx, "base")),
                                      "n_train_examples": s.n_train_examples, "learning_rate": s.learning_rate,
                                      "batch_size": s.batch_size, "seed": ctx.seed})


def metrics_table(ctx: StageContext, crosscoders: list[Crosscoder], evaluation: PairedActivations, models: dict,
                  seconds: float) -> pd.DataFrame:
    s = ctx.config.crosscoder
    parts = [crosscoder_reconstruction(c, evaluation, ctx.config.sae.dense_threshold).assign(
        layer=c.layer, dict_size=c.module.d_sae, scale=list(c.scales), score_threshold=c.score_threshold)
        for c in crosscoders]
    spliced = crosscoder_spliced_losses(models, load_tokenizer_of(ctx).pad_token_id, evaluation, crosscoders,
                                        ctx.config.sae.eval_batch_size)
    table = pd.concat(parts, ignore_index=True).merge(spliced, on=["layer", "model"])
    table = table.assign(architecture=s.architecture, k=s.k if s.architecture == "batchtopk" else None,
                         n_train_examples=s.n_train_examples, train_seconds=seconds,
                         crosscoder_path=[str(crosscoder_folder(ctx.paths.crosscoders, r.layer, r.dict_size)
                                              .relative_to(ctx.paths.root)) for r in table.itertuples()])
    first = ["layer", "dict_size", "model", "architecture", "k"]
    return table[first + [c for c in table.columns if c not in first]]


def tagged_latents(ctx: StageContext, crosscoders: list[Crosscoder], train: PairedActivations,
                   evaluation: PairedActivations) -> tuple[pd.DataFrame, dict[int, FeatureStatistics]]:
    """Every latent's row (geometry, tag, Latent Scaling, statistics) and each layer's statistics."""
    stats = {c.layer: latent_statistics(c, train, ctx.config.features, ctx.seed, ctx.device) for c in crosscoders}
    tables = [latent_table(c, stats[c.layer], evaluation, ctx.config.crosscoder, ctx.device) for c in crosscoders]
    return pd.concat(tables, ignore_index=True), stats


def examples_of(ctx: StageContext, crosscoders: list[Crosscoder], stats: dict[int, FeatureStatistics],
                latents: pd.DataFrame, train: PairedActivations, vocab: list[str]) -> pd.DataFrame:
    """Examples of the tuned-only and base-only latents and of the top ones by reward."""
    wanted = latents["tag"].isin(READ_TAGS) | latents["top_rank"].notna()
    return pd.concat([latent_examples(c, stats[c.layer], latents.loc[wanted & (latents["layer"] == c.layer), "feature"]
                                      .to_numpy(), train, ctx.config.features, vocab.__getitem__)
                      for c in crosscoders], ignore_index=True)


def reward_links(ctx: StageContext, crosscoders: list[Crosscoder], evaluation: PairedActivations, reward, models: dict,
                 tokenizer) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-latent reward correlation and probe weight, the probe's metrics)."""
    parts = []
    if reward is not None:
        texts = texts_of(evaluation, tokenizer.decode)
        for crosscoder in crosscoders:
            text_ids, totals = text_totals(crosscoder, evaluation)
            parts.append(reward_correlations(totals, text_rewards(text_ids, texts, reward),
                                             text_lengths(text_ids, evaluation)).assign(layer=crosscoder.layer))
    links = (pd.concat(parts, ignore_index=True) if parts else
             pd.DataFrame(columns=["layer", *REWARD_COLUMNS]).astype({"layer": "int64", "feature": "int64"}))
    kind = ctx.outputs_of(ContrastiveOutputs).kind
    triples = sample_triples(ctx.store.read("triples", order_by="triple_id"), ctx.config.crosscoder.max_probe_triples,
                             np.random.default_rng(derive_seed(ctx.seed, "probe triples")))
    max_tokens = ctx.outputs_of(ActivationsOutputs).max_tokens_per_text
    encoder = CrosscoderEncoder(models["tuned"], models["base"], tokenizer, {c.layer: c for c in crosscoders},
                                evaluation.info.bos_token_id, max_tokens, ctx.config.probe.batch_size)
    probe = fit_crosscoder_probe(encoder, tokenized_elements(triples, kind, tokenizer, max_tokens), triples, kind,
                                 ctx.config.probe.cv_folds, ctx.config.probe.n_bootstrap, ctx.seed)
    return links.merge(probe.weights, on=["layer", "feature"], how="outer"), probe.metrics


def explanations(ctx: StageContext, crosscoders: list[Crosscoder], latents: pd.DataFrame, examples: pd.DataFrame,
                 evaluation: PairedActivations, vocab: list[str]) -> pd.DataFrame:
    """explanation, explanation_source, relevance of the tuned-only latents and the top ones (the top
    ones only with an LLM), by the explain stage's explainer."""
    c, e = ctx.config, ctx.config.explain
    endpoint = endpoint_from_settings(c.llm)
    chosen = latents[(latents["tag"] == "tuned-only") | latents["top_rank"].notna()]
    if endpoint is not None:
        chosen = chosen[chosen["top_rank"].notna()]
    rng = np.random.default_rng(derive_seed(ctx.seed, "crosscoder explanations"))
    grouped = {(("crosscoder",) + tuple(k)): g for k, g in examples.groupby(["layer", "dict_size", "feature"])}
    evidence = []
    for crosscoder in crosscoders:
        rows = chosen[chosen["layer"] == crosscoder.layer]
        if not rows.empty:
            evidence += dictionary_evidence("crosscoder", crosscoder.layer, crosscoder.module, evaluation, rows,
                                            grouped, vocab, c.features.context_before + c.features.context_after + 1,
                                            e.n_windows, e.n_quiet, e.shown_fraction, rng, ctx.device)
    spec = task_spec(c.task)
    if endpoint is None:
        records = explain_offline(evidence, vader_lexicon(), available_word_classes(c.world.kind == "synthetic"),
                                  spec.reward in ("vader", "classifier"), e.relevance_min_r, e.relevance_max_p, rng)
    else:
        records = explain_with_llm(evidence, endpoint, ResponseCache(ctx.store), e.task_description or spec.description,
                                   Usage(), rng)
    frame = records_frame(records)
    return frame[["layer", "feature", "explanation", "source", "relevance"]].rename(
        columns={"source": "explanation_source"})


def ablations(ctx: StageContext, latents: pd.DataFrame, models: dict, tokenizer, crosscoders: list[Crosscoder],
              reward) -> pd.DataFrame | None:
    """The top latents (tuned-only ones first) by reward link, each switched off in the tuned model, and
    their density-matched controls."""
    s = ctx.config.crosscoder
    top = latents[latents["top_rank"] <= s.n_ablate].sort_values("top_rank")
    if reward is None or top.empty:
        log.warning("crosscoder ablation skipped: %s", "the task has no reward function" if reward is None else
                    "no latent to ablate")
        return None
    by_layer = {c.layer: c for c in crosscoders}
    chosen = [LatentAblation(by_layer[int(r.layer)].key, int(r.feature), "top") for r in top.itertuples()]
    prompts = read_world_table(ctx.paths.world, PROMPTS)
    prompts = prompts.loc[prompts["purpose"] == "eval", "prompt"].head(s.n_prompts).tolist()
    paired = PairedModels(models["base"], {c.key: c for c in crosscoders})
    return latent_ablations(models["tuned"], tokenizer, prompts, paired, chosen + density_matched_controls(latents, top),
                            reward, Sampling.of(ctx.config), ctx.seed)


def paper_links(ctx: StageContext, crosscoders: list[Crosscoder]) -> pd.DataFrame:
    """layer, feature, nearest_sae_feature, nearest_sae_cosine, nearest_sae_dict_size, nearest_sae_probe_rank: each
    latent's
closest feature in the dictionary the paper's probe reads, and that feature's rank by the probe's
    |weight|."""
    folders = probe_dictionaries(ctx.paths.saes, [c.layer for c in crosscoders])
    saes = {c.layer: load_sae(folders[c.layer]) for c in crosscoders}
    parts = [nearest_sae_features(c, saes[c.layer]).assign(layer=c.layer, nearest_sae_dict_size=saes[c.layer].d_sae)
             for c in crosscoders]
    weights = ctx.store.read("probe_weights")
    weights["nearest_sae_probe_rank"] = weights["weight"].abs().rank(ascending=False, method="min").astype(int)
    ranks = weights.rename(columns={"feature": "nearest_sae_feature"})[["layer", "nearest_sae_feature",
                                                                         "nearest_sae_probe_rank"]]
    return pd.concat(parts, ignore_index=True).merge(ranks, on=["layer", "nearest_sae_feature"], how="left")


def comparisons(ctx: StageContext, metrics: pd.DataFrame, latents: pd.DataFrame) -> tuple[dict[str, float], str]:
    """The probe on crosscoder codes beside the paper's probe on SAE codes (same test split), and the
    layers with the most tuned-only latents beside the divergence ranking of the layers."""
    test = metrics[(metrics["subset"] == "test") & metrics["metric"].isin(["kendall_tau", "accuracy"])]
    headline = {r.metric: r.value for r in test.itertuples()}
    headline |= {f"{r.metric}_p": r.p_value for r in test.itertuples()}
    sae = ctx.outputs_of(ProbeOutputs).headline
    lines = [f"probe on crosscoder codes, test {m}: {v:.3f} (p {headline[m + '_p']:.2g}); on the tuned model's SAE "
             f"codes: {sae.get('sae_' + m, float('nan')):.3f}" for m, v in headline.items() if not m.endswith("_p")]
    divergence = ctx.store.read("layer_divergence").set_index("layer")["rank"]
    per_layer = latents[latents["tag"] == "tuned-only"].groupby("layer").size()
    lines.append("tuned-only latents by layer (divergence rank): " + ", ".join(
        f"layer {layer} (rank {divergence.get(layer, '?')}): {int(per_layer.get(layer, 0))}"
        for layer in sorted(latents["layer"].unique())))
    return headline, "\n".join(lines)


def run(ctx: StageContext) -> StageResult:
    s = ctx.config.crosscoder
    train, evaluation = paired_sets(ctx)
    trained = train_crosscoders(train, s, ctx.seed, ctx.device)
    crosscoders = trained.crosscoders
    save_all(ctx, crosscoders, train)
    models, tokenizer = {m: load_model(ctx, m) for m in ("base", "tuned")}, load_tokenizer_of(ctx)
    vocab = token_strings(tokenizer)
    metrics = metrics_table(ctx, crosscoders, evaluation, models, trained.seconds)
    log.info("crosscoder: measured on both models")
    latents, stats = tagged_latents(ctx, crosscoders, train, evaluation)
    log.info("crosscoder: %d latents tagged and scaled", len(latents))
    reward = build_reward(task_spec(ctx.config.task), ctx.config.reward, ctx.device)
    links, probe_metrics = reward_links(ctx, crosscoders, evaluation, reward, models, tokenizer)
    latents = latents.merge(links, on=["layer", "feature"], how="left").merge(paper_links(ctx, crosscoders),
                                                                              on=["layer", "feature"], how="left")
    log.info("crosscoder: reward correlations and probe done")
    latents["reward_rank"] = rank_by_reward(latents)
    latents["top_rank"] = top_by_reward(latents, s.n_top)
    examples = examples_of(ctx, crosscoders, stats, latents, train, vocab)
    latents = latents.merge(explanations(ctx, crosscoders, latents, examples, evaluation, vocab),
                            on=["layer", "feature"], how="left")
    log.info("crosscoder: tuned-only latents explained")
    ablation = ablations(ctx, latents, models, tokenizer, crosscoders, reward)
    latents["sentence"] = latent_sentences(latents, ablation)
    headline, comparison = comparisons(ctx, probe_metrics, latents)
    log.info("crosscoder:\n%s", closing_note(latents, ablation, comparison, s.n_top))
    top = latents[latents["top_rank"].notna()].sort_values("top_rank")
    by_model = metrics.groupby("model")
    outputs = CrosscoderOutputs(
        folder=str(ctx.paths.crosscoders), layers=[c.layer for c in crosscoders], dict_size=crosscoders[0].module.d_sae,
        architecture=s.architecture, train_seconds=trained.seconds,
        n_by_tag={str(k): int(v) for k, v in latents["tag"].value_counts().items()},
        n_specific=int((latents["specific"] & (latents["tag"] == "tuned-only")).sum()),
        variance_explained={str(k): float(v) for k, v in by_model["variance_explained"].mean().items()},
        loss_recovered={str(k): float(v) for k, v in by_model["loss_recovered"].mean().items()},
        top_latents=[f"{r.layer}/{r.dict_size}/{r.feature}" for r in top.itertuples()], probe_headline=headline)
    tables = {"crosscoder_metrics": metrics, "crosscoder_training_log": trained.log, "crosscoder_latents": latents,
              "crosscoder_examples": examples, "crosscoder_probe_metrics": probe_metrics}
    if ablation is not None:
        tables["crosscoder_ablation"] = ablation
    stale = [] if ablation is not None else [("DROP TABLE IF EXISTS crosscoder_ablation", [])]
    return StageResult(outputs=outputs, tables=tables, statements=stale,
                       inputs={"n_train_rows": train.n_rows, "n_eval_rows": evaluation.n_rows})


STAGE = Stage(
    name="crosscoder",
    run=run,
    sections=("crosscoder", "features", "explain"),
    tables=TABLES,
    needs=("activations", "contrastive", "probe"),
    version=2,  # 2: its probe fit as the probe stage's, the neutral element at 0 and deltas scaled by least squares
    derived=lambda config: {"task": config.task, "reward": config.section("reward"),
                            "evaluation": config.section("evaluation"), "max_length": config.world.max_length,
                            "dense_threshold": config.sae.dense_threshold,
                            "eval_batch_size": config.sae.eval_batch_size, "explainer": endpoint_fingerprint(config)},
    artifacts=lambda paths, config: [paths.crosscoders],
)
