"""Selector contract: budgets, the tie rule, input checks and the `Selection` result.

Conventions (see docs/algorithms.md):

- A budget is an int count or a float fraction ``f`` in (0, 1] giving ``k = floor(f * n)``; it is
  resolved by :func:`resolve_budget` only, and every selection holds exactly ``k`` distinct indices.
- Score-based selectors expose ``scores`` as a *keep priority*: higher is kept first. Ties go to the
  lower example index, unless the selector documents seeded random tie-breaking.
- Every random step draws from the ``np.random.Generator`` made once from ``seed``.
"""

from __future__ import annotations

import inspect
import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from datadiet._core.checks import as_finite_array, check_labels, check_rng, seed_of
from datadiet._core.checks import param_error as param_error  # re-exported: the one wording
from datadiet._core.records import (
    Check,
    FieldError,
    check_fields,
    integer,
    list_of,
    mapping,
    number,
    optional,
    text,
)
from datadiet.errors import ParameterError, ParameterTypeError
from datadiet.representations.base import Kind, Representation, as_representation

Budget = int | float
MAX_INDEX = 2**62
"""Largest example index a selection file may hold (an int64 with room to spare)."""
Seed = int | np.random.Generator | None
InputValues = Literal["real", "probabilities", "binary"]
"""What values a selector reads: any finite reals, probabilities (every value in [0, 1]) or 0/1."""


@dataclass(frozen=True)
class Selection:
    """The chosen subset.

    Parameters
    ----------
    indices : ndarray of shape (k,)
        Sorted, distinct row indices into the representation.
    scores : ndarray of shape (n_examples,), optional
        Keep priority of every example (higher kept first), for score-based selectors.
    weights : ndarray of shape (k,), optional
        Per selected example training weight (set by unbiased calibration).
    meta : dict
        Provenance: algorithm, params, seed, budget, n_examples, ...
    """

    indices: np.ndarray
    scores: np.ndarray | None = None
    weights: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def budget(self) -> int:
        return len(self.indices)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``selection.json`` format of the CLI)."""
        out: dict[str, Any] = {
            "indices": self.indices.tolist(),
            "budget": self.budget,
            **{key: value for key, value in self.meta.items() if key not in ("indices", "budget")},
        }
        if self.scores is not None:
            out["scores"] = np.asarray(self.scores, dtype=float).tolist()
        if self.weights is not None:
            out["weights"] = np.asarray(self.weights, dtype=float).tolist()
        return out

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "selection") -> Selection:
        """The selection in ``data`` (a ``selection.json`` record), every field checked before use.

        ``indices`` must be distinct ints in ``[0, n_examples)``, ``budget`` (if present) their number,
        ``scores`` finite numbers, one per example, and ``weights`` finite numbers >= 0, one per index.
        Raises ``ValueError`` naming ``where`` (e.g. the file), the field and the fix.
        """
        fix = "regenerate it with `datadiet select`, or correct that field"
        n = data.get("n_examples") if isinstance(data, dict) else None
        n = n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else None
        fields = {
            "n_examples": optional(integer(1)),
            "indices": _index_list(n),
            "budget": optional(integer(1)),
            "scores": optional(_number_list()),
            "weights": optional(_number_list(0)),
            "seed": optional(integer(0)),
            "algorithm": optional(text()),
            "params": optional(mapping()),
        }
        check_fields(data, fields, where=where, fix=fix, required=("indices",))
        indices, scores, weights = _checked_arrays(data, n, where=where, fix=fix)
        order = np.argsort(indices, kind="stable")
        meta = {key: value for key, value in data.items() if key not in ("indices", "scores", "weights")}
        return cls(indices[order], scores, None if weights is None else weights[order], meta)


def _checked_arrays(
    data: dict[str, Any], n: int | None, *, where: str, fix: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The index, score and weight arrays of a checked record, refusing inconsistent lengths."""
    indices = np.asarray(data["indices"], dtype=np.int64)
    scores = None if data.get("scores") is None else np.asarray(data["scores"], dtype=np.float64)
    weights = None if data.get("weights") is None else np.asarray(data["weights"], dtype=np.float64)
    problem = _inconsistency(indices, scores, weights, budget=data.get("budget"), n=n)
    if problem is not None:
        raise ParameterError(f"{where}: {problem}. Fix: {fix}.")
    return indices, scores, weights


