"""Checks for the JSON files datadiet reads back (selections, cells, costs, run folders, manifests).

A file written by datadiet may have been edited, truncated or replaced since. :func:`read_record` reads one
JSON object and checks every listed field for presence, type and range before anything uses it; a bad
field raises one ``ValueError`` naming the file, the field and what to do::

    record = read_record(path, name="cell", fix="delete it and rerun the study", fields={
        "id": text(), "hash": text(), "rows": list_of(mapping()),
    })

A check is a function ``check(value) -> None`` that raises :class:`FieldError` with the problem ("must be
an int >= 0. Got -3."); the combinators below build the usual ones.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from datadiet._core.checks import as_python_number
from datadiet.errors import FieldError, ParameterError

Check = Callable[[Any], None]
MAX_RECORD_BYTES = 512 * 2**20
"""Largest JSON file read back (a selection of 10M examples with scores is about 250 MB)."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def integer(low: int | None = None, high: int | None = None) -> Check:
    """An int (not a bool) in ``[low, high]``."""

    def check(value: Any) -> None:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if not ok or not _within(int(value), low, high):
            bounds = f" in [{'-inf' if low is None else low}, {'inf' if high is None else high}]"
            raise FieldError(f"must be an int{bounds if low is not None or high is not None else ''}. "
                             f"Got {_show(value)}.")  # fmt: skip

    return check


def number(low: float | None = None, high: float | None = None, *, finite: bool = True) -> Check:
    """A real number (int or float, not a bool), finite unless ``finite=False``, in ``[low, high]``."""

    def check(value: Any) -> None:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if ok and isinstance(value, numbers.Integral) and abs(int(value)) > 2**1023:
            raise FieldError(f"must be within the float range. Got an int of {len(str(value))} digits.")
        if ok and finite and not math.isfinite(value):
            raise FieldError(f"must be a finite number. Got {_show(value)}.")
        if not ok or not _within(as_python_number(value), low, high):
            raise FieldError(f"must be a number in [{low}, {high}]. Got {_show(value)}.")

    return check


def _within(value: int | float, low: float | None, high: float | None) -> bool:
    """Not below ``low`` nor above ``high`` (a missing bound is none); NaN passes, ``finite`` refuses it."""
    return (low is None or not value < low) and (high is None or not value > high)


def text(options: tuple[str, ...] | None = None) -> Check:
    """A string (one of ``options`` when given)."""

    def check(value: Any) -> None:
        if not isinstance(value, str):
            raise FieldError(f"must be a string. Got {_show(value)}.")
        if options is not None and value not in options:
            raise FieldError(f"must be one of {list(options)}. Got {_show(value)}.")

    return check


def boolean() -> Check:
    def check(value: Any) -> None:
        if not isinstance(value, bool):
            raise FieldError(f"must be true or false. Got {_show(value)}.")

    return check


def mapping() -> Check:
    """A JSON object (its fields are not checked)."""

    def check(value: Any) -> None:
        if not isinstance(value, dict):
            raise FieldError(f"must be a JSON object. Got {type(value).__name__}.")

    return check


def list_of(item: Check, *, min_len: int = 0) -> Check:
    """A list whose every item passes ``item``."""

    def check(value: Any) -> None:
        if not isinstance(value, list):
            raise FieldError(f"must be a list. Got {type(value).__name__}.")
        if len(value) < min_len:
            raise FieldError(f"must hold at least {min_len} item(s). Got {len(value)}.")
        for i, entry in enumerate(value):
            try:
                item(entry)
            except FieldError as exc:
                raise FieldError(f"item {i} {exc}") from None

    return check


def optional(inner: Check) -> Check:
    """``None`` or a value passing ``inner``."""

    def check(value: Any) -> None:
        if value is not None:
            inner(value)

    return check


def check_fields(
    data: Any, fields: Mapping[str, Check], *, where: str, fix: str, required: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Check ``data`` (a dict) field by field; ``required`` lists the fields that must be present
    (default: all of ``fields``). Raises ``ValueError``: "<where>: field 'x' must be ... <fix>"."""
    if not isinstance(data, dict):
        raise ParameterError(f"{where} must hold a JSON object. Got {type(data).__name__}; {fix}.")
    needed = tuple(fields) if required is None else required
    for name, check in fields.items():
        if name not in data:
            if name in needed:
                raise ParameterError(f"{where} has no field '{name}'; {fix}.")
            continue
        try:
            check(data[name])
        except FieldError as exc:
            raise ParameterError(f"{where}: field '{name}' {exc} Fix: {fix}.") from None
    return data


def read_json_file(path: str | os.PathLike[str], *, name: str, fix: str) -> Any:
    """The parsed JSON of ``path``, refusing a missing, oversized, non-UTF-8 or malformed file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{name} file '{path}' does not exist.")
    if not path.is_file():
        raise ParameterError(f"{name} file '{path}' is not a regular file (a folder, FIFO or device); {fix}.")
    size = path.stat().st_size
    if size > MAX_RECORD_BYTES:
        raise ParameterError(f"{name} file '{path}' is {size} bytes, more than datadiet ever writes; {fix}.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ParameterError(f"{name} file '{path}' is not valid JSON ({reason}); {fix}.") from None


def read_record(
    path: str | os.PathLike[str], *, name: str, fields: Mapping[str, Check], fix: str,
    required: tuple[str, ...] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Read the JSON object in ``path`` and check its ``fields`` (see :func:`check_fields`)."""
    data = read_json_file(path, name=name, fix=fix)
    return check_fields(data, fields, where=f"{name} file '{path}'", fix=fix, required=required)
