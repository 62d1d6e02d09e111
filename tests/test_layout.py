"""The package layout: no import cycles, and each layer imports only the layers below it.

Every ``import`` counts, at module level and inside functions (a lazy import is still a dependency); only
imports under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "datadiet"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in SRC.rglob("*.py")}


def _owner(target: str) -> str | None:
    """The datadiet module an import names (``a.b.name`` -> ``a.b`` when ``name`` is not a module)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
        if inner is not node.test
    }
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in skipped]


def _imports(module: str) -> set[str]:
    """The datadiet modules ``module`` imports (its own parent packages left out: importing a submodule
    runs them anyway)."""
    out = set()
    for node in _runtime_imports(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
                package = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{package}.{base}" if base else package
            targets = [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            owner = _owner(target)
            if owner and owner != module and not module.startswith(owner + "."):
                out.add(owner)
    return out


GRAPH = {module: _imports(module) for module in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_known_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycle():
    assert _cycles(GRAPH) == []


# Which datadiet packages each layer may import (besides itself and datadiet.errors).
ALLOWED = {
    "datadiet._core": set(),
    "datadiet.selection": {"datadiet._core", "datadiet.representations", "datadiet.distributed"},
    "datadiet.analysis": {"datadiet._core", "datadiet.selection"},
    "datadiet.store": {"datadiet._core", "datadiet.representations"},
    "datadiet.config": {"datadiet._core", "datadiet.data", "datadiet.representations", "datadiet.selection",
                        "datadiet.metrics", "datadiet.api", "datadiet.recipes"},
}  # fmt: skip


def _layer(module: str) -> str:
    return ".".join(module.split(".")[:2])


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer):
    allowed = ALLOWED[layer] | {layer, "datadiet.errors", "datadiet"}
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if _layer(module) == layer
        for target in targets
        if _layer(target) not in allowed
    )
    assert wrong == []


def test_import_datadiet_is_light():
    """``import datadiet`` (and a look at its registries' names) loads neither torch nor transformers."""
    code = (
        "import sys, datadiet\n"
        "datadiet.SELECTORS.names()\n"
        "print(sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_gradient_target_choices_are_defined_once():
    """The config's choices are the gradient targets plus "auto", in the same order."""
    from typing import get_args

    from datadiet.config import GradientConfig
    from datadiet.representations.base import GRADIENT_TARGETS, GradientTargetSetting

    assert get_args(GradientTargetSetting) == ("auto", *GRADIENT_TARGETS)
    assert GradientConfig.model_fields["target"].annotation == GradientTargetSetting
