"""DatadietCallback inside a real ``transformers.Trainer`` run on a tiny random BERT.

Invariant: adding the callback changes nothing about training (same final weights and loss as a run without
it, same seed), and the run directory it writes holds what ``train_reference`` would record: per-epoch
evaluation-pass dynamics consistent with the model, checkpoints with the mean lr of their epoch and Adam
state per trained parameter, readable by ``ReferenceRun.open`` and ``read_dynamics``.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from datadiet.representations.dynamics import read_dynamics
from datadiet.training import ReferenceRun
from datadiet.training.hf_trainer import DatadietCallback, load_trainer_run
from tests.helpers import assert_float32_path_close, decisive, gamma
from tests.models.toy_models import make_tiny_bert, toy_dataset

N, EPOCHS, BATCH, LR = 40, 2, 8, 1e-3


class _Rows(torch.utils.data.Dataset):
    """A map-style dataset of tokenized rows (what users pass the Trainer without `datasets`)."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return dict(self.rows[i])


class _ModeSpy(TrainerCallback):
    """Records the model's mode after the callbacks before it ran their on_epoch_end."""

    def __init__(self) -> None:
        self.modes: list[bool] = []

    def on_epoch_end(self, args, state, control, **kwargs):
        self.modes.append(kwargs["model"].training)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def tokenizer(bert_dir):
    return AutoTokenizer.from_pretrained(str(bert_dir))


@pytest.fixture(scope="module")
def rows(tokenizer):
    ds = toy_dataset(N, seed=3)
    encoded = [
        dict(tokenizer(text), labels=int(label)) for text, label in zip(ds.texts, ds.labels, strict=True)
    ]
    return encoded


def _model(bert_dir):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return AutoModelForSequenceClassification.from_pretrained(str(bert_dir), num_labels=2)


def _train(bert_dir, tokenizer, dataset, out_dir, callbacks, **overrides):
    args = TrainingArguments(
        output_dir=str(out_dir), num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH,
        learning_rate=LR, report_to=[], save_strategy="no", use_cpu=True, seed=0,
        dataloader_num_workers=0, disable_tqdm=True, **overrides,
    )  # fmt: skip
    model = _model(bert_dir)
    trainer = Trainer(model, args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)
    return model, trainer, trainer.train()


@pytest.fixture(scope="module")
def plain(bert_dir, tokenizer, rows, tmp_path_factory):
    """A run with the callback (default TrainingArguments column handling) and a mode spy after it."""
    run_dir = tmp_path_factory.mktemp("plain") / "run"
    callback, spy = DatadietCallback(run_dir, _Rows(rows), eval_batch_size=16), _ModeSpy()
    out = tmp_path_factory.mktemp("plain_out")
    model, _, output = _train(bert_dir, tokenizer, _Rows(rows), out, [callback, spy])
    return run_dir, model, output, spy


@pytest.fixture(scope="module")
def with_index(bert_dir, tokenizer, rows, tmp_path_factory):
    """A run recording the training pass ('idx' column, remove_unused_columns=False, loss per epoch)."""
    indexed = _Rows([{**row, "idx": i} for i, row in enumerate(rows)])
    run_dir = tmp_path_factory.mktemp("indexed") / "run"
    callback = DatadietCallback(run_dir, indexed, record_in_training=True, checkpoint_epochs=[2])
    out = tmp_path_factory.mktemp("indexed_out")
    _, trainer, _ = _train(
        bert_dir, tokenizer, indexed, out, [callback], remove_unused_columns=False, logging_strategy="epoch"
    )
    return run_dir, trainer


