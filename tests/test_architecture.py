"""The tree's promises, checked: the store's documentation lists exactly the tables the stages
declare, stages write only declared tables, nothing imports in a cycle, stages and pages hold no
long functions of their own science, docstrings point only inside the repository, and no page
script holds a bare expression Streamlit would write onto the page."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from precompute.stage import no_artifacts
from precompute.stages import EXPERIMENT_TABLES, STAGES, table_writers

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lfp_engine", "precompute", "app")
MAX_FUNCTION_LINES = 60


def documented_tables() -> set[str]:
    """Tables docs/store.md describes: its list items that open with a table name in backticks."""
    text = (ROOT / "docs" / "store.md").read_text(encoding="utf-8")
    return set(re.findall(r"^- `([a-z0-9_]+)`", text, flags=re.M))


def test_store_documentation_lists_every_table_and_no_other():
    declared = set(table_writers()) | set(EXPERIMENT_TABLES)
    documented = documented_tables()
    assert declared - documented == set(), "tables a stage writes but docs/store.md does not describe"
    assert documented - declared == set(), "tables docs/store.md describes but no stage declares"


def test_every_stage_declares_what_it_writes_and_needs_only_earlier_stages():
    seen: set[str] = set()
    for stage in STAGES:
        assert stage.tables or stage.artifacts is not no_artifacts, f"stage {stage.name} declares no output"
        assert set(stage.needs) <= seen, f"stage {stage.name} needs a later stage: {stage.needs}"
        seen.add(stage.name)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the project that `name` imports at module level (function-level imports are lazy
    on purpose and cannot form a cycle at import time)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        out |= {t for t in targets if t in modules and t != name}
    return out


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_long_function_without_a_stated_reason():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and "Long because" not in (ast.get_docstring(node) or ""):
                    long.append(f"{name}.{node.name} ({lines} lines)")
    assert long == [], "functions over 60 lines need a docstring sentence 'Long because ...'"


def test_docstrings_point_only_inside_the_repository():
    outside = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        outside += [name for marker in ("DESIGN.md", "METHOD.md", "../shared") if marker in text]
    assert outside == []


def test_stages_read_other_stages_through_typed_outputs():
    """A stage reads another's summary as a record, never as a dictionary key."""
    for path in (ROOT / "precompute").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"outputs_of\(\s*[\"']", text), f"{path} reads a stage's outputs by name"


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring statements of the module, its functions and its classes."""
    owners = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {id(node.body[0]) for node in ast.walk(tree)
            if isinstance(node, owners) and ast.get_docstring(node) is not None}


def stray_expressions(source: str) -> list[int]:
    """Lines of the expression statements Streamlit's "magic" writes onto the page when the file
    runs as a page script: every bare expression but a call, an await, a yield and a docstring (an
    attribute docstring under a constant is such a bare string)."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and id(node) not in docstrings
            and not isinstance(node.value, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom))]


def test_stray_expressions_finds_attribute_docstrings():
    source = '"""Page."""\nX = 1\n"""What X is."""\ndef f():\n    """Doc."""\n    y = 2\n    "stray"\n    f()\n'
    assert stray_expressions(source) == [3, 7]


def test_page_scripts_write_nothing_by_accident():
    """Streamlit renders a bare string in a page script as text (a constant's attribute docstring
    once showed above the Lexicon page's title): page scripts say things with `st.*` calls and
    explain their constants in comments."""
    pages = [ROOT / "app" / "main.py", *sorted((ROOT / "app" / "views").glob("*.py"))]
    stray = {str(p.relative_to(ROOT)): lines for p in pages
             if (lines := stray_expressions(p.read_text(encoding="utf-8")))}
    assert stray == {}
