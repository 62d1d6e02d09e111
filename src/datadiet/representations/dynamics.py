"""Training-dynamics representations read from a finished reference run: (N, T) trajectories.

``prob`` is the correct-class probability after each epoch (cartography's confidence, ``hard_to_learn``,
``ambiguous``), ``loss`` its negative log (S2L's trajectories), ``correct`` the 0/1 correctness
(``forgetting``). Rows follow the run's training ids.

This module also holds the reference-run folder's format, torch-free: the recorded :data:`QUANTITIES` and
every path (:class:`RunLayout`), which the folder's one writer (:class:`~datadiet.training.writer.RunWriter`)
and its readers (here and :class:`~datadiet.training.ReferenceRun`) share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datadiet._core.records import (
    MAX_RECORD_BYTES,
    Check,
    FieldError,
    integer,
    list_of,
    read_json_file,
    read_record,
    text,
)
from datadiet.errors import ParameterError
from datadiet.representations.base import Representation

QUANTITIES: tuple[str, ...] = ("prob", "loss", "correct")
"""The per-example training-dynamics quantities a run records: correct-class probability, its cross-entropy
and the 0/1 correctness."""
TRAIN_PASS = "_train_pass"
"""Suffix of the dynamics recorded during the training pass (``record_in_training``)."""
TRAINABLE, ADAM_STATE, CHECKPOINT_META = "trainable.safetensors", "adam_state.safetensors", "checkpoint.json"
"""The files of a checkpoint folder (``final/`` holds only the first)."""
IDS_FILE = "ids.json"
VAL_IDS_FILE = "val_ids.json"
"""The validation split's ids, the row order of the validation dynamics (``dynamics/val/<quantity>.npy``)."""
SPLITS: tuple[str, ...] = ("train", "val")
"""The splits a run records dynamics of: the training split, and the validation split when one is given."""
VAL_FIX = (
    "to record them, delete the run folder and train it again with the validation split "
    "(datadiet represent with a dataset.val_split, or train_reference(..., val=...))"
)
"""How to get validation dynamics for a run that has none (for messages and warnings)."""


class MissingValDynamicsWarning(UserWarning):
    """A validation split is configured but the reference run records (or recorded) no dynamics of it."""


