"""How the selections of a representation x algorithm grid agree (Du et al., ACL 2025, Figure 2b).

The input is a mapping from ``(representation, algorithm, budget, seed)`` to the selected example indices
(or a :class:`~datadiet.selection.base.Selection`) over the same ``n_examples``. Each selection is labelled
``"<algorithm>@<representation>"`` (``"less@gradients/train"``). All numbers are overlap ratios
``|S_i ∩ S_j| / |S_i|`` (:func:`~datadiet.analysis.overlap.overlap_matrix`); two independent uniform
size-``k`` subsets overlap by ``k / n`` in expectation
(:func:`~datadiet.analysis.overlap.random_overlap_expectation`), printed beside every number. Where pairs
are averaged, a pair counts once with the symmetric mean ``(M[i, j] + M[j, i]) / 2``
(the two are equal when the sizes are, as at one budget of a grid).

:func:`summary` reports, per budget (``M`` is the mean over seeds of the per-seed overlap matrices):

- ``same_representation``: the mean over pairs of *different algorithms on the same representation*;
- ``same_algorithm``: the mean over pairs of *the same algorithm on different representations*;
- ``cross_representation_variation`` of algorithm ``a``: ``1 - mean_{r < r'} M[a@r, a@r']``, one minus the
  mean symmetric overlap of ``a``'s selections over every pair of the representations it ran on (0: the
  representation does not matter; ``1 - k/n``: it matters as much as drawing at random; NaN on fewer than
  two representations);
- ``seed_stability`` of each selection ``a@r``: the mean symmetric overlap of its selections over every pair
  of seeds (1.0 for a selector that ignores the seed, about ``k/n`` for ``random``; NaN with one seed).

Each row's ``random`` column holds what the measure is for independent uniform selections: ``k/n`` for the
overlaps, ``1 - k/n`` for the variation.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from datadiet.analysis.overlap import overlap_matrix, random_overlap_expectation
from datadiet.errors import ParameterError
from datadiet.selection.base import Budget, Selection

__all__ = ["grid_label", "overlap_matrices", "summary"]

Key = tuple[str, str, Budget, int]
"""``(representation, algorithm, budget, seed)``."""
SelectionLike = Selection | np.ndarray | Sequence[int]
SUMMARY_COLUMNS = ["budget", "k", "measure", "representation", "algorithm", "value", "random", "n_pairs"]


def grid_label(representation: str, algorithm: str) -> str:
    """The label of a grid selection.

    >>> grid_label("gradients/train", "less")
    'less@gradients/train'
    """
    return f"{algorithm}@{representation}"


def overlap_matrices(
    selections: Mapping[Key, SelectionLike], *, n_examples: int, seed: int | None = None
) -> dict[Budget, tuple[list[str], np.ndarray]]:
    """The overlap matrix of every budget, at one seed or averaged over seeds.

    Parameters
    ----------
    selections : mapping of (representation, algorithm, budget, seed) to Selection or array of int
        The selected indices into ``n_examples`` examples.
    n_examples : int
        Size of the pool.
    seed : int, optional
        The seed whose selections to compare; None: the mean over seeds of the per-seed matrices (an entry
        averages the seeds at which both of its selections exist).

    Returns
    -------
    dict of budget to (labels, ndarray of shape (n_labels, n_labels))
        Labels ``"<algorithm>@<representation>"`` grouped by representation (in order of first appearance),
        then by algorithm; entry ``[i, j]`` is ``|S_i ∩ S_j| / |S_i|``.

    Examples
    --------
    >>> sels = {("h", "a", 0.5, 0): [0, 1], ("h", "b", 0.5, 0): [1, 2], ("g", "a", 0.5, 0): [0, 1]}
    >>> labels, matrix = overlap_matrices(sels, n_examples=4)[0.5]
    >>> labels, matrix.tolist()
    (['a@h', 'b@h', 'a@g'], [[1.0, 0.5, 1.0], [0.5, 1.0, 0.5], [1.0, 0.5, 1.0]])
    """
    out: dict[Budget, tuple[list[str], np.ndarray]] = {}
    for budget, cells in _by_budget(selections).items():
        labels = _ordered_labels(cells)
        seeds = sorted({s for _, _, s in cells}) if seed is None else [seed]
        stack = np.stack([_seed_matrix(cells, labels, s, n_examples) for s in seeds])
        if np.isnan(stack).all():
            continue  # no selection at this seed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": a missing pair stays NaN
            out[budget] = (labels, np.nanmean(stack, axis=0))
    return out


def summary(selections: Mapping[Key, SelectionLike], *, n_examples: int) -> pd.DataFrame:
    """The grid's summary numbers with the random expectation beside each (see the module docstring).

    Returns
    -------
    DataFrame
        One row per number, columns ``budget``, ``k``, ``measure`` (``same_representation``,
        ``same_algorithm``, ``cross_representation_variation``, ``seed_stability``), ``representation`` and
        ``algorithm`` (where the measure is about one; else empty), ``value``, ``random`` and ``n_pairs``
        (how many pairs were averaged).

    Examples
    --------
    >>> sels = {("h", "a", 2, 0): [0, 1], ("h", "b", 2, 0): [1, 2], ("g", "a", 2, 0): [0, 3]}
    >>> frame = summary(sels, n_examples=4)
    >>> frame[frame.measure == "same_algorithm"][["value", "random", "n_pairs"]].values.tolist()
    [[0.5, 0.5, 1.0]]
    """
    rows: list[dict[str, Any]] = []
    means = overlap_matrices(selections, n_examples=n_examples)
    for budget, cells in _by_budget(selections).items():
        k = _common_size(cells, budget)
        chance = random_overlap_expectation(k, n_examples)
        pairs = _label_pairs(*means[budget])
        base = {"budget": budget, "k": k, "representation": "", "algorithm": ""}
        for measure, same in (("same_representation", 0), ("same_algorithm", 1)):
            values = [o for (a, b), o in pairs.items() if a[same] == b[same] and a[1 - same] != b[1 - same]]
            rows.append({**base, "measure": measure, **_mean(values), "random": chance})
        for algorithm in dict.fromkeys(a for _, a, _ in cells):
            stat = _mean([o for (a, b), o in pairs.items() if a[1] == b[1] == algorithm])
            stat["value"] = 1.0 - stat["value"]
            rows.append({**base, "measure": "cross_representation_variation", "algorithm": algorithm,
                         **stat, "random": 1.0 - chance})  # fmt: skip
        for rep, algorithm in dict.fromkeys((r, a) for r, a, _ in cells):
            runs = [sel for (r, a, _), sel in sorted(cells.items()) if (r, a) == (rep, algorithm)]
            rows.append({**base, "measure": "seed_stability", "representation": rep, "algorithm": algorithm,
                         **_stability(runs, n_examples), "random": chance})  # fmt: skip
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


# --- helpers ---------------------------------------------------------------------------------------
def _by_budget(
    selections: Mapping[Key, SelectionLike],
) -> dict[Budget, dict[tuple[str, str, int], SelectionLike]]:
    """``{budget: {(representation, algorithm, seed): selection}}``, budgets in order of first appearance."""
    if not isinstance(selections, Mapping) or not selections:
        raise ParameterError(
            "selections must be a non-empty mapping (representation, algorithm, budget, seed) -> indices."
        )
    out: dict[Budget, dict[tuple[str, str, int], SelectionLike]] = {}
    for key, selection in selections.items():
        if not (isinstance(key, tuple) and len(key) == 4):
            raise ParameterError(
                "selections keys must be (representation, algorithm, budget, seed) tuples. "
                f"Got {key!r} instead."
            )
        rep, algorithm, budget, seed = key
        out.setdefault(budget, {})[(str(rep), str(algorithm), int(seed))] = selection
    return out


def _ordered_labels(cells: Mapping[tuple[str, str, int], SelectionLike]) -> list[str]:
    reps = list(dict.fromkeys(r for r, _, _ in cells))
    algorithms = list(dict.fromkeys(a for _, a, _ in cells))
    pairs = sorted({(r, a) for r, a, _ in cells}, key=lambda p: (reps.index(p[0]), algorithms.index(p[1])))
    return [grid_label(r, a) for r, a in pairs]


def _seed_matrix(
    cells: Mapping[tuple[str, str, int], SelectionLike], labels: list[str], seed: int, n: int
) -> np.ndarray:
    """The overlap matrix at ``seed`` over ``labels`` (NaN rows and columns where one is missing)."""
    present = {grid_label(r, a): sel for (r, a, s), sel in cells.items() if s == seed}
    out = np.full((len(labels), len(labels)), np.nan)
    where = [i for i, label in enumerate(labels) if label in present]
    if where:
        out[np.ix_(where, where)] = overlap_matrix([present[labels[i]] for i in where], n_examples=n)
    return out


def _label_pairs(
    labels: list[str], matrix: np.ndarray
) -> dict[tuple[tuple[str, str], tuple[str, str]], float]:
    """``{((rep_i, algo_i), (rep_j, algo_j)): symmetric overlap}`` over the pairs ``i < j``."""
    parts = [(label.partition("@")[2], label.partition("@")[0]) for label in labels]
    return {
        (parts[i], parts[j]): (matrix[i, j] + matrix[j, i]) / 2
        for i, j in combinations(range(len(labels)), 2)
        if np.isfinite(matrix[i, j]) and np.isfinite(matrix[j, i])
    }


def _stability(runs: list[SelectionLike], n: int) -> dict[str, float]:
    """Mean symmetric overlap over the pairs of seeds of one selection."""
    if len(runs) < 2:
        return {"value": float("nan"), "n_pairs": 0}
    matrix = overlap_matrix(list(runs), n_examples=n)
    return _mean([(matrix[i, j] + matrix[j, i]) / 2 for i, j in combinations(range(len(runs)), 2)])


def _mean(values: list[float]) -> dict[str, float]:
    return {"value": float(np.mean(values)) if values else float("nan"), "n_pairs": len(values)}


def _common_size(cells: Mapping[tuple[str, str, int], SelectionLike], budget: Budget) -> int:
    sizes = {len(sel.indices if isinstance(sel, Selection) else np.asarray(sel)) for sel in cells.values()}
    if len(sizes) != 1:
        raise ParameterError(
            f"The selections at budget {budget!r} hold different numbers of examples {sorted(sizes)}; "
            "one budget of a grid selects the same k everywhere."
        )
    return sizes.pop()
