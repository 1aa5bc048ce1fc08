"""Is a latent tied to the reward? The correlation of its activation with the reward of the text.

For every held-out text the models read (the eval set's texts, as captured: the same tokens both
models saw), the latent's total activation over the text's tokens against the task's reward of the
text. The VADER reward (paper eq. 3) is a sum over the text's words, so a latent that fires on
rewarded words adds up the way the reward does; a text where the latent never fires counts with
activation 0. Both sums also grow with the text's length, so a latent that fires on every full stop
would look tied to the reward through length alone: the correlation is the *partial* correlation
given the text's token count (both residualised on [1, length]), with its p-value from Student's t
on n - 3 degrees of freedom, a 95% interval by Fisher's z (standard error 1 / sqrt(n - 4)), and the
Benjamini-Hochberg q-value over all latents of the layer (hundreds are tested at once, so a small
p-value alone is expected by chance).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from lfp_engine.diffing.crosscoder import Crosscoder
from lfp_engine.diffing.inputs import DiffingInputs
from lfp_engine.diffing.paired_activations import PairedActivations
from lfp_engine.sae.metrics import EVAL_BATCH_ROWS
from lfp_engine.tuning.reward import RewardFunction


@torch.no_grad()
def text_totals(crosscoder: Crosscoder, evaluation: PairedActivations) -> tuple[np.ndarray, np.ndarray]:
    """(text ids in ascending order, [n_texts, d_sae] summed codes over each text's tokens)."""
    module = crosscoder.module
    text_ids = evaluation.index["text_id"].to_numpy()
    order, inverse = np.unique(text_ids, return_inverse=True)
    totals = torch.zeros(len(order), module.d_sae, dtype=torch.float64)
    for start, x in evaluation.iter_rows([crosscoder.layer], EVAL_BATCH_ROWS, module.W_enc.device):
        codes = module.encode(x[0]).double().cpu()
        totals.index_add_(0, torch.as_tensor(inverse[start:start + codes.shape[0]]), codes)
    return order, totals.numpy()


def texts_of(evaluation: PairedActivations, decode: Callable[[list[int]], str]) -> pd.Series:
    """Each captured text as the models read it (its captured tokens, decoded), by text id."""
    return pd.Series({text_id: decode(tokens) for text_id, tokens in evaluation.sequences()})


REWARD_COLUMNS = ["feature", "reward_r", "reward_p", "reward_ci_low", "reward_ci_high", "n_texts_firing", "reward_q"]
"""The columns `reward_correlations` gives each latent (all NULL for tasks without a reward function)."""


def partial_correlation(x: np.ndarray, y: np.ndarray, control: np.ndarray) -> tuple[float, float, float, float]:
    """(r, p, ci_low, ci_high): the correlation of x and y with `control` (and a constant) regressed out."""
    design = np.column_stack([np.ones_like(control), control])
    rx = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    ry = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    if np.allclose(rx, 0) or np.allclose(ry, 0):
        return (np.nan,) * 4
    n = len(x)
    r = float(np.clip(np.dot(rx, ry) / np.sqrt(np.dot(rx, rx) * np.dot(ry, ry)), -1.0, 1.0))
    t = r * np.sqrt((n - 3) / max(1e-300, 1 - r * r))
    p = float(2 * stats.t.sf(abs(t), n - 3))
    z, half = np.arctanh(np.clip(r, -0.999999, 0.999999)), stats.norm.ppf(0.975) / np.sqrt(n - 4)
    return r, p, float(np.tanh(z - half)), float(np.tanh(z + half))


def reward_correlations(totals: np.ndarray, rewards: np.ndarray, lengths: np.ndarray) -> pd.DataFrame:
    """feature, reward_r, reward_p, reward_ci_low, reward_ci_high, n_texts_firing, reward_q: each
    latent's partial correlation with the reward given the texts' token counts `lengths`."""
    rewards = np.asarray(rewards, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.float64)
    rows = []
    for feature in range(totals.shape[1]):
        x = totals[:, feature]
        firing = int((x > 0).sum())
        if firing < 2 or len(x) < 5:
            rows.append((feature, np.nan, np.nan, np.nan, np.nan, firing))
            continue
        rows.append((feature, *partial_correlation(x, rewards, lengths), firing))
    frame = pd.DataFrame(rows, columns=REWARD_COLUMNS[:-1])
    tested = frame["reward_p"].notna().to_numpy()
    frame["reward_q"] = np.nan
    if tested.any():
        frame.loc[tested, "reward_q"] = stats.false_discovery_control(frame.loc[tested, "reward_p"].to_numpy())
    return frame


def text_rewards(text_ids: Sequence[int], texts: pd.Series, reward: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
    """The task's reward of each text, in the order of `text_ids`."""
    return np.asarray(reward([str(texts[t]) for t in text_ids]), dtype=np.float64)


def text_lengths(text_ids: Sequence[int], evaluation: PairedActivations) -> np.ndarray:
    """Tokens of each text as captured, in the order of `text_ids`."""
    counts = evaluation.index.groupby("text_id").size()
    return counts.loc[list(text_ids)].to_numpy(dtype=np.float64)


def reward_links(inputs: DiffingInputs, reward: RewardFunction | None) -> pd.DataFrame:
    """layer and `REWARD_COLUMNS` of every latent of every layer, over the held-out texts as captured;
    no rows when the task has no reward function."""
    if reward is None:
        return pd.DataFrame(columns=["layer", *REWARD_COLUMNS]).astype({"layer": "int64", "feature": "int64"})
    texts = texts_of(inputs.evaluation, inputs.tokenizer.decode)
    parts = []
    for crosscoder in inputs.crosscoders:
        text_ids, totals = text_totals(crosscoder, inputs.evaluation)
        parts.append(reward_correlations(totals, text_rewards(text_ids, texts, reward),
                                         text_lengths(text_ids, inputs.evaluation)).assign(layer=crosscoder.layer))
    return pd.concat(parts, ignore_index=True)
