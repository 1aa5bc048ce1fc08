"""What an explainer sees of a feature, and what its explanation is scored on (paper 3.4, 4.2).

A feature's evidence: the examples the explainer is shown (most of its top examples and half its
quantile examples), held-out firing examples (the rest), and quiet examples: the held-out text
windows where it is weakest. For a sparse feature these are silent windows, as in the paper; a
dense feature is silent almost nowhere, so it is scored on separating its strong examples from
its weakest windows rather than left without a score. Held-out examples count as firing only
above the strongest quiet example, so the detection task's two sides never overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lfp_engine.explain.prompts import Example
from lfp_engine.run.store import RunPaths
from lfp_engine.sae.activations import ActivationSet
from lfp_engine.sae.autoencoder import SparseAutoencoder
from lfp_engine.sae.keys import KEY_COLUMNS, FeatureKey
from lfp_engine.sae.saelens_format import load_sae


NO_EXAMPLES = pd.DataFrame(columns=["kind", "rank", "quantile", "tokens", "activations"])
"""The stored examples of a feature that has none."""


@dataclass
class Evidence:
    key: FeatureKey
    shown: list[Example]
    held_out: list[Example]
    quiet: list[Example]
    scale: float
    """The feature's maximum activation: 10 on the discretised scale."""


def split_evidence(key: FeatureKey, examples: pd.DataFrame, quiet: Sequence[Example], shown_fraction: float,
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


def chosen_features(features: pd.DataFrame, with_llm: bool, per_dictionary: int) -> pd.DataFrame:
    """Every shared feature offline; with an LLM, the most shared ones of each dictionary (the
    paper explains the top 10 per layer by twin similarity)."""
    shared = features[features["is_shared"]]
    if not with_llm:
        return shared
    return shared.sort_values("shared_rank").groupby(["model", "layer", "dict_size"]).head(per_dictionary)


def quiet_windows(evaluation: ActivationSet, sae: SparseAutoencoder, layer: int, vocab: list[str], width: int,
                  n_windows: int, rng: np.random.Generator,
                  device: torch.device) -> tuple[list[list[str]], np.ndarray]:
    """Random held-out windows of `width` tokens and every feature's code on each of their tokens
    (windows x width x features), from which each feature's quiet examples are picked."""
    index = evaluation.index
    bounds = index.groupby("text_id")["row"].agg(["min", "max"])
    bounds = bounds[bounds["max"] - bounds["min"] + 1 >= width]
    picked = bounds.iloc[rng.permutation(len(bounds))[:n_windows]]
    starts = [int(rng.integers(lo, hi - width + 2)) for lo, hi in zip(picked["min"], picked["max"], strict=True)]
    rows = np.concatenate([np.arange(s, s + width) for s in starts]) if starts else np.zeros(0, np.int64)
    order = np.argsort(rows)
    codes = np.zeros((len(rows), sae.d_sae))
    if len(rows):
        codes[order] = sae.encode(evaluation.gather(layer, rows[order]).to(device)).detach().cpu().numpy()
    token_ids = index.set_index("row").loc[rows, "token_id"].to_numpy()
    tokens = [[vocab[t] for t in token_ids[i * width:(i + 1) * width]] for i in range(len(starts))]
    return tokens, codes.reshape(len(starts), width, sae.d_sae)


def dictionary_evidence(model: str, layer: int, sae: SparseAutoencoder, evaluation: ActivationSet,
                        chosen: pd.DataFrame, grouped: dict[tuple, pd.DataFrame], vocab: list[str], width: int,
                        n_windows: int, n_quiet: int, shown_fraction: float, rng: np.random.Generator,
                        device: torch.device) -> list[Evidence]:
    """The evidence of the chosen features (rows with feature, max_activation) of one dictionary
    (`sae`, reading `evaluation`'s rows at `layer`), named `model`; `grouped`: stored examples by key."""
    windows, codes = quiet_windows(evaluation, sae, layer, vocab, width, n_windows, rng, device)
    evidence = []
    for row in chosen.itertuples():
        per_token = codes[:, :, row.feature]
        shuffled = rng.permutation(len(windows))  # ties (silent windows) broken at random
        picks = shuffled[np.argsort(per_token.max(axis=1)[shuffled], kind="stable")][:n_quiet]
        quiet = [Example(windows[i], per_token[i].tolist()) for i in picks]
        key = FeatureKey(model, layer, sae.d_sae, int(row.feature))
        evidence.append(split_evidence(key, grouped.get(tuple(key), NO_EXAMPLES), quiet,
                                       shown_fraction, float(row.max_activation)))
    return evidence


def feature_evidence(paths: RunPaths, chosen: pd.DataFrame, examples: pd.DataFrame, vocab: list[str], width: int,
                     n_windows: int, n_quiet: int, shown_fraction: float, rng: np.random.Generator,
                     device: torch.device) -> list[Evidence]:
    """The evidence of every chosen feature (rows of `features`), from its stored examples
    (`feature_examples`) and quiet windows of its model's held-out activations."""
    evidence = []
    grouped = {k: g for k, g in examples.groupby(KEY_COLUMNS)}
    for (model, layer, dict_size), group in chosen.groupby(["model", "layer", "dict_size"]):
        sae = load_sae(paths.sae(int(layer), int(dict_size), model), device)
        evaluation = ActivationSet(paths.activations_of(model) / "eval")
        evidence += dictionary_evidence(model, int(layer), sae, evaluation, group, grouped, vocab, width, n_windows,
                                        n_quiet, shown_fraction, rng, device)
    return evidence
