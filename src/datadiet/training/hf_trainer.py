"""Record datadiet's training dynamics and checkpoints inside your own ``transformers.Trainer`` run.

Add :class:`DatadietCallback` to a ``Trainer`` that fine-tunes a sequence classifier and the run directory
gets the layout :func:`datadiet.training.train_reference` writes (see :mod:`datadiet.training`), so
``ReferenceRun.open``, :func:`~datadiet.representations.dynamics.read_dynamics` and the selectors read it::

    run_dir/dynamics/{prob,loss,correct}.npy      (n_examples, epochs) float32, evaluation pass per epoch
    run_dir/dynamics/*_train_pass.npy             only with record_in_training
    run_dir/checkpoints/epoch_{e:03d}/            {trainable,adam_state}.safetensors, checkpoint.json
    run_dir/final/trainable.safetensors           the model as the Trainer leaves it
    run_dir/ids.json, run_dir/config.json         ("source": "transformers.Trainer"), run_dir/DONE (last)

After every epoch the callback runs the Trainer's model in eval mode, without gradients, over the training
set in its original row order (batched with the Trainer's data collator) and records each example's
correct-class probability, cross-entropy and correctness. The model's mode and the torch RNG states are
restored, so the Trainer's results are unchanged. A checkpoint's ``lr`` is the mean of the learning rates the
optimizer used in that epoch's steps.

Limitations: single-process training only; a run resumed with ``resume_from_checkpoint`` is refused (the
callback's records are not part of the Trainer's checkpoints); labels must be class indices of shape
(batch,). With ``load_best_model_at_end`` the final weights are the best model's. ``config.json["model"]`` is
not a :meth:`~datadiet.models.base.ReferenceModel.describe` dict, so ``ReferenceRun.load_checkpoint`` and
``load_final`` refuse every ``ReferenceModel``: load weights with :func:`load_trainer_run` instead.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from datadiet._core.checks import check_number
from datadiet._core.files import sha256_bytes
from datadiet.errors import ParameterError, ParameterTypeError
from datadiet.models.base import inference_mode
from datadiet.representations.dynamics import (
    ADAM_STATE,
    IDS_FILE,
    QUANTITIES,
    TRAIN_PASS,
    TRAINABLE,
    RunLayout,
    run_fix,
)
from datadiet.representations.gradients import adam_state_from_optimizer
from datadiet.training.run import adam_moments, load_tensors
from datadiet.training.writer import RunWriter

INDEX_COLUMNS: tuple[str, ...] = ("idx", "id")
_ARG_FIELDS = (
    "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "weight_decay", "warmup_ratio", "warmup_steps", "lr_scheduler_type",
    "optim", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "seed", "data_seed", "bf16",
    "fp16", "label_smoothing_factor", "remove_unused_columns", "dataloader_drop_last",
    "train_sampling_strategy", "load_best_model_at_end",
)  # fmt: skip


class DatadietCallback(TrainerCallback):
    """A ``TrainerCallback`` that writes a datadiet reference run while ``Trainer.train()`` runs.

    Parameters
    ----------
    run_dir : str or path-like
        Output folder; must be absent or empty when training starts.
    train_dataset : map-style dataset of dict
        The tokenized dataset the Trainer trains on (rows hold ``input_ids``, ``attention_mask``, ...
        and the label), in the row order of every recorded array.
    ids : sequence of str, optional
        Example ids, one per row; defaults to the row positions as strings.
    checkpoint_epochs : sequence of int, optional
        Epochs (1-based) after which a checkpoint is saved; ``None`` means the first ``min(5, epochs)``.
    eval_batch_size : int
        Rows per forward pass of the per-epoch evaluation pass.
    record_in_training : bool
        Also record the values from the training batches' logits (before each optimizer step). The
        Trainer's sampler does not say which rows form a batch, so this needs an integer ``"idx"`` (or
        ``"id"``) column with a unique value per row and ``TrainingArguments(remove_unused_columns=False)``
        so that the column reaches the model, where the callback takes it out of the inputs.

    Examples
    --------
    >>> callback = DatadietCallback("runs/ref", tokenized_train)  # doctest: +SKIP
    >>> Trainer(model, args, train_dataset=tokenized_train, callbacks=[callback]).train()  # doctest: +SKIP
    >>> read_dynamics("runs/ref", "prob").values.shape  # doctest: +SKIP
    (5485, 3)
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        train_dataset: Any,
        *,
        ids: Sequence[Any] | None = None,
        checkpoint_epochs: Sequence[int] | None = None,
        eval_batch_size: int = 64,
        record_in_training: bool = False,
    ) -> None:
        check_number("DatadietCallback", "eval_batch_size", eval_batch_size, integer=True, low=1)
        if not isinstance(record_in_training, bool):
            raise ParameterTypeError(
                "The 'record_in_training' parameter of DatadietCallback must be a bool. "
                f"Got {record_in_training!r} instead."
            )
        self.run_dir = Path(run_dir)
        self._writer = RunWriter(self.run_dir)
        self.train_dataset = _check_dataset(train_dataset)
        self.ids = _check_ids(ids, len(train_dataset))
        self.checkpoint_epochs = _check_epochs(checkpoint_epochs)
        self.eval_batch_size = int(eval_batch_size)
        self.record_in_training = record_in_training
        self.index_column, self._row_of = None, {}
        if record_in_training:
            self.index_column, self._row_of = _index_column(train_dataset)
        self._hooks: list[Any] = []

    # --- Trainer events --------------------------------------------------------------------------------
    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Check the run can be recorded, pick the collator, hook the model for the training pass."""
        model = kwargs["model"]
        self._check_run(args, state, kwargs.get("train_dataloader"))
        self._collate = _collator(kwargs, args, model)
        self._columns: dict[str, list[np.ndarray]] = {}
        self._epoch, self._epoch_lrs, self._epoch_steps, self._lrs = 0, [], [], []
        self._saved: list[int] = []
        self._pending_index: torch.Tensor | None = None
        if self.record_in_training:
            self._hooks = [
                model.register_forward_pre_hook(self._take_index, with_kwargs=True),
                model.register_forward_hook(self._record_training_batch, with_kwargs=True),
            ]

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Start a new epoch column (and the training-pass columns)."""
        self._epoch, self._lrs = self._epoch + 1, []
        if self.record_in_training:
            for quantity in QUANTITIES:
                column = np.full(len(self.train_dataset), np.nan, np.float32)
                self._columns.setdefault(f"{quantity}{TRAIN_PASS}", []).append(column)

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Note the learning rate of the step just taken (before the scheduler moves it)."""
        self._lrs.append(float(kwargs["optimizer"].param_groups[0]["lr"]))

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Run the evaluation pass; save a checkpoint when the schedule says so."""
        model = kwargs["model"]
        self._evaluate(model)
        self._epoch_lrs.append(float(np.mean(self._lrs)) if self._lrs else float("nan"))
        self._epoch_steps.append(len(self._lrs))
        if self._epoch in self._schedule():
            self._write_checkpoint(model, kwargs["optimizer"], state)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Write the dynamics, the final weights, ids.json, config.json and, last, DONE."""
        self._remove_hooks()
        writer = self._writer
        writer.write_dynamics({name: np.stack(columns, axis=1).astype(np.float32)
                               for name, columns in self._columns.items()})  # fmt: skip
        model = kwargs["model"]
        final = writer.write_final(_trainable_state(model))
        writer.write_ids(self.ids)
        config = self._config(args, state, model)
        writer.write_config({**config, "final_sha256": _sha256(final)})
        writer.finish(self._epoch, state.global_step)

    # --- internals -------------------------------------------------------------------------------------
    def _check_run(self, args: TrainingArguments, state: TrainerState, dataloader: Any) -> None:
        if args.world_size > 1:
            raise ParameterError(
                f"DatadietCallback records single-process training only; this run has world_size="
                f"{args.world_size}. Train on one process, or record with datadiet.training.train_reference."
            )
        if state.global_step > 0:
            raise ParameterError(
                f"DatadietCallback cannot join a resumed run (global_step={state.global_step}); its records "
                "are not in the Trainer's checkpoints. Train from the start with the callback."
            )
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise FileExistsError(
                f"run_dir '{self.run_dir}' already holds files; use another run_dir or delete this one."
            )
        n_trainer = _length(getattr(dataloader, "dataset", None))
        if n_trainer is not None and n_trainer != len(self.train_dataset):
            raise ParameterError(
                f"The Trainer trains on {n_trainer} rows but train_dataset has {len(self.train_dataset)}; "
                "pass the callback the same dataset as the Trainer."
            )
        planned = int(state.num_train_epochs)
        if self.checkpoint_epochs and max(self.checkpoint_epochs) > planned:
            raise ParameterError(
                f"checkpoint_epochs={list(self.checkpoint_epochs)} should be <= num_train_epochs={planned}."
            )
        if self.record_in_training and args.remove_unused_columns:
            raise ParameterError(
                f"record_in_training needs the {self.index_column!r} column in every training batch, but "
                "the Trainer removes it; set TrainingArguments(remove_unused_columns=False)."
            )

    def _schedule(self) -> tuple[int, ...]:
        return (1, 2, 3, 4, 5) if self.checkpoint_epochs is None else self.checkpoint_epochs

    def _evaluate(self, model: torch.nn.Module) -> None:
        """One pass over the training set in row order; appends a column per metric."""
        n, device = len(self.train_dataset), _device(model)
        values = {quantity: np.full(n, np.nan, np.float32) for quantity in QUANTITIES}
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), inference_mode(model):
            for start in range(0, n, self.eval_batch_size):
                rows = np.arange(start, min(start + self.eval_batch_size, n))
                batch = self._collate([self.train_dataset[int(i)] for i in rows])
                labels = batch.pop("labels", None)
                labels = _labels(batch.pop("label", None) if labels is None else labels).to(device)
                inputs = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
                _record(values, rows, _logits(model(**inputs)), labels)
        for metric, column in values.items():
            self._columns.setdefault(metric, []).append(column)

    def _take_index(
        self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Forward pre-hook: remove the index column from the model inputs, keep it for the post-hook."""
        self._pending_index = kwargs.pop(cast(str, self.index_column), None)  # a str: the hook needs it
        return args, kwargs

    def _record_training_batch(
        self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        """Forward hook: record a training batch's values into the current epoch's training-pass columns."""
        index, self._pending_index = self._pending_index, None
        if not (module.training and torch.is_grad_enabled()) or self._epoch == 0:
            return
        if index is None:
            raise ParameterError(
                f"A training batch has no {self.index_column!r} column; record_in_training needs it in "
                "every batch: keep it in the dataset and set TrainingArguments(remove_unused_columns=False)."
            )
        rows = np.array([self._row(int(v)) for v in torch.as_tensor(index).reshape(-1).tolist()])
        values = {q: self._columns[f"{q}{TRAIN_PASS}"][-1] for q in QUANTITIES}
        labels = _labels(kwargs.get("labels"))
        _record(values, rows, _logits(output).detach(), labels.to(_logits(output).device))

    def _row(self, value: int) -> int:
        if value not in self._row_of:
            raise ParameterError(
                f"A training batch has {self.index_column}={value}, which no row of train_dataset holds; "
                "pass the callback the same dataset as the Trainer."
            )
        return self._row_of[value]

    def _write_checkpoint(self, model: torch.nn.Module, optimizer: Any, state: TrainerState) -> None:
        meta = {"epoch": self._epoch, "lr": self._epoch_lrs[-1], "global_step": int(state.global_step)}
        meta["steps_in_epoch"] = self._epoch_steps[-1]
        trainable = _trainable_state(model)
        self._writer.write_checkpoint(self._epoch, trainable, _adam_state(model, optimizer), meta)
        self._saved.append(self._epoch)

    def _config(self, args: TrainingArguments, state: TrainerState, model: torch.nn.Module) -> dict[str, Any]:
        resolved = {
            "checkpoint_schedule": list(self._saved),
            "epochs": self._epoch,
            "steps_per_epoch": list(self._epoch_steps),
            "total_steps": int(state.global_step),
            "epoch_lrs": list(self._epoch_lrs),
            "eval_batch_size": self.eval_batch_size,
            "record_in_training": self.record_in_training,
        }
        dataset = {"n": len(self.train_dataset), "ids_file": IDS_FILE, "ids_sha256": _sha256(self.ids)}
        dataset.update(fingerprint=getattr(self.train_dataset, "_fingerprint", None), index=self.index_column)
        train_config = {name: getattr(args, name, None) for name in _ARG_FIELDS}
        train_config["checkpoint_epochs"] = (
            None if self.checkpoint_epochs is None else list(self.checkpoint_epochs)
        )
        out = {"source": "transformers.Trainer", "train_config": train_config, "model": _describe(model)}
        return _jsonable({**out, "dataset": dataset, "train_config_resolved": resolved})

    def _remove_hooks(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []


def load_trainer_run(
    model: torch.nn.Module, run_dir: str | os.PathLike[str], *, epoch: int | None = None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """Load a :class:`DatadietCallback` run's final weights (or epoch ``epoch``'s) into ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        Built like the trained model (same architecture, same parameters with ``requires_grad``).
    run_dir : str or path-like
    epoch : int, optional
        A checkpointed epoch; ``None`` loads ``final/``.

    Returns
    -------
    adam_state : dict of str to (exp_avg, exp_avg_sq), or None
        That checkpoint's Adam moments per trained parameter (what ``per_sample_gradients`` takes as
        ``adam_state``); ``None`` for the final weights.
    """
    layout = RunLayout(Path(run_dir))
    folder = layout.final.parent if epoch is None else layout.checkpoint(epoch)
    if not (folder / TRAINABLE).is_file():
        saved = sorted(p.name for p in layout.checkpoints.glob("epoch_*"))
        raise FileNotFoundError(f"'{folder}' holds no {TRAINABLE}; saved checkpoints: {saved}.")
    fix = run_fix(layout.root)
    state = load_tensors(folder / TRAINABLE, fix=fix)
    params = dict(_trainable_parameters(model))
    reshaped = sorted(name for name in set(state) & set(params) if state[name].shape != params[name].shape)
    if set(state) != set(params) or reshaped:
        raise ParameterError(
            f"The saved weights do not match this model: missing {sorted(set(params) - set(state))[:3]}, "
            f"unexpected {sorted(set(state) - set(params))[:3]}, other shape {reshaped[:3]}. Build the model "
            "as it was trained."
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(state[name].to(device=param.device, dtype=param.dtype))
    if epoch is None:
        return None
    path = folder / ADAM_STATE
    return adam_moments(load_tensors(path, fix=fix), list(params.items()), path, fix)


# --- helpers -------------------------------------------------------------------------------------------
def _check_dataset(dataset: Any) -> Any:
    if isinstance(dataset, torch.utils.data.IterableDataset) or not hasattr(dataset, "__getitem__"):
        raise ParameterTypeError(
            "train_dataset must be a map-style dataset (with __len__ and __getitem__) of dict rows. "
            f"Got {type(dataset).__name__} instead."
        )
    if _length(dataset) in (None, 0):
        raise ParameterError("train_dataset must have a length and at least one row.")
    return dataset


def _check_ids(ids: Sequence[Any] | None, n: int) -> list[str]:
    if ids is None:
        return [str(i) for i in range(n)]
    out = [str(i) for i in ids]
    if len(out) != n:
        raise ParameterError(
            f"ids has {len(out)} entries but train_dataset has {n} rows; pass one id per row."
        )
    if len(set(out)) != n:
        raise ParameterError("ids must be unique; found duplicates.")
    return out


def _check_epochs(epochs: Sequence[int] | None) -> tuple[int, ...] | None:
    if epochs is None:
        return None
    if isinstance(epochs, (str, bytes)) or not isinstance(epochs, Sequence):
        raise ParameterTypeError(
            "The 'checkpoint_epochs' parameter of DatadietCallback must be None or a sequence of ints. "
            f"Got {epochs!r} instead."
        )
    for epoch in epochs:
        check_number("DatadietCallback", "checkpoint_epochs", epoch, integer=True, low=1)
    return tuple(sorted({int(e) for e in epochs}))


def _index_column(dataset: Any) -> tuple[str, dict[int, int]]:
    """The index column and its value -> row position map; raises when there is none."""
    first = dataset[0]
    found = [name for name in INDEX_COLUMNS if isinstance(first, Mapping) and name in first]
    if not found:
        raise ParameterError(
            "record_in_training needs to know which rows form each training batch, and the Trainer's "
            f"sampler does not say. Add an integer column {INDEX_COLUMNS[0]!r} (e.g. "
            "dataset.add_column('idx', range(len(dataset)))) and train with "
            "TrainingArguments(remove_unused_columns=False), or set record_in_training=False."
        )
    name = found[0]
    column = dataset[name] if hasattr(dataset, "column_names") else [row[name] for row in dataset]
    values = [_as_int(value) for value in column]
    if None in values or len(set(values)) != len(values):
        raise ParameterError(
            f"The {name!r} column of train_dataset must hold a unique integer per row; add one with "
            "dataset.add_column('idx', range(len(dataset)))."
        )
    return name, {value: row for row, value in enumerate(values) if value is not None}  # none is None


def _as_int(value: Any) -> int | None:
    """``value`` as an int when it is one integer (Python, numpy or a one-element tensor), else None."""
    if isinstance(value, (str, bytes, bool)):
        return None
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        return None
    if tensor.numel() != 1 or tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        return None
    return int(tensor.item())


def _collator(kwargs: Mapping[str, Any], args: TrainingArguments, model: torch.nn.Module) -> Callable:
    """Rows -> batch as the Trainer builds it: its collator, after its column removal."""
    dataloader = kwargs.get("train_dataloader")
    collate = getattr(dataloader, "collate_fn", None)
    if collate is None:
        tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
        if tokenizer is None or not hasattr(tokenizer, "pad"):
            raise ParameterError(
                "DatadietCallback found neither the Trainer's data collator nor a tokenizer to pad with; "
                "pass processing_class=tokenizer to the Trainer."
            )
        from transformers import DataCollatorWithPadding

        collate = DataCollatorWithPadding(tokenizer)
    if not args.remove_unused_columns:
        return collate
    keep = _signature_columns(model, args)
    return lambda rows: collate([{k: v for k, v in row.items() if k in keep} for row in rows])


def _signature_columns(model: torch.nn.Module, args: TrainingArguments) -> set[str]:
    """The columns the Trainer keeps: the model's forward arguments and the label names."""
    base = _base_model(model)
    names = set(inspect.signature(base.forward).parameters)
    return names | {"label", "label_ids", "labels", *(args.label_names or [])}


def _record(
    values: dict[str, np.ndarray], rows: np.ndarray, logits: torch.Tensor, labels: torch.Tensor
) -> None:
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    picked = log_probs.gather(1, labels[:, None])[:, 0]
    computed = {"prob": picked.exp(), "loss": -picked, "correct": (logits.argmax(-1) == labels).float()}
    for metric, value in computed.items():
        values[metric][rows] = value.cpu().numpy()


def _labels(labels: Any) -> torch.Tensor:
    if labels is None:
        raise ParameterError(
            "A batch has no 'labels'; DatadietCallback records classification runs whose batches hold the "
            "class indices under 'labels' (or 'label', which the data collators rename)."
        )
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.dtype.is_floating_point:
        raise ParameterError(
            f"labels must be class indices of shape (batch,); got dtype {labels.dtype} and shape "
            f"{tuple(labels.shape)}. DatadietCallback records single-label classification only."
        )
    return labels.long()


def _logits(output: Any) -> torch.Tensor:
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, Mapping):
        logits = output.get("logits")
    if logits is None:
        raise ParameterError(
            f"The model returned {type(output).__name__} without 'logits'; DatadietCallback needs a "
            "sequence classifier whose output has .logits of shape (batch, n_labels)."
        )
    return logits


def _trainable_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in _trainable_parameters(model)}


def _adam_state(model: torch.nn.Module, optimizer: Any) -> dict[str, torch.Tensor]:
    """``{param}.exp_avg`` and ``{param}.exp_avg_sq`` per trained parameter (zero where Adam has none)."""
    moments = adam_state_from_optimizer(model, optimizer)
    if not moments:
        name = type(getattr(optimizer, "optimizer", optimizer)).__name__
        warnings.warn(
            f"The Trainer's optimizer ({name}) keeps no Adam moments (exp_avg, exp_avg_sq); the "
            "checkpoints' adam_state.safetensors hold zeros. Train with an Adam(W) optim for "
            "Adam-preconditioned gradients.",
            UserWarning,
            stacklevel=2,
        )
    out = {}
    for name, param in _trainable_parameters(model):
        zeros = torch.zeros_like(param)
        exp_avg, exp_avg_sq = moments.get(name, (zeros, zeros))
        out[f"{name}.exp_avg"], out[f"{name}.exp_avg_sq"] = exp_avg.cpu().clone(), exp_avg_sq.cpu().clone()
    return out


def _describe(model: torch.nn.Module) -> dict[str, Any]:
    base = _base_model(model)
    config = getattr(base, "config", None)
    trainable = _trainable_parameters(model)
    return {
        "backend": "transformers.Trainer",
        "class": type(base).__name__,
        "name_or_path": getattr(config, "_name_or_path", None),
        "model_type": getattr(config, "model_type", None),
        "n_labels": getattr(config, "num_labels", None),
        "peft": base is not model,
        "n_trainable": sum(p.numel() for _, p in trainable),
        "trainable_sha256": _sha256([[name, list(p.shape)] for name, p in trainable]),
    }


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _length(dataset: Any) -> int | None:
    try:
        return len(dataset)
    except TypeError:
        return None


def _sha256(value: Any) -> str:
    return sha256_bytes(value if isinstance(value, bytes) else json.dumps(value).encode("utf-8"))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model a peft wrapper wraps (its ``get_base_model()``), else ``model`` itself."""
    return cast(Any, model).get_base_model() if hasattr(model, "get_base_model") else model
