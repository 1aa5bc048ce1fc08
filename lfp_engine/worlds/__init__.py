"""Worlds: where a run's base model, tokenizer and corpora come from.

Two kinds. A *hub* world names a base model and datasets by Hugging Face id or local path. A
*synthetic* world (presets micro, tiny, small) is built offline from scratch: generated movie
reviews, a locally trained tokenizer and a GPT-NeoX pretrained on them, with known ground truth.
Either way the world stage leaves the same files, described by `world.json` (`WorldRecord`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from lfp_engine.run.errors import StageOrderError

RECORD = "world.json"
CORPUS = "corpus.parquet"
PROMPTS = "prompts.parquet"
PREFERENCES = "preferences.parquet"
GROUND_TRUTH = "ground_truth.parquet"


@dataclass(frozen=True)
class WorldRecord:
    kind: str
    base_model: str
    """Absolute path of the pretrained base (synthetic) or the hub id / path given (hub)."""
    tokenizer: str
    has_ground_truth: bool
    has_preferences: bool

    def save(self, folder: Path) -> None:
        (folder / RECORD).write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @staticmethod
    def load(folder: Path) -> WorldRecord:
        """Read the record; './'-relative locations resolve against the world folder, so a run
        folder can be moved or copied whole."""
        path = folder / RECORD
        if not path.exists():
            raise StageOrderError(f"{folder} holds no world: run the `world` stage first")
        data = json.loads(path.read_text(encoding="utf-8"))
        for key in ("base_model", "tokenizer"):
            if data[key].startswith("./"):
                data[key] = str((folder / data[key]).resolve())
        return WorldRecord(**data)


def read_world_table(folder: Path, name: str) -> pd.DataFrame:
    path = folder / name
    if not path.exists():
        raise StageOrderError(f"{path} is missing: run the `world` stage first")
    return pd.read_parquet(path)
