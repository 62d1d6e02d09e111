"""Input checks shared by the library and the CLI; each error names the problem and the fix.

Parameter errors use one wording, scikit-learn's: "The 'n_clusters' parameter of KMeans must be an int in
the range [1, inf). Got 0 instead." (:func:`param_error`). :func:`check_number` raises
``ParameterTypeError`` for a value of the wrong type and ``ParameterError`` for one out of range.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from datadiet._core.chunks import chunk_rows_for, iter_row_chunks
from datadiet.errors import DatadietError, ParameterError, ParameterTypeError


def param_error(
    owner: str, name: str, constraint: str, value: object, *, error: type[DatadietError] = ParameterError
) -> DatadietError:
    """The one wording used for every parameter error (``error`` is raised by the caller).

    >>> str(param_error("KMeans", "n_clusters", "an int in the range [1, inf)", 0))
    "The 'n_clusters' parameter of KMeans must be an int in the range [1, inf). Got 0 instead."
    """
    return error(f"The '{name}' parameter of {owner} must be {constraint}. Got {value!r} instead.")


def interval(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = True) -> str:
    """A range in the parameter-error wording: ``[1, inf)``, ``(0, 1]``.

    >>> interval(1), interval(0, 1, low_open=True, high_open=False)
    ('[1, inf)', '(0, 1]')
    """
    return f"{'(' if low_open else '['}{_bound(low)}, {_bound(high)}{')' if high_open else ']'}"


def _bound(bound: float) -> str:
    if math.isinf(bound):
        return "inf" if bound > 0 else "-inf"
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def as_python_number(value: numbers.Real) -> int | float:
    """``value`` as a Python int (every integral, exactly) or float, so it compares with the builtins.

    >>> as_python_number(np.int64(3)), as_python_number(np.float32(0.5))
    (3, 0.5)
    """
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def check_number(
    owner: str,
    name: str,
    value: Any,
    *,
    integer: bool,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = True,
    optional: bool = False,
) -> None:
    """Raise the standard parameter error unless ``value`` is a number (an int if ``integer``) in range.

    ``ParameterTypeError`` for a wrong type (a bool is not a number), ``ParameterError`` for a value out
    of range or NaN; ``optional`` also accepts ``None``. The wording is "The 'epochs' parameter of
    TrainConfig must be an int in the range [1, inf). Got 0 instead."

    >>> check_number("KMeans", "n_clusters", None, integer=True, low=1, optional=True)
    >>> try:
    ...     check_number("S2L", "n_clusters", 0, integer=True, low=1, optional=True)
    ... except ValueError as error:
    ...     print(error)
    The 'n_clusters' parameter of S2L must be None or an int in the range [1, inf). Got 0 instead.
    """
    if optional and value is None:
        return
    kind = "an int" if integer else "a float"
    span = interval(low, high, low_open=low_open, high_open=high_open)
    constraint = f"{'None or ' if optional else ''}{kind} in the range {span}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integer else numbers.Real):
        raise param_error(owner, name, constraint, value, error=ParameterTypeError)
    number = as_python_number(value)
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if too_low or too_high or number != number:
        raise param_error(owner, name, constraint, value)


def check_choice(owner: str, name: str, value: object, options: Sequence[str]) -> None:
    """Raise the standard parameter error unless ``value`` is one of ``options``.

    >>> check_choice("SemDeDup", "keep", "easy", ("hard", "easy"))
    """
    if value not in options:
        raise param_error(owner, name, f"one of {list(options)}", value)


def check_indices(indices: np.ndarray | Sequence[int], n: int) -> np.ndarray:
    """``indices`` as a 1-D int64 array of positions in ``[0, n)``."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ParameterError(
            f"The 'indices' parameter must hold positions in the range [0, {n}). "
            f"Got values in [{idx.min()}, {idx.max()}] instead."
        )
    return idx