@dataclass(frozen=True)
class RunLayout:
    """Every path of a reference-run folder ``root``.

    Examples
    --------
    >>> layout = RunLayout(Path("runs/ref"))
    >>> layout.dynamics("prob", train_pass=True).as_posix(), layout.checkpoint(3).name
    ('runs/ref/dynamics/prob_train_pass.npy', 'epoch_003')
    """

    root: Path

    @property
    def config(self) -> Path:
        """``config.json``: the run's identity (config, model, dataset) and resolved step counts."""
        return self.root / "config.json"

    @property
    def ids(self) -> Path:
        """``ids.json``: the example ids, in the row order of every array."""
        return self.root / IDS_FILE

    @property
    def done(self) -> Path:
        """``DONE``: written last; its presence means the run is finished."""
        return self.root / "DONE"

    @property
    def state(self) -> Path:
        """``state/state.pt``: the resume state after the last finished epoch."""
        return self.root / "state" / "state.pt"

    @property
    def final(self) -> Path:
        """``final/trainable.safetensors``: the trained parameters at the end."""
        return self.root / "final" / TRAINABLE

    @property
    def lock(self) -> Path:
        """``<parent>/.<name>.lock``: held by the one process training into the folder."""
        return self.root.parent / f".{self.root.name}.lock"

    @property
    def resolved_config(self) -> Path:
        """``<parent>/config.resolved.json``: the pipeline config that made the run, if any."""
        return self.root.parent / "config.resolved.json"

    def dynamics(self, name: str, *, train_pass: bool = False) -> Path:
        """``dynamics/<name>.npy`` (``<name>_train_pass.npy`` for the training-pass values)."""
        return self.root / "dynamics" / f"{name}{TRAIN_PASS if train_pass else ''}.npy"

    @property
    def val_ids(self) -> Path:
        """``val_ids.json``: the validation split's ids, in the row order of the validation dynamics."""
        return self.root / VAL_IDS_FILE

    def val_dynamics(self, name: str) -> Path:
        """``dynamics/val/<name>.npy``: the evaluation pass over the validation split after each epoch."""
        return self.root / "dynamics" / "val" / f"{name}.npy"

    @property
    def val_info(self) -> Path:
        """``dynamics/val/dataset.json``: which validation split the validation dynamics are of."""
        return self.root / "dynamics" / "val" / "dataset.json"

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``: one ``epoch_XXX/`` folder per saved checkpoint."""
        return self.root / "checkpoints"

    def checkpoint(self, epoch: int) -> Path:
        """``checkpoints/epoch_XXX/``: the folder of the checkpoint saved after ``epoch``."""
        return self.checkpoints / f"epoch_{epoch:03d}"


def run_fix(run_dir: str | Path) -> str:
    """What to do about a damaged file in the reference run folder ``run_dir`` (for error messages)."""
    layout = RunLayout(Path(run_dir))
    run_dir, config = layout.root, layout.config
    try:
        small = config.stat().st_size <= MAX_RECORD_BYTES
        recorded = json.loads(config.read_text(encoding="utf-8")).get("source") if small else None
    except (OSError, ValueError, AttributeError, RecursionError):
        recorded = None
    if recorded == "transformers.Trainer":
        return (
            f"the run in '{run_dir}' was recorded in a transformers.Trainer run: record it again with "
            "DatadietCallback into an empty run_dir"
        )
    resolved = layout.resolved_config
    if resolved.is_file():
        return f"delete the run folder '{run_dir}' and rerun: datadiet represent --config {resolved}"
    return (
        f"delete the run folder '{run_dir}' and train it again (train_reference with the same config, "
        "model and dataset)"
    )


def read_run_ids(run_dir: str | Path, *, fix: str | None = None) -> list[str]:
    """The example ids of a reference run (``ids.json``: a list of unique strings), checked."""
    run_dir = Path(run_dir)
    return _read_ids(RunLayout(run_dir).ids, "reference run ids", fix or run_fix(run_dir))


def read_val_ids(run_dir: str | Path, *, fix: str | None = None) -> list[str]:
    """The validation ids of a reference run's validation dynamics (``val_ids.json``), checked."""
    run_dir = Path(run_dir)
    return _read_ids(RunLayout(run_dir).val_ids, "reference run validation ids", fix or run_fix(run_dir))


def has_val_dynamics(run_dir: str | Path) -> bool:
    """Whether the run in ``run_dir`` recorded validation dynamics (its ``val_ids.json`` exists)."""
    return RunLayout(Path(run_dir)).val_ids.is_file()


def read_val_info(run_dir: str | Path, *, fix: str | None = None) -> dict[str, Any]:
    """Which validation split a run's validation dynamics are of (``dynamics/val/dataset.json``), checked.

    Holds the split's ``name``, ``split``, ``fingerprint``
    (:meth:`~datadiet.data.dataset.Dataset.fingerprint`) and ``n``.
    """
    run_dir = Path(run_dir)
    fix = fix or run_fix(run_dir)
    path = RunLayout(run_dir).val_info
    if not path.is_file():
        raise FileNotFoundError(f"reference run validation file '{path}' does not exist; {fix}.")
    return read_record(path, name="reference run validation", fields=_VAL_INFO_FIELDS, fix=fix)


_VAL_INFO_FIELDS: dict[str, Check] = {"name": text(), "split": text(), "fingerprint": text(), "n": integer(1)}