def test_dynamics_match_the_final_model(plain, rows, tokenizer):
    run_dir, model, _, _ = plain
    prob, loss, correct = (read_dynamics(run_dir, q).values for q in ("prob", "loss", "correct"))
    assert prob.shape == loss.shape == correct.shape == (N, EPOCHS) and prob.dtype == np.float32
    assert ((prob >= 0) & (prob <= 1)).all() and set(np.unique(correct)) <= {0.0, 1.0}
    np.testing.assert_allclose(loss, -np.log(prob), rtol=1e-5, atol=1e-6)
    batch = DataCollatorWithPadding(tokenizer)([dict(row) for row in rows])
    labels = batch.pop("labels")
    model.eval()
    with torch.no_grad():  # one batch of 40: the callback's batches of 16 round otherwise
        logits, logits64 = (m(**batch).logits for m in (model, copy.deepcopy(model).double()))
    sure = decisive(logits, logits64)  # rows whose argmax no rounding can flip
    assert sure.mean() > 0.9
    np.testing.assert_array_equal(correct[sure, -1], (logits.argmax(-1) == labels).float().numpy()[sure])
    expected, expected64 = (torch.softmax(z, -1)[torch.arange(N), labels].numpy() for z in (logits, logits64))
    assert_float32_path_close(prob[:, -1], expected, expected64)
    assert read_dynamics(run_dir, "prob").ids.tolist() == [str(i) for i in range(N)]


def test_checkpoints_hold_the_mean_lr_and_adam_state_of_each_epoch(plain):
    run_dir, model, _, _ = plain
    steps = N // BATCH  # 5 optimizer steps per epoch; linear decay from LR over 10 steps, no warmup
    schedule = LR * (EPOCHS * steps - np.arange(EPOCHS * steps)) / (EPOCHS * steps)
    names = sorted(name for name, p in model.named_parameters() if p.requires_grad)
    for epoch in (1, 2):
        folder = run_dir / "checkpoints" / f"epoch_{epoch:03d}"
        meta = json.loads((folder / "checkpoint.json").read_text())
        assert meta["epoch"] == epoch and meta["global_step"] == epoch * steps
        assert meta["steps_in_epoch"] == steps
        assert meta["lr"] == pytest.approx(schedule[(epoch - 1) * steps : epoch * steps].mean(), rel=1e-9)
        assert sorted(load_file(folder / "trainable.safetensors")) == names
        adam = load_file(folder / "adam_state.safetensors")
        assert sorted(adam) == sorted(f"{n}.{k}" for n in names for k in ("exp_avg", "exp_avg_sq"))
        assert all(adam[f"{n}.exp_avg_sq"].abs().sum() > 0 for n in names if "classifier" in n)
    last = load_file(run_dir / "checkpoints" / "epoch_002" / "trainable.safetensors")
    final = load_file(run_dir / "final" / "trainable.safetensors")
    assert all(torch.equal(last[name], final[name]) for name in names)


def test_reference_run_opens_the_run(plain):
    run_dir = plain[0]
    assert (run_dir / "DONE").is_file()
    run = ReferenceRun.open(run_dir)
    assert [c.epoch for c in run.checkpoints] == [1, 2]
    np.testing.assert_allclose(run.checkpoint_lrs, [0.8 * LR, 0.3 * LR], rtol=1e-9)
    np.testing.assert_array_equal(run.prob, read_dynamics(run_dir, "prob").values)
    assert run.ids.tolist() == [str(i) for i in range(N)]
    assert run.config["source"] == "transformers.Trainer" and run.config["dataset"]["n"] == N


def test_callback_leaves_training_unchanged(plain, bert_dir, tokenizer, rows, tmp_path):
    _, model, output, spy = plain
    bare, _, bare_output = _train(bert_dir, tokenizer, _Rows(rows), tmp_path, [])
    for (name, param), (bare_name, bare_param) in zip(
        model.named_parameters(), bare.named_parameters(), strict=True
    ):
        assert name == bare_name and torch.equal(param, bare_param), name
    assert output.training_loss == bare_output.training_loss
    assert spy.modes == [True] * EPOCHS  # the callback restored train mode after its evaluation pass


