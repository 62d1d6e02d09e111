"""The settings of a reference (or main-model) training run: :class:`TrainConfig`.

``TrainConfig`` *is* the config's training section (:class:`datadiet.config.TrainingConfig`, whose
parameters the main model shares through :class:`datadiet.config.TrainingBase`) with the defaults of a
Python call: a parameter added there reaches the YAML configs, the study's main model and the loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from datadiet.config import TrainingConfig
from datadiet.config.fields import Float, Int
from datadiet.config.messages import interval, strip
from datadiet.errors import ParameterError, ParameterTypeError

RUN_KEYS = ("epochs", "batch_size", "eval_batch_size", "lr", "weight_decay", "warmup_ratio", "seed",
            "checkpoint_epochs", "record_in_training")  # fmt: skip
"""The keys of :meth:`TrainConfig.to_dict` in the order run folders have always recorded them (the text of
``config.json`` keys the store entries of a run); a parameter added later follows them, and is left out
while it has its default, so the runs recorded before it keep their identity."""


def _sequence_of_epochs(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ParameterTypeError(
            "The 'checkpoint_epochs' parameter of TrainConfig must be None or a sequence of ints. "
            f"Got {value!r} instead."
        )
    return tuple(value)


class TrainConfig(TrainingConfig):
    """How :func:`train_reference` trains and what it records.

    Examples
    --------
    >>> TrainConfig(epochs=2).checkpoint_schedule
    (1, 2)
    """

    model_config = ConfigDict(frozen=True)

    epochs: Int = Field(default=3, ge=1)
    """Passes over the training set."""
    lr: Float = Field(default=5e-5, gt=0)
    """Peak learning rate of AdamW (betas 0.9, 0.999; eps 1e-8)."""
    checkpoint_epochs: Annotated[tuple[Int, ...] | None, BeforeValidator(_sequence_of_epochs)] = None
    """Epochs after which a checkpoint is saved; ``None`` means the first ``min(5, epochs)`` epochs."""

    def __init__(self, /, **values: Any) -> None:
        """Refuse a bad value with the standard parameter wording (``TypeError`` for a wrong type)."""
        try:
            BaseModel.__init__(self, **values)
        except ValidationError as exc:
            raise _parameter_error(exc, values) from None

    setattr(__init__, "__pydantic_base_init__", True)  # noqa: B010

    @field_validator("checkpoint_epochs")
    @classmethod
    def _sorted(cls, epochs: tuple[int, ...] | None) -> tuple[int, ...] | None:
        return None if epochs is None else tuple(sorted(set(epochs)))

    @model_validator(mode="after")
    def _check_epochs(self) -> TrainConfig:
        wrong = [e for e in self.checkpoint_epochs or () if not 1 <= e <= self.epochs]
        if wrong:
            raise ParameterError(_epochs_message(self.epochs, wrong[0]))
        return self

    @classmethod
    def of(cls, section: Any, **values: Any) -> TrainConfig:
        """The settings of a config section (``reference.training`` or ``main``), with ``values`` on top."""
        fields = {key: value for key, value in section.model_dump().items() if key in cls.model_fields}
        return cls(**{**fields, **values})

    @property
    def checkpoint_schedule(self) -> tuple[int, ...]:
        """The epochs (1-based, sorted) after which checkpoints are saved."""
        if self.checkpoint_epochs is None:
            return tuple(range(1, min(5, self.epochs) + 1))
        return tuple(self.checkpoint_epochs)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values: a run's identity, so the default schedule is recorded as ``None``."""
        out = self.model_dump()
        default = tuple(range(1, min(5, self.epochs) + 1))
        epochs = self.checkpoint_epochs
        out["checkpoint_epochs"] = None if epochs is None or epochs == default else list(epochs)
        later = {key: value for key, value in out.items() if key not in RUN_KEYS}
        later = {key: value for key, value in later.items() if value != type(self).model_fields[key].default}
        return {**{key: out[key] for key in RUN_KEYS}, **later}


def _epochs_message(epochs: Any, epoch: Any) -> str:
    return (
        "The 'checkpoint_epochs' parameter of TrainConfig must be an int in the range "
        f"[1, {epochs}]. Got {epoch!r} instead."
    )


def _parameter_error(exc: ValidationError, values: dict[str, Any]) -> Exception:
    """The first error of ``exc`` in the wording of :func:`datadiet.models.base.check_number`."""
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "value_error":
        return error.get("ctx", {})["error"]
    if name not in TrainConfig.model_fields:
        return ParameterTypeError(f"TrainConfig got an unexpected keyword argument {name!r}.")
    if name == "checkpoint_epochs":
        item = error["input"]
        return ParameterTypeError(_epochs_message(values.get("epochs", 3), item))
    value = values.get(name)
    hint, metadata = strip(TrainConfig.model_fields[name].annotation)
    if hint is bool:
        return ParameterTypeError(
            f"The '{name}' parameter of TrainConfig must be a bool. Got {value!r} instead."
        )
    metadata += TrainConfig.model_fields[name].metadata
    kind = "an int" if hint is int else "a float"
    message = (
        f"The '{name}' parameter of TrainConfig must be {kind} in the range {interval(metadata)}. "
        f"Got {value!r} instead."
    )
    wrong_type = isinstance(value, bool) or not isinstance(value, int if hint is int else int | float)
    return ParameterTypeError(message) if wrong_type else ParameterError(message)
