"""Stage `explain`: explanations, relevance labels and scores of the shared features (paper 3.4).

For both models (the base model's explanations are appendix B's comparison), explains the
shared features (`lfp_engine.explain.evidence.chosen_features`): with an LLM when an
OpenAI-compatible endpoint is configured, else every shared feature offline. Writes
`feature_explanations`, rewrites `features` with its explanation columns filled, adds
`explanation_summary` and the appendix-G quiz questions. A run with failed LLM requests keeps
what it got and is marked incomplete, so the next `lfp run` asks again for exactly what failed
(everything else comes from the cache).
"""

from __future__ import annotations

import logging

import numpy as np

from lfp_engine.explain.annotation import ANNOTATIONS_DDL, make_questions
from lfp_engine.explain.evidence import chosen_features, feature_evidence
from lfp_engine.explain.explainer import (explain_offline, explain_with_llm, explanation_summary, records_frame,
                                          with_explanations)
from lfp_engine.explain.llm import ResponseCache, Usage, endpoint_from_settings
from lfp_engine.explain.word_classes import available_word_classes, class_sources, installed_pipeline
from lfp_engine.models.hub import token_strings
from lfp_engine.run.config import RunConfig
from lfp_engine.run.tasks import task_spec
from lfp_engine.tuning.lexicon import vader_lexicon

from ..models import load_tokenizer_of
from ..outputs import ExplainOutputs, LlmUse
from ..stage import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def run(ctx: StageContext) -> StageResult:
    c, e = ctx.config, ctx.config.explain
    spec = task_spec(c.task)
    features = ctx.store.read("features")
    endpoint = endpoint_from_settings(c.llm)
    rng = np.random.default_rng(ctx.seed)
    chosen = chosen_features(features, endpoint is not None, e.max_llm_features)
    width = c.features.context_before + c.features.context_after + 1
    evidence = feature_evidence(ctx.paths, chosen, ctx.store.read("feature_examples"),
                                token_strings(load_tokenizer_of(ctx)), width, e.n_windows, e.n_quiet,
                                e.shown_fraction, rng, ctx.device)
    usage = Usage()
    if endpoint is None:
        classes = available_word_classes(c.world.kind == "synthetic")
        log.info("no LLM endpoint configured (llm.base_url / %s): explaining %d features offline (word classes: "
                 "%s)", c.llm.api_key_env, len(evidence), classes.sources)
        records = explain_offline(evidence, vader_lexicon(), classes, spec.reward in ("vader", "classifier"),
                                  e.relevance_min_r, e.relevance_max_p, rng)
    else:
        log.info("explaining %d features with %s at %s", len(evidence), endpoint.model,
                 endpoint.describe()["base_url"])
        records = explain_with_llm(evidence, endpoint, ResponseCache(ctx.store), e.task_description or spec.description,
                                   usage, rng)
    explanations = records_frame(records)
    summary = explanation_summary(explanations)
    ok = explanations[explanations["explanation"].notna()]
    questions = make_questions(ok[ok["model"] == "tuned"], e.n_questions, rng)
    failed = int((explanations["status"] != "ok").sum())
    if failed:
        log.warning("%d of %d features have failed requests; `lfp run` again retries them", failed, len(explanations))
    outputs = ExplainOutputs(
        n_explained=len(ok), n_failed=failed, source=records[0].source if records else None,
        n_relevant={m: int(r) for m, r in zip(summary["model"], summary["n_relevant"], strict=True)},
        n_questions=len(questions), llm=LlmUse(endpoint.describe(), usage) if endpoint is not None else None)
    return StageResult(
        outputs=outputs,
        tables={"feature_explanations": explanations, "features": with_explanations(features, explanations),
                "explanation_summary": summary, "annotation_questions": questions},
        statements=[ANNOTATIONS_DDL], complete=failed == 0, inputs={"n_features": len(chosen)},
    )


def endpoint_fingerprint(config: RunConfig) -> dict:
    """Which explainer will answer (never the key): switching on an endpoint redoes the stage, and
    so does installing a trained spaCy pipeline the offline explainer would use."""
    endpoint = endpoint_from_settings(config.llm)
    return {"task": task_spec(config.task).description,
            "llm": endpoint.describe() if endpoint is not None else None,
            "word_classes": None if endpoint is not None else class_sources(config.world.kind == "synthetic",
                                                                              installed_pipeline())}


STAGE = Stage(name="explain", run=run, sections=("explain",),
              tables=("feature_explanations", "features", "explanation_summary", "annotation_questions",
                      "annotations", "explanation_cache"),
              needs=("features",), derived=endpoint_fingerprint,
              version=3)  # 3: offline explanations are phrases (word class, polarity, context) beside the tokens
