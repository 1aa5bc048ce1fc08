"""Stage `explain`: explanations, relevance labels and scores of the shared features (paper 3.4).

For both models (the base model's explanations are appendix B's comparison), explains the
shared features: with an LLM when an OpenAI-compatible endpoint is configured (the paper's
top 10 per layer and dictionary by twin similarity), else every shared feature offline. Writes
`feature_explanations`, rewrites `features` with its explanation columns filled, adds
`explanation_summary` (task-related explanations, base vs tuned) and the appendix-G quiz
questions. A run with failed LLM requests keeps what it got and is marked incomplete, so the
next `lfp run` asks again for exactly what failed (everything else comes from the cache).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from lfp_engine.sae.activations import ActivationSet
from lfp_engine.explain.annotation import ANNOTATIONS_DDL, make_questions
from lfp_engine.run.config import RunConfig
from lfp_engine.explain.prompts import Example
from lfp_engine.explain.explainer import Evidence, explain_offline, explain_with_llm, records_frame, split_evidence
from lfp_engine.tuning.lexicon import vader_lexicon
from lfp_engine.explain.llm import ResponseCache, Usage, endpoint_from_settings
from lfp_engine.sae.saelens_format import load_sae
from lfp_engine.run.tasks import task_spec

from ..models import load_tokenizer_of
from ..pipeline import Stage, StageContext, StageResult
from .features import EXPLANATION_COLUMNS, token_strings

log = logging.getLogger("lfp")

KEY = ["model", "layer", "dict_size", "feature"]


def chosen_features(features: pd.DataFrame, with_llm: bool, per_dictionary: int) -> pd.DataFrame:
    """Every shared feature offline; with an LLM, the most shared ones of each dictionary."""
    shared = features[features["is_shared"]]
    if not with_llm:
        return shared
    return shared.sort_values("shared_rank").groupby(["model", "layer", "dict_size"]).head(per_dictionary)


def quiet_windows(ctx: StageContext, model: str, layer: int, dict_size: int, vocab: list[str], width: int,
                  rng: np.random.Generator) -> tuple[list[list[str]], np.ndarray]:
    """Random held-out windows of `width` tokens and every feature's code on each of their tokens
    (windows x width x features), from which each feature's quiet examples are picked."""
    evaluation = ActivationSet(ctx.paths.activations_of(model) / "eval")
    index = evaluation.index
    bounds = index.groupby("text_id")["row"].agg(["min", "max"])
    bounds = bounds[bounds["max"] - bounds["min"] + 1 >= width]
    picked = bounds.iloc[rng.permutation(len(bounds))[: ctx.config.explain.n_windows]]
    starts = [int(rng.integers(lo, hi - width + 2)) for lo, hi in zip(picked["min"], picked["max"], strict=True)]
    rows = np.concatenate([np.arange(s, s + width) for s in starts]) if starts else np.zeros(0, np.int64)
    order = np.argsort(rows)
    sae = load_sae(ctx.paths.sae(layer, dict_size, model), ctx.device)
    codes = np.zeros((len(rows), dict_size))
    if len(rows):
        codes[order] = sae.encode(evaluation.gather(layer, rows[order]).to(ctx.device)).detach().cpu().numpy()
    token_ids = index.set_index("row").loc[rows, "token_id"].to_numpy()
    tokens = [[vocab[t] for t in token_ids[i * width:(i + 1) * width]] for i in range(len(starts))]
    return tokens, codes.reshape(len(starts), width, dict_size)


def evidence_for(ctx: StageContext, chosen: pd.DataFrame, examples: pd.DataFrame, vocab: list[str],
                 rng: np.random.Generator) -> list[Evidence]:
    e = ctx.config.explain
    width = ctx.config.features.context_before + ctx.config.features.context_after + 1
    evidence = []
    grouped = {k: g for k, g in examples.groupby(KEY)}
    for (model, layer, dict_size), group in chosen.groupby(["model", "layer", "dict_size"]):
        windows, codes = quiet_windows(ctx, model, int(layer), int(dict_size), vocab, width, rng)
        for row in group.itertuples():
            per_token = codes[:, :, row.feature]
            shuffled = rng.permutation(len(windows))  # ties (silent windows) broken at random
            picks = shuffled[np.argsort(per_token.max(axis=1)[shuffled], kind="stable")][: e.n_quiet]
            quiet = [Example(windows[i], per_token[i].tolist()) for i in picks]
            key = (model, int(layer), int(dict_size), int(row.feature))
            evidence.append(split_evidence(key, grouped.get(key, examples.iloc[:0]), quiet, e.shown_fraction,
                                           float(row.max_activation)))
    return evidence


