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
finished epoch, identical to an uninterrupted run; anything different is refused, naming the field.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from tqdm.auto import tqdm

from datadiet._faults import fault_point
from datadiet._store_io import FileLock
from datadiet.data.dataset import Dataset
from datadiet.io import atomic_write_bytes, atomic_write_json, read_json
from datadiet.models.base import ReferenceModel, check_number, inference_mode, seeded_torch, text_lengths

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
            raise TypeError(f"The 'record_in_training' parameter of TrainConfig {message}")
        if self.checkpoint_epochs is not None:
            object.__setattr__(self, "checkpoint_epochs", self._checked_epochs(self.checkpoint_epochs))

    def _checked_epochs(self, epochs: Sequence[int]) -> tuple[int, ...]:
        if isinstance(epochs, (str, bytes)) or not isinstance(epochs, Sequence):
            raise TypeError(
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
        config = read_json(run_dir / "config.json", name="run config")
        ids = np.asarray(read_json(run_dir / "ids.json", name="run ids"), dtype=object)
        checkpoints = []
        for epoch in config["train_config_resolved"]["checkpoint_schedule"]:
            folder = run_dir / "checkpoints" / f"epoch_{epoch:03d}"
            meta = read_json(folder / "checkpoint.json", name="checkpoint")
            checkpoints.append(Checkpoint(epoch, float(meta["lr"]), int(meta["global_step"]), folder))
        return cls(run_dir, config, ids, tuple(checkpoints))

    def dynamics(self, metric: str = "prob", *, train_pass: bool = False) -> np.ndarray:
        """The (n_examples, epochs) float32 array of ``metric`` ("prob", "loss", "correct"), memory-mapped."""
        if metric not in METRICS:
            raise ValueError(f"Unknown metric {metric!r}. Available: {list(METRICS)}.")
        path = self.run_dir / "dynamics" / f"{metric}{'_train_pass' if train_pass else ''}.npy"
        if not path.is_file():
            raise FileNotFoundError(
                f"'{path}' does not exist; training-pass values are recorded only with "
                "TrainConfig(record_in_training=True)."
            )
        return np.load(path, mmap_mode="r", allow_pickle=False)

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
        model.load_trainable_state(load_file(folder / "trainable.safetensors"))
        moments = load_file(folder / "adam_state.safetensors")
        names = [name for name, _ in model.trainable_parameters()]
        return {name: (moments[f"{name}.exp_avg"], moments[f"{name}.exp_avg_sq"]) for name in names}

    def load_final(self, model: ReferenceModel) -> None:
        """Load the final trained weights into ``model``."""
        self._check_model(model)
        model.load_trainable_state(load_file(self.run_dir / "final" / "trainable.safetensors"))

    def _check_model(self, model: ReferenceModel) -> None:
        if self.config.get("source") == "transformers.Trainer":  # recorded by DatadietCallback
            self._check_trainable_names(model)
            return
        current = {"model": _jsonable(model.describe())}
        _raise_on_difference({"model": self.config["model"]}, current, self.run_dir)

    def _check_trainable_names(self, model: ReferenceModel) -> None:
        """A Trainer-recorded run fits ``model`` when the saved tensors are its trainable parameters."""
        with safe_open(self.run_dir / "final" / "trainable.safetensors", framework="pt") as saved:
            stored = {name: tuple(saved.get_slice(name).get_shape()) for name in saved.keys()}
        ours = {name: tuple(p.shape) for name, p in model.trainable_parameters()}
        if stored != ours:
            missing, extra = sorted(set(ours) - set(stored)), sorted(set(stored) - set(ours))
            reshaped = sorted(n for n in set(ours) & set(stored) if ours[n] != stored[n])
            raise ValueError(
                f"'{self.run_dir}' was recorded in a transformers.Trainer run whose trainable parameters "
                f"do not match this model's (missing {missing[:3]}, unexpected {extra[:3]}, other shape "
                f"{reshaped[:3]}). Configure model.path/mode/lora as in that run."
            )


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
        """Load the state saved after the last finished epoch (RNGs included); False when there is none."""
        if not path.is_file():
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_trainable_state(state["trainable"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.rng.bit_generator.state = json.loads(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])  # called inside the forked RNG block
        if state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.model.device)
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.epoch_lrs = [float(lr) for lr in state["epoch_lrs"]]
        self.arrays = {name: tensor.numpy().copy() for name, tensor in state["arrays"].items()}
        return True

    def adam_state(self) -> dict[str, torch.Tensor]:
        """``{param}.exp_avg`` and ``{param}.exp_avg_sq`` per trained parameter (zero before any step)."""
        out = {}
        for name, param in self.model.trainable_parameters():
            state = self.optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                value = state.get(key, torch.zeros_like(param))
                out[f"{name}.{key}"] = value.detach().cpu().clone().contiguous()
        return out


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
        raise TypeError(f"model must be a ReferenceModel. Got {type(model).__name__} instead.")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig. Got {type(config).__name__} instead.")
    if not isinstance(train, Dataset):
        raise TypeError(f"train must be a Dataset. Got {type(train).__name__} instead.")
    if train.task != "generation" and train.labels is None:
        raise ValueError(f"train must be labeled for a {train.task} task (generation trains on targets).")
    if not model.trainable_parameters():
        raise ValueError("model has no trainable parameters (requires_grad); nothing to train.")
    n_labels = model.describe().get("n_labels")
    if n_labels is not None and train.labels is not None and int(train.labels.max()) >= n_labels:
        raise ValueError(
            f"train has label {int(train.labels.max())} but the model has n_labels={n_labels}; build the "
            f"model with num_labels={train.n_classes}."
        )


def _identity(model: ReferenceModel, train: Dataset, config: TrainConfig) -> dict[str, Any]:
    dataset = {"name": train.name, "split": train.split, "fingerprint": train.fingerprint(), "n": len(train)}
    dataset["input_fingerprint"] = model.input_fingerprint(train)
    dataset.update(label_names=list(train.label_names), ids_file="ids.json")
    return _jsonable({"train_config": config.to_dict(), "model": model.describe(), "dataset": dataset})


def _claim_run_dir(run_dir: Path, identity: dict[str, Any], train: Dataset, config: TrainConfig) -> None:
    """Write config.json and ids.json for a new run, or check that an existing run is the same one."""
    config_path = run_dir / "config.json"
    if config_path.is_file():
        stored = read_json(config_path, name="run config")
        _raise_on_difference({key: stored.get(key) for key in _IDENTITY}, identity, run_dir)
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


def _raise_on_difference(stored: dict[str, Any], current: dict[str, Any], run_dir: Path) -> None:
    old, new = _flatten(stored), _flatten(current)
    for key in sorted(set(old) | set(new)):
        if key in _IGNORED_FIELDS or old.get(key, "<absent>") == new.get(key, "<absent>"):
            continue
        raise ValueError(
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
