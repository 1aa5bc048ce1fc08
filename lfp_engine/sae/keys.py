"""How a dictionary and a feature are named, everywhere: engine, stages, store and dashboard.

A dictionary is (layer, dict_size): which layer's MLP output it reads and how many features it
has (n or 2n, n = d_model, paper 3.2). A feature is (model, layer, dict_size, feature): `model` is
'tuned' (the model the method studies) or 'base' (the baselines). Both are named tuples, so they
are hashable dictionary keys, unpack like the plain tuples they replace, and order naturally.
The store spells a feature in its key columns (`FeatureKey._fields`), and tables that list
features in one cell use the short label 'layer/dict_size/feature' (`label`, `parse_label`).
"""

from __future__ import annotations

from typing import NamedTuple

from lfp_engine.run.errors import InputError


class DictionaryKey(NamedTuple):
    layer: int
    dict_size: int


class FeatureKey(NamedTuple):
    model: str
    layer: int
    dict_size: int
    feature: int

    @property
    def dictionary(self) -> DictionaryKey:
        return DictionaryKey(self.layer, self.dict_size)

    @property
    def label(self) -> str:
        """'layer/dict_size/feature' (the model is implied by the table holding it)."""
        return f"{self.layer}/{self.dict_size}/{self.feature}"

    @classmethod
    def parse_label(cls, label: str, model: str = "tuned") -> FeatureKey:
        parts = label.split("/")
        if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
            raise InputError(f"a feature is written layer/dict_size/feature, e.g. 3/128/58; got {label!r}")
        layer, dict_size, feature = (int(p) for p in parts)
        return cls(model, layer, dict_size, feature)


KEY_COLUMNS = list(FeatureKey._fields)
"""The columns that identify a feature in every table of the store."""
