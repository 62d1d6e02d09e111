"""Views of an (N, C, d) gradient stack: values computed by hand, the provenance they record, and their use
from ``datadiet.select`` and ``datadiet select --view``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import datadiet
from datadiet.cli import app
from datadiet.errors import ParameterError
from datadiet.representations import views
from datadiet.representations.base import Representation
from datadiet.representations.views import VIEWS, apply_view, check_view, split_view
from datadiet.store import RepresentationStore, make_key

META = {"stage": "gradients", "split": "train", "lr": [0.1, 0.2, 0.3], "epochs": [1, 3, 5], "dim": 2}


def stack(n: int = 2, meta: dict | None = None, kind: str = "gradients") -> Representation:
    """(n, 3, 2) gradients: row i, checkpoint c, coordinate j holds 6 i + 2 c + j."""
    values = np.arange(n * 6, dtype=np.float64).reshape(n, 3, 2)
    return Representation(values, kind, ids=np.arange(10, 10 + n), meta=dict(META if meta is None else meta))


def test_split_view_splits_off_the_text_after_the_colon():
    assert split_view("gradients/train:flatten") == ("gradients/train", "flatten")
    assert split_view("gradients/val:checkpoint=3") == ("gradients/val", "checkpoint=3")
    assert split_view("hidden/final") == ("hidden/final", None)
    assert split_view("gradients/train:") == ("gradients/train", "")  # an empty view, refused by check_view
    assert VIEWS == ("flatten", "checkpoint=<epoch>", "lrmean")


@pytest.mark.parametrize(
    ("view", "message"),
    [
        ("flaten", "Unknown view 'flaten'. Did you mean 'flatten'?"),
        ("checkpiont=2", "Did you mean 'checkpoint=2'?"),
        ("", "Unknown view ''."),
        ("checkpoint=x", "needs an integer epoch"),
        ("checkpoint=", "needs an integer epoch"),
        ("mean", "Available: ['flatten', 'checkpoint=<epoch>', 'lrmean']"),
    ],
)
def test_check_view_refuses_unknown_views_naming_the_available_ones(view, message):
    with pytest.raises(ParameterError) as info:
        check_view(view)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("view", ["flatten", "lrmean", "checkpoint=3", "checkpoint=0"])
def test_check_view_accepts_every_view(view):
    check_view(view)


def test_flatten_puts_the_checkpoint_blocks_side_by_side():
    rep = stack()
    flat = apply_view(rep, "flatten")
    assert flat.values.tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    assert flat.kind == "gradients" and flat.ids.tolist() == [10, 11]


def test_flatten_of_a_memmap_is_a_memmap_view_without_a_copy(tmp_path):
    mapped = np.lib.format.open_memmap(tmp_path / "g.npy", mode="w+", dtype=np.float32, shape=(4, 3, 2))
    mapped[:] = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    mapped.flush()
    rep = Representation(np.load(tmp_path / "g.npy", mmap_mode="r"), "gradients", meta=dict(META))
    flat = apply_view(rep, "flatten")
    assert isinstance(flat.values, np.memmap) and flat.values.shape == (4, 6)
    assert np.shares_memory(flat.values, rep.values)
    one = apply_view(rep, "checkpoint=3")  # a strided slice, still of the mapping
    assert isinstance(one.values, np.memmap) and one.values.tolist()[0] == [2.0, 3.0]


def test_checkpoint_takes_the_slice_of_that_epoch_and_its_learning_rate():
    rep = stack()
    one = apply_view(rep, "checkpoint=3")  # epochs [1, 3, 5]: the second checkpoint
    assert one.values.tolist() == [[2, 3], [8, 9]]
    assert one.meta["lr"] == [0.2] and one.meta["epochs"] == [3]
    assert one.meta["source_lr"] == [0.1, 0.2, 0.3] and one.meta["source_epochs"] == [1, 3, 5]
    assert one.meta["view"] == "checkpoint=3" and one.meta["stage"] == "gradients"


def test_checkpoint_of_an_epoch_not_kept_lists_the_epochs():
    with pytest.raises(ParameterError, match=r"no checkpoint of epoch 2; .* epochs \[1, 3, 5\]"):
        apply_view(stack(), "checkpoint=2")


def test_checkpoint_without_epochs_provenance_is_a_zero_based_index():
    bare = Representation(np.arange(12.0).reshape(2, 3, 2))  # a user's bare array: features, no meta
    assert apply_view(bare, "checkpoint=0").values.tolist() == [[0, 1], [6, 7]]
    assert apply_view(bare, "checkpoint=2").values.tolist() == [[4, 5], [10, 11]]
    assert apply_view(bare, "checkpoint=2").meta == {"view": "checkpoint=2"}
    with pytest.raises(ParameterError, match=r"records no 'epochs'.*0-based checkpoint index in \[0, 2\]"):
        apply_view(bare, "checkpoint=3")


def test_lrmean_is_the_learning_rate_weighted_mean_over_checkpoints():
    rep = stack()
    mean = apply_view(rep, "lrmean")
    # row 0: (0.1 * [0, 1] + 0.2 * [2, 3] + 0.3 * [4, 5]) / 0.6 = [1.6/0.6, 2.2/0.6]
    # row 1: (0.1 * [6, 7] + 0.2 * [8, 9] + 0.3 * [10, 11]) / 0.6 = [5.2/0.6, 5.8/0.6]
    expected = [[1.6 / 0.6, 2.2 / 0.6], [5.2 / 0.6, 5.8 / 0.6]]
    np.testing.assert_allclose(mean.values, expected, rtol=1e-12)
    assert "lr" not in mean.meta and "epochs" not in mean.meta
    assert mean.meta["source_lr"] == [0.1, 0.2, 0.3] and mean.meta["view"] == "lrmean"


def test_lrmean_in_row_chunks_equals_one_pass_and_keeps_float32(monkeypatch, rng):
    values = rng.normal(size=(37, 3, 5)).astype(np.float32)
    rep = Representation(values, "gradients", meta={"lr": [1.0, 0.5, 0.25]})
    whole = apply_view(rep, "lrmean").values
    monkeypatch.setattr(views, "chunk_rows_for", lambda *args, **kwargs: 4)
    chunked = apply_view(rep, "lrmean").values
    assert whole.dtype == np.float32 and np.array_equal(whole, chunked)
    w = np.array([1.0, 0.5, 0.25]) / 1.75
    np.testing.assert_allclose(whole, np.einsum("ncd,c->nd", values.astype(np.float64), w), rtol=1e-6)


def test_lrmean_needs_learning_rates():
    with pytest.raises(ParameterError, match=r"'lrmean' needs the checkpoints' learning rates"):
        apply_view(stack(meta={"epochs": [1, 3, 5]}), "lrmean")
    with pytest.raises(ParameterError, match=r"one finite learning rate >= 0 per checkpoint"):
        apply_view(stack(meta={"lr": [0.1, 0.2]}), "lrmean")


def test_flatten_without_lr_records_no_source_lr():
    flat = apply_view(stack(meta={}), "flatten")
    assert flat.meta == {"view": "flatten"}


@pytest.mark.parametrize(
    ("rep", "shape"),
    [
        (Representation(np.zeros((4, 3)), "hidden"), "(4, 3)"),
        (Representation(np.zeros((4, 3))), "(4, 3)"),
        (Representation(np.zeros((4, 5, 3)), "dynamics", meta={"epochs": 5}), "(4, 5, 3)"),
    ],
)
@pytest.mark.parametrize("view", ["flatten", "checkpoint=1", "lrmean"])
def test_a_view_that_does_not_fit_is_refused_naming_view_shape_and_what_fits(rep, shape, view):
    with pytest.raises(ParameterError) as info:
        apply_view(rep, view)
    message = str(info.value)
    assert f"The view {view!r} does not fit this {rep.kind} representation of shape {shape}" in message
    assert "views that fit it: none" in message and "\n" not in message


def test_no_view_is_the_representation_itself_and_the_source_is_not_changed():
    rep = stack()
    assert apply_view(rep, None) is rep
    before = json.dumps(rep.meta)
    for view in ("flatten", "checkpoint=5", "lrmean"):
        apply_view(rep, view)
    assert json.dumps(rep.meta) == before and rep.values.shape == (2, 3, 2)


def test_apply_view_is_public():
    assert datadiet.apply_view is apply_view


# --- datadiet.select ---------------------------------------------------------------------------------
def grads_pair(rng: np.random.Generator) -> tuple[Representation, Representation]:
    meta = {"stage": "gradients", "lr": [2e-5, 1e-5], "epochs": [1, 2]}
    train = Representation(rng.normal(size=(30, 2, 4)), "gradients", meta={**meta, "split": "train"})
    val = Representation(rng.normal(size=(6, 2, 4)), "gradients", meta={**meta, "split": "val"})
    return train, val


def test_select_with_flatten_runs_an_n_by_d_selector_on_the_stack(rng):
    grads, _ = grads_pair(rng)
    with pytest.raises(ValueError, match="prototypicality"):
        datadiet.select("prototypicality", grads, 0.3)  # the 3-D stack is refused as it is
    sel = datadiet.select("prototypicality", grads, 0.3, view="flatten")
    by_hand = datadiet.select("prototypicality", grads.values.reshape(30, 8), 0.3)
    assert sel.indices.tolist() == by_hand.indices.tolist() and len(sel.indices) == 9
    rep = sel.meta["representation"]
    assert rep["view"] == "flatten" and rep["kind"] == "gradients" and "lr" not in rep
    assert rep["source_lr"] == [2e-5, 1e-5] and rep["source_epochs"] == [1, 2]


def test_select_less_with_a_checkpoint_view_weighs_by_that_checkpoints_lr(rng):
    grads, vgrads = grads_pair(rng)
    sel = datadiet.select("less", grads, 5, val=vgrads, view="checkpoint=2")
    assert sel.meta["params"]["lr_weights"] == [1e-5]
    by_hand = datadiet.select("less", grads.values[:, 1], 5, val=vgrads.values[:, 1], lr_weights=[1e-5])
    assert sel.indices.tolist() == by_hand.indices.tolist()
    assert sel.meta["representation"]["view"] == "checkpoint=2"
    assert sel.meta["representation"]["lr"] == [1e-5] and sel.meta["representation"]["epochs"] == [2]


def test_select_less_with_flatten_passes_no_per_checkpoint_lr_weights(rng):
    grads, vgrads = grads_pair(rng)
    sel = datadiet.select("less", grads, 5, val=vgrads, view="flatten")  # 2 lrs on a 2-D input would fail
    assert sel.meta["params"]["lr_weights"] is None
    by_hand = datadiet.select("less", grads.values.reshape(30, 8), 5, val=vgrads.values.reshape(6, 8))
    assert sel.indices.tolist() == by_hand.indices.tolist()


def test_select_view_on_a_bare_array_and_a_refusal(rng):
    values = rng.normal(size=(20, 3, 4))
    sel = datadiet.select("prototypicality", values, 5, view="checkpoint=1")  # 0-based without epochs
    assert sel.meta["representation"] == {"kind": "features", "view": "checkpoint=1"}
    with pytest.raises(ParameterError, match="does not fit this features representation of shape"):
        datadiet.select("prototypicality", values[:, 0], 5, view="flatten")


# --- datadiet select --view ---------------------------------------------------------------------------
def test_cli_select_view_on_a_store_entry_records_the_view(tmp_path, rng):
    store = RepresentationStore(tmp_path / "store")
    grads, _ = grads_pair(rng)
    provenance = {**grads.meta, "run": "r0"}
    key = make_key(**provenance)
    store.save(key, grads, provenance=provenance)
    out = tmp_path / "sel.json"
    entry = str(tmp_path / "store" / key)
    args = ["select", "--features", entry, "--algorithm", "semdedup", "--budget", "10"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--view", "flatten"])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert len(record["indices"]) == 10
    rep = record["representation"]
    assert rep["view"] == "flatten" and rep["source_lr"] == [2e-5, 1e-5] and rep["run"] == "r0"
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "x.json"), "--view", "flaten"])
    assert result.exit_code != 0 and "--view: Unknown view 'flaten'. Did you mean 'flatten'?" in result.output
    assert not (tmp_path / "x.json").exists()
