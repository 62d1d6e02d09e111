"""``docs/config.md`` generated from the config models: every field's type, default, range and docstring.

Run ``python -m datadiet.config.docs > docs/config.md`` after changing a field; a test checks that the
committed file equals :func:`config_reference`, so the reference cannot drift from the schema.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from datadiet.config.messages import interval, strip
from datadiet.config.schema import ReferenceConfig
from datadiet.config.study import StudyConfig

RESOLVED = ("training.lr", "training.checkpoint_epochs", "represent.gradients.batch_size", "main.epochs",
            "main.lr", "main.head", "metrics", "primary_metric")  # fmt: skip
"""The fields whose unset value is resolved at load (their docstrings say from what)."""
HEADER = """# Config reference

Generated from the config models by `python -m datadiet.config.docs` (do not edit by hand). Every section
refuses unknown keys; numbers must be finite. A default written *resolved* is filled in when the config is
loaded (from the model mode, the dataset's task or another field), and `config.resolved.json` /
`study.resolved.json` record the value used. A study's `reference` section is the reference config below
(its `output` is the study's).
"""


def config_reference() -> str:
    """The Markdown text of ``docs/config.md``."""
    parts = [HEADER]
    for title, root in (("Reference config (`datadiet reference` / `represent`)", ReferenceConfig),
                        ("Study config (`datadiet study`)", StudyConfig)):  # fmt: skip
        parts.append(f"\n## {title}\n")
        for path, section in _sections(root, ""):
            if root is StudyConfig and path.startswith("reference"):
                continue
            parts.append(_table(path or "(top level)", section))
    return "".join(parts)


def _sections(model: type[BaseModel], path: str) -> list[tuple[str, type[BaseModel]]]:
    """``model`` and every section nested in it (lists of sections included), depth first."""
    found = [(path, model)]
    for name, info in model.model_fields.items():
        hint, _ = strip(info.annotation)
        if typing.get_origin(hint) is list:
            hint, _ = strip(typing.get_args(hint)[0])
            name = f"{name}[]"
        if isinstance(hint, type) and issubclass(hint, BaseModel):
            found += _sections(hint, f"{path}.{name}" if path else name)
    return found


def _table(path: str, model: type[BaseModel]) -> str:
    path = "" if path == "(top level)" else path
    rows = ["| field | type | default | range | meaning |", "|---|---|---|---|---|"]
    for name, info in model.model_fields.items():
        hint, metadata = strip(info.annotation)
        if typing.get_origin(hint) is list:
            hint, metadata = strip(typing.get_args(hint)[0])
        bounds = interval([*info.metadata, *metadata]) if _bounded([*info.metadata, *metadata]) else ""
        doc = " ".join((info.description or "").split()).replace("|", "\\|")
        default = "resolved" if f"{path}.{name}".lstrip(".").endswith(RESOLVED) else _default(info)
        rows.append(f"| `{name}` | {_type(info.annotation)} | {default} | {bounds} | {doc} |")
    return f"\n### `{path or '(top level)'}`\n\n" + "\n".join(rows) + "\n"


def _bounded(metadata: list[Any]) -> bool:
    return any(hasattr(item, attr) for item in metadata for attr in ("ge", "gt", "le", "lt"))


def _type(annotation: Any) -> str:
    hint, _ = strip(annotation)
    optional = type(None) in typing.get_args(_plain(annotation))
    if typing.get_origin(hint) is list:
        text = f"list of {_type(typing.get_args(hint)[0])}"
    elif typing.get_origin(hint) is typing.Literal:
        text = " \\| ".join(f"`{option}`" for option in typing.get_args(hint))
    elif typing.get_origin(hint) is dict:
        text = "mapping"
    elif isinstance(hint, type) and issubclass(hint, BaseModel):
        text = "section"
    else:
        text = {int: "int", float: "number", str: "string", bool: "bool"}.get(hint, str(hint))
    return f"{text} or null" if optional else text


def _plain(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _default(info: Any) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        value = info.default_factory()
        return "see below" if isinstance(value, BaseModel) else f"`{value}`"
    value = info.default
    return "`null`" if value is None else f"`{value}`" if value is not PydanticUndefined else ""


if __name__ == "__main__":  # pragma: no cover
    print(config_reference(), end="")
