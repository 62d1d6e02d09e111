"""Deterministic, label-stratified slices and splits of a :class:`~datadiet.data.dataset.Dataset`.

Both functions decide how many examples each class gets first (exact totals, largest remainder, ties to the
lower class index), then draw the members of each class at random from ``seed``. Picked examples keep their
order in the source dataset. A dataset without labels is treated as a single class.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from datadiet._core.checks import check_rng, seed_of
from datadiet.data.dataset import Dataset
from datadiet.errors import ParameterError, ParameterTypeError


def stratified_slice(ds: Dataset, n: int, *, seed: int | np.random.Generator = 0) -> Dataset:
    """A deterministic slice of exactly ``n`` examples with the class proportions of ``ds``.

    Class quotas are proportional to the class sizes (floors, then the largest remainders), after which
    every class that got none takes one from the class with the largest quota, so every class keeps at
    least one example when ``n >= n_classes``. With ``n < n_classes`` the ``n`` largest classes get one
    example each.

    Parameters
    ----------
    ds : Dataset
        The dataset to slice, of n_examples rows.
    n : int
        How many examples to keep, in [1, n_examples].
    seed : int or numpy.random.Generator, default=0
        Decides which members of each class are kept.

    Returns
    -------
    Dataset
        ``n`` examples of ``ds``, in their original order; ``meta["subset"]`` records the slice.

    Examples
    --------
    >>> ds = Dataset.from_records([{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(10)])
    >>> small = stratified_slice(ds, 4, seed=0)
    >>> len(small), np.bincount(small.labels).tolist()
    (4, [2, 2])
    """
    size = _check_count(n, len(ds), name="n", low=1, high=len(ds))
    rng = check_rng(seed)
    classes = _class_members(ds)
    counts = np.array([len(members) for members in classes])
    picked = _draw(classes, _allocate(counts, size), rng)
    return ds.subset(picked, note=f"stratified_slice(n={size}, seed={seed_of(seed)})")


def stratified_split(
    ds: Dataset, fraction: float | int, *, seed: int | np.random.Generator = 0
) -> tuple[Dataset, Dataset]:
    """Split ``ds`` in two, holding out ``fraction`` of every class.

    The held-out size is ``floor(fraction * n_examples)`` for a float, or exactly ``fraction`` for an int.
    Every class keeps at least one example in the remaining part when there are enough examples; a class
    with a single example therefore never goes to the held-out part.

    Parameters
    ----------
    ds : Dataset
        The dataset to split, of n_examples rows.
    fraction : float in (0, 1) or int
        The share (or the number) of examples to hold out.
    seed : int or numpy.random.Generator, default=0
        Decides which members of each class are held out.

    Returns
    -------
    rest : Dataset
        The ``n_examples - n_held`` remaining examples, in their original order.
    held : Dataset
        The ``n_held`` held-out examples, in their original order, with ``split="validation"``.

    Examples
    --------
    >>> ds = Dataset.from_records([{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(10)])
    >>> train, val = stratified_split(ds, 0.2, seed=0)
    >>> len(train), len(val), val.split, np.bincount(val.labels).tolist()
    (8, 2, 'validation', [1, 1])
    """
    n_held = _held_count(fraction, len(ds))
    rng = check_rng(seed)
    classes = _class_members(ds)
    counts = np.array([len(members) for members in classes])
    kept = _draw(classes, _allocate(counts, len(ds) - n_held), rng)
    held = np.setdiff1d(np.arange(len(ds)), kept)
    note = f"stratified_split(fraction={fraction}, seed={seed_of(seed)})"
    rest = ds.subset(kept, note=f"{note}: rest")
    held_ds = ds.subset(held, note=f"{note}: held out")
    return rest, dataclasses.replace(held_ds, split="validation")


def _held_count(fraction: float | int, n: int) -> int:
    if isinstance(fraction, numbers.Integral) and not isinstance(fraction, bool):
        return _check_count(int(fraction), n, name="fraction", low=1, high=n - 1)
    if not isinstance(fraction, numbers.Real) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ParameterError(
            f"The 'fraction' parameter of stratified_split must be a float in (0, 1) or an int. "
            f"Got {fraction!r} instead."
        )
    held = int(np.floor(fraction * n))
    if not 1 <= held <= n - 1:
        raise ParameterError(
            f"fraction={fraction} of n_examples={n} holds out {held} examples; both parts need at least "
            "one. Use a larger dataset or another fraction."
        )
    return held


def _check_count(value: int, n: int, *, name: str, low: int, high: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ParameterTypeError(f"The '{name}' parameter must be an int. Got {value!r} instead.")
    if not low <= value <= high:
        raise ParameterError(
            f"The '{name}' parameter must be an int in the range [{low}, {high}] for n_examples={n}. "
            f"Got {value} instead."
        )
    return int(value)


def _class_members(ds: Dataset) -> list[np.ndarray]:
    """Row indices of every class present, in class order (one group when unlabeled)."""
    if ds.labels is None:
        return [np.arange(len(ds))]
    values = np.unique(ds.labels)
    return [np.flatnonzero(ds.labels == value) for value in values]


def _allocate(counts: np.ndarray, n: int) -> np.ndarray:
    """Per-class quotas summing to exactly ``n``, at least one per class when ``n >= n_classes``."""
    by_size = np.lexsort((np.arange(len(counts)), -counts))  # largest first, ties to the lower index
    if n < len(counts):
        quotas = np.zeros_like(counts)
        quotas[by_size[:n]] = 1
        return quotas
    quotas = _largest_remainder(counts, n)
    for empty in np.flatnonzero(quotas == 0):
        donor = np.lexsort((np.arange(len(quotas)), -quotas))[0]
        quotas[donor] -= 1
        quotas[empty] = 1
    return quotas


def _largest_remainder(weights: np.ndarray, n: int) -> np.ndarray:
    """Integer shares of ``n`` proportional to ``weights`` (exact integer arithmetic)."""
    total = int(weights.sum())
    scaled = n * weights.astype(np.int64)
    base, remainder = scaled // total, scaled % total
    order = np.lexsort((np.arange(len(weights)), -remainder))
    base[order[: n - int(base.sum())]] += 1
    return base


def _draw(classes: list[np.ndarray], quotas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    picked = [rng.permutation(members)[:quota] for members, quota in zip(classes, quotas, strict=True)]
    return np.sort(np.concatenate(picked))