def _inconsistency(
    indices: np.ndarray, scores: np.ndarray | None, weights: np.ndarray | None, *, budget: Any, n: int | None
) -> str | None:
    """What does not fit together in a selection record (``None`` when all does)."""
    values, counts = np.unique(indices, return_counts=True)
    if len(values) != len(indices):
        return f"field 'indices' repeats {values[counts > 1][:5].tolist()}; every index must be distinct"
    if budget is not None and budget != len(indices):
        return f"field 'budget' is {budget} but 'indices' holds {len(indices)}"
    if scores is not None and n is not None and len(scores) != n:
        return f"field 'scores' holds {len(scores)} values but n_examples is {n} (one score per example)"
    if scores is not None and indices.max() >= len(scores):
        return f"field 'indices' holds {indices.max()} but 'scores' has {len(scores)} (one per example)"
    if weights is not None and len(weights) != len(indices):
        return f"field 'weights' holds {len(weights)} values for {len(indices)} indices (one per index)"
    return None


def _index_list(n: int | None) -> Check:
    """A non-empty list of ints in ``[0, n)``; the common all-valid case is checked in one pass."""
    high = MAX_INDEX if n is None else n - 1
    slow = list_of(integer(0, high), min_len=1)

    def check(value: Any) -> None:
        if isinstance(value, list) and value and all(type(v) is int for v in value):
            if min(value) >= 0 and max(value) <= high:
                return
        slow(value)  # finds and names the first bad item

    return check


def _number_list(low: float | None = None) -> Check:
    """A list of finite numbers >= ``low``; the common all-valid case is checked in one numpy pass."""
    slow = list_of(number(low))

    def check(value: Any) -> None:
        try:
            if isinstance(value, list) and all(type(v) is float or type(v) is int for v in value):
                array = np.asarray(value, dtype=np.float64)
                if np.isfinite(array).all() and (low is None or not len(array) or array.min() >= low):
                    return
            slow(value)  # finds and names the first bad item
        except OverflowError:  # an int beyond float range (JSON allows any number of digits)
            raise FieldError("holds a number too large for a float.") from None

    return check


def resolve_budget(budget: Budget, n: int) -> int:
    """Turn a budget into an exact count ``k`` with ``1 <= k <= n``.

    An int is a count; a float in (0, 1] is a fraction and gives ``floor(f * n)`` (computed after
    rounding ``f * n`` to 9 decimals, so ``0.29 * 100`` gives 29, not 28).

    >>> resolve_budget(0.3, 600), resolve_budget(12, 600)
    (180, 12)
    """
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real):
        raise ParameterTypeError(
            "The 'budget' parameter must be an int count or a float fraction in (0, 1]. "
            f"Got {budget!r} instead."
        )
    if isinstance(budget, numbers.Integral):
        if not 1 <= budget <= n:
            raise ParameterError(f"budget={budget} should be in [1, n_examples={n}].")
        return int(budget)
    if not (math.isfinite(budget) and 0 < budget <= 1):
        raise ParameterError(
            f"A float budget is a fraction in (0, 1]. Got {budget} instead; pass an int for a count."
        )
    k = math.floor(round(budget * n, 9))
    if k < 1:
        raise ParameterError(f"budget={budget} of n_examples={n} floors to 0 examples; use a larger budget.")
    return k