def test_training_pass_matches_the_trainers_logged_loss(with_index):
    run_dir, trainer = with_index
    prob = read_dynamics(run_dir, "prob", in_training=True).values
    loss = read_dynamics(run_dir, "loss", in_training=True).values
    assert prob.shape == (N, EPOCHS) and np.isfinite(prob).all() and ((prob >= 0) & (prob <= 1)).all()
    np.testing.assert_allclose(loss, -np.log(prob), rtol=1e-5, atol=1e-6)
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    # equal batches: the mean of the batch means, the same positive float32 losses summed in another
    # order, so each side is within gamma_N of the exact mean
    np.testing.assert_allclose(loss.mean(axis=0), logged, rtol=2 * gamma(N + 2))
    assert not np.array_equal(prob, read_dynamics(run_dir, "prob").values)  # dropout was on
    assert [c.epoch for c in ReferenceRun.open(run_dir).checkpoints] == [2]


def test_load_trainer_run_restores_weights_and_adam_state(plain, bert_dir):
    run_dir, trained, _, _ = plain
    fresh = _model(bert_dir)
    adam = load_trainer_run(fresh, run_dir, epoch=1)
    saved = load_file(run_dir / "checkpoints" / "epoch_001" / "adam_state.safetensors")
    assert torch.equal(adam["classifier.weight"][1], saved["classifier.weight.exp_avg_sq"])
    assert load_trainer_run(fresh, run_dir) is None
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), trained.parameters(), strict=True))
    with pytest.raises(FileNotFoundError, match="saved checkpoints"):
        load_trainer_run(fresh, run_dir, epoch=3)


@pytest.mark.parametrize("name", ["trainable.safetensors", "adam_state.safetensors"])
def test_a_truncated_trainer_run_file_names_it_and_how_to_record_it_again(plain, bert_dir, tmp_path, name):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(plain[0], run_dir)
    path = run_dir / "checkpoints" / "epoch_001" / name
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError) as info:
        load_trainer_run(_model(bert_dir), run_dir, epoch=1)
    message = str(info.value)
    assert "\n" not in message and f"'{path}' is unreadable" in message
    assert "record it again with DatadietCallback" in message


def test_record_in_training_without_an_index_column_is_refused(rows, tmp_path):
    with pytest.raises(ValueError, match=r"'idx'.*remove_unused_columns=False"):
        DatadietCallback(tmp_path, _Rows(rows), record_in_training=True)
    with pytest.raises(ValueError, match="unique integer"):
        DatadietCallback(tmp_path, _Rows([{**row, "idx": 0} for row in rows]), record_in_training=True)


def test_run_checks_happen_before_training(rows, tmp_path):
    indexed = _Rows([{**row, "idx": i} for i, row in enumerate(rows)])
    state, control = TrainerState(num_train_epochs=2), TrainerControl()
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True)
    callback = DatadietCallback(tmp_path / "a", indexed, record_in_training=True)
    with pytest.raises(ValueError, match="remove_unused_columns=False"):
        callback.on_train_begin(args, state, control, model=None)
    with pytest.raises(ValueError, match=r"checkpoint_epochs=\[3\] should be <= num_train_epochs=2"):
        DatadietCallback(tmp_path / "b", indexed, checkpoint_epochs=[3]).on_train_begin(
            args, state, control, model=None
        )
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "DONE").write_text("{}")
    with pytest.raises(FileExistsError, match="already holds files"):
        DatadietCallback(tmp_path / "c", indexed).on_train_begin(args, state, control, model=None)


def test_constructor_errors_name_the_problem(rows, tmp_path):
    with pytest.raises(ValueError, match="ids has 3 entries but train_dataset has 40 rows"):
        DatadietCallback(tmp_path, _Rows(rows), ids=["a", "b", "c"])
    with pytest.raises(
        ValueError, match=r"'eval_batch_size' parameter of DatadietCallback must be an int in the range"
    ):
        DatadietCallback(tmp_path, _Rows(rows), eval_batch_size=0)
    with pytest.raises(ValueError, match="'checkpoint_epochs'"):
        DatadietCallback(tmp_path, _Rows(rows), checkpoint_epochs=[0])
    with pytest.raises(TypeError, match="map-style"):
        DatadietCallback(tmp_path, iter(rows))


