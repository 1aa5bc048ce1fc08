"""Explaining many features at once, with an LLM or offline (paper 3.4, 4.2; protocol in `prompts.py`).

Each feature comes with its evidence: the examples the explainer sees (most of its top
examples and half its quantile examples), held-out firing examples, and windows of text where
it does not fire at all. Explanations are judged for relevance to the tuning task and scored on
the held-out evidence only, so a score measures how well an explanation *predicts*, not how well
it restates what it was shown.

The LLM path sends every request of a kind at once through `llm.complete_many` (bounded
concurrency, cached, retried); a feature whose explanation request fails is recorded as failed,
and any score whose requests failed stays empty and is asked again on the next run. The offline
path needs no endpoint: a phrase from the feature's statistics with its top tokens (`offline.py`),
lexicon-correlation relevance, keyword-judge detection, and no simulation score (simulating
activations from text needs a language model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from lfp_engine.explain.llm import Endpoint, ResponseCache, Usage, complete_many
from lfp_engine.explain.offline import (OFFLINE_RELEVANCE, OFFLINE_SOURCE, keyword_judge, lexicon_correlation,
                                        offline_explanation, offline_relevance, top_tokens)
from lfp_engine.explain.prompts import (Example, detection_request, explanation_request, parse_detection,
                                        parse_explanation, parse_relevance, parse_simulation, relevance_request,
                                        simulation_request)
from lfp_engine.explain.scoring import balanced_accuracy, detection_score, detection_task, simulation_score
from lfp_engine.explain.evidence import Evidence
from lfp_engine.explain.word_classes import WordClasses
from lfp_engine.sae.feature_tables import EXPLANATION_COLUMNS
from lfp_engine.sae.keys import KEY_COLUMNS


@dataclass
class ExplanationRecord:
    model: str
    layer: int
    dict_size: int
    feature: int
    source: str
    explanation: str | None = None
    relevance: bool | None = None
    relevance_detail: str | None = None
    simulation_score: float | None = None
    detection_score: float | None = None
    status: str = "ok"
    error: str | None = None
    failures: list[str] = field(default_factory=list)
    """Requests that failed (explanation, relevance, simulation, detection): retried next run."""


def _text(example: Example) -> str:
    return "".join(example.tokens).strip()


def _record(ev: Evidence, source: str) -> ExplanationRecord:
    model, layer, dict_size, feature = ev.key
    return ExplanationRecord(model=model, layer=layer, dict_size=dict_size, feature=feature, source=source)


def explain_offline(evidence: Sequence[Evidence], lexicon: Mapping[str, float], classes: WordClasses,
                    sentiment_task: bool, min_abs_r: float, max_p: float,
                    rng: np.random.Generator) -> list[ExplanationRecord]:
    """Offline records; `lexicon` gives polarities and relevance only for a sentiment task (the
    tasks whose reward is a lexicon's or a sentiment classifier's)."""
    records = []
    for ev in evidence:
        r = _record(ev, OFFLINE_SOURCE)
        r.explanation = offline_explanation(ev.shown, lexicon if sentiment_task else {}, classes)
        if sentiment_task:
            corr = lexicon_correlation(ev.shown + ev.held_out, lexicon)
            r.relevance = offline_relevance(corr, min_abs_r, max_p)
            r.relevance_detail = (f"{OFFLINE_RELEVANCE}: r = {corr.r:+.2f}, p = {corr.p_value:.2g}, "
                                  f"{corr.n_tokens} tokens")
        else:
            r.relevance_detail = "relevance to this task needs an LLM judge (set llm.base_url or the API key)"
        words = top_tokens(ev.shown)
        if ev.held_out and ev.quiet and words:
            r.detection_score = detection_score(keyword_judge(words), r.explanation, [_text(e) for e in ev.held_out],
                                                [_text(e) for e in ev.quiet], rng)
        records.append(r)
    return records


def explain_with_llm(evidence: Sequence[Evidence], endpoint: Endpoint, cache: ResponseCache, task_description: str,
                     usage: Usage, rng: np.random.Generator) -> list[ExplanationRecord]:
    source = f"llm:{endpoint.model}"
    records = [_record(ev, source) for ev in evidence]
    answers = complete_many(endpoint, [explanation_request(ev.shown, ev.scale) for ev in evidence], cache,
                            "explain", usage, accept=lambda i, t: parse_explanation(t) is not None)
    ok = []
    for r, ev, a in zip(records, evidence, answers, strict=True):
        r.explanation = parse_explanation(a.text)
        if r.explanation is None:
            r.status = "failed"
            r.error = a.error
            r.failures.append("explanation")
        else:
            ok.append((r, ev))

    relevance = complete_many(endpoint, [relevance_request(r.explanation, task_description) for r, _ in ok], cache,
                              "relevance", usage, accept=lambda i, t: parse_relevance(t) is not None)
    for (r, _), a in zip(ok, relevance, strict=True):
        r.relevance = parse_relevance(a.text)
        r.relevance_detail = (a.text or "").strip()[:200] or None
        if r.relevance is None:
            r.failures.append("relevance")

    sims = [(r, ex) for r, ev in ok for ex in ev.held_out + ev.quiet[:1]]
    sim_answers = complete_many(endpoint, [simulation_request(r.explanation, ex.tokens) for r, ex in sims], cache,
                                "simulate", usage,
                                accept=lambda i, t: parse_simulation(t, len(sims[i][1].tokens)) is not None)
    predicted: dict[int, list[tuple[list[float], Sequence[float]]]] = {}
    broken: set[int] = set()
    for (r, ex), a in zip(sims, sim_answers, strict=True):
        values = parse_simulation(a.text, len(ex.tokens))
        if values is None:
            broken.add(id(r))
        else:
            predicted.setdefault(id(r), []).append((values, ex.activations))
    for r, ev in ok:
        if id(r) in broken or id(r) not in predicted:
            if ev.held_out:
                r.failures.append("simulation")
            continue
        pairs = predicted[id(r)]
        r.simulation_score = simulation_score([p for p, _ in pairs], [t for _, t in pairs])

    detectable = [(r, ev) for r, ev in ok if ev.held_out and ev.quiet]
    tasks = [detection_task([_text(e) for e in ev.held_out], [_text(e) for e in ev.quiet], rng) for _, ev in detectable]
    picks = complete_many(endpoint, [detection_request(r.explanation, texts)
                                     for (r, _), (texts, _) in zip(detectable, tasks, strict=True)],
                          cache, "detect", usage, accept=lambda i, t: parse_detection(t, len(tasks[i][0])) is not None)
    for (r, _), (texts, truth), a in zip(detectable, tasks, picks, strict=True):
        chosen = parse_detection(a.text, len(texts))
        if chosen is None:
            r.failures.append("detection")
        else:
            r.detection_score = balanced_accuracy(chosen, truth)
    for r in records:
        if r.failures and r.status == "ok":
            r.status = "partial"
            r.error = "requests to retry: " + ", ".join(r.failures)
    return records


def records_frame(records: Sequence[ExplanationRecord]) -> pd.DataFrame:
    rows = [{k: v for k, v in asdict(r).items() if k != "failures"} for r in records]
    frame = pd.DataFrame(rows, columns=[f for f in ExplanationRecord.__dataclass_fields__ if f != "failures"])
    return frame.astype({"relevance": "boolean", "simulation_score": "Float64", "detection_score": "Float64"})


def explanation_summary(explanations: pd.DataFrame) -> pd.DataFrame:
    """Per model and explainer: features explained and how many are related to the task (appendix B
    compares the tuned model's share with the base model's)."""
    ok = explanations[explanations["explanation"].notna()]
    summary = (ok.groupby(["model", "source"])
               .agg(n_explained=("feature", "size"), n_relevant=("relevance", lambda r: int(r.fillna(False).sum())))
               .reset_index())
    summary["share_relevant"] = summary["n_relevant"] / summary["n_explained"]
    return summary


def with_explanations(features: pd.DataFrame, explanations: pd.DataFrame) -> pd.DataFrame:
    """The `features` table with its explanation columns filled from `feature_explanations` rows
    (features not explained keep them empty)."""
    filled = explanations.rename(columns={"source": "explanation_source"})[KEY_COLUMNS + list(EXPLANATION_COLUMNS)]
    updated = features.drop(columns=list(EXPLANATION_COLUMNS)).merge(filled, on=KEY_COLUMNS, how="left")
    return updated.astype(EXPLANATION_COLUMNS)[features.columns]
