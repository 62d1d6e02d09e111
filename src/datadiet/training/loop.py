"""The training loop: AdamW with warm-up, the per-epoch evaluation pass, checkpoints and resume."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from datadiet._core.faults import fault_point
from datadiet._core.locks import FileLock
from datadiet._core.progress import track
from datadiet.data.dataset import Dataset
from datadiet.errors import ParameterError, ParameterTypeError
from datadiet.models.base import ReferenceModel, inference_mode, seeded_torch, text_lengths
from datadiet.representations.dynamics import (
    IDS_FILE,
    QUANTITIES,
    TRAIN_PASS,
    VAL_FIX,
    MissingValDynamicsWarning,
    RunLayout,
)
from datadiet.training.run import ReferenceRun, _jsonable, _raise_on_difference, read_run_config
from datadiet.training.settings import TrainConfig
from datadiet.training.writer import RunWriter

_IDENTITY = ("train_config", "model", "dataset")


def train_reference(
    model: ReferenceModel, train: Dataset, config: TrainConfig, run_dir: str | os.PathLike[str], *,
    val: Dataset | None = None, progress: bool = True,
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
    val : Dataset, optional
        A labeled validation split, also scored by the evaluation pass after every epoch: its dynamics go
        to ``dynamics/val/<quantity>.npy`` (rows in the order of ``val_ids.json``). Training is the same
        with or without it (the pass uses no RNG and no optimizer), and it is not part of the run's
        identity: a finished run is reused as it is (with no validation dynamics if it recorded none), and
        a run resumed from a state saved without them records none (:class:`MissingValDynamicsWarning`).
    progress : bool
        Show progress bars.

    Returns
    -------
    ReferenceRun
    """
    _check_inputs(model, train, config)
    if val is not None:
        _check_val(model, train, val)
    writer = RunWriter(run_dir)
    identity = _identity(model, train, config)
    # one trainer per run_dir: a second process waits here, then finds DONE and reuses the run
    lock = FileLock(writer.layout.lock, timeout=None, what=f"reference run '{writer.layout.root}'")
    with lock:
        return _train_locked(model, train, config, writer, identity, progress, val)


def _train_locked(
    model: ReferenceModel, train: Dataset, config: TrainConfig, writer: RunWriter, identity: dict[str, Any],
    progress: bool, val: Dataset | None = None,
) -> ReferenceRun:  # fmt: skip
    layout = writer.layout
    _claim_run_dir(writer, identity, train, config)
    if layout.done.is_file():
        finished = ReferenceRun.open(layout.root)
        finished.load_final(model)
        model.module.eval()
        return finished
    loop = _Loop(model, train, config, progress, val)
    with seeded_torch(config.seed):  # dropout draws from this forked RNG
        if not loop.restore(layout.state):
            writer.write_state(loop.state())  # epoch 0: the initial weights, so a crash in epoch 1 resumes
        for epoch in range(loop.epoch + 1, config.epochs + 1):
            loop.run_epoch(epoch)
            if epoch in config.checkpoint_schedule:
                _write_checkpoint(writer, epoch, loop)
                fault_point("train.checkpoint")
            writer.write_state(loop.state())
            fault_point("train.epoch")
    model.module.eval()
    _finish(writer, loop)
    return ReferenceRun.open(layout.root)