def top_k(scores: np.ndarray, k: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Sorted indices of the ``k`` highest scores.

    Ties go to the lower index, or to a seeded random order when ``rng`` is given.

    >>> top_k(np.array([1.0, 3.0, 3.0, 0.0]), 1).tolist()
    [1]
    """
    scores = np.asarray(scores, dtype=np.float64)
    secondary = np.arange(len(scores)) if rng is None else rng.permutation(len(scores))
    order = np.lexsort((secondary, -scores))
    return np.sort(order[:k])


@runtime_checkable
class Selector(Protocol):
    """Anything that picks ``budget`` examples from a representation."""

    def select(
        self,
        rep: Representation | np.ndarray,
        budget: Budget,
        *,
        labels: np.ndarray | None = None,
        val: Representation | np.ndarray | None = None,
        seed: Seed = 0,
    ) -> Selection: ...


class BaseSelector(ABC):
    """Template for selectors: ``select`` validates, then calls ``_select``.

    Subclasses declare which array shapes (``input_ndim``) and values (``input_values``) they read,
    whether they need labels or a validation representation, and keep ``__init__`` to storing keyword
    arguments unchanged. The contract suite (``tests/test_common.py``) builds every selector's inputs from
    these declarations alone.
    """

    name: ClassVar[str] = "base"
    reads: ClassVar[str] = "an array"
    input_ndim: ClassVar[tuple[int, ...]] = (1, 2, 3)
    input_values: ClassVar[InputValues] = "real"
    """The values it reads; its own checks refuse others ("probabilities": in [0, 1]; "binary": 0/1)."""
    needs_labels: ClassVar[bool] = False
    needs_val: ClassVar[bool] = False
    scale_free: ClassVar[bool] = True
    """The selection depends on the input only up to a positive rescaling (cosines, rankings of distances,
    inner products or norms); False for selectors that read probabilities or 0/1 correctness."""

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters and their current values."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {p: getattr(self, p) for p in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def validate_params(self, n: int) -> None:  # noqa: B027 - optional hook
        """Raise ``ValueError`` for a bad parameter (``n`` is the number of examples)."""

    # --- input checks -------------------------------------------------------------------------
    def check_values(self, rep: Representation | np.ndarray, *, name: str = "rep") -> np.ndarray:
        rep = as_representation(rep, name=name)
        values = as_finite_array(rep.values, name=f"{name}.values")
        if values.ndim not in self.input_ndim:
            raise ParameterError(
                f"'{self.name}' reads {self.reads}; got a {rep.kind} representation of shape {values.shape}. "
                f"{_reshape_hint(values.ndim, self.input_ndim)}"
            )
        return values

    def check_val(self, val: Representation | np.ndarray | None, values: np.ndarray) -> np.ndarray | None:
        if val is None:
            if self.needs_val:
                raise ParameterError(
                    f"'{self.name}' needs a validation representation: pass val= (--val-features)."
                )
            return None
        val_values = self.check_values(val, name="val")
        if val_values.shape[1:] != values.shape[1:]:
            raise ParameterError(
                f"val has per-example shape {val_values.shape[1:]} but rep has {values.shape[1:]}; "
                "both must come from the same extractor."
            )
        return val_values

    def prepare(
        self,
        rep: Representation | np.ndarray,
        labels: np.ndarray | None,
        val: Representation | np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Validated (values, labels, val values)."""
        values = self.check_values(rep)
        if labels is not None:
            labels = check_labels(labels, len(values))
        elif self.needs_labels:
            raise ParameterError(f"'{self.name}' needs labels: pass labels= (--labels L.npy).")
        val_values = self.check_val(val, values)
        self.validate_params(len(values))
        return values, labels, val_values

    def refusal(
        self,
        shape: tuple[int, ...],
        values: InputValues = "real",
        *,
        kind: Kind = "features",
        labels: bool = False,
        val_shape: tuple[int, ...] | None = None,
    ) -> str | None:
        """Why ``select`` refuses inputs of this form (one line), or None when it takes them.

        Runs :meth:`prepare` on a zero-memory stand-in of ``shape`` (with labels and a validation array of
        ``val_shape`` when given), then compares ``values`` (the narrowest class the real values fall in:
        "binary" within "probabilities" within "real") with :attr:`input_values`. Checks that depend on the
        values themselves (e.g. EL2N's labels in [0, K)) are left to ``select``.
        """
        probe = Representation(np.broadcast_to(np.zeros((), np.int8), shape), kind)
        val = None if val_shape is None else np.broadcast_to(np.zeros((), np.int8), val_shape)
        try:
            self.prepare(probe, np.zeros(shape[0], np.int64) if labels else None, val)
        except (ParameterError, ParameterTypeError) as exc:
            return str(exc)
        order = ("binary", "probabilities", "real")
        if order.index(values) > order.index(self.input_values):
            wanted = "probabilities in [0, 1]" if self.input_values == "probabilities" else "0/1 values"
            return f"'{self.name}' reads {wanted}; this representation holds other values."
        return None

    # --- selection ----------------------------------------------------------------------------
    def select(
        self,
        rep: Representation | np.ndarray,
        budget: Budget,
        *,
        labels: np.ndarray | None = None,
        val: Representation | np.ndarray | None = None,
        seed: Seed = 0,
    ) -> Selection:
        """Select exactly ``k`` examples (see :func:`resolve_budget`)."""
        values, labels, val_values = self.prepare(rep, labels, val)
        k = resolve_budget(budget, len(values))
        rng = check_rng(seed)
        indices, scores, weights = self._select(values, k, labels=labels, val=val_values, rng=rng)
        return self.make_selection(indices, k, seed=seed, n=len(values), scores=scores, weights=weights)

    @abstractmethod
    def _select(
        self,
        values: np.ndarray,
        k: int,
        *,
        labels: np.ndarray | None,
        val: np.ndarray | None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Return (indices, scores or None, weights or None) on validated inputs."""

    def describe(self) -> dict[str, Any]:
        return {"algorithm": self.name, "params": jsonable(self.get_params())}

    def make_selection(
        self,
        indices: np.ndarray,
        k: int,
        *,
        seed: Seed,
        n: int,
        scores: np.ndarray | None = None,
        weights: np.ndarray | None = None,
    ) -> Selection:
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        indices = indices[order]
        if len(indices) != k or len(np.unique(indices)) != k:  # an internal bug, never a user error
            raise RuntimeError(f"'{self.name}' returned {len(indices)} indices for budget k={k}.")
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)[order]
        meta = {**self.describe(), "seed": seed_of(seed), "budget": k, "n_examples": n}
        return Selection(indices, scores, weights, meta)


class ScoreSelector(BaseSelector):
    """A selector that ranks by a per-example score and keeps the top ``k``.

    Subclasses implement ``_scores`` returning a keep priority (higher kept first).
    ``random_ties`` switches the tie rule from lower-index-first to a seeded random order.
    """

    random_ties: ClassVar[bool] = False

    def score(
        self,
        rep: Representation | np.ndarray,
        *,
        labels: np.ndarray | None = None,
        val: Representation | np.ndarray | None = None,
        seed: Seed = 0,
    ) -> np.ndarray:
        """Keep priority of every example (higher kept first)."""
        values, labels, val_values = self.prepare(rep, labels, val)
        return self._scores(values, labels=labels, val=val_values, rng=check_rng(seed))

    @abstractmethod
    def _scores(
        self,
        values: np.ndarray,
        *,
        labels: np.ndarray | None,
        val: np.ndarray | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Keep priority of shape (n_examples,) on validated inputs."""

    def pick(
        self, scores: np.ndarray, k: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Indices of the ``k`` kept examples given keep priorities, and their weights (or None).

        The plain rule is the top ``k`` by this selector's tie rule; calibration overrides it.
        """
        return top_k(scores, k, rng=rng if self.random_ties else None), None

    def _select(self, values, k, *, labels, val, rng):
        scores = self._scores(values, labels=labels, val=val, rng=rng)
        indices, weights = self.pick(scores, k, rng)
        return indices, scores, weights


class Delegating:
    """Mixin for wrappers (balancing, calibration): what they read and need is what ``base`` does."""

    base: BaseSelector

    name = property(lambda self: self.base.name)
    reads = property(lambda self: self.base.reads)
    input_ndim = property(lambda self: self.base.input_ndim)
    input_values = property(lambda self: self.base.input_values)
    needs_labels = property(lambda self: self.base.needs_labels)
    needs_val = property(lambda self: self.base.needs_val)
    scale_free = property(lambda self: self.base.scale_free)


def declared(value: np.ndarray | None, what: str) -> np.ndarray:
    """``value``, which a selector declared it needs (``needs_labels``, ``needs_val``), so ``prepare`` has
    refused its absence already; ``None`` here is a bug, never a user error."""
    if value is None:
        raise RuntimeError(f"{what} is None although the selector declares that it needs it.")
    return value


def _reshape_hint(ndim: int, wanted: tuple[int, ...]) -> str:
    if ndim == 3 and 2 in wanted:
        return "Pick one checkpoint (values[:, c]) or flatten to (n_examples, C*d)."
    if ndim == 1 and 2 in wanted:
        return "Reshape 1-D scores to (n_examples, 1)."
    if ndim == 2 and 1 in wanted:
        return "Pass one score per example."
    return "Use a representation of the shape named above."


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays/scalars and selectors turned into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, BaseSelector):
        return value.describe()
    return value
