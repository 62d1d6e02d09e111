"""Dataset cartography (Swayamdipta et al., EMNLP 2020): hard-to-learn and ambiguous examples.

Input: ``p`` of shape (n_examples, T), the probability the model gave the *correct* class of each
example at each of T epochs (or logged passes). Following ``allenai/cartography``
``selection/train_dy_filtering.py: compute_train_dy_metrics``:

- ``confidence = mean_t p``; ``hard_to_learn`` keeps the lowest confidence, so its keep priority
  is ``1 - confidence`` (the ``hard`` score of Du et al., ACL 2025).
- ``variability = std_t p``, the population standard deviation (``ddof=0``); ``ambiguous`` keeps
  the highest variability.

Ties go to the lower example index. Values outside [0, 1] are refused: they are not probabilities
(logits or losses would silently invert the ranking), so neither score is scale-free. Rows are read in
chunks (a memmap is never loaded whole). The standard deviation is taken on each row multiplied by the
power of two that brings its largest value into [0.5, 1) (exact; the factor is undone after), so
probabilities down to float64's smallest normals do not underflow to a spread of 0. ``1 - confidence``
cannot tell confidences below about 1e-16 apart (``1 - 1e-20 == 1``): such examples tie, lower index first.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from datadiet._core.chunks import chunk_rows_for, iter_row_chunks
from datadiet.errors import ParameterError
from datadiet.selection._numerics import row_exponents
from datadiet.selection.base import ScoreSelector
from datadiet.selection.registry import SELECTORS

TRAJECTORY = "an (n_examples, T) trajectory of correct-class probabilities"


def check_probabilities(values: np.ndarray, *, who: str) -> np.ndarray:
    """Return ``values`` as float64, refusing anything outside [0, 1].

    Parameters
    ----------
    values : ndarray
        Probabilities of any shape.
    who : str
        Name used in the error message.
    """
    values = np.asarray(values, dtype=np.float64)
    check_probability_range(values, who=who)
    return values


def check_probability_range(values: np.ndarray, *, who: str) -> None:
    """Refuse values outside [0, 1], reading ``values`` in row chunks (a memmap is never loaded whole)."""
    if values.size == 0:
        return
    low, high = np.inf, -np.inf
    for _, block in iter_row_chunks(values, chunk_rows_for(values)):
        low, high = min(low, float(block.min())), max(high, float(block.max()))
    if low < 0 or high > 1:
        raise ParameterError(
            f"'{who}' reads probabilities in [0, 1]; got values in [{low:.4g}, {high:.4g}]. "
            "Pass softmax probabilities, not logits or losses (for a loss trajectory pass exp(-loss))."
        )


def _check_trajectory(p: np.ndarray, who: str) -> np.ndarray:
    p = p if isinstance(p, np.ndarray) else np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ParameterError(f"'{who}' reads {TRAJECTORY}. Got shape {p.shape} instead.")
    check_probability_range(p, who=who)
    return p


def row_reduce(values: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``reduce`` (a per-row float64 statistic) applied to float64 row chunks of ``values``.

    Chunks hold at most ``CHUNK_BYTES`` of float64; the pages of a memmap are released after each.
    """
    out = np.empty(len(values))
    for start, block in iter_row_chunks(values, chunk_rows_for(values, 8), dtype=np.float64):
        out[start : start + len(block)] = reduce(block)
    return out


def _mean(block: np.ndarray) -> np.ndarray:
    return block.mean(axis=1)


def _std(block: np.ndarray) -> np.ndarray:
    """Population std per row, taken on the row times a power of two (exact), then scaled back."""
    exponents = row_exponents(block, axis=1)
    with np.errstate(under="ignore"):
        return np.ldexp(np.ldexp(block, exponents[:, None]).std(axis=1, ddof=0), -exponents)


def confidence(p: np.ndarray) -> np.ndarray:
    """Mean correct-class probability over epochs.

    Parameters
    ----------
    p : array-like of shape (n_examples, T)
        Correct-class probability of each example at each epoch.

    Returns
    -------
    ndarray of shape (n_examples,)

    Examples
    --------
    >>> confidence([[0.2, 0.4], [1.0, 0.5]]).round(6).tolist()
    [0.3, 0.75]
    """
    return row_reduce(_check_trajectory(p, "confidence"), _mean)


def variability(p: np.ndarray) -> np.ndarray:
    """Population standard deviation (``ddof=0``) of the correct-class probability over epochs.

    Parameters
    ----------
    p : array-like of shape (n_examples, T)
        Correct-class probability of each example at each epoch.

    Returns
    -------
    ndarray of shape (n_examples,)

    Examples
    --------
    >>> variability([[0.2, 0.4], [1.0, 1.0]]).round(6).tolist()
    [0.1, 0.0]
    """
    return row_reduce(_check_trajectory(p, "variability"), _std)


@SELECTORS.register("hard_to_learn")
class HardToLearn(ScoreSelector):
    """Keep the examples with the lowest mean correct-class probability (score ``1 - confidence``).

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.9, 0.9], [0.1, 0.3], [0.5, 0.5]])
    >>> HardToLearn().select(p, 2).indices.tolist()
    [1, 2]
    """

    reads = TRAJECTORY
    input_values = "probabilities"
    scale_free = False
    input_ndim = (2,)

    def __init__(self) -> None:
        pass

    def _scores(
        self,
        values: np.ndarray,
        *,
        labels: np.ndarray | None,
        val: np.ndarray | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        return 1.0 - row_reduce(_check_trajectory(values, self.name), _mean)


@SELECTORS.register("ambiguous")
class Ambiguous(ScoreSelector):
    """Keep the examples whose correct-class probability varies most over epochs (population std).

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.9, 0.9], [0.1, 0.9], [0.4, 0.6]])
    >>> Ambiguous().select(p, 1).indices.tolist()
    [1]
    """

    reads = TRAJECTORY
    input_values = "probabilities"
    scale_free = False
    input_ndim = (2,)

    def __init__(self) -> None:
        pass

    def _scores(
        self,
        values: np.ndarray,
        *,
        labels: np.ndarray | None,
        val: np.ndarray | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        return row_reduce(_check_trajectory(values, self.name), _std)
