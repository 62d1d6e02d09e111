"""Reading configs: the bounded YAML reader, ``load_config``/``from_dict``, and writing them back as JSON.

Everything read from a config file is bounded before anything is built from it: the file (at most
:data:`MAX_CONFIG_BYTES`), its YAML once aliases are expanded (:data:`MAX_EXPANDED`, :data:`MAX_DEPTH`:
an alias bomb is refused in milliseconds), a key given twice in one mapping, bytes that are not UTF-8.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from datadiet._core.files import utf8_problem
from datadiet.config.fields import MAX_CONFIG_BYTES, MAX_DEPTH, MAX_EXPANDED
from datadiet.config.messages import config_error
from datadiet.errors import ConfigError, ParameterError

M = TypeVar("M", bound=BaseModel)


def load_config(path: str | Path, cls: type[M]) -> M:
    """Read a YAML file into the config ``cls`` (see :func:`from_dict`).

    Refused before anything is built: a file over :data:`MAX_CONFIG_BYTES`, bytes that are not UTF-8
    (naming the byte offset), YAML that is malformed, has a key twice in one mapping, or expands past
    :data:`MAX_EXPANDED` / :data:`MAX_DEPTH` through its aliases. Errors name the file.
    """
    path = Path(path)
    data = read_yaml(path)
    try:
        return from_dict(cls, {} if data is None else data)
    except ConfigError as exc:
        raise ConfigError(f"config file '{path}': {exc}") from None


def from_dict(cls: type[M], data: Any, where: str = "") -> M:
    """Build config ``cls`` from ``data``: unknown keys, wrong types, NaN/inf, out-of-range numbers and (for
    a study) unknown selectors, parameters and representations are refused, each error naming the field's
    path (``selections[2].name``); ``where`` is the path of ``data`` itself."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, cls, where) from None


def to_dict(config: BaseModel) -> dict[str, Any]:
    """The resolved config as plain data (to write next to outputs, so a run can be replayed).

    Refuses a NaN or infinite number anywhere (a config built with ``model_construct`` skips validation),
    so the JSON written from it is always valid.
    """
    data = config.model_dump()
    bad = _non_finite(data, "")
    if bad is not None:
        raise ConfigError(f"{bad[0]} is {bad[1]!r}; every number in a config must be finite.")
    return data


def dumps_strict(data: Any, *, what: str) -> str:
    """``data`` as the indented JSON datadiet writes, refusing NaN/inf (which JSON cannot hold) and naming
    ``what`` is being written and the field."""
    try:
        return json.dumps(data, indent=1, allow_nan=False) + "\n"
    except ValueError:
        bad = _non_finite(data, "")
        if bad is None:
            raise
        field = bad[0] or "its value"
        raise ParameterError(
            f"Refusing to write {what}: {field} is {bad[1]!r}, not a finite number."
        ) from None


def _non_finite(value: Any, where: str) -> tuple[str, float] | None:
    """The path and value of the first NaN or infinite float in ``value`` (None when there is none)."""
    stack = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return at, item
        if isinstance(item, dict):
            stack.extend((v, f"{at}.{k}" if at else str(k)) for k, v in reversed(item.items()))
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{at}[{i}]") for i, v in reversed(list(enumerate(item))))
    return None


def read_yaml(path: Path) -> Any:
    """The data of the YAML file ``path``, bounded and checked (see :func:`load_config`)."""
    if not path.is_file():
        if path.exists():
            raise ConfigError(f"config file '{path}' is not a regular file; give the path of a YAML file.")
        raise FileNotFoundError(f"config file '{path}' does not exist.")
    with path.open("rb") as handle:
        raw = handle.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file '{path}' is larger than {MAX_CONFIG_BYTES} bytes (1 MiB); a config lists settings, "
            "not data: point dataset.source at the data instead."
        )
    text = _decode(raw, path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return None
        _check_yaml_tree(node, path)
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except ConfigError:
        raise
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML ({_yaml_reason(exc)}).") from None
    except RecursionError:
        raise ConfigError(
            f"config file '{path}' is nested too deeply to read (more than {MAX_DEPTH} levels)."
        ) from None
    except (ValueError, TypeError) as exc:  # e.g. an int of more than 4300 digits, a bad timestamp
        raise ConfigError(f"config file '{path}' holds a value YAML cannot read ({exc}).") from None


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file '{path}' is not valid UTF-8: {utf8_problem(raw, exc)}. Re-encode it as UTF-8 "
            "(e.g. iconv -f latin1 -t utf-8)."
        ) from None


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """One line: where (line, column) and what."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    what = f"{context}: {problem}" if context else problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {' '.join(what.split())}"


def _check_yaml_tree(root: yaml.Node, path: Path) -> None:
    """Refuse a key given twice in one mapping, and a tree that aliases expand past the limits.

    Aliases share nodes, so the expanded size and depth are computed once per node (children first):
    linear in the file, however far the aliases would expand. An alias to its own ancestor is a cycle.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in size:
            continue
        children = _children(node, path)
        if not children_done:
            if key in open_nodes:
                raise ConfigError(
                    f"config file '{path}' line {node.start_mark.line + 1}: an alias refers to a node that "
                    "contains it (a cycle); write the values out instead."
                )
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in size)
            continue
        open_nodes.discard(key)
        own = 1 + (len(node.value) if isinstance(node, yaml.ScalarNode) else 0)
        size[key] = min(MAX_EXPANDED + 1, own + sum(size[id(child)] for child in children))
        depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
        if size[key] > MAX_EXPANDED or depth[key] > MAX_DEPTH:
            raise ConfigError(
                f"config file '{path}' line {node.start_mark.line + 1}: this value, once its YAML aliases "
                f"(*name) are expanded, is larger than {MAX_EXPANDED} nodes and characters or deeper than "
                f"{MAX_DEPTH} levels; write the values out instead of nesting aliases."
            )


def _children(node: yaml.Node, path: Path) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if not isinstance(node, yaml.MappingNode):
        return []
    seen: set[tuple[str, str]] = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value != "<<":
            if (key.tag, key.value) in seen:
                raise ConfigError(
                    f"config file '{path}' line {key.start_mark.line + 1}: key {key.value!r} appears twice "
                    "in one mapping (YAML would keep only the last); keep one."
                )
            seen.add((key.tag, key.value))
    return [child for pair in node.value for child in pair]