class _Loop:
    """The mutable training state: optimizer, scheduler, RNGs, recorded arrays, counters.

    ``val`` (optional) is scored by the evaluation pass too, into ``val_arrays``; it never changes training.
    """

    def __init__(
        self, model: ReferenceModel, train: Dataset, config: TrainConfig, progress: bool,
        val: Dataset | None = None,
    ) -> None:  # fmt: skip
        self.model, self.train, self.config, self.progress = model, train, config, progress
        self.steps_per_epoch = math.ceil(len(train) / config.batch_size)
        total = self.steps_per_epoch * config.epochs
        self.optimizer = _adamw(model, config)
        from transformers import get_linear_schedule_with_warmup

        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, _warmup_steps(config, total), total)
        self.rng = np.random.default_rng(config.seed)
        self.epoch, self.global_step, self.epoch_lrs = 0, 0, []
        names = [*QUANTITIES, *(f"{q}{TRAIN_PASS}" for q in QUANTITIES if config.record_in_training)]
        self.arrays = {name: np.full((len(train), config.epochs), np.nan, np.float32) for name in names}
        self.val = val
        self.val_fingerprint = val.fingerprint() if val is not None else None
        self.val_arrays = {q: np.full((len(val), config.epochs), np.nan, np.float32) for q in QUANTITIES
                           } if val is not None else {}  # fmt: skip

    def run_epoch(self, epoch: int) -> None:
        """One shuffled pass of optimizer steps, then the evaluation pass recording column ``epoch - 1``."""
        module, lrs = self.model.module, []
        module.train()
        self.optimizer.zero_grad(set_to_none=True)  # stale gradients of a crashed call on the same model
        order = self.rng.permutation(len(self.train))
        starts = range(0, len(order), self.config.batch_size)
        for start in track(starts, f"epoch {epoch}", enabled=self.progress, transient=True):
            idx = order[start : start + self.config.batch_size]
            batch = self.model.to_device(self.model.collate(self.train, idx))
            lrs.append(float(self.scheduler.get_last_lr()[0]))
            if self.config.record_in_training:
                stats = self.model.example_stats(module, batch)
                self._record(idx, epoch, {k: v.detach() for k, v in stats.items()}, suffix=TRAIN_PASS)
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
        """Score the training split (and the validation split, if any) with the weights after ``epoch``."""
        self._evaluate_split(self.train, self.arrays, epoch)
        if self.val is not None:  # no RNG, no optimizer: training is the same with or without it
            self._evaluate_split(self.val, self.val_arrays, epoch)

    def _evaluate_split(self, ds: Dataset, arrays: dict[str, np.ndarray], epoch: int) -> None:
        order = np.argsort(text_lengths(ds), kind="stable")  # less padding per batch
        step = self.config.eval_batch_size
        with inference_mode(self.model.module):
            for start in range(0, len(order), step):
                idx = order[start : start + step]
                batch = self.model.to_device(self.model.collate(ds, idx))
                _put(arrays, idx, epoch, self.model.example_stats(self.model.module, batch), suffix="")

    def _record(self, idx: np.ndarray, epoch: int, stats: dict[str, torch.Tensor], suffix: str) -> None:
        _put(self.arrays, idx, epoch, stats, suffix)

    def state(self) -> dict[str, Any]:
        """Everything needed to continue after ``self.epoch`` (written by :meth:`RunWriter.write_state`)."""
        device = self.model.device
        return {
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
            **self._val_state(),
        }

    def _val_state(self) -> dict[str, Any]:
        """``{"val": {"fingerprint", "arrays"}}`` when a validation split is scored (older states lack it)."""
        if self.val is None:
            return {}
        arrays = {name: torch.from_numpy(array.copy()) for name, array in self.val_arrays.items()}
        return {"val": {"fingerprint": self.val_fingerprint, "arrays": arrays}}

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
        self._restore_val(state.get("val"), path)
        return True

    def _restore_val(self, saved: Any, path: Path) -> None:
        """Continue the validation arrays of ``saved``; without them (a state saved without this validation
        split, e.g. by an older datadiet) after epoch >= 1, record no validation dynamics and warn once."""
        if self.val is None:
            return
        problem = self._val_problem(saved)
        if problem is None:
            self.val_arrays = {name: tensor.numpy().copy() for name, tensor in saved["arrays"].items()}
            return
        if self.epoch == 0:  # nothing was scored yet: every column is still to come
            return
        run_dir = path.parent.parent
        warnings.warn(
            f"The reference run '{run_dir}' resumes after epoch {self.epoch} from a state that {problem}, so "
            f"it records no validation dynamics; {VAL_FIX}.",
            MissingValDynamicsWarning,
            stacklevel=5,  # the caller of train_reference
        )
        self.val, self.val_fingerprint, self.val_arrays = None, None, {}

    def _val_problem(self, saved: Any) -> str | None:
        """Why ``saved`` (the state's ``val`` entry) cannot be continued with this validation split."""
        if not isinstance(saved, dict) or not isinstance(saved.get("arrays"), dict):
            return "holds no validation dynamics"
        if saved.get("fingerprint") != self.val_fingerprint:
            return "holds the dynamics of another validation split"
        shape, arrays = (len(cast(Dataset, self.val)), self.config.epochs), saved["arrays"]
        ok = set(arrays) == set(QUANTITIES) and all(
            isinstance(t, torch.Tensor) and t.dtype == torch.float32 and tuple(t.shape) == shape
            for t in arrays.values()
        )
        return None if ok else f"holds validation arrays not of shape {shape}"

    def _apply(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.model.load_trainable_state(state["trainable"])
        self.rng.bit_generator.state = json.loads(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])  # called inside the forked RNG block
        device = self.model.device
        if state.get("cuda_rng") is not None and device.type == "cuda":  # a GPU run resumed on a GPU
            torch.cuda.set_rng_state(state["cuda_rng"], device)
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


def _put(
    arrays: dict[str, np.ndarray], idx: np.ndarray, epoch: int, stats: dict[str, torch.Tensor], suffix: str
) -> None:
    """Column ``epoch - 1``, rows ``idx`` of every quantity's array (``<quantity><suffix>``)."""
    for quantity in QUANTITIES:
        arrays[quantity + suffix][idx, epoch - 1] = stats[quantity].float().cpu().numpy()


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


