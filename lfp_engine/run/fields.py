"""What every settings section shares: the checks of its `__post_init__` and its fields' docs.

Each step of the method keeps its settings next to its code (`lfp_engine/<step>/settings.py`), as
dataclasses whose fields each carry a docstring and whose `__post_init__` refuses out-of-range
values with the setting's dotted name in the message. The docstrings are read from the source
(`field_docs`), as simple-parsing and sparsify do, so `lfp settings` prints exactly what the code
says and a test can insist that no field goes undocumented.
"""

from __future__ import annotations

import ast
import inspect
import typing
from typing import Any, Literal

from lfp_engine.run.errors import ConfigError


def require(condition: bool, message: str) -> None:
    """Refuse a setting: `message` names it (`setting rlhf.steps: must be at least 1`)."""
    if not condition:
        raise ConfigError(message)


def one_of(key: str, value: Any, choices: Any) -> None:
    """Refuse a value outside the `Literal` type `choices`."""
    options = typing.get_args(choices)
    require(value in options, f"setting {key}: expected one of {', '.join(map(str, options))}, got {value!r}")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass, read from its source ('' when it has none)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:] + [None]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            doc = (after.value.value if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                   and isinstance(after.value.value, str) else "")
            docs[node.target.id] = inspect.cleandoc(doc)
    return docs


def type_text(annotation: Any) -> str:
    """How a field's type reads in help: `int`, `list[int]`, `tied | untied | topk`."""
    if typing.get_origin(annotation) is Literal:
        return " | ".join(map(str, typing.get_args(annotation)))
    if typing.get_origin(annotation) is list:
        return f"list[{type_text(typing.get_args(annotation)[0])}]"
    return getattr(annotation, "__name__", str(annotation))
