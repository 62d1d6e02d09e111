"""The field types every config section is built from, and the bounds on what a config may hold.

Types are strict where YAML could make a wrong value look right: an int field refuses ``true`` and ``2.5``,
a number field refuses ``true`` (an int is taken as a float; a string such as ``5e-5``, which YAML 1.1
reads as a string, is taken as the number it spells), NaN and infinities are refused. Every string is at
most :data:`MAX_TEXT` long and holds no NUL, every int fits in 64 bits, and the free-form ``params`` of a
selection hold JSON values only, bounded by :data:`MAX_PARAM_ITEMS` and :data:`MAX_PARAM_DEPTH`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Strict, ValidationError

from datadiet.config.messages import config_error, show
from datadiet.errors import ConfigError

MAX_CONFIG_BYTES = 2**20
"""Largest config file read (1 MiB)."""
MAX_EXPANDED = 2 * MAX_CONFIG_BYTES
"""Largest YAML document once its aliases are expanded: one per node plus one per scalar character."""
MAX_DEPTH = 32
"""Deepest nesting of a config's YAML (aliases expanded) and of the values given to ``from_dict``."""
MAX_TEXT = 4096
"""Longest string in a config (a path may be up to 4096 bytes long)."""
MAX_PARAM_ITEMS = 10_000
"""Most values (list items and mapping entries, nested ones included) in one selection's ``params``."""
MAX_PARAM_DEPTH = 8
"""Deepest nesting of one selection's ``params``."""
INT_LIMIT = 2**63
"""Every int in a config lies in [-2**63, 2**63)."""

T = TypeVar("T")


class Section(BaseModel):
    """A config section: unknown keys refused, a docstring under every field, NaN/inf refused."""

    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False, validate_default=False
    )

    def __init__(self, /, **values: Any) -> None:
        """Built from Python, a section is checked like one read from YAML (a :class:`ConfigError`)."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise config_error(exc, type(self)) from None

    setattr(__init__, "__pydantic_base_init__", True)  # noqa: B010  # as RootModel: nested data skips it


def _int64(value: int) -> int:
    if not -INT_LIMIT <= value < INT_LIMIT:
        raise ConfigError(f" must be an int of at most 64 bits. Got {show(value)} instead.")
    return value


def _number_text(value: Any) -> Any:
    """YAML 1.1 reads ``5e-5`` as a string: take a short string that spells a number as that number."""
    if isinstance(value, str) and len(value) <= 64:
        try:
            return float(value)
        except ValueError:
            pass
    return value


def check_text(value: str, where: str = "") -> str:
    """Refuse a string over :data:`MAX_TEXT` characters or holding a NUL (``where``: its relative path)."""
    if len(value) > MAX_TEXT:
        raise ConfigError(f"{where} is {len(value)} characters long; a config string has at most {MAX_TEXT}.")
    if "\x00" in value:
        raise ConfigError(f"{where} contains a NUL character, which no name or path may hold. Remove it.")
    return value


Int = Annotated[int, Strict(), AfterValidator(_int64)]
"""An int (not a bool, not a float) of at most 64 bits."""
Float = Annotated[float, BeforeValidator(_number_text), Strict()]
"""A finite number (an int is taken as a float; not a bool)."""
Str = Annotated[str, Strict(), AfterValidator(check_text)]
"""A string of at most :data:`MAX_TEXT` characters without NUL."""
Bool = Annotated[bool, Strict()]
"""true or false."""
List = Annotated[list[T], Strict()]
"""A list (a YAML sequence), each item of type ``T``."""


def free_form(params: Any) -> dict[str, Any]:
    """A selection's ``params``: a mapping of JSON values only, finite, bounded in size and depth.

    Errors name the offending value by its path relative to ``params`` (``.w[1].x``).
    """
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ConfigError(f" must be a mapping with string keys. Got {show(params)} instead.")
    count = 0
    stack: list[tuple[Any, str, int]] = [(params, "", 0)]
    while stack:
        value, at, depth = stack.pop()
        count += 1
        if count > MAX_PARAM_ITEMS or depth > MAX_PARAM_DEPTH:
            raise ConfigError(
                f" holds more than {MAX_PARAM_ITEMS} values or nests deeper than {MAX_PARAM_DEPTH} "
                "levels; a selector's parameters are a few numbers, strings and short lists."
            )
        if isinstance(value, dict):
            bad = [key for key in value if not isinstance(key, str)]
            if bad:
                raise ConfigError(f"{at} must have string keys. Got the key {show(bad[0])} instead.")
            for key in value:
                check_text(key, f"{at} key {key[:20]!r}")
            stack.extend((item, f"{at}.{key}", depth + 1) for key, item in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((item, f"{at}[{i}]", depth + 1) for i, item in enumerate(value))
        else:
            _check_scalar(value, at)
    return dict(params)


def _check_scalar(value: Any, at: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{at} must be a finite number. Got {value!r} instead.")
    if isinstance(value, str):
        check_text(value, at)
    elif isinstance(value, int) and not isinstance(value, bool) and not -INT_LIMIT <= value < INT_LIMIT:
        raise ConfigError(f"{at} must be an int of at most 64 bits. Got {show(value)} instead.")
    elif value is not None and not isinstance(value, bool | int | float | str):
        raise ConfigError(
            f"{at} must be a number, string, true/false, null, list or mapping. Got {show(value)} "
            f"({type(value).__name__}) instead; quote it to pass a string."
        )


Params = Annotated[dict[str, Any], BeforeValidator(free_form)]
"""A selection's free-form parameters (see :func:`free_form`)."""
