"""The layering of analysis -> report -> experiments, read from the import statements of the sources.

``analysis/`` holds pure functions: no matplotlib, no files written, nothing above it imported. ``report/``
builds on analysis and never imports ``experiments/`` (the synthetic study uses the report's figures, not
the other way round).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import datadiet

PACKAGE = Path(datadiet.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (function-level imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _modules(package: str) -> list[Path]:
    modules = sorted((PACKAGE / package).rglob("*.py"))
    assert modules, package
    return modules


def _under(module: str, *prefixes: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


@pytest.mark.parametrize("path", _modules("report"), ids=lambda p: p.name)
def test_no_report_module_imports_the_experiments(path):
    assert not [m for m in _imports(path) if _under(m, "datadiet.experiments")]


@pytest.mark.parametrize("path", _modules("analysis"), ids=lambda p: p.name)
def test_analysis_modules_import_no_plotting_no_file_writer_and_no_higher_layer(path):
    above = ("matplotlib", "datadiet.report", "datadiet.experiments", "datadiet.pipeline", "datadiet.cli")
    writers = ("atomic_write_bytes", "atomic_write_text", "atomic_write_json", "savefig", "to_csv", "np.save")
    assert not [m for m in _imports(path) if _under(m, *above)]
    source = path.read_text(encoding="utf-8")
    assert not [name for name in writers if name in source]
    assert "open(" not in source
