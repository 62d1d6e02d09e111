"""Entry-point plugins: the installed example plugin extends Python, the CLI and YAML alike.

The example plugin (tests/plugins/datadiet-example-plugin, installed by the Makefile) registers the selector
``feature_norm`` and the extractor kind ``lengths`` from its ``datadiet.plugins`` entry point.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import datadiet
from datadiet._core.registry import Registry, load_plugins
from datadiet.cli import app
from datadiet.config import StudyConfig, from_dict
from datadiet.errors import DatadietError, ParameterError, PluginError

X = np.array([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0], [1.0, 1.0], [0.5, 0.0]])

INSTALLED = any(p.name == "example" for p in importlib.metadata.entry_points(group="datadiet.plugins"))
pytestmark = pytest.mark.skipif(  # under CI (make test installs it) a missing plugin fails instead
    not INSTALLED and not os.environ.get("CI"),
    reason="the example plugin is not installed (make venv installs it)",
)


def test_plugin_selector_works_from_python():
    selection = datadiet.select("feature_norm", X, 2)
    assert selection.indices.tolist() == [0, 2]
    np.testing.assert_allclose(selection.scores, np.linalg.norm(X, axis=1))
    assert "distribution 'datadiet-example-plugin" in datadiet.SELECTORS.owner("feature_norm")


def test_plugin_selector_works_from_the_cli(tmp_path):
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "selection.json"
    args = ["select", "--features", str(tmp_path / "x.npy"), "--algorithm", "feature_norm"]
    result = CliRunner().invoke(app, [*args, "--budget", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["algorithm"] == "feature_norm" and record["indices"] == [0, 2]
    listing = CliRunner().invoke(app, ["algorithms"])
    assert listing.exit_code == 0 and "feature_norm" in listing.output


def test_plugin_selector_is_accepted_in_a_study_config():
    spec = {"name": "norm", "algorithm": "feature_norm", "representation": "hidden/final"}
    cfg = from_dict(StudyConfig, {"budgets": [0.3], "seeds": [0], "selections": [spec]})
    assert cfg.selections[0].algorithm == "feature_norm"
    assert "feature_norm" in datadiet.SELECTORS.names()
    misspelled = {**spec, "algorithm": "feature_nrom"}
    with pytest.raises(DatadietError, match="Did you mean 'feature_norm'"):
        from_dict(StudyConfig, {"budgets": [0.3], "seeds": [0], "selections": [misspelled]})


def test_plugin_extractor_is_a_registered_kind_with_its_outputs():
    from datadiet.pipeline.represent import representation_names

    assert datadiet.EXTRACTORS.registered() == ["dynamics", "hidden", "gradients", "lengths"]
    names = representation_names(StudyConfig().reference)
    assert names["lengths/chars"] == "'lengths' in reference.represent.kinds"
    assert list(names)[-1] == "lengths/chars"  # plugin outputs after the built-in ones


def _fake_distribution(root: Path, value: str) -> Path:
    """A dist-info folder whose ``datadiet.plugins`` entry point is ``broken = <value>``."""
    info = root / "datadiet_broken_plugin-9.9.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: datadiet-broken-plugin\nVersion: 9.9\n")
    (info / "entry_points.txt").write_text(f"[datadiet.plugins]\nbroken = {value}\n")
    return root


def test_a_plugin_that_fails_to_import_is_named(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_fake_distribution(tmp_path, "no_such_module_for_datadiet")))
    registry = Registry("gadget")
    message = (
        r"entry point 'broken' = 'no_such_module_for_datadiet'.*'datadiet-broken-plugin 9\.9'.*No module"
    )
    with pytest.raises(PluginError, match=message):
        registry.names()
    with pytest.raises(PluginError, match="datadiet-broken-plugin"):  # until it is fixed, every query says so
        load_plugins()
    assert issubclass(PluginError, DatadietError) and issubclass(PluginError, ImportError)
    monkeypatch.undo()
    assert registry.names() == []  # gone from the path: nothing left to fail


def test_a_plugin_registering_a_taken_name_is_refused_naming_both(tmp_path, monkeypatch):
    module = tmp_path / "datadiet_clashing_plugin.py"
    module.write_text(
        "from datadiet.selection.registry import SELECTORS\n"
        "from datadiet.selection.uniform import Random\n"
        "SELECTORS.register('random')(type('Again', (Random,), {}))\n"
    )
    monkeypatch.syspath_prepend(str(_fake_distribution(tmp_path / "dist", "datadiet_clashing_plugin")))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "datadiet_clashing_plugin", raising=False)
    message = r"'random' is already registered \(by module 'datadiet.selection.uniform'\); plugin 'broken'"
    with pytest.raises(ParameterError, match=message):
        load_plugins()
    assert datadiet.SELECTORS.owner("random") == "module 'datadiet.selection.uniform'"
