"""Reading a reference-run folder back: :class:`ReferenceRun`, its checkpoints, config, ids and weights.

The layout is described in :mod:`datadiet.training`; its paths come from
:class:`~datadiet.representations.dynamics.RunLayout`, which the writer uses too."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from datadiet._core.records import (
    Check,
    FieldError,
    check_fields,
    integer,
    list_of,
    mapping,
    number,
    optional,
    read_record,
    text,
)
from datadiet.errors import NotFoundError, ParameterError
from datadiet.models.base import ReferenceModel
from datadiet.representations.dynamics import (
    ADAM_STATE,
    CHECKPOINT_META,
    QUANTITIES,
    TRAINABLE,
    VAL_FIX,
    VAL_IDS_FILE,
    RunLayout,
    load_dynamics_file,
    read_run_ids,
    read_val_ids,
    read_val_info,
    run_fix,
)

_IGNORED_FIELDS = ("model.model_path",)  # the weights fingerprint identifies the model, not its location


@dataclass(frozen=True)
class Checkpoint:
    """One saved checkpoint: ``epoch`` (1-based), the mean ``lr`` over that epoch's steps, its folder."""

    epoch: int
    lr: float
    global_step: int
    path: Path


@dataclass(frozen=True, eq=False)
class ReferenceRun:
    """A finished reference run read back from its directory (see the module docstring for the layout).

    Attributes
    ----------
    run_dir : Path
    config : dict
        The run's ``config.json``.
    ids : ndarray of shape (n_examples,)
        Example ids, the row order of every dynamics array.
    checkpoints : tuple of Checkpoint
        In epoch order.

    Examples
    --------
    >>> run = train_reference(model, train, TrainConfig(epochs=3), "runs/ref")  # doctest: +SKIP
    >>> run.prob.shape, run.checkpoint_lrs.shape  # doctest: +SKIP
    ((5485, 3), (3,))
    >>> adam = ReferenceRun.open("runs/ref").load_checkpoint(model, epoch=1)  # doctest: +SKIP
    """

    run_dir: Path
    config: dict[str, Any]
    ids: np.ndarray
    checkpoints: tuple[Checkpoint, ...] = field(default=())

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str]) -> ReferenceRun:
        """Read a finished run; refuses an unfinished one."""
        run_dir, layout = Path(run_dir), RunLayout(Path(run_dir))
        if not layout.done.is_file():
            raise FileNotFoundError(
                f"'{run_dir}' holds no finished reference run (no DONE marker); run train_reference with the "
                "same config, model and dataset to finish it."
            )
        fix = run_fix(run_dir)
        _run_record(layout.done, "reference run DONE marker", _DONE_FIELDS, fix)
        config = read_run_config(run_dir, fix=fix)
        ids = np.asarray(read_run_ids(run_dir, fix=fix), dtype=object)
        n = config["dataset"].get("n")
        if n is not None and n != len(ids):
            raise ParameterError(
                f"reference run ids file '{layout.ids}' holds {len(ids)} ids but config.json's "
                f"dataset.n is {n}; {fix}."
            )
        schedule = config["train_config_resolved"]["checkpoint_schedule"]
        return cls(run_dir, config, ids, tuple(_read_checkpoint(run_dir, epoch, fix) for epoch in schedule))

    def dynamics(self, metric: str = "prob", *, train_pass: bool = False) -> np.ndarray:
        """The (n_examples, epochs) float32 array of ``metric`` ("prob", "loss", "correct"), memory-mapped."""
        if metric not in QUANTITIES:
            raise ParameterError(f"Unknown metric {metric!r}. Available: {list(QUANTITIES)}.")
        path = RunLayout(self.run_dir).dynamics(metric, train_pass=train_pass)
        if train_pass and not path.is_file():
            raise FileNotFoundError(
                f"'{path}' does not exist; training-pass values are recorded only with "
                "TrainConfig(record_in_training=True)."
            )
        return load_dynamics_file(path, n_rows=len(self.ids), fix=run_fix(self.run_dir), mmap=True)

    @property
    def has_val_dynamics(self) -> bool:
        """Whether the run recorded validation dynamics (``train_reference(..., val=...)``)."""
        return RunLayout(self.run_dir).val_ids.is_file()

    @property
    def val_ids(self) -> np.ndarray | None:
        """The validation ids, the row order of :meth:`val_dynamics` (None: no validation dynamics)."""
        if not self.has_val_dynamics:
            return None
        return np.asarray(read_val_ids(self.run_dir), dtype=object)

    @property
    def val_info(self) -> dict[str, Any] | None:
        """Which validation split :meth:`val_dynamics` is of: ``name``, ``split``, ``fingerprint``, ``n``."""
        return read_val_info(self.run_dir) if self.has_val_dynamics else None

    def val_dynamics(self, metric: str = "prob") -> np.ndarray:
        """The (n_val, epochs) float32 array of ``metric`` on the validation split, memory-mapped."""
        if metric not in QUANTITIES:
            raise ParameterError(f"Unknown metric {metric!r}. Available: {list(QUANTITIES)}.")
        ids = self.val_ids
        if ids is None:
            raise FileNotFoundError(
                f"'{self.run_dir}' recorded no validation dynamics (no {VAL_IDS_FILE}); {VAL_FIX}."
            )
        path = RunLayout(self.run_dir).val_dynamics(metric)
        return load_dynamics_file(path, n_rows=len(ids), fix=run_fix(self.run_dir), mmap=True)

    @property
    def prob(self) -> np.ndarray:
        """Correct-class probability per example and epoch, shape (n_examples, epochs)."""
        return self.dynamics("prob")

    @property
    def loss(self) -> np.ndarray:
        """Cross-entropy per example and epoch, shape (n_examples, epochs)."""
        return self.dynamics("loss")

    @property
    def correct(self) -> np.ndarray:
        """1.0 where the argmax is the label, per example and epoch, shape (n_examples, epochs)."""
        return self.dynamics("correct")

    @property
    def checkpoint_lrs(self) -> np.ndarray:
        """Mean learning rate of every checkpoint's epoch, shape (n_checkpoints,) (TracIn/LESS weights)."""
        return np.array([c.lr for c in self.checkpoints], dtype=np.float64)

    def checkpoint(self, epoch: int) -> Checkpoint:
        """The checkpoint saved after ``epoch``."""
        found = [ckpt for ckpt in self.checkpoints if ckpt.epoch == epoch]
        if not found:
            raise NotFoundError(
                f"No checkpoint for epoch {epoch}; saved epochs: {[c.epoch for c in self.checkpoints]}."
            )
        return found[0]

    def load_checkpoint(
        self, model: ReferenceModel, epoch: int
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Load epoch ``epoch``'s trained weights into ``model``; return its Adam state.

        Returns
        -------
        adam_state : dict of str to (exp_avg, exp_avg_sq)
            First and second moments per trained parameter name, each shaped like the parameter.
        """
        self._check_model(model)
        folder = self.checkpoint(epoch).path
        fix = run_fix(self.run_dir)
        moments = load_tensors(folder / ADAM_STATE, fix=fix)  # checked before any weight moves
        adam = adam_moments(moments, model.trainable_parameters(), folder / ADAM_STATE, fix)
        load_weights(model, folder / TRAINABLE, fix=fix)
        return adam

    def load_final(self, model: ReferenceModel) -> None:
        """Load the final trained weights into ``model``."""
        self._check_model(model)
        load_weights(model, RunLayout(self.run_dir).final, fix=run_fix(self.run_dir))

    def _check_model(self, model: ReferenceModel) -> None:
        if self.config.get("source") == "transformers.Trainer":  # recorded by DatadietCallback
            self._check_trainable_names(model)
            return
        current = {"model": _jsonable(model.describe())}
        _raise_on_difference({"model": self.config["model"]}, current, self.run_dir)

    def _check_trainable_names(self, model: ReferenceModel) -> None:
        """A Trainer-recorded run fits ``model`` when the saved tensors are its trainable parameters."""
        path = RunLayout(self.run_dir).final
        _require_file(path, run_fix(self.run_dir))
        try:
            with safe_open(path, framework="pt") as saved:
                stored = {name: tuple(saved.get_slice(name).get_shape()) for name in saved.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise _unreadable(path, exc, run_fix(self.run_dir)) from None
        ours = {name: tuple(p.shape) for name, p in model.trainable_parameters()}
        if stored != ours:
            missing, extra = sorted(set(ours) - set(stored)), sorted(set(stored) - set(ours))
            reshaped = sorted(n for n in set(ours) & set(stored) if ours[n] != stored[n])
            raise ParameterError(
                f"'{self.run_dir}' was recorded in a transformers.Trainer run whose trainable parameters "
                f"do not match this model's (missing {missing[:3]}, unexpected {extra[:3]}, other shape "
                f"{reshaped[:3]}). Configure model.path/mode/lora as in that run."
            )


# --- reading a run folder back: every file is checked, every error names the file and the fix --------------
def _schedule_field(value: Any) -> None:
    list_of(integer(1))(value)
    if list(value) != sorted(set(value)):
        raise FieldError(f"must list distinct epochs in increasing order. Got {value!r:.60}.")


_DONE_FIELDS: dict[str, Check] = {"epochs": integer(1), "global_step": integer(0)}
_RUN_CONFIG_FIELDS: dict[str, Check] = {
    "model": mapping(), "dataset": mapping(), "train_config": mapping(), "train_config_resolved": mapping(),
    "source": optional(text()),
}  # fmt: skip
_CHECKPOINT_FIELDS: dict[str, Check] = {
    "epoch": integer(1), "lr": number(0), "global_step": integer(0), "steps_in_epoch": optional(integer(0)),
}  # fmt: skip


def _require_file(path: Path, fix: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"reference run file '{path}' does not exist; {fix}.")


def _run_record(path: Path, name: str, fields: dict[str, Check], fix: str, **kwargs: Any) -> dict[str, Any]:
    _require_file(path, fix)
    return read_record(path, name=name, fields=fields, fix=fix, **kwargs)


def read_run_config(run_dir: str | os.PathLike[str], *, fix: str | None = None) -> dict[str, Any]:
    """A run folder's ``config.json``, checked: the sections are JSON objects, the checkpoint schedule is
    a list of distinct increasing epochs and ``dataset.n`` a positive int."""
    run_dir = Path(run_dir)
    fix = fix or run_fix(run_dir)
    path = RunLayout(run_dir).config
    required = ("model", "dataset", "train_config", "train_config_resolved")
    config = _run_record(path, "reference run config", _RUN_CONFIG_FIELDS, fix, required=required)
    check_fields(config["train_config_resolved"], {"checkpoint_schedule": _schedule_field},
                 where=f"reference run config file '{path}': train_config_resolved", fix=fix)  # fmt: skip
    check_fields(config["dataset"], {"n": integer(1)}, where=f"reference run config file '{path}': dataset",
                 fix=fix, required=())  # fmt: skip
    return config


def _read_checkpoint(run_dir: Path, epoch: int, fix: str) -> Checkpoint:
    folder = RunLayout(run_dir).checkpoint(epoch)
    path = folder / CHECKPOINT_META
    required = ("epoch", "lr", "global_step")
    meta = _run_record(path, "reference run checkpoint", _CHECKPOINT_FIELDS, fix, required=required)
    if meta["epoch"] != epoch:
        raise ParameterError(
            f"reference run checkpoint file '{path}': field 'epoch' is {meta['epoch']} but the folder is "
            f"{folder.name}; {fix}."
        )
    return Checkpoint(epoch, float(meta["lr"]), int(meta["global_step"]), folder)


def _unreadable(path: Path, exc: BaseException, fix: str) -> ParameterError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ParameterError(
        f"reference run file '{path}' is unreadable ({reason}): it was truncated or changed after the run "
        f"finished; {fix}."
    )


def load_tensors(path: Path, *, fix: str) -> dict[str, torch.Tensor]:
    """The tensors of a run folder's ``.safetensors`` file; a missing or damaged one names the file and
    ``fix``."""
    _require_file(path, fix)
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(path, exc, fix) from None


def load_weights(model: ReferenceModel, path: Path, *, fix: str) -> None:
    """Load the trained weights in ``path`` into ``model`` (names and shapes checked first)."""
    state = load_tensors(path, fix=fix)
    params = dict(model.trainable_parameters())
    wrong = [name for name in params if name in state and state[name].shape != params[name].shape]
    if set(state) != set(params) or wrong:
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise ParameterError(
            f"reference run file '{path}' does not hold the weights of the model the run describes (missing "
            f"{missing[:3]}, unexpected {extra[:3]}, other shape {sorted(wrong)[:3]}); {fix}."
        )
    model.load_trainable_state(state)


def adam_moments(
    moments: Mapping[str, torch.Tensor], params: Sequence[tuple[str, Any]], path: Path, fix: str
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{name: (exp_avg, exp_avg_sq)}`` from an ``adam_state.safetensors``, checked against ``params``."""
    out = {}
    for name, param in params:
        pair = (moments.get(f"{name}.exp_avg"), moments.get(f"{name}.exp_avg_sq"))
        if any(m is None or m.shape != param.shape for m in pair):
            raise ParameterError(
                f"reference run file '{path}' has no Adam moments {name}.exp_avg/.exp_avg_sq of shape "
                f"{tuple(param.shape)}; {fix}."
            )
        out[name] = pair
    return out  # type: ignore[return-value]


def _raise_on_difference(
    stored: dict[str, Any], current: dict[str, Any], run_dir: Path, *, only_current: bool = False
) -> None:
    old, new = _flatten(stored), _flatten(current)
    for key in sorted(set(new) if only_current else set(old) | set(new)):
        if key in _IGNORED_FIELDS or old.get(key, "<absent>") == new.get(key, "<absent>"):
            continue
        raise ParameterError(
            f"'{run_dir}' holds a different run: {key} is {old.get(key, '<absent>')!r} there but "
            f"{new.get(key, '<absent>')!r} now. Use another run_dir, or delete this one to start over."
        )


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))