def _check_val(model: ReferenceModel, train: Dataset, val: Dataset) -> None:
    """Refuse a validation split the evaluation pass cannot score, before anything is trained."""
    if not isinstance(val, Dataset):
        raise ParameterTypeError(f"val must be a Dataset or None. Got {type(val).__name__} instead.")
    if val.task != train.task:
        raise ParameterError(f"val is a {val.task} split but train is a {train.task} split; use one task.")
    if val.task != "generation" and val.labels is None:
        raise ParameterError(f"val must be labeled for a {val.task} task: its dynamics need labels.")
    n_labels = model.describe().get("n_labels")
    if n_labels is not None and val.labels is not None and int(val.labels.max()) >= n_labels:
        raise ParameterError(
            f"val has label {int(val.labels.max())} but the model has n_labels={n_labels}; map the "
            "validation labels to the training split's label names."
        )
    model.collate(val, np.arange(1))  # e.g. a frozen head without the split's embeddings fails now


def _identity(model: ReferenceModel, train: Dataset, config: TrainConfig) -> dict[str, Any]:
    dataset = _dataset_identity(train, {"input_fingerprint": model.input_fingerprint(train)})
    return _jsonable({"train_config": config.to_dict(), "model": model.describe(), "dataset": dataset})


def _dataset_identity(train: Dataset, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dataset part of a run's identity; its key order is part of config.json, whose text keys the
    store entries of the run (see pipeline.run_fingerprint)."""
    dataset = {"name": train.name, "split": train.split, "fingerprint": train.fingerprint(), "n": len(train)}
    dataset.update(inputs or {})
    dataset.update(label_names=list(train.label_names), ids_file=IDS_FILE)
    return dataset


def check_run_dir(
    run_dir: str | os.PathLike[str], train: Dataset, config: TrainConfig, model: ReferenceModel | None = None
) -> None:
    """Refuse (``ValueError``) what :func:`train_reference` would refuse for ``run_dir``, writing nothing.

    Lets a caller check before it writes anything else. Without ``model``, only the training config and
    the dataset are compared (so a mismatch is found before a model is built).
    """
    run_dir = Path(run_dir)
    if not RunLayout(run_dir).config.is_file():
        return
    if model is None:
        current = {"train_config": config.to_dict(), "dataset": _dataset_identity(train)}
        _raise_on_difference(_stored_identity(run_dir), _jsonable(current), run_dir, only_current=True)
    else:
        _raise_on_difference(_stored_identity(run_dir), _identity(model, train, config), run_dir)


def _stored_identity(run_dir: Path) -> dict[str, Any]:
    stored = read_run_config(run_dir)
    return {key: stored.get(key) for key in _IDENTITY}


def _claim_run_dir(writer: RunWriter, identity: dict[str, Any], train: Dataset, config: TrainConfig) -> None:
    """Write config.json and ids.json for a new run, or check that an existing run is the same one."""
    run_dir = writer.layout.root
    if writer.layout.config.is_file():
        _raise_on_difference(_stored_identity(run_dir), identity, run_dir)
        return
    steps = math.ceil(len(train) / config.batch_size)
    resolved = {
        "checkpoint_schedule": list(config.checkpoint_schedule),
        "steps_per_epoch": steps,
        "total_steps": steps * config.epochs,
        "warmup_steps": _warmup_steps(config, steps * config.epochs),
    }
    writer.write_ids([str(i) for i in train.ids.tolist()])
    writer.write_config({**identity, "train_config_resolved": resolved})


def _write_checkpoint(writer: RunWriter, epoch: int, loop: _Loop) -> None:
    meta = {"epoch": epoch, "lr": loop.epoch_lrs[epoch - 1], "global_step": loop.global_step}
    meta["steps_in_epoch"] = loop.steps_per_epoch
    writer.write_checkpoint(epoch, loop.model.trainable_state(), loop.adam_state(), meta)


def _finish(writer: RunWriter, loop: _Loop) -> None:
    writer.write_dynamics(loop.arrays)
    if loop.val is not None:
        val = loop.val
        info = {"name": val.name, "split": val.split, "fingerprint": loop.val_fingerprint, "n": len(val)}
        writer.write_val_dynamics(loop.val_arrays, [str(i) for i in val.ids.tolist()], info)
    writer.write_final(loop.model.trainable_state())
    writer.finish(loop.epoch, loop.global_step)
    writer.drop_state()


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
            for start in track(range(0, len(order), config.batch_size), f"fit {epoch}", enabled=progress):
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
