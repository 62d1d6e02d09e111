"""Train a reference model, recording training dynamics and saving checkpoints with their Adam state.

:func:`train_reference` runs AdamW with a linear warmup/decay schedule and, after every epoch, an evaluation
pass over the whole training set that records each example's correct-class probability, loss and
correctness (cartography, forgetting, EL2N-style trajectories). Optionally it also records the same values
from the training pass itself, taken before each batch's optimizer step (the allenai/cartography convention).

Run directory (fixed layout, read back by :class:`ReferenceRun`)::

    run_dir/config.json                      TrainConfig, model.describe(), dataset identity, step counts
    run_dir/ids.json                         example ids, in row order of every array
    run_dir/dynamics/{prob,loss,correct}.npy            (n_examples, epochs) float32, evaluation pass
    run_dir/dynamics/{prob,loss,correct}_train_pass.npy (only with record_in_training)
    run_dir/checkpoints/epoch_{e:03d}/trainable.safetensors   trained parameters after epoch e
    run_dir/checkpoints/epoch_{e:03d}/adam_state.safetensors  "{param}.exp_avg", "{param}.exp_avg_sq"
    run_dir/checkpoints/epoch_{e:03d}/checkpoint.json         epoch, mean lr of the epoch, global step
    run_dir/final/trainable.safetensors
    run_dir/state/state.pt                   resume state after the last finished epoch (removed at the end)
    run_dir/DONE                             written last

Every file is written atomically. A rerun with the same config, model and dataset resumes after the last
finished epoch, identical to an uninterrupted run; anything different is refused, naming the field
(:func:`check_run_dir` makes the same check without writing anything). Every file read back is checked and a
damaged one is refused in one line naming it and the fix; a damaged ``state.pt`` restarts the training with a
:class:`ResumeStateWarning`.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from tqdm.auto import tqdm

from datadiet._core.faults import fault_point
from datadiet._core.files import atomic_write_bytes, atomic_write_json
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
from datadiet.data.dataset import Dataset
from datadiet.errors import ParameterError, ParameterTypeError
from datadiet.models.base import ReferenceModel, check_number, inference_mode, seeded_torch, text_lengths
from datadiet.representations.dynamics import load_dynamics_file, read_run_ids, run_fix
from datadiet.store._io import FileLock

METRICS: tuple[str, ...] = ("prob", "loss", "correct")
_IDENTITY = ("train_config", "model", "dataset")
_IGNORED_FIELDS = ("model.model_path",)  # the weights fingerprint identifies the model, not its location


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`train_reference` trains and what it records.

    Examples
    --------
    >>> TrainConfig(epochs=2).checkpoint_schedule
    (1, 2)
    """

    epochs: int = 3
    """Passes over the training set."""
    batch_size: int = 16
    """Examples per optimizer step (the last batch of an epoch may be smaller)."""
    eval_batch_size: int = 64
    """Examples per forward pass in the per-epoch evaluation pass."""
    lr: float = 5e-5
    """Peak learning rate of AdamW (betas 0.9, 0.999; eps 1e-8)."""
    weight_decay: float = 0.01
    """Decoupled weight decay, applied to matrices only (biases and LayerNorm weights are not decayed)."""
    warmup_ratio: float = 0.1
    """Fraction of all steps with a linear warmup from 0; ``ceil(warmup_ratio * total_steps)`` steps."""
    seed: int = 0
    """Seeds the shuffling (numpy Generator) and dropout (a forked torch RNG)."""
    checkpoint_epochs: tuple[int, ...] | None = None
    """Epochs after which a checkpoint is saved; ``None`` means the first ``min(5, epochs)`` epochs."""
    record_in_training: bool = False
    """Also record the values from the training pass logits (before each batch's optimizer step)."""

    def __post_init__(self) -> None:
        check_number("TrainConfig", "epochs", self.epochs, integer=True, low=1)
        check_number("TrainConfig", "batch_size", self.batch_size, integer=True, low=1)
        check_number("TrainConfig", "eval_batch_size", self.eval_batch_size, integer=True, low=1)
        check_number("TrainConfig", "lr", self.lr, integer=False, low=0, low_open=True)
        check_number("TrainConfig", "weight_decay", self.weight_decay, integer=False, low=0)
        check_number(
            "TrainConfig", "warmup_ratio", self.warmup_ratio, integer=False, low=0, high=1, high_open=False
        )
        check_number("TrainConfig", "seed", self.seed, integer=True, low=0)
        if not isinstance(self.record_in_training, bool):
            message = f"must be a bool. Got {self.record_in_training!r} instead."
            raise ParameterTypeError(f"The 'record_in_training' parameter of TrainConfig {message}")
        if self.checkpoint_epochs is not None:
            object.__setattr__(self, "checkpoint_epochs", self._checked_epochs(self.checkpoint_epochs))

    def _checked_epochs(self, epochs: Sequence[int]) -> tuple[int, ...]:
        if isinstance(epochs, (str, bytes)) or not isinstance(epochs, Sequence):
            raise ParameterTypeError(
                "The 'checkpoint_epochs' parameter of TrainConfig must be None or a sequence of ints. "
                f"Got {epochs!r} instead."
            )
        for epoch in epochs:
            check_number("TrainConfig", "checkpoint_epochs", epoch, integer=True, low=1, high=self.epochs,
                         high_open=False)  # fmt: skip
        return tuple(sorted({int(e) for e in epochs}))

    @property
    def checkpoint_schedule(self) -> tuple[int, ...]:
        """The epochs (1-based, sorted) after which checkpoints are saved."""
        if self.checkpoint_epochs is None:
            return tuple(range(1, min(5, self.epochs) + 1))
        return tuple(self.checkpoint_epochs)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values."""
        out = asdict(self)
        out["checkpoint_epochs"] = None if self.checkpoint_epochs is None else list(self.checkpoint_epochs)
        return out


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
        run_dir = Path(run_dir)
        if not (run_dir / "DONE").is_file():
            raise FileNotFoundError(
                f"'{run_dir}' holds no finished reference run (no DONE marker); run train_reference with the "
                "same config, model and dataset to finish it."
            )
        fix = run_fix(run_dir)
        _run_record(run_dir / "DONE", "reference run DONE marker", _DONE_FIELDS, fix)
        config = read_run_config(run_dir, fix=fix)
        ids = np.asarray(read_run_ids(run_dir, fix=fix), dtype=object)
        n = config["dataset"].get("n")
        if n is not None and n != len(ids):
            raise ParameterError(
                f"reference run ids file '{run_dir / 'ids.json'}' holds {len(ids)} ids but config.json's "
                f"dataset.n is {n}; {fix}."
            )
        schedule = config["train_config_resolved"]["checkpoint_schedule"]
        return cls(run_dir, config, ids, tuple(_read_checkpoint(run_dir, epoch, fix) for epoch in schedule))

    def dynamics(self, metric: str = "prob", *, train_pass: bool = False) -> np.ndarray:
        """The (n_examples, epochs) float32 array of ``metric`` ("prob", "loss", "correct"), memory-mapped."""
        if metric not in METRICS:
            raise ParameterError(f"Unknown metric {metric!r}. Available: {list(METRICS)}.")
        path = self.run_dir / "dynamics" / f"{metric}{'_train_pass' if train_pass else ''}.npy"
        if train_pass and not path.is_file():
            raise FileNotFoundError(
                f"'{path}' does not exist; training-pass values are recorded only with "
                "TrainConfig(record_in_training=True)."
            )
        return load_dynamics_file(path, n_rows=len(self.ids), fix=run_fix(self.run_dir), mmap=True)

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
            raise KeyError(
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
        moments = load_tensors(folder / "adam_state.safetensors", fix=fix)  # checked before any weight moves
        adam = adam_moments(moments, model.trainable_parameters(), folder / "adam_state.safetensors", fix)
        load_weights(model, folder / "trainable.safetensors", fix=fix)
        return adam

    def load_final(self, model: ReferenceModel) -> None:
        """Load the final trained weights into ``model``."""
        self._check_model(model)
        load_weights(model, self.run_dir / "final" / "trainable.safetensors", fix=run_fix(self.run_dir))

    def _check_model(self, model: ReferenceModel) -> None:
        if self.config.get("source") == "transformers.Trainer":  # recorded by DatadietCallback
            self._check_trainable_names(model)
            return
        current = {"model": _jsonable(model.describe())}
        _raise_on_difference({"model": self.config["model"]}, current, self.run_dir)

    def _check_trainable_names(self, model: ReferenceModel) -> None:
        """A Trainer-recorded run fits ``model`` when the saved tensors are its trainable parameters."""
        path = self.run_dir / "final" / "trainable.safetensors"
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
    path = run_dir / "config.json"
    required = ("model", "dataset", "train_config", "train_config_resolved")
    config = _run_record(path, "reference run config", _RUN_CONFIG_FIELDS, fix, required=required)
    check_fields(config["train_config_resolved"], {"checkpoint_schedule": _schedule_field},
                 where=f"reference run config file '{path}': train_config_resolved", fix=fix)  # fmt: skip
    check_fields(config["dataset"], {"n": integer(1)}, where=f"reference run config file '{path}': dataset",
                 fix=fix, required=())  # fmt: skip
    return config


def _read_checkpoint(run_dir: Path, epoch: int, fix: str) -> Checkpoint:
    folder = run_dir / "checkpoints" / f"epoch_{epoch:03d}"
    path = folder / "checkpoint.json"
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


def train_reference(
    model: ReferenceModel, train: Dataset, config: TrainConfig, run_dir: str | os.PathLike[str], *,
    progress: bool = True,
) -> ReferenceRun:  # fmt: skip
    """Train ``model`` on ``train``, recording dynamics and checkpoints under ``run_dir``.

    Parameters
    ----------
    model : ReferenceModel
        Trained in place; on return it holds the final weights (also when the run was already finished).
    train : Dataset
        A labeled classification split.
    config : TrainConfig
    run_dir : str or path-like
        Output folder; an unfinished run there with the same identity is resumed. A second process
        training into the same folder waits on the lock file ``<parent>/.<name>.lock``, then reuses the run.
    progress : bool
        Show tqdm bars.

    Returns
    -------
    ReferenceRun
    """
    _check_inputs(model, train, config)
    run_dir = Path(run_dir)
    identity = _identity(model, train, config)
    # one trainer per run_dir: a second process waits here, then finds DONE and reuses the run
    lock = FileLock(run_dir.parent / f".{run_dir.name}.lock", timeout=None, what=f"reference run '{run_dir}'")
    with lock:
        return _train_locked(model, train, config, run_dir, identity, progress)


def _train_locked(
    model: ReferenceModel, train: Dataset, config: TrainConfig, run_dir: Path, identity: dict[str, Any],
    progress: bool,
) -> ReferenceRun:  # fmt: skip
    _claim_run_dir(run_dir, identity, train, config)
    if (run_dir / "DONE").is_file():
        finished = ReferenceRun.open(run_dir)
        finished.load_final(model)
        model.module.eval()
        return finished
    loop, state_path = _Loop(model, train, config, progress), run_dir / "state" / "state.pt"
    with seeded_torch(config.seed):  # dropout draws from this forked RNG
        if not loop.restore(state_path):
            loop.save(state_path)  # epoch 0: the initial weights, so even a crash in epoch 1 resumes cleanly
        for epoch in range(loop.epoch + 1, config.epochs + 1):
            loop.run_epoch(epoch)
            if epoch in config.checkpoint_schedule:
                _write_checkpoint(run_dir, epoch, loop)
                fault_point("train.checkpoint")
            loop.save(state_path)
            fault_point("train.epoch")
    model.module.eval()
    _finish(run_dir, loop)
    return ReferenceRun.open(run_dir)


class _Loop:
    """The mutable training state: optimizer, scheduler, RNGs, recorded arrays, counters."""

    def __init__(self, model: ReferenceModel, train: Dataset, config: TrainConfig, progress: bool) -> None:
        self.model, self.train, self.config, self.progress = model, train, config, progress
        self.steps_per_epoch = math.ceil(len(train) / config.batch_size)
        total = self.steps_per_epoch * config.epochs
        self.optimizer = _adamw(model, config)
        from transformers import get_linear_schedule_with_warmup

        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, _warmup_steps(config, total), total)
        self.rng = np.random.default_rng(config.seed)
        self.epoch, self.global_step, self.epoch_lrs = 0, 0, []
        names = [*METRICS, *(f"{m}_train_pass" for m in METRICS if config.record_in_training)]
        self.arrays = {name: np.full((len(train), config.epochs), np.nan, np.float32) for name in names}

    def run_epoch(self, epoch: int) -> None:
        """One shuffled pass of optimizer steps, then the evaluation pass recording column ``epoch - 1``."""
        module, lrs = self.model.module, []
        module.train()
        self.optimizer.zero_grad(set_to_none=True)  # stale gradients of a crashed call on the same model
        order = self.rng.permutation(len(self.train))
        starts = range(0, len(order), self.config.batch_size)
        for start in tqdm(starts, desc=f"epoch {epoch}", disable=not self.progress, leave=False):
            idx = order[start : start + self.config.batch_size]
            batch = self.model.to_device(self.model.collate(self.train, idx))
            lrs.append(float(self.scheduler.get_last_lr()[0]))
            if self.config.record_in_training:
                stats = self.model.example_stats(module, batch)
                self._record(idx, epoch, {k: v.detach() for k, v in stats.items()}, suffix="_train_pass")
                loss = stats["loss"].mean()
            else:
                loss = self.model.per_example_loss(module, batch).mean()
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            fault_point("train.step")
        self.epoch, self.global_step = epoch, self.global_step + len(lrs)
        self.epoch_lrs.append(float(np.mean(lrs)))
        self._evaluate(epoch)

    def _evaluate(self, epoch: int) -> None:
        order = np.argsort(text_lengths(self.train), kind="stable")  # less padding per batch
        step = self.config.eval_batch_size
        with inference_mode(self.model.module):
            for start in range(0, len(order), step):
                idx = order[start : start + step]
                batch = self.model.to_device(self.model.collate(self.train, idx))
                self._record(idx, epoch, self.model.example_stats(self.model.module, batch), suffix="")

    def _record(self, idx: np.ndarray, epoch: int, stats: dict[str, torch.Tensor], suffix: str) -> None:
        for metric in METRICS:
            self.arrays[metric + suffix][idx, epoch - 1] = stats[metric].float().cpu().numpy()

    def save(self, path: Path) -> None:
        """Write everything needed to continue after ``self.epoch``, atomically, as one file."""
        device = self.model.device
        state = {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "epoch_lrs": list(self.epoch_lrs),
            "trainable": self.model.trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "arrays": {name: torch.from_numpy(array.copy()) for name, array in self.arrays.items()},
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(path, buffer.getvalue())

    def restore(self, path: Path) -> bool:
        """Load the state saved after the last finished epoch (RNGs included); False when there is none.

        A damaged state file (unreadable, or not a state of this run) is ignored with a warning naming it:
        training starts over from epoch 1 and rewrites the same checkpoints. Nothing changes before the
        whole state is checked.
        """
        if not path.is_file():
            return False
        state, problem = self._read_state(path)
        if state is None:
            warnings.warn(
                f"The resume state '{path}' of the reference training is damaged ({problem}); training "
                "starts over from epoch 1 (it rewrites the same checkpoints).",
                ResumeStateWarning,
                stacklevel=3,
            )
            return False
        try:
            self._apply(state)
        except (ValueError, RuntimeError, KeyError, TypeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ParameterError(
                f"The resume state '{path}' could not be applied ({reason}); delete it to start the "
                "reference training over from epoch 1."
            ) from None
        return True

    def _apply(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.model.load_trainable_state(state["trainable"])
        self.rng.bit_generator.state = json.loads(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])  # called inside the forked RNG block
        if state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.model.device)
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.epoch_lrs = [float(lr) for lr in state["epoch_lrs"]]
        self.arrays = {name: tensor.numpy().copy() for name, tensor in state["arrays"].items()}

    def _read_state(self, path: Path) -> tuple[dict[str, Any] | None, str]:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any damage: a truncated zip, bad opcodes, a type it refuses to load
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return None, f"unreadable: {reason[:200]}"
        problem = self._state_problem(state)
        return (None, problem) if problem else (state, "")

    def _state_problem(self, state: Any) -> str | None:
        """What makes ``state`` not a resume state of this run (None when it is one)."""
        required = ("epoch", "global_step", "epoch_lrs", "trainable", "optimizer", "scheduler", "torch_rng",
                    "numpy_rng", "arrays")  # fmt: skip
        if not isinstance(state, dict) or any(key not in state for key in required):
            return f"it is not a dict holding {list(required)}"
        epoch = state["epoch"]
        if not _is_int(epoch) or not 0 <= epoch <= self.config.epochs:
            return f"epoch is {epoch!r:.40}, not an int in [0, {self.config.epochs}]"
        if state["global_step"] != epoch * self.steps_per_epoch or not _is_int(state["global_step"]):
            return f"global_step is {state['global_step']!r:.40}, expected {epoch * self.steps_per_epoch}"
        lrs = state["epoch_lrs"]
        if not isinstance(lrs, list) or len(lrs) != epoch or not all(_is_finite(lr) for lr in lrs):
            return f"epoch_lrs must hold {epoch} finite learning rates"
        return (
            _tensors_problem(state["trainable"], dict(self.model.trainable_parameters()), "trainable")
            or self._arrays_problem(state["arrays"])
            or self._optimizer_problem(state["optimizer"], state["scheduler"], state["global_step"])
            or _rng_problem(state["torch_rng"], state["numpy_rng"], self.rng)
        )

    def _arrays_problem(self, arrays: Any) -> str | None:
        shape = (len(self.train), self.config.epochs)
        if not isinstance(arrays, dict) or set(arrays) != set(self.arrays):
            return f"arrays must hold {sorted(self.arrays)}"
        for name, tensor in arrays.items():
            is_float32 = isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
            if not is_float32 or tuple(tensor.shape) != shape:
                return f"arrays.{name} must be a float32 tensor of shape {shape}"
        return None

    def _optimizer_problem(self, optimizer: Any, scheduler: Any, global_step: int) -> str | None:
        groups = [group["params"] for group in self.optimizer.param_groups]
        saved = optimizer.get("param_groups") if isinstance(optimizer, dict) else None
        sizes = [len(g["params"]) if isinstance(g, dict) and isinstance(g.get("params"), list) else -1
                 for g in saved or ()]  # fmt: skip
        if not isinstance(saved, list) or sizes != [len(group) for group in groups]:
            return "optimizer does not hold this model's parameter groups"
        params = [param for group in groups for param in group]
        moments = optimizer.get("state")
        if not isinstance(moments, dict) or any(not _is_int(i) or not 0 <= i < len(params) for i in moments):
            return "optimizer.state must map parameter indices to their Adam moments"
        for index, entry in moments.items():
            entry = entry if isinstance(entry, dict) else {}
            pair = [entry.get(key) for key in ("exp_avg", "exp_avg_sq")]
            if any(not isinstance(m, torch.Tensor) or m.shape != params[index].shape for m in pair):
                return f"optimizer.state[{index}] has no Adam moments of shape {tuple(params[index].shape)}"
        if not isinstance(scheduler, dict) or scheduler.get("last_epoch") != global_step:
            return f"scheduler.last_epoch must be global_step={global_step}"
        return None

    def adam_state(self) -> dict[str, torch.Tensor]:
        """``{param}.exp_avg`` and ``{param}.exp_avg_sq`` per trained parameter (zero before any step)."""
        out = {}
        for name, param in self.model.trainable_parameters():
            state = self.optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                value = state.get(key, torch.zeros_like(param))
                out[f"{name}.{key}"] = value.detach().cpu().clone().contiguous()
        return out


class ResumeStateWarning(UserWarning):
    """The reference training's resume state ``state/state.pt`` was damaged; training started over."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _tensors_problem(tensors: Any, params: Mapping[str, Any], what: str) -> str | None:
    if not isinstance(tensors, dict) or set(tensors) != set(params):
        return f"{what} does not name this model's trainable parameters"
    for name, param in params.items():
        if not isinstance(tensors[name], torch.Tensor) or tensors[name].shape != param.shape:
            return f"{what}.{name} is not a tensor of shape {tuple(param.shape)}"
    return None


