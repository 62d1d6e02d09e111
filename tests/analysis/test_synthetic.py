"""The synthetic study (Du et al., ACL 2025, Figures 1 and 2a): set-up, outputs, determinism and findings.

The findings are checked on the numbers of one seeded run:

- prototypicality (keep hard) on the points picks points farther from the reference decision
  boundary than the average training point;
- loss-based selections (prototypicality on loss trajectories, hard-to-learn on the correct-class
  probability trajectory) pick points nearer to it;
- S2L (diversity) changes least across the three representations.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from datadiet.experiments.synthetic.study import (
    REPRESENTATIONS,
    boundary_distance,
    energy_distance,
    make_representations,
    make_synthetic_data,
    run_synthetic_study,
    selection_plan,
    train_reference,
)

N_TRAIN, BUDGET_K = 600, 180


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return run_synthetic_study(tmp_path_factory.mktemp("synthetic"), seed=0)


@pytest.fixture(scope="module")
def data():
    return make_synthetic_data()


@pytest.fixture(scope="module")
def run(data):
    return train_reference(data.x_train, data.y_train, x_val=data.x_val, y_val=data.y_val, epochs=30, seed=0)


def test_data_split_sizes_and_labels(data):
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (600, 200, 200)
    assert data.x_train.shape[1] == 2
    for y in (data.y_train, data.y_val, data.y_test):
        assert set(np.unique(y).tolist()) == {0, 1}


def test_reference_records_dynamics_and_checkpoints(data, run):
    assert run.train_prob.shape == run.train_loss.shape == run.train_correct.shape == (N_TRAIN, 30)
    assert run.val_prob.shape == (200, 30)
    np.testing.assert_allclose(run.train_loss, -np.log(run.train_prob), rtol=1e-10)
    np.testing.assert_array_equal(run.train_correct, (run.train_prob > 0.5).astype(float))
    assert [c["epoch"] for c in run.checkpoints] == [6, 12, 18, 24, 30]
    lrs = [c["lr"] for c in run.checkpoints]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] == pytest.approx(0.5 / (1 + 0.05 * 5))
    np.testing.assert_array_equal(run.checkpoints[-1]["w"], run.w)
    assert run.train_correct[:, -1].mean() > 0.8


def test_reference_training_is_seeded(data):
    kwargs = {"x_val": data.x_val, "y_val": data.y_val, "epochs": 5}
    a = train_reference(data.x_train, data.y_train, seed=1, **kwargs)
    b = train_reference(data.x_train, data.y_train, seed=1, **kwargs)
    c = train_reference(data.x_train, data.y_train, seed=2, **kwargs)
    np.testing.assert_array_equal(a.train_loss, b.train_loss)
    assert not np.array_equal(a.w, c.w)


def test_representation_shapes_and_meta(data, run):
    train = make_representations(run, data.x_train, data.y_train, split="train")
    val = make_representations(run, data.x_val, data.y_val, split="val")
    assert train["hidden"].values.shape == (N_TRAIN, 2) and train["hidden"].kind == "hidden"
    assert train["dynamics"].values.shape == (N_TRAIN, 30) and train["dynamics"].kind == "dynamics"
    assert train["gradients"].values.shape == (N_TRAIN, 5, 3) and train["gradients"].kind == "gradients"
    assert train["gradients"].meta["lr"] == [c["lr"] for c in run.checkpoints]
    assert {name: rep.values.shape[1:] for name, rep in val.items()} == {
        name: rep.values.shape[1:] for name, rep in train.items()
    }
    assert val["hidden"].n_examples == 200


def test_gradient_representation_is_the_loss_gradient(data, run):
    grads = make_representations(run, data.x_train, data.y_train, split="train")["gradients"].values
    ckpt = run.checkpoints[2]
    theta = np.append(ckpt["w"], ckpt["b"])

    def loss(params, i):
        logit = data.x_train[i] @ params[:2] + params[2]
        return np.logaddexp(0.0, -(2 * data.y_train[i] - 1) * logit)

    eps = 1e-6
    for i in (0, 17, 599):
        numeric = [(loss(theta + eps * e, i) - loss(theta - eps * e, i)) / (2 * eps) for e in np.eye(3)]
        np.testing.assert_allclose(grads[i, 2], numeric, rtol=1e-5, atol=1e-9)


def test_boundary_distance_and_energy_distance():
    x = np.array([[0.0, 1.0], [0.0, -3.0]])
    np.testing.assert_allclose(boundary_distance(x, np.array([0.0, 2.0]), 0.0), [1.0, 3.0])
    a = np.random.default_rng(0).normal(size=(50, 2))
    assert energy_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    assert energy_distance(a, a + 3.0) > energy_distance(a, a + 0.5) > 0


def test_every_selection_has_exactly_the_budget(study):
    assert list(study.selections) == [f"{m}/{r}" for m, r, _ in selection_plan()]
    assert len(study.selections) == 10
    for selection in study.selections.values():
        assert len(selection.indices) == BUDGET_K
        assert len(np.unique(selection.indices)) == BUDGET_K
        assert selection.indices.min() >= 0 and selection.indices.max() < N_TRAIN


def test_files_are_written(study):
    out = study.out_dir
    pngs = [f"selection_{m}_{r}.png" for m, r, _ in selection_plan()]
    pngs += ["selections_grid.png", "overlap_heatmap.png", "discriminative_power.png"]
    for name in [*pngs, "overlap.csv", "summary.csv", "sensitivity.csv", "selections.json"]:
        assert (out / name).stat().st_size > 0, name
        assert study.files[name] == out / name
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp")), "temporary files left behind"


def test_selections_json_content(study):
    payload = json.loads((study.out_dir / "selections.json").read_text())
    assert payload["config"]["seed"] == 0 and payload["config"]["budget"] == 0.3
    entries = {entry["name"]: entry for entry in payload["selections"]}
    assert set(entries) == set(study.selections)
    for name, entry in entries.items():
        assert entry["indices"] == study.selections[name].indices.tolist()
        assert entry["budget"] == BUDGET_K and entry["seed"] == 0
        assert {"method", "representation", "params", "summary"} <= set(entry)
        assert 0.0 <= entry["summary"]["test_accuracy"] <= 1.0
    assert entries["prototypicality/hidden"]["params"] == {
        "n_clusters": 2,
        "metric": "euclidean",
        "keep": "hard",
    }
    assert entries["s2l/dynamics"]["params"] == {"n_clusters": 2}
    assert entries["less/gradients"]["params"]["lr_weights"] == pytest.approx(
        [c["lr"] for c in study.reference.checkpoints]
    )


def test_overlap_csv_is_labelled(study):
    import pandas as pd

    frame = pd.read_csv(study.out_dir / "overlap.csv", index_col=0)
    assert list(frame.index) == list(frame.columns) == list(study.selections)
    np.testing.assert_allclose(np.diag(frame.to_numpy()), 1.0)


def test_same_seed_gives_identical_selections_json(study, tmp_path):
    again = run_synthetic_study(tmp_path, seed=0)
    assert (tmp_path / "selections.json").read_bytes() == (study.out_dir / "selections.json").read_bytes()
    assert (tmp_path / "summary.csv").read_bytes() == (study.out_dir / "summary.csv").read_bytes()
    assert again.sensitivity.equals(study.sensitivity)


# --- the paper's findings, on the numbers -------------------------------------------------------
def _mean_distance(study, name):
    return study.summary.loc[name, "mean_boundary_distance"]


def test_hidden_state_prototypicality_picks_points_far_from_the_boundary(study):
    row = study.summary.loc["prototypicality/hidden"]
    assert row["mean_boundary_distance"] > 1.3 * row["mean_boundary_distance_all"]
    assert row["frac_nearest_quintile"] < 0.1


@pytest.mark.parametrize("name", ["prototypicality/dynamics", "hard_to_learn/probability"])
def test_loss_based_selections_pick_points_near_the_boundary(study, name):
    row = study.summary.loc[name]
    assert row["mean_boundary_distance"] < row["mean_boundary_distance_all"]
    assert row["median_boundary_distance"] < 0.6 * row["median_boundary_distance_all"]
    assert row["frac_nearest_quintile"] > 0.4  # a uniform sample gives 0.2


def test_hard_to_learn_and_gradient_prototypicality_hug_the_boundary(study):
    everyone = study.summary["mean_boundary_distance_all"].iloc[0]
    assert _mean_distance(study, "hard_to_learn/probability") < 0.6 * everyone
    assert _mean_distance(study, "prototypicality/gradients") < 0.6 * everyone


@pytest.mark.parametrize("measure", ["boundary_distance_spread", "mean_pairwise_energy_distance"])
def test_diversity_based_s2l_varies_least_across_representations(study, measure):
    values = study.sensitivity[measure]
    assert set(values.index) == {"prototypicality", "s2l", "less"}
    assert values["s2l"] < 0.5 * values.drop("s2l").min()


def test_representations_cover_all_three(study):
    reps = {sel.meta["representation"] for sel in study.selections.values()}
    assert reps == {*REPRESENTATIONS, "probability"}