def run(ctx: StageContext) -> StageResult:
    c = ctx.config
    e = c.explain
    spec = task_spec(c.task)
    features = ctx.store.read("features")
    examples = ctx.store.read("feature_examples")
    endpoint = endpoint_from_settings(c.llm)
    rng = np.random.default_rng(ctx.seed)
    chosen = chosen_features(features, endpoint is not None, e.max_llm_features)
    vocab = token_strings(load_tokenizer_of(ctx))
    evidence = evidence_for(ctx, chosen, examples, vocab, rng)
    usage = Usage()
    if endpoint is None:
        log.info("no LLM endpoint configured (llm.base_url / %s): explaining %d features offline",
                 c.llm.api_key_env, len(evidence))
        sentiment = spec.reward in ("vader", "classifier")
        records = explain_offline(evidence, vader_lexicon(), sentiment, e.relevance_min_r, e.relevance_max_p, rng)
    else:
        log.info("explaining %d features with %s at %s", len(evidence), endpoint.model,
                 endpoint.describe()["base_url"])
        records = explain_with_llm(evidence, endpoint, ResponseCache(ctx.store), e.task_description or spec.description,
                                   usage, rng)
    explanations = records_frame(records)

    filled = explanations.rename(columns={"source": "explanation_source"})[KEY + list(EXPLANATION_COLUMNS)]
    updated = features.drop(columns=list(EXPLANATION_COLUMNS)).merge(filled, on=KEY, how="left")
    updated = updated.astype(EXPLANATION_COLUMNS)[features.columns]
    ok = explanations[explanations["explanation"].notna()]
    summary = (ok.groupby(["model", "source"])
               .agg(n_explained=("feature", "size"), n_relevant=("relevance", lambda r: int(r.fillna(False).sum())))
               .reset_index())
    summary["share_relevant"] = summary["n_relevant"] / summary["n_explained"]
    questions = make_questions(ok[ok["model"] == "tuned"], e.n_questions, rng)

    failed = int((explanations["status"] != "ok").sum())
    if failed:
        log.warning("%d of %d features have failed requests; `lfp run` again retries them", failed, len(explanations))
    outputs = {"n_explained": len(ok), "n_failed": failed, "source": records[0].source if records else None,
               "n_relevant": {m: int(r) for m, r in zip(summary["model"], summary["n_relevant"], strict=True)},
               "n_questions": len(questions)}
    if endpoint is not None:
        outputs |= {"llm": endpoint.describe(), "llm_requests": usage.requests, "llm_cached": usage.cached,
                    "llm_failed": usage.failed, "llm_prompt_tokens": usage.prompt_tokens,
                    "llm_completion_tokens": usage.completion_tokens}
    return StageResult(
        tables={"feature_explanations": explanations, "features": updated, "explanation_summary": summary,
                "annotation_questions": questions},
        statements=[ANNOTATIONS_DDL], outputs=outputs, complete=failed == 0,
        inputs={"n_features": len(chosen)},
    )


def endpoint_fingerprint(config: RunConfig) -> dict:
    """Which explainer will answer (never the key): switching on an endpoint redoes the stage."""
    endpoint = endpoint_from_settings(config.llm)
    return {"task": task_spec(config.task).description,
            "llm": endpoint.describe() if endpoint is not None else None}


STAGE = Stage(name="explain", run=run, sections=("explain",), needs=("features",), derived=endpoint_fingerprint,
              version=2)  # 2: quiet examples are each feature's weakest windows, so dense features get scored