def _rng_problem(torch_rng: Any, numpy_rng: Any, rng: np.random.Generator) -> str | None:
    if not isinstance(torch_rng, torch.Tensor) or torch_rng.dtype != torch.uint8 or torch_rng.ndim != 1:
        return "torch_rng is not a torch RNG state (a 1-D uint8 tensor)"
    try:
        decoded = json.loads(numpy_rng)
        np.random.Generator(type(rng.bit_generator)()).bit_generator.state = decoded  # a throwaway copy
    except (TypeError, ValueError, KeyError, RecursionError):
        return "numpy_rng is not a numpy generator state"
    return None


def _adamw(model: ReferenceModel, config: TrainConfig) -> torch.optim.AdamW:
    params = model.trainable_parameters()
    groups = [{"params": [p for _, p in params if p.ndim >= 2], "weight_decay": config.weight_decay}]
    groups.append({"params": [p for _, p in params if p.ndim < 2], "weight_decay": 0.0})  # biases, norms
    groups = [group for group in groups if group["params"]]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999), eps=1e-8)


def _warmup_steps(config: TrainConfig, total_steps: int) -> int:
    """``ceil(warmup_ratio * total_steps)``, rounded first so 0.1 * 30 gives 3, not 4."""
    return math.ceil(round(config.warmup_ratio * total_steps, 9))


