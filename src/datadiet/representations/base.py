"""The `Representation`: one array of per-example values plus how it was made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

import numpy as np

from datadiet.errors import ParameterError, ParameterTypeError

Kind = Literal["dynamics", "hidden", "gradients", "features"]
KINDS: tuple[str, ...] = ("dynamics", "hidden", "gradients", "features")
GradientTarget = Literal["lora", "classifier", "linear"]
"""Which Linear layers' per-sample gradients represent an example."""
GradientTargetSetting = Literal["auto", "lora", "classifier", "linear"]
"""A config's choice of :data:`GradientTarget`, or "auto": what the model trains (one flat Literal, so a
config error lists every option)."""
GRADIENT_TARGETS: tuple[str, ...] = get_args(GradientTarget)


@dataclass(frozen=True)
class Representation:
    """Per-example values from a reference model (or brought by the user).

    Parameters
    ----------
    values : ndarray of shape (n_examples, d), (n_examples, T) or (n_examples, n_checkpoints, d)
        Features, trajectories over epochs, or per-checkpoint gradients. A ``np.memmap`` is kept as is
        (never copied into memory); selectors read it in row chunks.
    kind : {"dynamics", "hidden", "gradients", "features"}
        What the values are.
    ids : ndarray of shape (n_examples,), optional
        Example ids; defaults to ``0..n-1``.
    meta : dict
        Provenance (model, checkpoint, learning rates, projection, ...).

    Examples
    --------
    >>> import numpy as np
    >>> rep = Representation(np.zeros((4, 3)), kind="features")
    >>> rep.n_examples, rep.ids.tolist()
    (4, [0, 1, 2, 3])
    """

    values: np.ndarray
    kind: Kind = "features"
    ids: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ParameterError(f"Unknown representation kind {self.kind!r}. Available: {list(KINDS)}.")
        values = _as_array(self.values)
        if values.ndim not in (1, 2, 3):
            raise ParameterError(f"values must be 1-D, 2-D or 3-D. Got shape {values.shape} instead.")
        object.__setattr__(self, "values", values)
        ids = np.arange(values.shape[0]) if self.ids is None else np.asarray(self.ids)
        if ids.shape != (values.shape[0],):
            raise ParameterError(f"ids has shape {ids.shape} but values has n_examples={values.shape[0]}.")
        if len(np.unique(ids)) != len(ids):
            raise ParameterError("ids must be unique; found duplicates.")
        object.__setattr__(self, "ids", ids)

    @property
    def n_examples(self) -> int:
        return int(self.values.shape[0])

    def subset(self, indices: np.ndarray) -> Representation:
        """The rows ``indices`` (ids and provenance kept)."""
        ids = cast(np.ndarray, self.ids)  # set by __post_init__
        return Representation(self.values[indices], self.kind, ids[indices], dict(self.meta))


def as_representation(rep: Representation | np.ndarray, *, name: str = "rep") -> Representation:
    """Wrap a bare array as a ``features`` representation."""
    if isinstance(rep, Representation):
        return rep
    if isinstance(rep, np.ndarray) or hasattr(rep, "__array__") or isinstance(rep, list):
        return Representation(_as_array(rep), kind="features")
    raise ParameterTypeError(
        f"{name} must be a Representation or a numpy array. Got {type(rep).__name__} instead."
    )


def _as_array(values: object) -> np.ndarray:
    """``values`` as an array; a ``np.memmap`` stays one (no copy, its pages stay on disk)."""
    return values if isinstance(values, np.memmap) else np.asarray(values)
