"""What an explainer, a relevance judge and a scorer are asked, and how their answers are read
(paper 3.4 and 4.2; the protocol of Bills et al. 2023).

An explainer sees a feature's top-activating and quantile examples as token/activation lines,
activations discretised to 0..10 relative to the feature's maximum, and writes one sentence.
A judge labels the explanation related or not to a plain-language description of the tuning
task. Two scores say how good an explanation is, both on examples the explainer did not see:
- simulation: from the explanation alone, predict each token's activation (0..10); the score
  is the Pearson correlation of predictions and true activations over all tokens;
- detection: from the explanation alone, pick the examples where the feature fires among
  examples where it does not; the score is the balanced accuracy of the picks (`scoring.py`).
The offline explainer (`offline.py`) answers the same questions without an LLM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lfp_engine.explain.llm import Messages, parse_json_answer

@dataclass(frozen=True)
class Example:
    tokens: Sequence[str]
    activations: Sequence[float]

    @property
    def max_activation(self) -> float:
        return float(max(self.activations, default=0.0))


def discretise(activations: Sequence[float], scale: float) -> list[int]:
    """Activations as integers 0..10 relative to `scale` (the feature's maximum), as Bills et al."""
    if scale <= 0:
        return [0 for _ in activations]
    return [int(min(10, max(0, math.floor(10 * a / scale)))) for a in activations]


def _shown(token: str) -> str:
    """A token as the LLM sees it: whitespace made visible, nothing else altered."""
    return token.replace("\n", "\\n").replace("\t", "\\t")


def format_examples(examples: Sequence[Example], scale: float) -> str:
    """Bills et al.'s layout: one `token<TAB>activation` line per token between <start> and <end>."""
    blocks = []
    for example in examples:
        lines = [f"{_shown(t)}\t{a}" for t, a in zip(example.tokens, discretise(example.activations, scale), strict=True)]
        blocks.append("<start>\n" + "\n".join(lines) + "\n<end>")
    return "\n".join(blocks)


EXPLAIN_SYSTEM = (
    "We are studying features of a sparse autoencoder trained on a language model's activations. "
    "Each feature looks for some particular thing in a short text. Look at the parts of the texts the "
    "feature activates for (activations from 0 to 10; most tokens are 0) and summarise in one sentence "
    "what the feature is looking for. Do not list every example word. Answer with the sentence only."
)


def explanation_request(examples: Sequence[Example], scale: float) -> Messages:
    return [{"role": "system", "content": EXPLAIN_SYSTEM},
            {"role": "user", "content": "Feature activations:\n" + format_examples(examples, scale)
             + "\n\nExplanation of the feature's behaviour: this feature fires on"}]


def parse_explanation(answer: str | None) -> str | None:
    """One clean sentence, or None for an empty answer."""
    if not answer:
        return None
    text = " ".join(answer.strip().split())
    for lead in ("Explanation:", "this feature fires on", "This feature fires on", "The feature fires on"):
        if text.startswith(lead):
            text = text[len(lead):].strip()
    return text or None


def relevance_request(explanation: str, task_description: str) -> Messages:
    return [{"role": "system", "content": "You judge whether a feature of a language model relates to how the "
             "model was fine-tuned. Answer with one JSON object only: {\"related\": true} or {\"related\": false}."},
            {"role": "user", "content": f"The model was fine-tuned to {task_description}.\n"
             f"A feature of the model fires on: {explanation}\nIs this feature related to the fine-tuning task?"}]


def parse_relevance(answer: str | None) -> bool | None:
    data = parse_json_answer(answer)
    if data is not None and isinstance(data.get("related"), bool):
        return data["related"]
    if answer:
        word = answer.strip().strip(".").lower()
        if word in {"yes", "true"}:
            return True
        if word in {"no", "false"}:
            return False
    return None


def simulation_request(explanation: str, tokens: Sequence[str]) -> Messages:
    listing = "\n".join(f"{i}\t{_shown(t)}" for i, t in enumerate(tokens))
    return [{"role": "system", "content": "You predict how strongly a feature of a language model activates on "
             "each token of a text, from 0 (not at all) to 10 (maximally), given an explanation of the feature. "
             "Answer with one JSON object only: {\"activations\": [one integer per token, in order]}."},
            {"role": "user", "content": f"Explanation: the feature fires on {explanation}\nTokens (index, token):\n{listing}"}]


def parse_simulation(answer: str | None, n_tokens: int) -> list[float] | None:
    data = parse_json_answer(answer)
    values = data.get("activations") if data else None
    if not isinstance(values, list) or len(values) != n_tokens:
        return None
    try:
        return [float(min(10, max(0, float(v)))) for v in values]
    except (TypeError, ValueError):
        return None


def detection_request(explanation: str, texts: Sequence[str]) -> Messages:
    listing = "\n".join(f"{i}: {t}" for i, t in enumerate(texts))
    return [{"role": "system", "content": "Given an explanation of a language-model feature, pick the texts on "
             "which the feature fires. Answer with one JSON object only: {\"firing\": [indices of those texts]}."},
            {"role": "user", "content": f"Explanation: the feature fires on {explanation}\nTexts:\n{listing}"}]


def parse_detection(answer: str | None, n_texts: int) -> list[bool] | None:
    data = parse_json_answer(answer)
    picks = data.get("firing") if data else None
    if not isinstance(picks, list):
        return None
    chosen = set()
    for p in picks:
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < n_texts:
            return None
        chosen.add(p)
    return [i in chosen for i in range(n_texts)]
