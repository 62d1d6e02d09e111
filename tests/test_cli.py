"""The CLI contract: selection.json format, overlap, and one-line errors with non-zero exit on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from datadiet.cli import app, parse_budget, parse_params

runner = CliRunner()


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    paths = {
        "feat": tmp_path / "f.npy",
        "labels": tmp_path / "y.npy",
        "val": tmp_path / "v.npy",
        "traj": tmp_path / "p.npy",
        "grads": tmp_path / "g.npy",
    }
    np.save(paths["feat"], rng.normal(size=(40, 4)))
    np.save(paths["labels"], np.repeat([0, 1], [30, 10]))
    np.save(paths["val"], rng.normal(size=(5, 4)))
    np.save(paths["traj"], rng.random((40, 5)))
    np.save(paths["grads"], rng.normal(size=(40, 2, 4)))
    return paths


def _select(files, tmp_path, *extra, features="feat", name="sel.json"):
    out = tmp_path / name
    args = ["select", "--features", str(files[features]), "--out", str(out), *extra]
    return runner.invoke(app, args), out


def test_select_writes_selection_json_with_contract_fields(files, tmp_path):
    result, out = _select(
        files, tmp_path, "--algorithm", "hard_to_learn", "--budget", "0.25", features="traj"
    )
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["budget"] == 10 and len(record["indices"]) == 10
    assert record["indices"] == sorted(record["indices"])
    assert record["algorithm"] == "hard_to_learn" and record["seed"] == 0 and record["params"] == {}
    assert len(record["scores"]) == 40
    p = np.load(files["traj"])
    assert record["indices"] == sorted(np.argsort(p.mean(1), kind="stable")[:10].tolist())


def test_select_passes_params_balance_calibration_and_val(files, tmp_path):
    result, out = _select(
        files,
        tmp_path,
        "--algorithm",
        "less",
        "--budget",
        "12",
        "--val-features",
        str(files["val"]),
        "--labels",
        str(files["labels"]),
        "--balance",
        "stratified",
        "--calibrate",
        "0.5",
        "--weighting",
        "unbiased",
        "--seed",
        "3",
    )
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    labels = np.load(files["labels"])
    assert np.bincount(labels[record["indices"]]).tolist() == [9, 3]
    assert record["calibrate"] == {"alpha": 0.5, "weighting": "unbiased"} and record["seed"] == 3
    assert len(record["weights"]) == 12


def test_select_typed_params(files, tmp_path):
    result, out = _select(
        files,
        tmp_path,
        "--algorithm",
        "prototypicality",
        "--budget",
        "5",
        "--param",
        "n_clusters=3",
        "--param",
        "metric=euclidean",
        "--param",
        "keep=easy",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["params"] == {"n_clusters": 3, "metric": "euclidean", "keep": "easy"}


def test_overlap_matrix_and_random_expectation(files, tmp_path):
    _, a = _select(files, tmp_path, "--algorithm", "random", "--budget", "10", "--seed", "1", name="a.json")
    _, b = _select(files, tmp_path, "--algorithm", "random", "--budget", "20", "--seed", "2", name="b.json")
    result = runner.invoke(app, ["overlap", str(a), str(b), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    ia, ib = (set(json.loads(p.read_text())["indices"]) for p in (a, b))
    common = len(ia & ib)
    assert data["matrix"] == [[1.0, common / 10], [common / 20, 1.0]]
    assert data["random_expectation"] == [0.25, 0.5]
    table = runner.invoke(app, ["overlap", str(a), str(b)])
    assert table.exit_code == 0 and "random k/N" in table.stdout


BAD_INPUTS = [
    (["--algorithm", "random", "--budget", "5"], "missing", "does not exist"),
    (["--algorithm", "random", "--budget", "0"], "feat", "budget=0"),
    (["--algorithm", "random", "--budget", "41"], "feat", "budget=41"),
    (["--algorithm", "random", "--budget", "1.5"], "feat", "fraction"),
    (["--algorithm", "random", "--budget", "lots"], "feat", "--budget"),
    (["--algorithm", "randon", "--budget", "5"], "feat", "Unknown selector 'randon'. Did you mean 'random'?"),
    (["--algorithm", "s2l", "--budget", "5", "--param", "clusters=3"], "feat", "Unknown parameter"),
    (["--algorithm", "s2l", "--budget", "5", "--param", "oops"], "feat", "key=value"),
    (["--algorithm", "prototypicality", "--budget", "5"], "grads", "'prototypicality' reads"),
    (["--algorithm", "el2n", "--budget", "5"], "feat", "needs labels"),
    (["--algorithm", "less", "--budget", "5"], "feat", "needs a validation"),
    (["--algorithm", "random", "--budget", "5", "--balance", "equal"], "feat", "--balance must be one of"),
    (["--algorithm", "s2l", "--budget", "5", "--calibrate", "0.5"], "feat", "score-based"),
]


@pytest.mark.parametrize(("args", "features", "message"), BAD_INPUTS)
def test_select_bad_input_exits_nonzero_with_one_line_reason(files, tmp_path, args, features, message):
    files["missing"] = tmp_path / "nope.npy"
    result, out = _select(files, tmp_path, *args, features=features)
    assert result.exit_code == 2
    assert message in result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert not out.exists()


def test_select_refuses_nan_inf_wrong_label_length_and_pickles(files, tmp_path):
    bad = np.load(files["feat"])
    bad[3, 1] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    files["inf"] = tmp_path / "inf.npy"
    result, _ = _select(files, tmp_path, "--algorithm", "random", "--budget", "5", features="inf")
    assert result.exit_code == 2 and "NaN/inf" in result.output
    np.save(tmp_path / "short.npy", np.zeros(39, dtype=int))
    result, _ = _select(
        files, tmp_path, "--algorithm", "random", "--budget", "5", "--labels", str(tmp_path / "short.npy")
    )
    assert result.exit_code == 2 and "labels has 39 entries" in result.output
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    files["obj"] = tmp_path / "obj.npy"
    result, _ = _select(files, tmp_path, "--algorithm", "random", "--budget", "1", features="obj")
    assert result.exit_code == 2 and "never unpickles" in result.output


def test_overlap_refuses_missing_and_malformed_files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    assert "does not exist" in runner.invoke(app, ["overlap", str(tmp_path / "x.json")]).output
    result = runner.invoke(app, ["overlap", str(tmp_path / "bad.json")])
    assert result.exit_code == 2 and "not valid JSON" in result.output


def test_parse_helpers():
    assert parse_budget("1200") == 1200 and isinstance(parse_budget("0.3"), float)
    assert parse_params(["a=1", "b=0.5", "c=cosine", "d=[1, 2]"]) == {
        "a": 1,
        "b": 0.5,
        "c": "cosine",
        "d": [1, 2],
    }


def test_console_script_runs_and_exits_nonzero_on_error(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "datadiet.cli", "algorithms"], capture_output=True, text=True)
    assert ok.returncode == 0 and "semdedup" in ok.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "datadiet.cli",
            "select",
            "--features",
            str(tmp_path / "x.npy"),
            "--algorithm",
            "random",
            "--budget",
            "3",
            "--out",
            str(tmp_path / "o.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_synthetic_writes_figures_and_tables(tmp_path):
    result = runner.invoke(app, ["synthetic", "--out", str(tmp_path / "syn"), "--epochs", "30"])
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "syn").iterdir()}
    assert {"overlap.csv", "selections.json", "summary.csv", "discriminative_power.png"} <= names
    assert sum(name.endswith(".png") for name in names) >= 12
    record = json.loads((tmp_path / "syn" / "selections.json").read_text())
    selections = record["selections"] if isinstance(record, dict) else record
    assert all(len(s["indices"]) == 180 for s in selections)


def test_select_less_with_lr_weights_in_scientific_notation(files, tmp_path):
    np.save(tmp_path / "vg.npy", np.random.default_rng(1).normal(size=(6, 2, 4)))
    result, out = _select(
        files, tmp_path, "--algorithm", "less", "--budget", "8", "--val-features", str(tmp_path / "vg.npy"),
        "--param", "lr_weights=[2e-5, 1e-5]", features="grads",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["params"]["lr_weights"] == [2e-5, 1e-5]
