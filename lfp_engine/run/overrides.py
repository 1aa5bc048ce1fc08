"""Layers of settings and how they combine: `--set key=value`, config files, stored configs.

A run's settings come in layers, later ones winning: the preset, the config stored in an
existing run, a `--config` file, then each `--set`. Every layer is a nested dict shaped like
`RunConfig` (`{"rlhf": {"beta": 0.2}}`). `typed_layer` checks a layer against the dataclasses'
names and types before anything is built, so a misspelt key or a word where a number belongs
fails with the setting's name; the ranges are then checked by each section's `__post_init__`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal

from lfp_engine.run.errors import ConfigError


def parse_override(text: str) -> tuple[str, Any]:
    """Split 'a.b=value'; the value is read as JSON when it parses (numbers, true, lists), else text."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{'a.b': 1} -> {'a': {'b': 1}}: dotted override keys to the nested shape of the config."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"setting {key!r} conflicts with a plain value set for {part!r}")
        node[parts[-1]] = value
    return out


def merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Nested dicts merged key by key, later layers winning; lists and plain values are replaced."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            both = isinstance(out.get(key), dict) and isinstance(value, dict)
            out[key] = merge(out[key], value) if both else value
    return out


def load_config_file(path: Path) -> dict[str, Any]:
    """A TOML or JSON file of settings, nested or with dotted keys."""
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        elif path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            raise ConfigError(f"config file {path}: expected a .toml or .json file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"config file {path} does not parse: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a table of settings at the top level")
    flat = {k: v for k, v in data.items() if "." in k}
    nested = {k: v for k, v in data.items() if "." not in k}
    return merge(nested, nest(flat))


def known_settings(data: dict[str, Any], schema: type) -> dict[str, Any]:
    """The settings of a stored config that the dataclass `schema` (e.g. `RunConfig`) knows.

    A run made by another version of LFP Explorer (settings added or retired since) still opens in
    the dashboard and resumes with `lfp run`: retired settings are dropped, new ones take their
    defaults. Everywhere else unknown settings are refused (`typed_layer`).
    """
    hints = typing.get_type_hints(schema)
    out = {}
    for key, value in data.items():
        if key not in hints:
            continue
        section = dataclasses.is_dataclass(hints[key]) and isinstance(value, dict)
        out[key] = known_settings(value, hints[key]) if section else value
    return out


def typed_layer(data: dict[str, Any], schema: type, prefix: str = "") -> dict[str, Any]:
    """A layer checked against the dataclass `schema`: known names only, sections as tables,
    every value converted to its field's type (`coerce`)."""
    hints = typing.get_type_hints(schema)
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in hints:
            valid = ", ".join(sorted(f"{prefix}{k}" for k in hints))
            raise ConfigError(f"unknown setting {full!r}; valid settings here: {valid}")
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ConfigError(f"setting {full!r} is a section; set its fields, e.g. {full}.<field>=...")
            out[key] = typed_layer(value, hints[key], prefix=f"{full}.")
        else:
            out[key] = coerce(value, hints[key], full)
    return out


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a parsed value to the field's declared type, or explain why it cannot be.

    A `Literal` field takes text; which texts it accepts is checked by its section, next to the
    field, so a section built in code is held to the same choices."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return coerce(value, str, key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ConfigError(f"setting {key}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            raise ConfigError(f"setting {key}: expected a whole number, got {value!r}")
        return int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"setting {key}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"setting {key}: expected a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"setting {key}: expected text, got {value!r}")
        return str(value)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"setting {key}: expected a list, got {value!r}")
        (inner,) = typing.get_args(annotation)
        return [coerce(v, inner, key) for v in value]
    raise TypeError(f"setting {key}: no conversion to {annotation!r}")  # a field of a type added without one
