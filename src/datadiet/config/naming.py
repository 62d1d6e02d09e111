"""How a study names its cells and files: budgets as text, cell ids, selection files, selection names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from datadiet.errors import ConfigError

if TYPE_CHECKING:
    from datadiet.config.study import SelectionSpec

BASELINES = ("full", "random", "dummy")
"""Names of the study's baselines, reserved: no selection may take them."""


def budget_text(budget: float) -> str:
    """A budget as cell ids and selection file names spell it: unique for every distinct float.

    Two decimals when they are exact (``0.3`` -> ``0.30``: the names of existing study folders), else the
    shortest spelling that reads back as the same float (``0.301``, ``0.001``), so ``float(text) == budget``
    always holds and two distinct budgets never share a name.

    >>> budget_text(0.3), budget_text(1.0), budget_text(0.301), budget_text(0.0001)
    ('0.30', '1.00', '0.301', '0.0001')
    """
    budget = float(budget)
    short = f"{budget:.2f}"
    return short if float(short) == budget else repr(budget)


def cell_id(name: str, budget: float, seed: int) -> str:
    """A study cell's id and file name, ``<name>__b<budget>__s<seed>`` (see :func:`budget_text`).

    >>> cell_id("less@gradients/train", 0.3, 0), cell_id("random", 0.301, 1)
    ('less@gradients_train__b0.30__s0', 'random__b0.301__s1')
    """
    from datadiet._core.files import safe_name

    return safe_name(f"{name}__b{budget_text(budget)}__s{seed}")


def selection_file(name: str, budget: float, seed: int) -> str:
    """Where a study saves a cell's selection, relative to the study folder.

    >>> selection_file("hard_to_learn@dynamics/prob", 0.5, 0)
    'selections/hard_to_learn@dynamics_prob/b0.50_s0.json'
    """
    from datadiet._core.files import safe_name

    return f"selections/{safe_name(name)}/b{budget_text(budget)}_s{seed}.json"


def check_selection_names(selections: Sequence[SelectionSpec], where: str = "selections") -> None:
    """Refuse selection names that a baseline takes, that repeat, or that share a file name.

    A selection's name (its ``name``, else its default label ``algorithm@representation...``) names its
    results rows, its cell files and its selections folder: ``full``, ``random`` and ``dummy`` are the
    baselines' (the report would average the selection into them), and two names whose file names are
    equal up to case would overwrite each other's files (on a case-insensitive file system too).
    """
    from datadiet._core.files import safe_name

    taken: dict[str, str] = {safe_name(name).casefold(): f"the {name!r} baseline" for name in BASELINES}
    seen: dict[str, str] = {}
    for i, spec in enumerate(selections):
        label, at = spec.label, f"{where}[{i}]" + (".name" if spec.name else "")
        if label.strip().casefold() in BASELINES:
            raise ConfigError(
                f"{at} is {label!r}, the name of a baseline ({', '.join(BASELINES)} are reserved: the "
                f"study always adds them). Give the selection another 'name'."
            )
        if label in seen:
            raise ConfigError(
                f"Selection names must be unique: {at} and {seen[label]} are both {label!r}. Give one of "
                "them another 'name'."
            )
        file = safe_name(label).casefold()
        if file in taken:
            raise ConfigError(
                f"{at} {label!r} and {taken[file]} are unique but map to the same file name "
                f"{safe_name(label)!r}; give them names that differ in more than case, in letters, digits "
                "or '_.@+-' (other characters become '_')."
            )
        seen[label], taken[file] = at, f"{at} {label!r}"