def _read_ids(path: Path, name: str, fix: str) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{name} file '{path}' does not exist; {fix}.")
    ids = read_json_file(path, name=name, fix=fix)
    try:
        list_of(text(), min_len=1)(ids)
    except FieldError as exc:
        problem = str(exc).rstrip(".")
        message = f"{name} file '{path}' must be a list of id strings: {problem}; {fix}."
        raise ParameterError(message) from None
    if len(set(ids)) != len(ids):
        raise ParameterError(f"{name} file '{path}' holds duplicate ids; {fix}.")
    return ids


def load_dynamics_file(path: Path, *, n_rows: int, fix: str, mmap: bool = False) -> np.ndarray:
    """A recorded (n_rows, epochs) float array, refusing a missing, truncated or misshapen file."""
    if not path.is_file():
        raise FileNotFoundError(f"dynamics file '{path}' does not exist; {fix}.")
    try:
        values = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParameterError(
            f"dynamics file '{path}' is unreadable ({reason}): it was truncated or changed after the run "
            f"finished; {fix}."
        ) from None
    if values.ndim != 2 or values.shape[0] != n_rows or values.shape[1] < 1 or values.dtype.kind != "f":
        raise ParameterError(
            f"dynamics file '{path}' holds {values.dtype} {values.shape}, expected floats of shape "
            f"(n_examples={n_rows}, epochs); {fix}."
        )
    return values


def read_dynamics(
    run_dir: str | Path, quantity: str, *, in_training: bool = False, split: str = "train"
) -> Representation:
    """The (N, T) trajectory ``quantity`` of the run in ``run_dir``.

    Parameters
    ----------
    run_dir : path
        A reference run directory (see :mod:`datadiet.training`).
    quantity : {"prob", "loss", "correct"}
    in_training : bool, default=False
        Read the values recorded during the training pass instead of the per-epoch evaluation pass.
    split : {"train", "val"}, default="train"
        ``"val"``: the evaluation pass over the validation split after each epoch, shape (n_val, T), rows
        in the order of ``val_ids.json`` (recorded by ``train_reference(..., val=...)``).
    """
    if quantity not in QUANTITIES:
        raise ParameterError(f"Unknown dynamics quantity {quantity!r}. Available: {list(QUANTITIES)}.")
    if split not in SPLITS:
        raise ParameterError(f"Unknown dynamics split {split!r}. Available: {list(SPLITS)}.")
    if split == "val" and in_training:
        raise ParameterError("in_training=True reads the training pass, which has no validation split.")
    run_dir = Path(run_dir)
    if split == "val":
        return _read_val_dynamics(run_dir, quantity)
    path = RunLayout(run_dir).dynamics(quantity, train_pass=in_training)
    if not path.is_file():
        hint = " (set training.record_in_training: true)" if in_training else ""
        raise FileNotFoundError(f"{path} does not exist; is {run_dir} a finished reference run?{hint}")
    fix = run_fix(run_dir)
    ids = np.asarray(read_run_ids(run_dir, fix=fix), dtype=str)
    values = load_dynamics_file(path, n_rows=len(ids), fix=fix)
    meta = {"quantity": quantity, "in_training": in_training, "run": str(run_dir), "epochs": values.shape[1]}
    return Representation(np.asarray(values, dtype=np.float32), "dynamics", ids, meta)


def _read_val_dynamics(run_dir: Path, quantity: str) -> Representation:
    layout, fix = RunLayout(run_dir), run_fix(run_dir)
    if not layout.val_ids.is_file():
        raise FileNotFoundError(
            f"'{run_dir}' recorded no validation dynamics (no {VAL_IDS_FILE}): it was trained without a "
            f"validation split or before they were recorded; {VAL_FIX}."
        )
    ids = np.asarray(read_val_ids(run_dir, fix=fix), dtype=str)
    values = load_dynamics_file(layout.val_dynamics(quantity), n_rows=len(ids), fix=fix)
    meta = {"quantity": quantity, "in_training": False, "split": "val", "run": str(run_dir),
            "epochs": values.shape[1]}  # fmt: skip
    return Representation(np.asarray(values, dtype=np.float32), "dynamics", ids, meta)
