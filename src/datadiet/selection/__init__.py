"""Selection algorithms; importing this package registers every built-in selector in ``SELECTORS``."""

from datadiet.selection import (  # noqa: F401  (imported for registration)
    cartography,
    ccs,
    el2n,
    forgetting,
    less,
    prototypicality,
    s2l,
    self_influence,
    semdedup,
    typical,
    uniform,
)
from datadiet.selection.base import BaseSelector, ScoreSelector, Selection, Selector, resolve_budget, top_k
from datadiet.selection.registry import SELECTORS

__all__ = [
    "SELECTORS",
    "BaseSelector",
    "ScoreSelector",
    "Selection",
    "Selector",
    "resolve_budget",
    "top_k",
]
