"""Is a latent tied to the reward? The correlation of its activation with the reward of the text.

For every held-out text the models read (the eval set's texts, as captured: the same tokens both
models saw), the latent's total activation over the text's tokens against the task's reward of the
text. The VADER reward (paper eq. 3) is a sum over the text's words, so a latent that fires on
rewarded words adds up the way the reward does; a text where the latent never fires counts with
activation 0. Pearson's r with scipy's p-value and its 95% interval (Fisher z), and the
Benjamini-Hochberg q-value over all latents of the layer (hundreds are tested at once, so a small
p-value alone is expected by chance).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from lfp_engine.sae.crosscoder import Crosscoder
from lfp_engine.sae.metrics import EVAL_BATCH_ROWS
from lfp_engine.sae.paired_activations import PairedActivations


@torch.no_grad()
def text_totals(crosscoder: Crosscoder, evaluation: PairedActivations) -> tuple[np.ndarray, np.ndarray]:
    """(text ids in order of first appearance, [n_texts, d_sae] summed codes over each text's tokens)."""
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


def reward_correlations(totals: np.ndarray, rewards: np.ndarray) -> pd.DataFrame:
    """feature, reward_r, reward_p, reward_ci_low, reward_ci_high, reward_q, n_texts_firing."""
    rewards = np.asarray(rewards, dtype=np.float64)
    rows = []
    for feature in range(totals.shape[1]):
        x = totals[:, feature]
        firing = int((x > 0).sum())
        if firing < 2 or np.ptp(x) == 0 or np.ptp(rewards) == 0 or len(x) < 4:
            rows.append((feature, np.nan, np.nan, np.nan, np.nan, firing))
            continue
        result = stats.pearsonr(x, rewards)
        interval = result.confidence_interval(0.95)
        rows.append((feature, float(result.statistic), float(result.pvalue), float(interval.low),
                     float(interval.high), firing))
    frame = pd.DataFrame(rows, columns=REWARD_COLUMNS[:-1])
    tested = frame["reward_p"].notna().to_numpy()
    frame["reward_q"] = np.nan
    if tested.any():
        frame.loc[tested, "reward_q"] = stats.false_discovery_control(frame.loc[tested, "reward_p"].to_numpy())
    return frame


def text_rewards(text_ids: Sequence[int], texts: pd.Series, reward: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
    """The task's reward of each text, in the order of `text_ids`."""
    return np.asarray(reward([str(texts[t]) for t in text_ids]), dtype=np.float64)
