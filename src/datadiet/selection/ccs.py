"""Coverage-centric coreset selection, CCS (Zheng et al., ICLR 2023).

Following ``haizhongzheng/Coverage-centric-coreset-selection`` (``core/data/Coreset.py``,
``train.py``), for importance scores ``s`` of shape (N,) (or the mean over T of an (N, T) array)
and a budget ``k`` counted on the full N:

1. hard cutoff: drop the ``floor(beta * N)`` hardest examples (highest score for
   ``hard_end="high"``, e.g. EL2N or forgetting; lowest for ``"low"``, e.g. confidence or AUM).
   Equal scores at the cutoff drop the lower index first;
2. split the remaining scores into ``n_strata`` equal-width strata over ``[min, max + tiny)``,
   membership ``start <= s < end``. The reference's ``1.0001 * max`` upper edge drops the top point
   when ``max < 0``, so a tiny positive epsilon is added instead; all-equal scores form one stratum;
3. allocate ``k`` (:func:`stratified_allocation`): visit strata from the smallest, each taking
   ``min(|B|, remaining // strata_left)``; the last (largest) takes what is left;
4. draw each stratum's share uniformly without replacement from the seeded generator (the reference
   uses an unseeded ``torch.randperm``).

Every step depends on the scores only through their order and their equal-width strata, so the selection
is invariant to a positive rescaling of the scores: they are multiplied by the power of two that brings
the largest ``|score|`` into [0.5, 1) first (exact, so ``s`` and ``s * 2**j`` select the same examples bit for
bit, and ``max - min`` cannot overflow for scores near 1e308 nor vanish for subnormal ones); a trajectory
is averaged after the same rescaling. Only the non-empty strata are held in memory, so ``n_strata`` may
exceed ``n_examples`` by far (up to ``MAX_STRATA``) without allocating a bin per stratum.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal, get_args

import numpy as np

from datadiet._core.checks import check_choice, param_error
from datadiet._core.chunks import chunk_rows_for, iter_row_chunks
from datadiet.errors import ParameterError, ParameterTypeError
from datadiet.selection._numerics import scale_exponent
from datadiet.selection.base import BaseSelector
from datadiet.selection.registry import SELECTORS

TINY = 1e-9  # relative gap between the top score and the last stratum's upper edge
MAX_STRATA = 2**53  # stratum numbers stay exact float64 integers
HardEnd = Literal["high", "low"]


def stratified_allocation(sizes: np.ndarray, budget: int) -> np.ndarray:
    """How many examples to take from each stratum (CCS ``bin_allocate``).

    Strata are visited from the smallest (equal sizes in input order); each takes
    ``min(size, remaining_budget // strata_left)``, so the last, largest one takes the rest.

    Parameters
    ----------
    sizes : array-like of shape (n_strata,)
        Number of examples in each stratum (ints >= 0).
    budget : int
        Total to take, ``0 <= budget <= sum(sizes)``.

    Returns
    -------
    ndarray of shape (n_strata,)
        Takes per stratum, in the input order; they sum to ``budget``.

    Examples
    --------
    >>> stratified_allocation([10, 1, 10, 2], 12).tolist()
    [4, 1, 5, 2]
    """
    sizes = np.asarray(sizes)
    if sizes.ndim != 1 or sizes.dtype.kind not in "iu" or (sizes < 0).any():
        raise ParameterError(f"sizes must be a 1-D array of ints >= 0. Got {sizes!r} instead.")
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or not 0 <= budget <= sizes.sum():
        raise ParameterError(f"budget={budget!r} should be an int in [0, sum(sizes)={int(sizes.sum())}].")
    return _allocate(sizes, int(budget))


def _allocate(sizes: np.ndarray, budget: int) -> np.ndarray:
    takes = np.zeros(len(sizes), dtype=np.int64)
    remaining = budget
    order = np.argsort(sizes, kind="stable")
    for visited, stratum in enumerate(order):
        takes[stratum] = min(int(sizes[stratum]), remaining // (len(order) - visited))
        remaining -= takes[stratum]
    return takes


def assign_strata(scores: np.ndarray, n_strata: int) -> np.ndarray:
    """Stratum of each score: ``n_strata`` equal-width bins over ``[min, max + tiny)``.

    The edges are those of ``np.linspace(min, max + tiny, n_strata + 1)`` (edge ``i`` is
    ``min + i * step``, the last is ``max + tiny``), found without building them, so memory is O(n)
    for any ``n_strata``; a score equal to an edge starts the next stratum (``start <= s < end``). The
    scores are first multiplied by the power of two that brings the largest ``|score|`` into [0.5, 1)
    (exact), so the strata of ``s`` and ``s * 2**j`` are the same.

    Parameters
    ----------
    scores : ndarray of shape (n,)
        Finite scores.
    n_strata : int
        In [1, ``MAX_STRATA``].

    Returns
    -------
    ndarray of shape (n,) with ints in [0, n_strata); all zeros when every score is equal.

    Examples
    --------
    >>> assign_strata(np.array([-4.0, -3.0, -2.0, -1.0]), 2).tolist()
    [0, 0, 1, 1]
    >>> assign_strata(np.array([-4e300, -3e300, -2e300, -1e300]), 2).tolist()
    [0, 0, 1, 1]
    """
    scores = np.asarray(scores, dtype=np.float64)
    scores = np.ldexp(scores, scale_exponent(scores))
    low, high = float(scores.min()), float(scores.max())
    if high == low:
        return np.zeros(len(scores), dtype=np.int64)
    stop = high + TINY * (high - low)
    step = (stop - low) / n_strata  # > 0: |low| or |high| is in [0.5, 1) after the rescaling

    def edge(i: np.ndarray) -> np.ndarray:  # np.linspace's edges: i * step + low, the last one exactly stop
        return np.where(i >= n_strata, stop, i.astype(np.float64) * step + low)

    # the last edge <= s, by bisection on [0, n_strata] (edges are non-decreasing; equal ones possible)
    first = np.zeros(len(scores), dtype=np.int64)
    last = np.full(len(scores), n_strata, dtype=np.int64)
    while (first < last).any():
        middle = (first + last + 1) // 2
        below = edge(middle) <= scores
        first, last = np.where(below, middle, first), np.where(below, last, middle - 1)
    return np.minimum(first, n_strata - 1)


@SELECTORS.register("ccs")
class CCS(BaseSelector):
    """Coverage-centric selection: drop the hardest ``beta`` fraction, then sample evenly over strata.

    Parameters
    ----------
    beta : float, default 0.0
        Fraction of the N examples dropped as hardest first, in [0, 1).
    n_strata : int, default 50
        Number of equal-width score strata, in [1, 2**53]; only the non-empty ones are held in memory.
    hard_end : {"high", "low"}, default "high"
        Which end of the score is hard: "high" for EL2N or forgetting counts, "low" for confidence
        or AUM.

    Examples
    --------
    >>> import numpy as np
    >>> scores = np.array([0.0, 0.1, 0.2, 5.0, 9.0, 10.0])
    >>> CCS(beta=0.2, n_strata=2).select(scores, 2, seed=0).indices.tolist()
    [2, 4]
    """

    reads = "an (n_examples,) array of importance scores, or (n_examples, T) averaged over T"
    input_ndim = (1, 2)

    def __init__(self, *, beta: float = 0.0, n_strata: int = 50, hard_end: HardEnd = "high") -> None:
        self.beta = beta
        self.n_strata = n_strata
        self.hard_end = hard_end

    def validate_params(self, n: int) -> None:
        owner = type(self).__name__
        beta, n_strata = self.beta, self.n_strata
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
            raise param_error(owner, "beta", "a float in the range [0, 1)", beta, error=ParameterTypeError)
        if not 0 <= beta < 1:
            raise param_error(owner, "beta", "a float in the range [0, 1)", beta)
        strata = "an int in the range [1, 2**53]"
        if isinstance(n_strata, bool) or not isinstance(n_strata, numbers.Integral):
            raise param_error(owner, "n_strata", strata, n_strata, error=ParameterTypeError)
        if not 1 <= n_strata <= MAX_STRATA:
            raise param_error(owner, "n_strata", strata, n_strata)
        check_choice(owner, "hard_end", self.hard_end, get_args(HardEnd))

    def n_dropped(self, n: int) -> int:
        """``floor(beta * n)``, rounded to 9 decimals first as in ``resolve_budget``."""
        return math.floor(round(self.beta * n, 9))

    def _select(
        self,
        values: np.ndarray,
        k: int,
        *,
        labels: np.ndarray | None,
        val: np.ndarray | None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, None, None]:
        scores = _row_means(values) if values.ndim == 2 else np.asarray(values, dtype=np.float64)
        kept = self._after_cutoff(scores, k)
        members = _strata_members(kept, assign_strata(scores[kept], int(self.n_strata)))
        takes = _allocate(np.array([len(m) for m in members]), k)
        chosen = [rng.choice(m, size=t, replace=False) for m, t in zip(members, takes, strict=True) if t]
        return np.concatenate(chosen), None, None

    def _after_cutoff(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Indices left after dropping the ``floor(beta * N)`` hardest (ties: lower index dropped first)."""
        n, cut = len(scores), self.n_dropped(len(scores))
        if k > n - cut:
            max_beta = math.floor((n - k) / n * 1e4) / 1e4
            raise ParameterError(
                f"budget k={k} is more than the {n - cut} examples left after beta={self.beta} drops "
                f"floor(beta*N)={cut} of N={n}; use a lower beta (beta <= {max_beta}) or a smaller budget."
            )
        hardness = scores if self.hard_end == "high" else -scores
        hardest_first = np.lexsort((np.arange(n), -hardness))
        return np.sort(hardest_first[cut:])


def _strata_members(kept: np.ndarray, strata: np.ndarray) -> list[np.ndarray]:
    """``kept`` split by stratum: the members of each non-empty stratum, in stratum order, ascending.

    Empty strata take nothing in :func:`_allocate` (they come first and take ``min(0, .) = 0`` without
    changing the remaining budget), so leaving them out gives the same takes for the non-empty ones.
    """
    order = np.argsort(strata, kind="stable")
    bounds = np.flatnonzero(np.diff(strata[order])) + 1
    return np.split(kept[order], bounds)


def _row_means(values: np.ndarray) -> np.ndarray:
    """``values.mean(axis=1)`` times ``2**e`` (one exact power of two that keeps the sums finite).

    Computed in the values' usual mean dtype, in row chunks (a memmap is never loaded whole); CCS reads the
    means only through their order and strata, which the common factor does not change.
    """
    dtype = np.zeros((1, 1), dtype=values.dtype).mean(axis=1).dtype
    exponent = scale_exponent(values)
    means = np.empty(len(values), dtype=dtype)
    for start, block in iter_row_chunks(values, chunk_rows_for(values)):
        means[start : start + len(block)] = np.ldexp(block.astype(dtype, copy=False), exponent).mean(axis=1)
    return means
