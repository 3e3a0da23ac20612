"""The layering of the package, read from the import statements (ast): no circles, no import from a lower layer
to a higher one, strings-only scoring, models that never import the data package.

Layers, lowest first (a module may import its own layer and those below):
errors/specials <- config <- data <- models <- search/checkpoint <- translate/analysis/evaluate
<- report/experiments/export/api <- training/serve <- cli. The package root (``nmt/__init__.py``) is the facade and is
not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "nmt"

LAYERS = [
    ["nmt", "nmt.errors", "nmt.specials"],
    ["nmt.config"],
    ["nmt.data"],
    ["nmt.models"],
    ["nmt.search", "nmt.search_rules", "nmt.checkpoint", "nmt.device"],
    ["nmt.translate", "nmt.sharding", "nmt.analysis", "nmt.evaluate"],
    ["nmt.report", "nmt.experiments", "nmt.export", "nmt.api"],
    ["nmt.training", "nmt.serve"],
    ["nmt.cli"],
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer of the longest matching prefix (``nmt.models.rnn`` -> ``nmt.models``)."""
    best, rank = "", -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best):
                best, rank = name, i
    if rank < 0:
        raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")
    return rank


def imports(source: str) -> set[str]:
    """Every ``nmt`` module a file imports, at module level or inside functions, except under TYPE_CHECKING."""
    tree = ast.parse(source)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "nmt")
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "nmt"
        ):
            found.add(node.module)
    return found


GRAPH = {module_name(p): imports(p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_layer():
    for module in GRAPH:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m != "nmt"))
def test_no_import_reaches_a_higher_layer(module):
    mine = layer_of(module)
    upward = sorted(i for i in GRAPH[module] if layer_of(i) > mine)
    assert not upward, f"{module} (layer {mine}) imports higher layers: {upward}"


def test_no_import_circle():
    def resolve(name: str) -> str | None:
        while name and name not in GRAPH:  # ``from nmt.x import y`` where y is a name, not a module
            name = name.rpartition(".")[0]
        return name or None

    edges = {m: {r for i in deps if (r := resolve(i)) and r != m} for m, deps in GRAPH.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path[path.index(n) :], n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_scoring_sees_only_strings():
    banned = ("nmt.models", "nmt.search", "nmt.translate", "nmt.data", "nmt.checkpoint")
    tree = ast.parse((PACKAGE / "evaluate.py").read_text(encoding="utf-8"))
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "torch" not in modules
    assert not [m for m in GRAPH["nmt.evaluate"] if m.startswith(banned)]


def test_models_never_import_the_data_package():
    offenders = {m: sorted(d for d in deps if d.startswith("nmt.data")) for m, deps in GRAPH.items()}
    assert not {m: d for m, d in offenders.items() if m.startswith("nmt.models") and d}


def test_the_reader_finds_lazy_imports_and_skips_type_checking_ones():
    source = """
from typing import TYPE_CHECKING
import nmt.config
if TYPE_CHECKING:
    from nmt.training.trainer import Trainer
def f():
    from nmt.cli.common import run_cli
"""
    found = imports(source)
    assert found == {"nmt.config", "nmt.cli.common"}
    assert max(layer_of(m) for m in found) > layer_of("nmt.models.rnn")  # what the upward rule would report