def test_hf_dataset_with_extra_columns_is_evaluated_as_the_trainer_batches_it(
    bert_dir, tokenizer, rows, tmp_path
):
    datasets = pytest.importorskip("datasets")
    ds = toy_dataset(N, seed=3)
    table = {key: [row[key] for row in rows] for key in ("input_ids", "attention_mask")}
    hf = datasets.Dataset.from_dict({**table, "label": ds.labels.tolist(), "text": ds.texts})
    callback = DatadietCallback(tmp_path / "run", hf, ids=ds.ids.tolist(), checkpoint_epochs=[1])
    _train(bert_dir, tokenizer, hf, tmp_path / "out", [callback])  # the Trainer drops "text"
    run = ReferenceRun.open(tmp_path / "run")
    assert run.prob.shape == (N, EPOCHS) and np.isfinite(run.prob).all()
    assert run.ids.tolist() == ds.ids.tolist() and [c.epoch for c in run.checkpoints] == [1]
    assert run.config["dataset"]["fingerprint"] == hf._fingerprint


def test_represent_reads_a_trainer_recorded_run(plain, bert_dir, tmp_path):
    """The point of the callback: go straight from your own Trainer run to represent and select."""
    import json as _json

    import numpy as np

    from datadiet.config import ReferenceConfig, from_dict
    from datadiet.pipeline.represent import run_represent
    from datadiet.representations.dynamics import read_dynamics

    run_dir = plain[0]
    ds = toy_dataset(N, seed=3)  # the data the Trainer saw, in its order; ids default to row positions
    lines = [
        {"id": str(i), "text": t, "label": ds.label_names[y]}
        for i, (t, y) in enumerate(zip(ds.texts, ds.labels, strict=True))
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(_json.dumps(line) for line in lines))
    cfg = from_dict(ReferenceConfig, {
        "output": str(tmp_path / "out"), "run_dir": str(run_dir),
        "dataset": {"source": str(tmp_path / "train.jsonl"), "val_split": None, "id": "id"},
        "model": {"path": str(bert_dir), "mode": "full"},
        "represent": {"hidden_stages": ["final"], "gradients": {"dim": 64}},
    })  # fmt: skip
    index = run_represent(cfg)
    assert index["gradients/train"]["shape"] == [N, 2, 64]  # the callback's checkpoints at epochs 1 and 2
    np.testing.assert_array_equal(
        np.load(index["dynamics/prob"]["path"]), read_dynamics(run_dir, "prob").values
    )
    assert index["hidden/final"]["shape"][0] == N
    assert not (run_dir / "state").exists()  # nothing was retrained into the user's run


def test_represent_refuses_a_trainer_run_on_other_data(plain, bert_dir, tmp_path):
    import json as _json

    from datadiet.config import ReferenceConfig, from_dict
    from datadiet.pipeline.represent import run_represent

    lines = [{"text": f"text {i}", "label": "pos" if i % 2 else "neg"} for i in range(N + 1)]
    (tmp_path / "train.jsonl").write_text("\n".join(_json.dumps(line) for line in lines))
    cfg = from_dict(ReferenceConfig, {
        "output": str(tmp_path / "out"), "run_dir": str(plain[0]),
        "dataset": {"source": str(tmp_path / "train.jsonl"), "val_split": None},
        "model": {"path": str(bert_dir), "mode": "full"},
    })  # fmt: skip
    with pytest.raises(ValueError, match="recorded 40 examples") as info:
        run_represent(cfg)
    message = str(info.value)
    assert "(first ids ['0', '1', '2'])" in message and "np.str_" not in message  # plain strings
    assert "Set dataset.id to the id column your Trainer run used" in message
    assert not (tmp_path / "out").exists()  # refused before anything was written
