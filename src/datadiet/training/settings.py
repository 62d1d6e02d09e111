"""The settings of a reference (or main-model) training run: :class:`TrainConfig`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from datadiet.errors import ParameterTypeError
from datadiet.models.base import check_number


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
