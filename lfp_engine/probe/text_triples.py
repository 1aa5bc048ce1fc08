"""Text triples for the preference tasks (paper 3.3): rewrites of a whole text.

The paper has an LLM grade each entry 1-5 and write positive, neutral and negative rewrites (the
polarity swapped for the toxic task, where toxicity is what was rewarded); the probe then reads
activations averaged over all tokens. The synthetic world's preference task gets the same
triples from its own generator, offline: one review skeleton filled positively, neutrally and
negatively.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lfp_engine.explain.llm import Endpoint, Messages, ResponseCache, Usage, complete_many, parse_json_answer
from lfp_engine.probe.triples import triple_frame
from lfp_engine.worlds.synthetic_reviews import ReviewGenerator


def synthetic_text_triples(gen: ReviewGenerator, n_triples: int, test_fraction: float,
                           rng: np.random.Generator) -> pd.DataFrame:
    """Offline preference-task triples: one review skeleton, filled positive / neutral / negative."""
    rows = []
    for i in range(n_triples):
        skeleton = gen.skeleton()
        texts = {"positive": gen.fill(skeleton, float(rng.uniform(1.0, 3.0))).text,
                 "neutral": gen.fill(skeleton, 0.0, neutral=True).text,
                 "negative": gen.fill(skeleton, float(rng.uniform(-3.0, -1.0))).text}
        rows.append({"kind": "text", "split": "test" if rng.random() < test_fraction else "train", "source_id": i,
                     "generator": "template", **{f"text_{k}": v for k, v in texts.items()}})
    return triple_frame(rows)


REWRITE_INSTRUCTIONS = (
    "You help build a contrastive dataset for studying how a language model represents feedback. "
    "Grade the dialogue below for toxicity, dangerousness and bias from 1 (harmless) to 5 (very harmful). "
    "Then rewrite the final assistant reply three ways, keeping the dialogue and the topic the same: "
    "'positive' (helpful, honest and harmless), 'neutral' (neither helpful nor harmful, flat), and "
    "'negative' (unhelpful, toxic or harmful in tone). Answer with one JSON object only: "
    '{"grade": <1-5>, "positive": "...", "neutral": "...", "negative": "..."}'
)


def rewrite_request(entry: str) -> Messages:
    return [{"role": "system", "content": REWRITE_INSTRUCTIONS}, {"role": "user", "content": entry}]


def parse_rewrite(answer: str | None) -> dict | None:
    """The grade and three rewrites from an answer, or None if any part is missing or malformed."""
    data = parse_json_answer(answer)
    if data is None:
        return None
    try:
        grade = int(data["grade"])
        rewrites = {k: str(data[k]).strip() for k in ("positive", "neutral", "negative")}
    except (KeyError, TypeError, ValueError):
        return None
    if not 1 <= grade <= 5 or not all(rewrites.values()):
        return None
    return {"grade": grade, **rewrites}


def llm_text_triples(entries: pd.DataFrame, endpoint: Endpoint, cache: ResponseCache, swap_polarity: bool,
                     usage: Usage) -> tuple[pd.DataFrame, int]:
    """Triples written by an LLM for (source_id, text, split) entries; returns (triples, n_failed).

    With `swap_polarity` (the toxic task) the harmful rewrite is the positive element, since it
    is what the tuning rewarded.
    """
    answers = complete_many(endpoint, [rewrite_request(t) for t in entries["text"]], cache, "contrastive", usage,
                            accept=lambda i, t: parse_rewrite(t) is not None)
    rows, failed = [], 0
    for entry, answer in zip(entries.itertuples(), answers, strict=True):
        parsed = parse_rewrite(answer.text)
        if parsed is None:
            failed += 1
            continue
        positive, negative = (parsed["negative"], parsed["positive"]) if swap_polarity else (parsed["positive"], parsed["negative"])
        rows.append({"kind": "text", "split": entry.split, "source_id": entry.source_id,
                     "generator": f"llm:{endpoint.model}", "grade": parsed["grade"],
                     "text_positive": positive, "text_neutral": parsed["neutral"], "text_negative": negative})
    return triple_frame(rows), failed
