"""Scoring an explanation on examples the explainer did not see (paper 4.2; Bills et al. 2023).

Simulation: the Pearson correlation of activations predicted from the explanation alone with the
true ones, over all tokens. Detection: the balanced accuracy of picking the firing examples out of
a shuffled mix with quiet ones, from the explanation alone; the judge is an LLM or, offline, a
keyword match (`offline.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


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
