"""How much selections agree: overlap ratios, score rank correlations and label distributions.

The overlap ratio follows Du et al. (ACL 2025)::

    overlap(S_i, S_j) = |S_i ∩ S_j| / |S_i|

It is normalised by the size of the *row* selection, so the matrix is not symmetric when the sizes
differ; its diagonal is 1. Two independent uniform subsets of size ``k`` out of ``n`` overlap by
``k / n`` in expectation (:func:`random_overlap_expectation`), the baseline any agreement is read
against.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from datadiet._core.checks import as_finite_array, check_labels
from datadiet.errors import ParameterError, ParameterTypeError
from datadiet.selection.base import Selection

__all__ = [
    "label_distribution",
    "overlap_matrix",
    "random_overlap_expectation",
    "rank_correlation",
]


def overlap_matrix(
    selections: Sequence[Selection | np.ndarray | Sequence[int]], *, n_examples: int | None = None
) -> np.ndarray:
    """Pairwise overlap ratios ``|S_i ∩ S_j| / |S_i|``.

    Parameters
    ----------
    selections : sequence of Selection or array-like of int
        The selections, each a :class:`Selection` or a 1-D array of distinct example indices.
    n_examples : int, optional
        Size of the pool the indices point into. Indices must lie in ``[0, n_examples)``. When not
        given, it is taken from the selections' ``meta["n_examples"]`` where recorded (they must agree).

    Returns
    -------
    ndarray of shape (n_selections, n_selections)
        Entry ``[i, j]`` is the fraction of ``S_i`` that is also in ``S_j``; the diagonal is 1.

    Examples
    --------
    >>> overlap_matrix([[0, 1, 2, 3], [2, 3]]).tolist()
    [[1.0, 0.5], [1.0, 1.0]]
    """
    if isinstance(selections, np.ndarray) and selections.ndim == 2:
        selections = list(selections)
    if isinstance(selections, Selection | np.ndarray) or len(selections) == 0:
        raise ParameterError("selections must be a non-empty sequence of selections or index arrays.")
    n_examples = _pool_size(selections, n_examples)
    sets = [_check_indices(s, n_examples, name=f"selections[{i}]") for i, s in enumerate(selections)]
    return _overlap_matrix(sets)


def _overlap_matrix(sets: list[np.ndarray]) -> np.ndarray:
    m = len(sets)
    out = np.ones((m, m), dtype=np.float64)
    for i in range(m):
        for j in range(m):
            if i != j:
                out[i, j] = len(np.intersect1d(sets[i], sets[j], assume_unique=True)) / len(sets[i])
    return out


def random_overlap_expectation(k: int, n: int) -> float:
    """Expected overlap ratio ``k / n`` of two independent uniform size-``k`` subsets of ``n``.

    ``E|S_1 ∩ S_2| = k² / n``, so ``E[|S_1 ∩ S_2| / |S_1|] = k / n``.

    >>> random_overlap_expectation(180, 600)
    0.3
    """
    for name, value in (("k", k), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ParameterTypeError(f"The '{name}' parameter must be an int. Got {value!r} instead.")
    if n < 1:
        raise ParameterError(f"The 'n' parameter must be an int in the range [1, inf). Got {n} instead.")
    if not 0 <= k <= n:
        raise ParameterError(f"k={k} should be in [0, n={n}].")
    return k / n


def rank_correlation(score_arrays: Sequence[Selection | np.ndarray | Sequence[float]]) -> np.ndarray:
    """Spearman rank correlation between every pair of per-example score vectors.

    Parameters
    ----------
    score_arrays : sequence of array-like of shape (n_examples,) or Selection
        At least two score vectors over the same examples (a :class:`Selection` contributes its
        ``scores``). Ties get average ranks (:func:`scipy.stats.spearmanr`).

    Returns
    -------
    ndarray of shape (n_arrays, n_arrays)
        Symmetric, with 1 on the diagonal. A constant score vector has no ranking: its row and
        column (diagonal included) are NaN, and a ``RuntimeWarning`` names it.

    Examples
    --------
    >>> rank_correlation([[1, 2, 3, 4], [10, 20, 30, 40], [4, 3, 2, 1]]).round(3).tolist()
    [[1.0, 1.0, -1.0], [1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]]
    """
    if isinstance(score_arrays, np.ndarray) and score_arrays.ndim == 2:
        score_arrays = list(score_arrays)
    if isinstance(score_arrays, Selection | np.ndarray) or len(score_arrays) < 2:
        raise ParameterError("score_arrays must be a sequence of at least two score vectors.")
    columns = [_check_scores(s, name=f"score_arrays[{i}]") for i, s in enumerate(score_arrays)]
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise ParameterError(
            f"score_arrays must all have the same length. Got lengths {[len(c) for c in columns]}."
        )
    if lengths.pop() < 2:
        raise ParameterError("score_arrays need at least two examples each to be ranked.")
    return _rank_correlation(np.column_stack(columns))


def _rank_correlation(scores: np.ndarray) -> np.ndarray:
    m = scores.shape[1]
    constant = np.all(scores == scores[:1], axis=0)
    if constant.any():
        warnings.warn(
            f"score_arrays {np.flatnonzero(constant).tolist()} are constant; "
            "their rank correlations are NaN.",
            RuntimeWarning,
            stacklevel=3,
        )
    out = np.full((m, m), np.nan)
    keep = np.flatnonzero(~constant)
    if len(keep) >= 2:
        # scipy's annotations type the result as an unnamed tuple, without its ``statistic`` field
        rho = stats.spearmanr(scores[:, keep]).statistic  # pyright: ignore[reportAttributeAccessIssue]
        statistic = np.asarray(rho, dtype=np.float64)
        if statistic.ndim == 0:  # spearmanr returns a scalar for two columns
            statistic = np.array([[1.0, statistic], [statistic, 1.0]])
        out[np.ix_(keep, keep)] = statistic
    if len(keep) >= 1:
        out[keep, keep] = 1.0
    return out


def label_distribution(
    indices: Selection | np.ndarray | Sequence[int],
    labels: np.ndarray | Sequence[object],
    classes: Sequence[object] | None = None,
) -> pd.DataFrame:
    """Per-class counts and fractions of a selection against the full set.

    Parameters
    ----------
    indices : Selection or array-like of int
        The selected example indices into ``labels``.
    labels : array-like of shape (n_examples,)
        The label of every example in the pool.
    classes : sequence, optional
        Classes to report, in this order (absent ones get zero rows). Defaults to the sorted
        distinct labels. Every label must be one of them.

    Returns
    -------
    DataFrame indexed by class
        Columns ``n_selected``, ``frac_selected`` (share of the selection), ``n_total``,
        ``frac_total`` (share of the pool) and ``kept_rate`` (``n_selected / n_total``; NaN for a
        class with no examples).

    Examples
    --------
    >>> frame = label_distribution([0, 2], ["a", "b", "a", "b"])
    >>> frame[["n_selected", "n_total", "kept_rate"]]  # doctest: +NORMALIZE_WHITESPACE
           n_selected  n_total  kept_rate
    class
    a               2        2        1.0
    b               0        2        0.0
    """
    labels = check_labels(labels, len(np.asarray(labels)))
    if labels.shape[0] == 0:
        raise ParameterError("labels is empty; it needs one label per example.")
    selected = _check_indices(indices, len(labels), name="indices")
    classes = _check_classes(labels, classes)
    n_total = np.array([np.sum(labels == c) for c in classes], dtype=np.int64)
    n_selected = np.array([np.sum(labels[selected] == c) for c in classes], dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        kept_rate = np.where(n_total > 0, n_selected / np.maximum(n_total, 1), np.nan)
    frame = pd.DataFrame(
        {
            "n_selected": n_selected,
            "frac_selected": n_selected / len(selected),
            "n_total": n_total,
            "frac_total": n_total / len(labels),
            "kept_rate": kept_rate,
        },
        index=pd.Index(list(classes), name="class"),
    )
    return frame


# --- input checks -----------------------------------------------------------------------------
def _pool_size(selections: Sequence[object], n_examples: int | None) -> int | None:
    if n_examples is not None:
        if isinstance(n_examples, bool) or not isinstance(n_examples, numbers.Integral) or n_examples < 1:
            raise ParameterError(
                "The 'n_examples' parameter must be an int in the range [1, inf). "
                f"Got {n_examples!r} instead."
            )
        return int(n_examples)
    recorded = {
        s.meta["n_examples"] for s in selections if isinstance(s, Selection) and "n_examples" in s.meta
    }
    if len(recorded) > 1:
        raise ParameterError(
            f"The selections come from pools of different sizes {sorted(recorded)}; overlaps are only "
            "meaningful over the same examples."
        )
    return int(recorded.pop()) if recorded else None


def _check_indices(selection: object, n_examples: int | None, *, name: str) -> np.ndarray:
    raw = selection.indices if isinstance(selection, Selection) else selection
    array = np.asarray(raw)
    if array.ndim != 1:
        raise ParameterError(f"{name} must be a 1-D array of indices. Got shape {array.shape} instead.")
    if len(array) == 0:
        raise ParameterError(f"{name} is empty; an overlap needs at least one selected example.")
    if not np.issubdtype(array.dtype, np.integer):
        if not (np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array))):
            raise ParameterTypeError(f"{name} must hold integer indices. Got dtype {array.dtype} instead.")
    array = array.astype(np.int64)
    low, high = int(array.min()), int(array.max())
    if low < 0 or (n_examples is not None and high >= n_examples):
        bound = "n_examples" if n_examples is None else f"n_examples={n_examples}"
        raise ParameterError(f"{name} has indices out of range [0, {bound}): min={low}, max={high}.")
    unique = np.unique(array)
    if len(unique) != len(array):
        raise ParameterError(
            f"{name} has {len(array) - len(unique)} duplicate indices; a selection is a set."
        )
    return unique


def _check_scores(scores: object, *, name: str) -> np.ndarray:
    if isinstance(scores, Selection):
        if scores.scores is None:
            raise ParameterError(
                f"{name} is a Selection without scores; its algorithm does not rank examples."
            )
        scores = scores.scores
    return as_finite_array(scores, name=name, ndim=(1,)).astype(np.float64)


def _check_classes(labels: np.ndarray, classes: Sequence[object] | None) -> list[object]:
    present = np.unique(labels).tolist()
    if classes is None:
        return present
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise ParameterError(f"classes has duplicates: {classes}.")
    missing = [c for c in present if c not in classes]
    if missing:
        raise ParameterError(f"labels {missing} are not in classes={classes}.")
    return classes
