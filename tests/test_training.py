"""train_reference: dynamics, checkpoint schedule and lrs, Adam state, resume, identity checks, RNG hygiene.

Invariant: a run interrupted during an epoch and rerun with the same config resumes after the last finished
epoch and ends with arrays, checkpoints and weights identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from datadiet.models.encoder import EncoderClassifier
from datadiet.models.frozen import FrozenHead
from datadiet.training import ReferenceRun, TrainConfig, _Loop, train_reference
from tests.models.toy_models import make_tiny_bert, separable_embeddings, toy_dataset


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def _head(n: int = 40, **kwargs) -> tuple[FrozenHead, object]:
    ds, embeddings = separable_embeddings(n)
    return FrozenHead.for_dataset(ds, embeddings, 3, head="mlp", hidden=8, **kwargs), ds


def test_config_errors_use_the_standard_wording():
    with pytest.raises(ValueError) as info:
        TrainConfig(epochs=0)
    assert (
        str(info.value)
        == "The 'epochs' parameter of TrainConfig must be an int in the range [1, inf). Got 0 instead."
    )
    with pytest.raises(
        ValueError, match=r"'lr' parameter of TrainConfig must be a float in the range \(0, inf\)"
    ):
        TrainConfig(lr=0.0)
    with pytest.raises(TypeError, match="'batch_size'"):
        TrainConfig(batch_size=2.5)
    with pytest.raises(ValueError, match=r"'checkpoint_epochs'.*\[1, 3\]"):
        TrainConfig(epochs=3, checkpoint_epochs=[4])
    with pytest.raises(TypeError, match="'record_in_training'"):
        TrainConfig(record_in_training=1)


def test_default_checkpoint_schedule_is_the_first_five_epochs():
    assert TrainConfig(epochs=3).checkpoint_schedule == (1, 2, 3)
    assert TrainConfig(epochs=8).checkpoint_schedule == (1, 2, 3, 4, 5)
    assert TrainConfig(epochs=8, checkpoint_epochs=[6, 2, 2]).checkpoint_schedule == (2, 6)


def test_dynamics_are_consistent_with_the_final_model(tmp_path):
    model, ds = _head(40)
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-2, record_in_training=True)
    run = train_reference(model, ds, config, tmp_path, progress=False)
    for train_pass in (False, True):
        prob, loss, correct = (run.dynamics(m, train_pass=train_pass) for m in ("prob", "loss", "correct"))
        assert prob.shape == loss.shape == correct.shape == (40, 3) and prob.dtype == np.float32
        assert ((prob >= 0) & (prob <= 1)).all() and set(np.unique(correct)) <= {0.0, 1.0}
        np.testing.assert_allclose(loss, -np.log(prob), rtol=1e-5, atol=1e-6)
    logits = model.logits(model.collate(ds, np.arange(40)))  # the model holds the final weights
    probs = torch.softmax(logits, -1)[torch.arange(40), torch.from_numpy(ds.labels)].numpy()
    np.testing.assert_allclose(run.prob[:, -1], probs, atol=1e-6)
    np.testing.assert_array_equal(
        run.correct[:, -1], (logits.argmax(-1).numpy() == ds.labels).astype(np.float32)
    )
    assert not np.array_equal(run.dynamics("prob", train_pass=True), run.prob)


def test_checkpoint_lrs_are_the_mean_warmup_decay_lr_of_each_epoch(tmp_path):
    # 8 examples, batch 4: 2 steps/epoch, 6 in all, ceil(0.1 * 6) = 1 warmup step. The lr of steps 0..5 is
    # 0.1 * [0, 1, 0.8, 0.6, 0.4, 0.2], so the epoch means are 0.05, 0.07 and 0.03.
    model, ds = _head(8)
    config = TrainConfig(epochs=3, batch_size=4, lr=0.1, warmup_ratio=0.1)
    run = train_reference(model, ds, config, tmp_path, progress=False)
    assert [c.epoch for c in run.checkpoints] == [1, 2, 3]
    np.testing.assert_allclose(run.checkpoint_lrs, [0.05, 0.07, 0.03], rtol=1e-6)
    assert [c.global_step for c in run.checkpoints] == [2, 4, 6]
    meta = json.loads((tmp_path / "checkpoints" / "epoch_002" / "checkpoint.json").read_text())
    assert meta["epoch"] == 2 and meta["global_step"] == 4


def test_run_dir_layout(tmp_path):
    model, ds = _head(12)
    train_reference(model, ds, TrainConfig(epochs=2, checkpoint_epochs=[2]), tmp_path, progress=False)
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    expected = {"config.json", "ids.json", "DONE", "final/trainable.safetensors"}
    expected |= {f"dynamics/{m}.npy" for m in ("prob", "loss", "correct")}
    expected |= {f"checkpoints/epoch_002/{f}" for f in ("trainable.safetensors", "adam_state.safetensors")}
    assert files == expected | {"checkpoints/epoch_002/checkpoint.json"}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["dataset"]["fingerprint"] == ds.fingerprint() and config["dataset"]["n"] == 12
    assert config["model"]["backend"] == "frozen_head" and config["train_config"]["epochs"] == 2
    assert json.loads((tmp_path / "ids.json").read_text()) == ds.ids.tolist()


def test_adam_state_is_keyed_by_trainable_parameter_names(tmp_path):
    model, ds = _head(16)
    run = train_reference(model, ds, TrainConfig(epochs=2, batch_size=8, lr=1e-2), tmp_path, progress=False)
    final = model.trainable_state()
    adam = run.load_checkpoint(model, 1)
    names = [name for name, _ in model.trainable_parameters()]
    assert list(adam) == names
    for name, param in model.trainable_parameters():
        exp_avg, exp_avg_sq = adam[name]
        assert exp_avg.shape == exp_avg_sq.shape == param.shape and (exp_avg_sq > 0).any()
    raw = load_file(tmp_path / "checkpoints" / "epoch_001" / "adam_state.safetensors")
    assert set(raw) == {f"{n}.{k}" for n in names for k in ("exp_avg", "exp_avg_sq")}
    epoch1 = load_file(tmp_path / "checkpoints" / "epoch_001" / "trainable.safetensors")
    assert all(torch.equal(model.trainable_state()[n], epoch1[n]) for n in names)  # loaded into the model
    assert not all(torch.equal(final[n], epoch1[n]) for n in names)
    run.load_final(model)
    assert all(torch.equal(model.trainable_state()[n], final[n]) for n in names)


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, bert_dir, monkeypatch):
    ds = toy_dataset(20)
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-3, record_in_training=True)
    build = lambda: EncoderClassifier(bert_dir, 2, seed=0)  # noqa: E731  (a new process builds a new model)
    reference = train_reference(build(), ds, config, tmp_path / "full", progress=False)
    original = _Loop.run_epoch

    def crash_in_epoch_two(self, epoch):
        if epoch == 2:
            self.optimizer.step = None  # the first step of epoch 2 raises, after a forward and backward pass
        return original(self, epoch)

    monkeypatch.setattr(_Loop, "run_epoch", crash_in_epoch_two)
    with pytest.raises(TypeError):
        train_reference(build(), ds, config, tmp_path / "resumed", progress=False)
    assert not (tmp_path / "resumed" / "DONE").exists()
    assert (tmp_path / "resumed" / "checkpoints" / "epoch_001").is_dir()
    epochs_run = []
    monkeypatch.setattr(
        _Loop, "run_epoch", lambda self, epoch: epochs_run.append(epoch) or original(self, epoch)
    )
    resumed = train_reference(build(), ds, config, tmp_path / "resumed", progress=False)
    assert epochs_run == [2, 3]  # epoch 1 was not redone
    for metric in ("prob", "loss", "correct"):
        for train_pass in (False, True):
            np.testing.assert_array_equal(
                resumed.dynamics(metric, train_pass=train_pass),
                reference.dynamics(metric, train_pass=train_pass),
            )
    for rel in ["final/trainable.safetensors"] + [
        f"checkpoints/epoch_{e:03d}/{f}"
        for e in (1, 2, 3)
        for f in ("trainable.safetensors", "adam_state.safetensors")
    ]:
        a, b = load_file(tmp_path / "full" / rel), load_file(tmp_path / "resumed" / rel)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), rel
    np.testing.assert_array_equal(resumed.checkpoint_lrs, reference.checkpoint_lrs)


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_rerunning_the_same_model_object_after_a_crash_in_epoch_one(tmp_path, monkeypatch):
    config = TrainConfig(epochs=2, batch_size=4, lr=5e-2)
    reference_model, ds = _head(16)
    reference = train_reference(reference_model, ds, config, tmp_path / "full", progress=False)
    model, _ = _head(16)
    original = _Loop.run_epoch
    steps = []

    def crash_on_the_second_step(self, epoch):
        step = self.optimizer.step
        self.optimizer.step = lambda: step() or steps.append(1) or len(steps) < 2 or 1 / 0
        return original(self, epoch)

    monkeypatch.setattr(_Loop, "run_epoch", crash_on_the_second_step)
    with pytest.raises(ZeroDivisionError):  # weights moved and gradients left behind when it crashes
        train_reference(model, ds, config, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(_Loop, "run_epoch", original)
    resumed = train_reference(model, ds, config, tmp_path / "resumed", progress=False)
    np.testing.assert_array_equal(resumed.prob, reference.prob)
    assert all(
        torch.equal(reference_model.trainable_state()[k], v) for k, v in model.trainable_state().items()
    )


def test_a_different_config_or_dataset_is_refused(tmp_path):
    model, ds = _head(12)
    config = TrainConfig(epochs=1, lr=1e-2)
    train_reference(model, ds, config, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"train_config\.lr is 0\.01 there but 0\.02 now"):
        train_reference(model, ds, TrainConfig(epochs=1, lr=2e-2), tmp_path, progress=False)
    other, embeddings = separable_embeddings(12, seed=9)
    with pytest.raises(ValueError, match=r"dataset\.fingerprint"):
        train_reference(
            FrozenHead.for_dataset(other, embeddings, 3, head="mlp", hidden=8), other, config, tmp_path
        )
    with pytest.raises(ValueError, match=r"model\.head is 'mlp' there but 'linear' now"):
        train_reference(FrozenHead.for_dataset(ds, separable_embeddings(12)[1], 3), ds, config, tmp_path)


def test_an_unfinished_run_with_another_config_is_refused(tmp_path, monkeypatch):
    model, ds = _head(12)
    monkeypatch.setattr(_Loop, "run_epoch", lambda self, epoch: (_ for _ in ()).throw(RuntimeError("crash")))
    with pytest.raises(RuntimeError):
        train_reference(model, ds, TrainConfig(epochs=2), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"train_config\.epochs"):
        train_reference(model, ds, TrainConfig(epochs=3), tmp_path, progress=False)


def test_a_finished_run_returns_immediately_with_final_weights(tmp_path, monkeypatch):
    model, ds = _head(12)
    config = TrainConfig(epochs=2, lr=1e-2)
    first = train_reference(model, ds, config, tmp_path, progress=False)
    trained = model.trainable_state()
    monkeypatch.setattr(_Loop, "__init__", lambda *args: pytest.fail("a finished run must not train again"))
    fresh, _ = _head(12)
    again = train_reference(fresh, ds, config, tmp_path, progress=False)
    np.testing.assert_array_equal(again.prob, first.prob)
    assert all(torch.equal(fresh.trainable_state()[k], v) for k, v in trained.items())


def test_global_rng_states_are_unchanged(tmp_path, bert_dir):
    model = EncoderClassifier(bert_dir, 2)
    numpy_state = np.random.get_state()  # noqa: NPY002  (the legacy global state must stay untouched)
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    train_reference(model, toy_dataset(8), TrainConfig(epochs=1, batch_size=4), tmp_path, progress=False)
    assert torch.equal(torch_state, torch.get_rng_state())
    assert all(np.array_equal(a, b) for a, b in zip(numpy_state, np.random.get_state(), strict=True))  # noqa: NPY002
    assert python_state == random.getstate()


def test_open_refuses_an_unfinished_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="no DONE marker"):
        ReferenceRun.open(tmp_path)


def test_load_checkpoint_refuses_another_model_and_unknown_epochs(tmp_path):
    model, ds = _head(12)
    run = train_reference(model, ds, TrainConfig(epochs=2, checkpoint_epochs=[2]), tmp_path, progress=False)
    with pytest.raises(KeyError, match=r"saved epochs: \[2\]"):
        run.load_checkpoint(model, 1)
    other = FrozenHead.for_dataset(ds, separable_embeddings(12)[1], 3, head="mlp", hidden=4)
    with pytest.raises(ValueError, match=r"model\.hidden"):
        run.load_final(other)


def test_labels_beyond_the_model_head_are_refused(tmp_path):
    ds, embeddings = separable_embeddings(12)
    model = FrozenHead.for_dataset(ds, embeddings, 2)
    with pytest.raises(ValueError, match="num_labels=3"):
        train_reference(model, ds, TrainConfig(epochs=1), tmp_path, progress=False)


def test_the_run_folder_holds_exactly_the_files_of_its_layout(tmp_path):
    from datadiet.representations.dynamics import (
        ADAM_STATE,
        CHECKPOINT_META,
        QUANTITIES,
        TRAINABLE,
        RunLayout,
    )

    model, ds = _head(12)
    config = TrainConfig(epochs=3, checkpoint_epochs=[1, 3], record_in_training=True)
    train_reference(model, ds, config, tmp_path / "run", progress=False)
    layout = RunLayout(tmp_path / "run")
    expected = {layout.config, layout.ids, layout.done, layout.final}
    expected |= {layout.dynamics(q, train_pass=p) for q in QUANTITIES for p in (False, True)}
    names = (TRAINABLE, ADAM_STATE, CHECKPOINT_META)
    expected |= {layout.checkpoint(epoch) / name for epoch in (1, 3) for name in names}
    assert {p for p in layout.root.rglob("*") if p.is_file()} == expected  # state.pt removed at the end
    assert layout.lock.is_file() and layout.lock.parent == tmp_path
