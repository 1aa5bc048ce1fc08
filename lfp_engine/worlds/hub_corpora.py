"""Corpora of the hub presets: IMDb reviews and the DPO preference datasets (paper 3.1).

Loaded by hub id or local path through `lfp_engine.models.hub`, normalised to the same frames the
synthetic world produces, so every later stage is indifferent to where its text came from.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from lfp_engine.run.errors import InputError
from lfp_engine.models.hub import load_dataset_split

_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
ASSISTANT_TURN = "\n\nAssistant:"


def clean_review(text: str) -> str:
    """IMDb reviews carry HTML line breaks; the paper's prefixes are plain text."""
    return " ".join(_HTML_BREAK.sub(" ", text).split())


def _splits(name_or_path: str) -> tuple[str, ...]:
    """A single local data file is one split; hub ids and dataset folders have train and test."""
    return ("train",) if Path(name_or_path).expanduser().is_file() else ("train", "test")


def _hold_out_tenth(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    if frame["split"].nunique() == 1:
        frame.loc[rng.random(len(frame)) < 0.1, "split"] = "test"
    return frame


def load_review_corpus(name_or_path: str, text_field: str, n_texts: int, rng: np.random.Generator) -> pd.DataFrame:
    """Up to n_texts reviews as (text_id, text, split); 'train' feeds RL prompts, 'test' triples/eval."""
    frames = []
    splits = _splits(name_or_path)
    for split in splits:
        data = load_dataset_split(name_or_path, split)
        if text_field not in data.column_names:
            raise InputError(
                f"dataset {name_or_path!r} has no column {text_field!r} (columns: {data.column_names}); "
                "set world.corpus_text_field"
            )
        n = min(len(data), n_texts // len(splits))
        picked = data.select(sorted(rng.permutation(len(data))[:n].tolist()))
        frames.append(pd.DataFrame({"text": [clean_review(t) for t in picked[text_field]], "split": split}))
    corpus = _hold_out_tenth(pd.concat(frames, ignore_index=True), rng)
    corpus.insert(0, "text_id", np.arange(len(corpus)))
    return corpus


def split_dialogue(chosen: str, rejected: str) -> tuple[str, str, str]:
    """HH-RLHF stores whole dialogues; the prompt is everything up to the last assistant turn."""
    cut = chosen.rfind(ASSISTANT_TURN)
    if cut < 0 or not rejected.startswith(chosen[: cut + len(ASSISTANT_TURN)]):
        # Fall back to the longest common prefix of the two dialogues.
        n = 0
        while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
            n += 1
        cut_at = n
    else:
        cut_at = cut + len(ASSISTANT_TURN)
    return chosen[:cut_at], chosen[cut_at:], rejected[cut_at:]


def load_preference_pairs(name_or_path: str, n_pairs: int, rng: np.random.Generator) -> pd.DataFrame:
    """(pair_id, prompt, chosen, rejected, split) from a DPO dataset.

    Datasets with a 'prompt' column (toxic-dpo) are used as they are; dialogue datasets
    (HH-RLHF) are split at the last assistant turn. Pairs are shuffled, and a tenth is held out
    for the evaluation of the tuned model's preference margin.
    """
    frames = []
    for split in _splits(name_or_path):
        try:
            data = load_dataset_split(name_or_path, split)
        except (ValueError, KeyError):
            continue  # toxic-dpo has only a train split
        n = min(len(data), n_pairs)
        data = data.select(sorted(rng.permutation(len(data))[:n].tolist()))
        missing = {"chosen", "rejected"} - set(data.column_names)
        if missing:
            raise InputError(f"preference dataset {name_or_path!r} lacks columns {sorted(missing)}")
        if "prompt" in data.column_names:
            rows = list(zip(data["prompt"], data["chosen"], data["rejected"]))
        else:
            rows = [split_dialogue(c, r) for c, r in zip(data["chosen"], data["rejected"])]
        frames.append(pd.DataFrame(rows, columns=["prompt", "chosen", "rejected"]).assign(split=split))
    if not frames:
        raise InputError(f"preference dataset {name_or_path!r} has neither a train nor a test split")
    pairs = _hold_out_tenth(pd.concat(frames, ignore_index=True), rng)
    pairs.insert(0, "pair_id", np.arange(len(pairs)))
    return pairs
