"""`datadiet paper` end to end on a tiny R8 slice: the studies, the grids, the findings and the page."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from datadiet.cli import app
from datadiet.experiments.paper import run as paper_run
from datadiet.experiments.paper import setup


@pytest.fixture
def tiny(monkeypatch):
    tiny = setup.PaperDataset(
        "tiny_r8", "Tiny R8", {"source": "reuters_r8", "slice": 240, "val_slice": 40}, "a tiny slice",
        {"test_slice": 120},
    )  # fmt: skip
    monkeypatch.setitem(setup.PAPER_DATASETS, "tiny_r8", tiny)
    monkeypatch.setattr(setup, "STUDY_SEEDS", [0, 1])
    monkeypatch.setattr(setup, "STUDY_BUDGETS", [0.1, 0.3])
    monkeypatch.setattr(setup, "PAPER_SELECTIONS", setup.PAPER_SELECTIONS[:2] + setup.PAPER_SELECTIONS[4:6])
    monkeypatch.setattr(paper_run, "GRID_BUDGETS", (0.1, 0.3))
    monkeypatch.setattr(paper_run, "GRID_SEEDS", (0, 1))
    return tiny


def test_the_paper_command_writes_the_page_from_the_runs(tiny, tmp_path, monkeypatch):
    from datadiet.errors import MissingAssetError

    real = paper_run.run_dataset

    def run_dataset(name, out, **kwargs):
        if name == "gone":  # a dataset whose embedded files are not there: skipped, and the page says so
            raise MissingAssetError("the BIG-bench files are not cached;\nrun: make data")
        return real(name, out, **kwargs)

    monkeypatch.setitem(setup.PAPER_DATASETS, "gone", tiny)
    monkeypatch.setattr(paper_run, "run_dataset", run_dataset)
    doc = tmp_path / "docs" / "paper.md"
    result = CliRunner().invoke(
        app, ["paper", "--out", str(tmp_path / "runs"), "--doc", str(doc), "--datasets", "tiny_r8,gone"]
    )
    assert result.exit_code == 0, result.output
    assert "skipped gone: the BIG-bench files are not cached; run: make data" in " ".join(
        result.output.split()
    )
    assert "## Not run\n\n- gone: the BIG-bench files are not cached; run: make data" in doc.read_text()
    text = doc.read_text(encoding="utf-8")
    assert "## The paper's findings, checked" in text and "## Tiny R8" in text
    for key in ("same_rep_vs_same_algo", "diversity_least", "gradients_loss_agree", "less_majority"):
        assert f"*{key}*" in text
    # 2 seeds: no performance verdict may claim reliability
    assert "too few seeds" in text and "**not shown**" in text
    assert (doc.parent / "figures" / "paper" / "tiny_r8_overlap_30.png").is_file()
    grid = tmp_path / "runs" / "tiny_r8" / "grid"
    assert (grid / "summary.csv").is_file() and (grid / "combinations.csv").is_file()
    # LESS on loss trajectories and on fine-tuned hidden states ran (validation representations exist)
    combos = (grid / "combinations.csv").read_text(encoding="utf-8")
    for rep in ("dynamics/loss", "hidden/final"):
        assert f"{rep},,less,allowed" in combos
    assert "gradients/train,flatten,prototypicality,allowed" in combos
    again = CliRunner().invoke(
        app, ["paper", "--out", str(tmp_path / "runs"), "--doc", str(doc), "--datasets", "tiny_r8"]
    )
    assert again.exit_code == 0, again.output
    assert "selections computed" in doc.read_text(encoding="utf-8")


def test_an_unknown_dataset_is_refused_before_anything_runs(tmp_path):
    result = CliRunner().invoke(app, ["paper", "--out", str(tmp_path), "--datasets", "reuters_r9"])
    assert result.exit_code == 2
    assert "--datasets must be one of" in result.output and "reuters_r8" in result.output
    assert not any(tmp_path.iterdir())
