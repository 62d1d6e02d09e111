"""`datadiet results`, `labels` and `overlap` on a hand-made study folder (built as in tests/report)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from datadiet.cli import app
from datadiet.cli.analyze import RESULT_COLUMNS, row_names, selection_row_name
from datadiet.selection.base import Selection
from tests.report.test_report import N, make_study

runner = CliRunner()
T_975_2, T_975_4 = 4.302652729749464, 2.7764451051977987  # t quantiles with 2 and 4 degrees of freedom


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return make_study(tmp_path_factory.mktemp("three") / "study")  # seeds 0, 1, 2


@pytest.fixture(scope="module")
def five(tmp_path_factory) -> Path:
    return make_study(tmp_path_factory.mktemp("five") / "study", seeds=(0, 1, 2, 3, 4))


def _run(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def _json(*args: object) -> dict:
    result = _run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _error(result: object, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _cell(rows: list[dict], selection: str, budget: float) -> dict:
    return next(r for r in rows if r["selection"] == selection and math.isclose(r["budget"], budget))


# --- results ----------------------------------------------------------------------------------
def test_results_with_three_seeds_gives_intervals_but_no_verdict(study):
    data = _json("results", study)
    assert (data["metric"], data["split"], data["baseline"]) == ("macro_f1", "test", "random")
    assert data["interval"] == "paired t 95%" and data["alpha"] == 0.05 and data["seeds"] == [0, 1, 2]
    assert (
        "paired t 95% interval (alpha=0.05)" in data["header"]
        and "over seeds [0, 1, 2] (3)" in data["header"]
    )
    hard = _cell(data["rows"], "hard", 0.1)  # diffs -0.20, -0.21, -0.22
    half = T_975_2 * 0.01 / math.sqrt(3)
    assert hard["mean_diff"] == pytest.approx(-0.21)
    assert (hard["ci_low"], hard["ci_high"]) == pytest.approx((-0.21 - half, -0.21 + half))
    assert hard["n_seeds"] == hard["n_paired"] == 3 and hard["k"] == 24
    assert hard["verdict"] == "too few seeds (n<5)"
    random = _cell(data["rows"], "random", 0.3)
    assert random["verdict"] == "baseline" and random["mean_diff"] is None and random["ci_low"] is None
    assert set(hard) == set(RESULT_COLUMNS)


def test_results_with_five_seeds_calls_better_and_worse(five):
    rows = _json("results", five, "--metric", "accuracy")["rows"]
    assert _cell(rows, "hard", 0.1)["verdict"] == "worse"
    assert _cell(rows, "hard", 0.3)["verdict"] == "better"
    # hard_cal: diffs 0.02 + 0.005 s: mean 0.03, sd 0.0079, the interval excludes 0
    assert _cell(rows, "hard_cal", 0.5)["verdict"] == "better"
    ood = _json("results", five, "--split", "ood", "--alpha", "0.5")
    assert ood["interval"] == "paired t 50%" and _cell(ood["rows"], "hard", 0.1)["verdict"] == "worse"


def test_results_sign_flip_with_five_seeds_is_unbounded(five):
    data = _json("results", five, "--interval", "sign-flip")
    hard = _cell(data["rows"], "hard", 0.1)
    assert data["interval"] == "sign-flip 95%" and hard["interval"] == "sign-flip 95%"
    assert hard["ci_low"] is None and hard["ci_high"] is None  # (-inf, inf): no bound with 5 seeds
    assert hard["verdict"] == "no reliable difference"


def test_results_mixed_selection_has_no_reliable_difference(five):
    frame = pd.DataFrame(_json("results", five)["rows"])
    # <b>proto</b>: diffs 0.01 (s - 1) = -0.01 .. 0.03; mean 0.01 ± t_{0.975,4} · sd / sqrt(5) spans 0
    proto = frame[frame["selection"] == "<b>proto</b>"].iloc[0]
    sd = float(np.std([-0.01, 0.0, 0.01, 0.02, 0.03], ddof=1))
    assert proto["ci_high"] == pytest.approx(0.01 + T_975_4 * sd / math.sqrt(5))
    assert proto["verdict"] == "no reliable difference"


def test_results_table_and_csv(study, tmp_path):
    out = tmp_path / "paired.csv"
    result = _run("results", study, "--csv", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("macro_f1 on test: paired t 95% interval (alpha=0.05)")
    assert "too few" in result.stdout and "baseline" in result.stdout and "hard_cal" in result.stdout
    frame = pd.read_csv(out)
    assert tuple(frame.columns) == RESULT_COLUMNS and len(frame) == 4 * 3
    assert frame.loc[(frame["selection"] == "hard") & (frame["budget"] == 0.1), "mean_diff"].item() == (
        pytest.approx(-0.21)
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric", "f1"], "--metric must be one of ['accuracy', 'macro_f1']. Got 'f1' instead."),
        (["--split", "val"], "--split must be one of ['ood', 'test']. Got 'val' instead."),
        (["--baseline", "hrad"], "--baseline must be one of ['random', 'hard', "),
        (["--interval", "bootstrap"], "--interval must be one of ['t', 'sign-flip']. Got 'bootstrap'"),
        (["--alpha", "1.5"], "--alpha must be in (0, 1)"),
    ],
)
def test_results_refuses_unknown_choices(study, args, message):
    _error(_run("results", study, *args), message)


def test_results_baseline_hint(study):
    assert "Did you mean 'hard'?" in _error(_run("results", study, "--baseline", "hrad"))


def test_commands_refuse_a_folder_that_is_not_a_study(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for command in ("results", "labels"):
        _error(_run(command, tmp_path / "empty"), "is not a study folder (no study.json)", "datadiet study")
        _error(_run(command, tmp_path / "nope"), "does not exist")
        _error(_run(command, tmp_path / "file.txt"), "is a file, not a study folder")


# --- labels -----------------------------------------------------------------------------------
def _study_labels(study: Path) -> np.ndarray:
    return np.load(study / "labels.train.npy")


def _shares(indices: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels[indices], minlength=3) / len(indices)


def test_labels_of_a_study_by_hand(study):
    data = _json("labels", study)
    labels = _study_labels(study)
    assert data["classes"] == ["earn", "acq", "crude & oil"]
    full = data["rows"][0]
    assert full["selection"] == "training set" and full["k"] == N and full["max_abs_deviation"] == 0.0
    assert list(full["shares"].values()) == pytest.approx(np.bincount(labels) / N)
    random = _cell(data["rows"], "random", 0.3)
    picks = [
        json.loads((study / f"selections/random/b0.30_s{s}.json").read_text())["indices"] for s in range(3)
    ]
    expected = np.mean([_shares(np.array(p), labels) for p in picks], axis=0)
    assert random["seeds"] == [0, 1, 2] and random["k"] == 72
    assert list(random["shares"].values()) == pytest.approx(expected)
    assert random["max_abs_deviation"] == pytest.approx(np.abs(expected - np.bincount(labels) / N).max())
    assert {(r["selection"], r["budget"]) for r in data["rows"][1:]} == {
        (name, b) for name in ("random", "hard", "hard_cal") for b in (0.1, 0.3, 0.5)
    }


def test_labels_one_budget_and_seed(study, tmp_path):
    by_fraction = _json("labels", study, "--budget", "0.3", "--seed", "1")
    assert by_fraction == _json("labels", study, "--budget", "30%", "--seed", "1")
    rows = by_fraction["rows"][1:]
    assert [r["selection"] for r in rows] == ["random", "hard", "hard_cal"]
    assert all(r["budget"] == 0.3 and r["seeds"] == [1] for r in rows)
    picks = np.array(json.loads((study / "selections/hard/b0.30_s1.json").read_text())["indices"])
    assert list(rows[1]["shares"].values()) == pytest.approx(_shares(picks, _study_labels(study)))
    out = tmp_path / "labels.csv"
    result = _run("labels", study, "--budget", "0.3", "--csv", out)
    assert result.exit_code == 0 and "class shares" in result.stdout and "crude & oil" in result.stdout
    frame = pd.read_csv(out)
    shares = ["share:earn", "share:acq", "share:crude & oil"]
    assert frame.columns.tolist() == ["selection", "budget", "seeds", "k", *shares, "max_abs_deviation"]
    assert frame["selection"].tolist() == ["training set", "random", "hard", "hard_cal"]
    assert frame["seeds"].tolist()[1] == "0;1;2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "0.2"], "--budget must be one of ['10%', '30%', '50%']. Got '20%' instead."),
        (["--budget", "lots"], "--budget must be one of ['10%', '30%', '50%']. Got 'lots' instead."),
        (["--seed", "7"], "--seed must be one of the study seeds [0, 1, 2]. Got 7 instead."),
    ],
)
def test_labels_refuses_unknown_budget_and_seed(study, args, message):
    _error(_run("labels", study, *args), message)


def _write(path: Path, indices: list[int], **meta) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(Selection(np.array(indices), meta=meta).to_dict()))
    return path


def test_labels_of_selection_files_by_hand(tmp_path):
    np.save(tmp_path / "labels.npy", np.array([0, 0, 0, 1, 1, 2]))
    a = _write(tmp_path / "a.json", [0, 3, 5], seed=4, n_examples=6)
    b = _write(tmp_path / "b.json", [0, 1], n_examples=6)
    data = _json("labels", "--labels", tmp_path / "labels.npy", a, b)
    assert data["classes"] == ["0", "1", "2"]
    full, ra, rb = data["rows"]
    assert list(full["shares"].values()) == pytest.approx([1 / 2, 1 / 3, 1 / 6])
    assert ra["selection"] == "a" and ra["seeds"] == [4] and ra["budget"] == 0.5 and ra["k"] == 3
    assert list(ra["shares"].values()) == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert ra["max_abs_deviation"] == pytest.approx(1 / 6)  # |1/3 - 1/2| = |1/3 - 1/6|
    assert list(rb["shares"].values()) == [1.0, 0.0, 0.0] and rb["seeds"] == []
    assert rb["max_abs_deviation"] == pytest.approx(1 / 2)


def test_labels_of_selection_files_refuses_mismatches(tmp_path, study):
    np.save(tmp_path / "labels.npy", np.array([0, 0, 1, 1]))
    big = _write(tmp_path / "big.json", [0, 5], n_examples=6)
    labels = tmp_path / "labels.npy"
    _error(_run("labels", "--labels", labels, big), f"selection file '{big}' (n_examples=6)", "with 4 labels")
    _error(_run("labels", big), "is a selection file; add --labels labels.npy")
    _error(_run("labels", study, "--labels", tmp_path / "labels.npy"), "is a study folder; drop --labels")
    _error(
        _run("labels", "--labels", tmp_path / "labels.npy", big, "--seed", "0"), "--budget and --seed pick"
    )


# --- overlap ----------------------------------------------------------------------------------
def test_overlap_names_study_files_by_selection_budget_and_seed(study):
    files = [study / "selections/random/b0.30_s0.json", study / "selections/hard/b0.10_s2.json"]
    data = _json("overlap", *files)
    assert data["names"] == ["random@30%/s0", "hard@10%/s2"]
    assert data["random_expectation"] == [0.3, 0.1]
    picks = [set(json.loads(f.read_text())["indices"]) for f in files]
    assert data["matrix"][1][0] == pytest.approx(len(picks[0] & picks[1]) / 24)
    table = _run("overlap", *files)
    assert table.exit_code == 0 and "random@30%/s0" in table.stdout and "random k/N" in table.stdout


def test_overlap_names_that_collide_get_their_folders(tmp_path, study):
    one = _write(tmp_path / "x" / "sel.json", [0, 1], n_examples=N)
    two = _write(tmp_path / "y" / "sel.json", [1, 2], n_examples=N)
    other = make_study(tmp_path / "other", seeds=(0,))
    same = [study / "selections/random/b0.30_s0.json", other / "selections/random/b0.30_s0.json"]
    data = _json("overlap", one, two, *same, one)
    assert data["names"] == ["x/sel", "y/sel", "study/random@30%/s0", "other/random@30%/s0", "x/sel#2"]


def test_row_names():
    assert selection_row_name(Path("s/selections/less@gradients_train/b0.001_s3.json")) == (
        "less@gradients_train@0.1%/s3"
    )
    assert selection_row_name(Path("s/selections/a/b0.3_s0.json")) == "b0.3_s0"  # not the study's spelling
    assert selection_row_name(Path("elsewhere/a/b0.30_s0.json")) == "b0.30_s0"  # not under selections/
    assert row_names([Path("a.json"), Path("b.json")]) == ["a", "b"]
    assert row_names([Path("p/q/a.json"), Path("p/r/a.json")]) == ["q/a", "r/a"]


def test_tables_print_names_as_text_not_rich_markup(tmp_path):
    a = _write(tmp_path / "[red]a.json", [0, 1], n_examples=N)
    b = _write(tmp_path / "b.json", [1, 2], n_examples=N)
    result = runner.invoke(app, ["overlap", str(a), str(b)], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "[red]a " in result.stdout
