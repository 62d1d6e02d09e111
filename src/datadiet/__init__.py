"""datadiet: data pruning as representation x selection.

>>> import numpy as np, datadiet
>>> datadiet.select("random", np.zeros((10, 2)), 0.3, seed=0).budget
3
"""

from datadiet import selection as _selection  # noqa: F401  (registers the selectors)
from datadiet.api import build_selector, score_based_selectors, select
from datadiet.representations import Representation
from datadiet.selection.base import Selection, Selector, resolve_budget
from datadiet.selection.registry import SELECTORS

__all__ = [
    "SELECTORS",
    "Representation",
    "Selection",
    "Selector",
    "build_selector",
    "resolve_budget",
    "score_based_selectors",
    "select",
]
__version__ = "0.1.0"
