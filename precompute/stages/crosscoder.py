"""Stage `crosscoder`: what tuning changed, latent by latent, tied to the reward (model diffing).

After the paper, which studies each model through its own SAEs: one crosscoder per chosen layer over
the base and tuned models' activations of the same tokens, its latents tagged tuned-only / base-only /
shared / changed and checked by Latent Scaling, measured model by model, and tied to the reward three
ways (correlation with the reward of held-out texts, weight in the paper's probe fit on crosscoder
codes, the reward when switched off in the tuned model beside a density-matched control); the
tuned-only latents explained and described in one sentence each. The science is `lfp_engine.diffing`.
"""

from __future__ import annotations

import dataclasses
import logging

from lfp_engine.diffing.ablation import ablate_top_latents
from lfp_engine.diffing.crosscoder import Crosscoder, crosscoder_folder, save_crosscoder, train_crosscoders
from lfp_engine.diffing.explanations import explain_latents
from lfp_engine.diffing.inputs import DiffingInputs
from lfp_engine.diffing.metrics import metrics_table
from lfp_engine.diffing.paired_activations import MODELS, PairedActivations
from lfp_engine.diffing.probe import probe_on_codes
from lfp_engine.diffing.report import closing_note, comparisons, latent_sentences, summarize
from lfp_engine.diffing.reward_correlation import reward_links
from lfp_engine.diffing.tables import examples_to_read, linked_latents, paper_links, tagged_latents
from lfp_engine.explain.llm import endpoint_from_settings
from lfp_engine.explain.word_classes import available_word_classes
from lfp_engine.models.generation import Sampling
from lfp_engine.models.hub import token_strings
from lfp_engine.probe.reader import probe_dictionaries
from lfp_engine.run.atomic import atomic_path
from lfp_engine.run.errors import StageOrderError
from lfp_engine.run.tasks import task_spec
from lfp_engine.sae.saelens_format import load_sae
from lfp_engine.tuning.reward import build_reward
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


def run(ctx: StageContext) -> StageResult:
    config, s = ctx.config, ctx.config.crosscoder
    train, evaluation = paired_sets(ctx)
    trained = train_crosscoders(train, s, ctx.seed, ctx.device)
    crosscoders, layers = trained.crosscoders, [c.layer for c in trained.crosscoders]
    save_all(ctx, crosscoders, train)
    tokenizer = load_tokenizer_of(ctx)
    inputs = DiffingInputs(crosscoders, train, evaluation, {m: load_model(ctx, m) for m in MODELS}, tokenizer,
                           token_strings(tokenizer), s, config.features, ctx.seed, ctx.device)
    metrics = metrics_table(inputs, config.sae.dense_threshold, config.sae.eval_batch_size, trained.seconds,
                            ctx.paths.crosscoders.relative_to(ctx.paths.root), ctx.store.read("sae_metrics"))
    log.info("crosscoder: measured on both models")
    latents, stats = tagged_latents(inputs)
    log.info("crosscoder: %d latents tagged and scaled", len(latents))
    reward = build_reward(task_spec(config.task), config.reward, ctx.device)
    correlations = reward_links(inputs, reward)
    probe = probe_on_codes(inputs, ctx.store.read("triples", order_by="triple_id"),
                           ctx.outputs_of(ContrastiveOutputs).kind,
                           ctx.outputs_of(ActivationsOutputs).max_tokens_per_text, config.probe)
    saes = {layer: load_sae(folder) for layer, folder in probe_dictionaries(ctx.paths.saes, layers).items()}
    latents = linked_latents(latents, correlations, probe.weights,
                             paper_links(crosscoders, saes, ctx.store.read("probe_weights")), s.n_top)
    log.info("crosscoder: reward correlations and probe done")
    examples = examples_to_read(inputs, stats, latents)
    latents = explain_latents(inputs, latents, examples, config.explain, task_spec(config.task),
                              endpoint_from_settings(config.llm), ctx.store,
                              available_word_classes(config.world.kind == "synthetic"))
    log.info("crosscoder: tuned-only latents explained")
    prompts = read_world_table(ctx.paths.world, PROMPTS)
    prompts = prompts.loc[prompts["purpose"] == "eval", "prompt"].head(s.n_prompts).tolist()
    ablation = ablate_top_latents(inputs, latents, prompts, reward, Sampling.of(config))
    latents["sentence"] = latent_sentences(latents, ablation)
    headline, comparison = comparisons(probe.metrics, ctx.outputs_of(ProbeOutputs).headline,
                                       ctx.store.read("layer_divergence").set_index("layer")["rank"], latents)
    log.info("crosscoder:\n%s", closing_note(latents, ablation, comparison, s.n_top))
    outputs = CrosscoderOutputs(folder=str(ctx.paths.crosscoders), layers=layers, dict_size=crosscoders[0].module.d_sae,
                                architecture=s.architecture, train_seconds=trained.seconds, probe_headline=headline,
                                **dataclasses.asdict(summarize(latents, metrics)))
    tables = {"crosscoder_metrics": metrics, "crosscoder_training_log": trained.log, "crosscoder_latents": latents,
              "crosscoder_examples": examples, "crosscoder_probe_metrics": probe.metrics}
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
    # 2: its probe fit as the probe stage's, the neutral element at 0 and deltas scaled by least squares;
    # 3: crosscoder_metrics.loss_increase(_se) beside loss_recovered, NULL where the increase is within the noise
    version=3,
    derived=lambda config: {"task": config.task, "reward": config.section("reward"),
                            "evaluation": config.section("evaluation"), "max_length": config.world.max_length,
                            "dense_threshold": config.sae.dense_threshold,
                            "eval_batch_size": config.sae.eval_batch_size, "explainer": endpoint_fingerprint(config)},
    artifacts=lambda paths, config: [paths.crosscoders],
)