def check_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """Turn ``seed`` into a ``np.random.Generator`` once, at the top of a public entry point."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            raise ParameterError(
                f"The 'seed' parameter must be an int >= 0 or a numpy Generator. Got {seed} instead."
            )
        return np.random.default_rng(seed)
    raise ParameterTypeError(
        f"The 'seed' parameter must be an int >= 0 or a numpy Generator. Got {seed!r} instead."
    )


def seed_of(seed: int | np.random.Generator | None) -> int | None:
    """The seed to record in provenance (``None`` when a Generator was passed)."""
    return int(seed) if isinstance(seed, numbers.Integral) else None


def as_finite_array(values: object, *, name: str, ndim: tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``values`` as a numeric array, refusing NaN/inf and unexpected dimensions.

    A ``np.memmap`` is returned as is (never loaded whole) and checked in row chunks whose pages are
    released after reading (:func:`datadiet._core.chunks.iter_row_chunks`), so validation holds at most one
    chunk of the file resident and allocates no full-size temporary.
    """
    try:
        array = values if isinstance(values, np.memmap) else np.asarray(values)
    except Exception as exc:  # ragged lists and the like
        raise ParameterTypeError(f"{name} must be a numeric array; could not convert it ({exc}).") from exc
    if array.dtype == bool:
        array = array.astype(np.float32)
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ParameterTypeError(
            f"{name} has complex dtype {array.dtype}; datadiet selects on real values. Pass the real part, "
            "the modulus, or the real and imaginary parts side by side as real features."
        )
    if not np.issubdtype(array.dtype, np.number):
        raise ParameterTypeError(f"{name} must be a numeric array. Got dtype {array.dtype} instead.")
    if ndim is not None and array.ndim not in ndim:
        shapes = " or ".join(f"{d}-D" for d in ndim)
        raise ParameterError(f"{name} must be {shapes}. Got shape {array.shape} instead.")
    if array.ndim == 0 or array.shape[0] == 0:
        raise ParameterError(f"{name} is empty (shape {array.shape}); it needs at least one example.")
    if np.issubdtype(array.dtype, np.inexact):
        _check_finite(array, name)
    return array


def _check_finite(array: np.ndarray, name: str, chunk_bytes: int | None = None) -> None:
    """Refuse NaN/inf, reading ``array`` in row chunks so a memmap is never loaded whole."""
    bad_rows: list[int] = []
    n_bad = 0
    for start, block in iter_row_chunks(array, chunk_rows_for(array, chunk_bytes=chunk_bytes)):
        if np.isfinite(block).all():  # the common case: one chunk-sized temporary, freed at once
            continue
        bad = ~np.isfinite(block)
        n_bad += int(bad.sum())
        bad_rows.extend((start + np.unique(np.nonzero(bad)[0])).tolist()[:5])
    if n_bad:
        raise ParameterError(
            f"{name} has {n_bad} NaN/inf values (first rows: {bad_rows[:5]}). "
            "Replace or drop those examples before selecting."
        )


def _label_kind(value: object) -> str:
    """A label's type, numpy scalars counted as their Python type (np.int64 is an int)."""
    if isinstance(value, np.generic):
        value = value.item()
    return type(value).__name__


def check_labels(labels: object, n: int) -> np.ndarray:
    """Return labels as a 1-D array of length ``n``."""
    if isinstance(labels, (list, tuple)):  # np.asarray would turn [1, "1"] into the strings ["1", "1"]
        kinds = {_label_kind(x) for x in labels}
        if len(kinds) > 1:
            raise ParameterTypeError(f"labels mix types {sorted(kinds)}; use one type (all int or all str).")
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ParameterError(
            f"labels must be 1-D with one label per example. Got shape {array.shape} instead."
        )
    if array.shape[0] != n:
        raise ParameterError(
            f"labels has {array.shape[0]} entries but the representation has n_examples={n}."
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ParameterError("labels contain NaN/inf; give every example a label.")
    if array.dtype.kind == "O":
        kinds = {type(x).__name__ for x in array.tolist()}
        if len(kinds) > 1:
            raise ParameterTypeError(f"labels mix types {sorted(kinds)}; use one type (all int or all str).")
    return array


def did_you_mean(name: object, options: Iterable[str]) -> str:
    """A " Did you mean 'x'?" hint for an unknown ``name`` (empty when nothing is close).

    >>> did_you_mean("semdedpu", ["semdedup", "s2l"]), did_you_mean("zzz", ["semdedup"])
    (" Did you mean 'semdedup'?", '')
    """
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, [str(o) for o in options], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""