def _check_inputs(model: ReferenceModel, train: Dataset, config: TrainConfig) -> None:
    if not isinstance(model, ReferenceModel):
        raise ParameterTypeError(f"model must be a ReferenceModel. Got {type(model).__name__} instead.")
    if not isinstance(config, TrainConfig):
        raise ParameterTypeError(f"config must be a TrainConfig. Got {type(config).__name__} instead.")
    if not isinstance(train, Dataset):
        raise ParameterTypeError(f"train must be a Dataset. Got {type(train).__name__} instead.")
    if train.task != "generation" and train.labels is None:
        raise ParameterError(f"train must be labeled for a {train.task} task (generation trains on targets).")
    if not model.trainable_parameters():
        raise ParameterError("model has no trainable parameters (requires_grad); nothing to train.")
    n_labels = model.describe().get("n_labels")
    if n_labels is not None and train.labels is not None and int(train.labels.max()) >= n_labels:
        raise ParameterError(
            f"train has label {int(train.labels.max())} but the model has n_labels={n_labels}; build the "
            f"model with num_labels={train.n_classes}."
        )


def _identity(model: ReferenceModel, train: Dataset, config: TrainConfig) -> dict[str, Any]:
    dataset = _dataset_identity(train, {"input_fingerprint": model.input_fingerprint(train)})
    return _jsonable({"train_config": config.to_dict(), "model": model.describe(), "dataset": dataset})


