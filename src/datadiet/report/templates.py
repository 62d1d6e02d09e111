"""The jinja2 environment of the report pages (``report/templates/*.html.j2``, shipped as package data).

Autoescape is on, so every value from the data (selection names, label names, the study name) is
HTML-escaped where it is written; undefined names raise instead of rendering as empty text.
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

__all__ = ["environment", "render"]


def _oneline(text: str) -> Markup:
    """``text`` (already escaped markup) with every run of whitespace made one space, stripped."""
    return Markup(" ".join(str(text).split()))


@functools.cache
def environment() -> Environment:
    """The report environment: autoescape, StrictUndefined, block tags leave no blank lines."""
    env = Environment(
        loader=PackageLoader("datadiet.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["oneline"] = _oneline
    return env


def render(template: str, /, **context: Any) -> str:
    """Template ``template`` rendered with ``context``."""
    return environment().get_template(template).render(**context)
