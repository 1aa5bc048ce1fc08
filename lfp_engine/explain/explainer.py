"""Explaining many features at once, with an LLM or offline (paper 3.4, 4.2; protocol in `explain.py`).

Each feature comes with its evidence: the examples the explainer sees (most of its top
examples and half its quantile examples), held-out firing examples, and windows of text where
it does not fire at all. Explanations are judged for relevance to the tuning task and scored on
the held-out evidence only, so a score measures how well an explanation *predicts*, not how well
it restates what it was shown.

The LLM path sends every request of a kind at once through `llm.complete_many` (bounded
concurrency, cached, retried); a feature whose explanation request fails is recorded as failed,
and any score whose requests failed stays empty and is asked again on the next run. The offline
path needs no endpoint: top-token explanations, lexicon-correlation relevance, keyword-judge
detection, and no simulation score (simulating activations from text needs a language model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from lfp_engine.explain.prompts import (OFFLINE_SOURCE, Example, balanced_accuracy, detection_request, detection_score,
                      detection_task, explanation_request, keyword_judge, lexicon_correlation, offline_explanation, offline_relevance, parse_detection,
                      parse_explanation, parse_relevance, parse_simulation, relevance_request, simulation_request,
                      simulation_score, top_tokens)
from lfp_engine.explain.llm import Endpoint, ResponseCache, Usage, complete_many

Key = tuple[str, int, int, int]
"""(model, layer, dict_size, feature)."""


@dataclass
class Evidence:
    key: Key
    shown: list[Example]
    held_out: list[Example]
    quiet: list[Example]
    scale: float
    """The feature's maximum activation: 10 on the discretised scale."""


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


def split_evidence(key: Key, examples: pd.DataFrame, quiet: Sequence[Example], shown_fraction: float,
                   max_activation: float) -> Evidence:
    """Top examples: the first `shown_fraction` shown, the rest held out; quantile examples alternate.
    Held-out examples count as firing only above the strongest quiet example, so that the
    detection task's two sides never overlap."""
    def as_examples(frame: pd.DataFrame) -> list[Example]:
        return [Example(list(t), [float(a) for a in acts]) for t, acts in zip(frame["tokens"], frame["activations"],
                                                                             strict=True)]

    top = examples[examples["kind"] == "top"].sort_values("rank")
    quantile = examples[examples["kind"] == "quantile"].sort_values(["quantile", "rank"])
    n_shown = max(1, int(round(shown_fraction * len(top)))) if len(top) else 0
    shown = as_examples(top.iloc[:n_shown]) + as_examples(quantile.iloc[::2])
    held = as_examples(top.iloc[n_shown:]) + as_examples(quantile.iloc[1::2])
    bound = max((e.max_activation for e in quiet), default=0.0)
    return Evidence(key=key, shown=shown, held_out=[e for e in held if e.max_activation > bound], quiet=list(quiet),
                    scale=max_activation)


def _text(example: Example) -> str:
    return "".join(example.tokens).strip()


def _record(ev: Evidence, source: str) -> ExplanationRecord:
    model, layer, dict_size, feature = ev.key
    return ExplanationRecord(model=model, layer=layer, dict_size=dict_size, feature=feature, source=source)


def explain_offline(evidence: Sequence[Evidence], lexicon: Mapping[str, float], sentiment_task: bool,
                    min_abs_r: float, max_p: float, rng: np.random.Generator) -> list[ExplanationRecord]:
    records = []
    for ev in evidence:
        r = _record(ev, OFFLINE_SOURCE)
        r.explanation = offline_explanation(ev.shown, lexicon)
        if sentiment_task:
            corr = lexicon_correlation(ev.shown + ev.held_out, lexicon)
            r.relevance = offline_relevance(corr, min_abs_r, max_p)
            r.relevance_detail = f"activation vs lexicon value: r = {corr.r:+.2f}, p = {corr.p_value:.2g}, {corr.n_tokens} tokens"
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
