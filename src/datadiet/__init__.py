"""datadiet: data pruning as representation x selection.

The public API: :func:`prune` (a dataset in, the pruned dataset out, with a recipe of :data:`RECIPES`),
:func:`select` (and :func:`build_selector`), :class:`Representation`, :class:`Selection`,
:class:`BaseSelector` and :class:`ScoreSelector` to write a selector, the registries of every extension
point (:data:`SELECTORS`, :data:`EXTRACTORS`, :data:`MODELS`, :data:`METRICS`, :data:`DATASETS`; installed
``datadiet.plugins`` entry points extend them), :func:`load_dataset`, :class:`RepresentationStore` and
:func:`run_study`. Each name is imported on first use, so ``import datadiet`` stays light (no torch).

>>> import numpy as np, datadiet
>>> datadiet.select("random", np.zeros((10, 2)), 0.3, seed=0).budget
3
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from datadiet.errors import DatadietError

if TYPE_CHECKING:  # the lazy names below, for type checkers
    from datadiet.api import build_selector, prune, score_based_selectors, select
    from datadiet.data.loaders import load_dataset
    from datadiet.data.sources import DATASETS
    from datadiet.metrics import METRICS
    from datadiet.models.registry import MODELS
    from datadiet.pipeline.study import run_study
    from datadiet.recipes import RECIPES, Recipe, Step, register_recipe, select_recipe
    from datadiet.representations.base import Representation
    from datadiet.representations.extractors import EXTRACTORS
    from datadiet.representations.views import apply_view
    from datadiet.selection.base import BaseSelector, ScoreSelector, Selection, Selector, resolve_budget
    from datadiet.selection.registry import SELECTORS
    from datadiet.store import RepresentationStore

_LAZY: dict[str, str] = {
    "select": "datadiet.api",
    "prune": "datadiet.api",
    "RECIPES": "datadiet.recipes",
    "Recipe": "datadiet.recipes",
    "Step": "datadiet.recipes",
    "register_recipe": "datadiet.recipes",
    "select_recipe": "datadiet.recipes",
    "build_selector": "datadiet.api",
    "score_based_selectors": "datadiet.api",
    "Representation": "datadiet.representations.base",
    "apply_view": "datadiet.representations.views",
    "Selection": "datadiet.selection.base",
    "Selector": "datadiet.selection.base",
    "BaseSelector": "datadiet.selection.base",
    "ScoreSelector": "datadiet.selection.base",
    "resolve_budget": "datadiet.selection.base",
    "SELECTORS": "datadiet.selection.registry",
    "EXTRACTORS": "datadiet.representations.extractors",
    "MODELS": "datadiet.models.registry",
    "METRICS": "datadiet.metrics",
    "DATASETS": "datadiet.data.sources",
    "load_dataset": "datadiet.data.loaders",
    "RepresentationStore": "datadiet.store",
    "run_study": "datadiet.pipeline.study",
}

__all__ = [  # noqa: RUF022 (grouped as the docstring lists them)
    "select",
    "prune",
    "RECIPES",
    "Recipe",
    "Step",
    "register_recipe",
    "select_recipe",
    "build_selector",
    "score_based_selectors",
    "Representation",
    "apply_view",
    "Selection",
    "Selector",
    "BaseSelector",
    "ScoreSelector",
    "resolve_budget",
    "SELECTORS",
    "EXTRACTORS",
    "MODELS",
    "METRICS",
    "DATASETS",
    "load_dataset",
    "RepresentationStore",
    "run_study",
    "DatadietError",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562) and keep it as a module attribute."""
    if name not in _LAZY:
        raise AttributeError(f"module 'datadiet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
