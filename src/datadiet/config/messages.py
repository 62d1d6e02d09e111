"""pydantic's validation errors as datadiet's one-line config messages, naming the YAML path.

``config_error(exc, cls)`` picks the error a reader should fix first (at each level: unknown keys, then
missing ones, then the fields in order) and words it as before pydantic: "model.lora.r must be an int.
Got 'eight' instead.", "Unknown key(s) ['rank'] in model.lora. Valid: [...]. Did you mean 'r'?",
"training.batch_size must be an int in the range [1, inf). Got 0 instead."
"""

from __future__ import annotations

import math
import types
import typing
from typing import Annotated, Any

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from datadiet._core.checks import did_you_mean
from datadiet.errors import ConfigError

UNKNOWN = ("extra_forbidden", "invalid_key")
KIND = {
    "int_type": "an int", "int_parsing": "an int", "int_from_float": "an int",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
}  # fmt: skip


def show(value: Any) -> str:
    """``value`` as an error message quotes it (long lists and mappings by their type, long text cut)."""
    text = repr(value) if not isinstance(value, list | dict) or len(value) < 50 else type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def config_error(exc: ValidationError, cls: type[BaseModel], where: str = "") -> ConfigError:
    """The first of ``exc``'s errors as one :class:`ConfigError` line (``where``: the root's YAML key)."""
    errors = exc.errors()
    return ConfigError(_message(_first(errors), errors, cls, where))


def _first(errors: list[Any]) -> Any:
    """The error to report: within a mapping, unknown keys first, then missing keys, then its fields."""

    def rank(i: int) -> tuple[int, int, int]:
        kind, loc = errors[i]["type"], tuple(errors[i]["loc"])
        if kind not in (*UNKNOWN, "missing"):
            return (i, 2, i)
        parent = loc[:-1]
        start = min(j for j, e in enumerate(errors) if tuple(e["loc"][: len(parent)]) == parent)
        return (start, 0 if kind in UNKNOWN else 1, i)

    return errors[min(range(len(errors)), key=rank)]


def _message(error: Any, errors: list[Any], cls: type[BaseModel], where: str) -> str:
    kind, loc, value = error["type"], tuple(error["loc"]), error.get("input")
    path = join(where, loc_text(loc))
    if kind in UNKNOWN:
        parent = loc[:-1]
        siblings = [e for e in errors if e["type"] in UNKNOWN and tuple(e["loc"][:-1]) == parent]
        unknown = sorted((e["loc"][-1] for e in siblings), key=str)
        model, _ = leaf(cls, parent)
        names = list(model.model_fields) if isinstance(model, type) else []
        at = join(where, loc_text(parent)) or "the config"
        hint = did_you_mean(unknown[0], names)
        return f"Unknown key(s) {unknown[:5]} in {at}. Valid: {names}.{hint}"
    if kind == "missing":
        return f"{join(where, loc_text(loc[:-1])) or 'the config'} has no key {loc[-1]!r}; it is required."
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{path or 'the config'} must be a mapping. Got {type(value).__name__} instead."
    if kind == "value_error":
        return join(path, str(error["ctx"]["error"]))
    if kind in KIND:
        return f"{path} must be {KIND[kind]}. Got {show(value)} instead."
    if kind == "finite_number":
        return f"{path} must be a finite number. Got {value!r} instead."
    if kind == "literal_error":
        options = list(typing.get_args(leaf(cls, loc)[0]))
        hint = did_you_mean(value, [str(option) for option in options])
        return f"{path} must be one of {options}. Got {show(value)} instead.{hint}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        hint, metadata = leaf(cls, loc)
        number = value if hint is int else float(value)
        what = "an int" if hint is int else "a number"
        return f"{path} must be {what} in the range {interval(metadata)}. Got {number!r} instead."
    return f"{path or 'the config'}: {error['msg']}."


def loc_text(loc: tuple) -> str:
    """``('selections', 2, 'name')`` -> ``selections[2].name``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def join(where: str, rest: str) -> str:
    """A path and what follows it (``.key``, ``[i]``, `` message`` or ``key message``), as one text."""
    if not where:
        return rest.lstrip(" .")
    if not rest or rest[0] in "[ .":
        return where + rest
    return f"{where}.{rest}"


def interval(metadata: list[Any]) -> str:
    """The range the constraints in ``metadata`` allow, as ``[1, inf)`` or ``(0, 1]``."""
    low, high, low_open, high_open = -math.inf, math.inf, True, True
    for item in metadata:
        if isinstance(item, annotated_types.Ge | annotated_types.Gt):
            low, low_open = (
                float(getattr(item, "ge", getattr(item, "gt", 0))),
                isinstance(item, annotated_types.Gt),
            )
        elif isinstance(item, annotated_types.Le | annotated_types.Lt):
            high, high_open = (
                float(getattr(item, "le", getattr(item, "lt", 0))),
                isinstance(item, annotated_types.Lt),
            )
    return f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def leaf(cls: type[BaseModel], loc: tuple) -> tuple[Any, list[Any]]:
    """The type at ``loc`` inside ``cls`` (optional and annotated layers removed) and its constraints."""
    hint: Any = cls
    metadata: list[Any] = []
    for part in loc:
        hint, _ = strip(hint)
        if isinstance(part, int) and typing.get_origin(hint) is list:
            hint, metadata = typing.get_args(hint)[0], []
        elif isinstance(hint, type) and issubclass(hint, BaseModel) and part in hint.model_fields:
            info = hint.model_fields[part]
            hint, metadata = info.annotation, list(info.metadata)
        else:
            return None, []
    hint, more = strip(hint)
    return hint, metadata + more


def strip(hint: Any) -> tuple[Any, list[Any]]:
    """``Annotated[X | None, ...]`` -> ``X`` and the metadata (a ``Field(...)``'s constraints included)."""
    metadata: list[Any] = []
    while True:
        origin = typing.get_origin(hint)
        if origin is Annotated:
            hint, *extra = typing.get_args(hint)
            for item in extra:
                metadata += item.metadata if isinstance(item, FieldInfo) else [item]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(options) != 1:
                return hint, metadata
            hint = options[0]
        else:
            return hint, metadata
