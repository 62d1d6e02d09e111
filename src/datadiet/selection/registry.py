"""The selector registry: ``@SELECTORS.register("name")`` on a selector class plugs it in everywhere.

The built-in selectors register when :mod:`datadiet.selection` is imported, which the first query does.
"""

from __future__ import annotations

from typing import Any

from datadiet._core.registry import Registry

SELECTORS: Registry[Any] = Registry("selector", builtins=("datadiet.selection",))

__all__ = ["SELECTORS", "Registry"]