def _dataset_identity(train: Dataset, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dataset part of a run's identity; its key order is part of config.json, whose text keys the
    store entries of the run (see pipeline.run_fingerprint)."""
    dataset = {"name": train.name, "split": train.split, "fingerprint": train.fingerprint(), "n": len(train)}
    dataset.update(inputs or {})
    dataset.update(label_names=list(train.label_names), ids_file="ids.json")
    return dataset


def check_run_dir(
    run_dir: str | os.PathLike[str], train: Dataset, config: TrainConfig, model: ReferenceModel | None = None
) -> None:
    """Refuse (``ValueError``) what :func:`train_reference` would refuse for ``run_dir``, writing nothing.

    Lets a caller check before it writes anything else. Without ``model``, only the training config and
    the dataset are compared (so a mismatch is found before a model is built).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        return
    if model is None:
        current = {"train_config": config.to_dict(), "dataset": _dataset_identity(train)}
        _raise_on_difference(_stored_identity(run_dir), _jsonable(current), run_dir, only_current=True)
    else:
        _raise_on_difference(_stored_identity(run_dir), _identity(model, train, config), run_dir)


def _stored_identity(run_dir: Path) -> dict[str, Any]:
    stored = read_run_config(run_dir)
    return {key: stored.get(key) for key in _IDENTITY}


def _claim_run_dir(run_dir: Path, identity: dict[str, Any], train: Dataset, config: TrainConfig) -> None:
    """Write config.json and ids.json for a new run, or check that an existing run is the same one."""
    config_path = run_dir / "config.json"
    if config_path.is_file():
        _raise_on_difference(_stored_identity(run_dir), identity, run_dir)
        return
    steps = math.ceil(len(train) / config.batch_size)
    resolved = {
        "checkpoint_schedule": list(config.checkpoint_schedule),
        "steps_per_epoch": steps,
        "total_steps": steps * config.epochs,
        "warmup_steps": _warmup_steps(config, steps * config.epochs),
    }
    atomic_write_json(run_dir / "ids.json", [str(i) for i in train.ids.tolist()])
    atomic_write_json(config_path, {**identity, "train_config_resolved": resolved})


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


def _safetensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    return save_safetensors({name: t.detach().cpu().contiguous() for name, t in tensors.items()})


def _write_checkpoint(run_dir: Path, epoch: int, loop: _Loop) -> None:
    folder = run_dir / "checkpoints" / f"epoch_{epoch:03d}"
    atomic_write_bytes(folder / "trainable.safetensors", _safetensors_bytes(loop.model.trainable_state()))
    atomic_write_bytes(folder / "adam_state.safetensors", _safetensors_bytes(loop.adam_state()))
    meta = {"epoch": epoch, "lr": loop.epoch_lrs[epoch - 1], "global_step": loop.global_step}
    atomic_write_json(folder / "checkpoint.json", {**meta, "steps_in_epoch": loop.steps_per_epoch})


def _finish(run_dir: Path, loop: _Loop) -> None:
    for name, array in loop.arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        atomic_write_bytes(run_dir / "dynamics" / f"{name}.npy", buffer.getvalue())
    final = _safetensors_bytes(loop.model.trainable_state())
    atomic_write_bytes(run_dir / "final" / "trainable.safetensors", final)
    atomic_write_json(run_dir / "DONE", {"epochs": loop.epoch, "global_step": loop.global_step})
    (run_dir / "state" / "state.pt").unlink(missing_ok=True)


def fit(
    model: ReferenceModel,
    train: Dataset,
    config: TrainConfig,
    *,
    weights: np.ndarray | None = None,
    progress: bool = False,
) -> None:
    """Train ``model`` on ``train`` (the study's main model): the reference loop without recording or saving.

    ``weights`` (one per example, e.g. calibration's importance weights) scale each example's loss; they
    are normalised to mean 1 so the learning rate keeps its meaning.
    """
    _check_inputs(model, train, config)
    w = None if weights is None else torch.as_tensor(np.asarray(weights, np.float64) / np.mean(weights))
    with seeded_torch(config.seed):
        loop = _Loop(model, train, config, progress)
        module = model.module
        module.train()
        for epoch in range(1, config.epochs + 1):
            order = loop.rng.permutation(len(train))
            for start in tqdm(
                range(0, len(order), config.batch_size), desc=f"fit {epoch}", disable=not progress
            ):
                idx = order[start : start + config.batch_size]
                batch = model.to_device(model.collate(train, idx))
                losses = model.per_example_loss(module, batch)
                loss = losses.mean() if w is None else (losses * w[idx].to(losses)).mean()
                loss.backward()
                loop.optimizer.step()
                loop.scheduler.step()
                loop.optimizer.zero_grad(set_to_none=True)
        module.eval()


def predict(model: ReferenceModel, ds: Dataset, *, batch_size: int = 256) -> np.ndarray:
    """Predicted class index of every example of ``ds``."""
    out = []
    for start in range(0, len(ds), batch_size):
        batch = model.collate(ds, np.arange(start, min(start + batch_size, len(ds))))
        out.append(model.logits(batch).argmax(-1).cpu().numpy())
    return np.concatenate(out)
