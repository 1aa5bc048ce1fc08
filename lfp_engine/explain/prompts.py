"""Explaining SAE features, judging their relevance to the tuning task, and scoring explanations
(paper 3.4 and 4.2; the protocol of Bills et al. 2023).

An explainer sees a feature's top-activating and quantile examples as token/activation lines,
activations discretised to 0..10 relative to the feature's maximum, and writes one sentence.
A judge labels the explanation related or not to a plain-language description of the tuning
task. Two scores say how good an explanation is, both on examples the explainer did not see:
- simulation: from the explanation alone, predict each token's activation (0..10); the score
  is the Pearson correlation of predictions and true activations over all tokens;
- detection: from the explanation alone, pick the examples where the feature fires among
  examples where it does not; the score is the balanced accuracy of the picks.

Two explainers produce the same records. The LLM explainer asks an OpenAI-compatible endpoint
(through `lfp_engine.explain.llm`). The offline explainer, for runs without an endpoint, reads the
feature's top tokens off its examples, judges relevance by the correlation between the
feature's activation and the lexicon value of the token it fires on, and is scored by a
keyword judge through the same detection scorer. Records carry their source ('llm:<model>' or
'offline'), so nothing offline is ever shown as an LLM's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from lfp_engine.explain.llm import Messages, parse_json_answer

OFFLINE_SOURCE = "offline"


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


# ---------------------------------------------------------------------------------------
# Scores


def simulation_score(predicted: Sequence[Sequence[float]], true: Sequence[Sequence[float]]) -> float:
    """Pearson correlation over all tokens of all examples. A constant prediction (or constant
    truth) has no correlation; it scores 0, the score of an explanation that predicts nothing."""
    p = np.concatenate([np.asarray(x, dtype=np.float64) for x in predicted])
    t = np.concatenate([np.asarray(x, dtype=np.float64) for x in true])
    if len(p) != len(t):
        raise ValueError("predictions and truths differ in length")
    if len(p) < 2 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return 0.0
    return float(np.corrcoef(p, t)[0, 1])


def balanced_accuracy(picked: Sequence[bool], firing: Sequence[bool]) -> float:
    picked, firing = np.asarray(picked, bool), np.asarray(firing, bool)
    if firing.all() or not firing.any():
        raise ValueError("detection needs both firing and non-firing examples")
    return float(0.5 * (picked[firing].mean() + (~picked[~firing]).mean()))


Judge = Callable[[str, Sequence[str]], list[bool] | None]


def detection_task(firing: Sequence[str], quiet: Sequence[str], rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """Firing and non-firing texts shuffled together, with the truth (fires?) of each."""
    texts = list(firing) + list(quiet)
    truth = np.array([True] * len(firing) + [False] * len(quiet))
    order = rng.permutation(len(texts))
    return [texts[i] for i in order], truth[order]


def detection_score(judge: Judge, explanation: str, firing: Sequence[str], quiet: Sequence[str],
                    rng: np.random.Generator) -> float | None:
    """Let the judge pick the firing texts from a shuffled mix; balanced accuracy of its picks.
    None when the judge gave no usable answer."""
    texts, truth = detection_task(firing, quiet, rng)
    picks = judge(explanation, texts)
    return None if picks is None else balanced_accuracy(picks, truth)


# ---------------------------------------------------------------------------------------
# The offline explainer


def _word(token: str) -> str:
    return token.strip().lower()


def top_tokens(examples: Sequence[Example], k: int = 5) -> list[str]:
    """The tokens the feature fires on most, weighted by activation at each example's peak."""
    weight: Counter[str] = Counter()
    for e in examples:
        if e.max_activation > 0:
            peak = int(np.argmax(e.activations))
            word = _word(e.tokens[peak])
            if word:
                weight[word] += e.max_activation
    return [w for w, _ in weight.most_common(k)]


def offline_explanation(examples: Sequence[Example], lexicon: Mapping[str, float], k: int = 5) -> str:
    """'fires on «great», «superb», ...' plus what the lexicon says of those words."""
    words = top_tokens(examples, k)
    if not words:
        return "never fires on these examples"
    text = "fires on " + ", ".join(f"'{w}'" for w in words)
    rated = [lexicon[w] for w in words if w in lexicon]
    if len(rated) * 2 >= len(words):
        mean = float(np.mean(rated))
        tone = "positive" if mean > 0 else "negative"
        text += f" (words the VADER lexicon rates {tone}, mean {mean:+.1f})"
    return text


def keyword_judge(explanation_words: Sequence[str]) -> Judge:
    """The offline detection judge: a text 'fires' when it contains one of the explanation's words."""
    wanted = {w.lower() for w in explanation_words}

    def judge(_: str, texts: Sequence[str]) -> list[bool]:
        return [bool(wanted & {_word(t) for t in text.replace(",", " ").replace(".", " ").split()}) for text in texts]

    return judge


@dataclass(frozen=True)
class LexiconCorrelation:
    r: float
    p_value: float
    n_tokens: int


def lexicon_correlation(examples: Sequence[Example], lexicon: Mapping[str, float]) -> LexiconCorrelation:
    """Pearson r between a feature's activation on a token and the lexicon value of that token
    (0 for words the lexicon does not rate), over every token of its examples: positive for a
    feature of positive sentiment, negative for one of negative sentiment, near 0 otherwise."""
    acts, values = [], []
    for e in examples:
        for token, a in zip(e.tokens, e.activations, strict=True):
            acts.append(float(a))
            values.append(lexicon.get(_word(token), 0.0))
    if len(acts) < 3 or np.ptp(acts) == 0 or np.ptp(values) == 0:
        return LexiconCorrelation(0.0, 1.0, len(acts))
    result = stats.pearsonr(acts, values)
    return LexiconCorrelation(float(result.statistic), float(result.pvalue), len(acts))


def offline_relevance(correlation: LexiconCorrelation, min_abs_r: float, max_p: float) -> bool:
    """Related to a sentiment task when the activation tracks the lexicon clearly and significantly."""
    return abs(correlation.r) >= min_abs_r and correlation.p_value < max_p
