"""EL2N (Paul et al., NeurIPS 2021): keep the examples with the largest error-vector norm.

``EL2N(x, y) = mean_r || p_r(x) - onehot(y) ||_2`` where ``p_r`` is the softmax output of run
(or epoch) ``r``. This follows ``mansheej/data_diet`` ``data_diet/scores.py: get_lord_error_fn``
(``ord=2``) with the per-run norms averaged over runs as in ``scripts/get_mean_score.py``. The
highest scores are kept (``subset='keep_max_scores'``); ties go to the lower example index.

Input: class probabilities of shape (n_examples, K), or (n_examples, R, K) for R runs or epochs,
plus integer labels in [0, K). Rows are read in chunks, so a memmap is never loaded whole (nor a one-hot
matrix built: 1 is subtracted at the label, so a vocabulary-sized K costs no K x K memory).

EL2N reads probabilities, so it is not scale-free (values outside [0, 1] are refused); the norms are taken
without squaring raw values (:func:`datadiet.selection._numerics.row_norms`), so errors as small as
float64's smallest normals keep their order instead of underflowing to ties at 0.
"""

from __future__ import annotations

import numpy as np

from datadiet._core.chunks import chunk_rows_for, iter_row_chunks
from datadiet.errors import ParameterError, ParameterTypeError
from datadiet.selection._numerics import row_norms
from datadiet.selection.base import ScoreSelector, declared
from datadiet.selection.cartography import check_probability_range
from datadiet.selection.registry import SELECTORS

PROBABILITIES = "an (n_examples, K) array of class probabilities, or (n_examples, R, K) over R runs or epochs"


def el2n_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean over runs of the L2 norm of ``probs - onehot(labels)``.

    Parameters
    ----------
    probs : array-like of shape (n_examples, K) or (n_examples, R, K)
        Softmax outputs, for one run or for R runs (or epochs).
    labels : array-like of shape (n_examples,)
        Integer class of each example, in [0, K).

    Returns
    -------
    ndarray of shape (n_examples,)

    Examples
    --------
    >>> el2n_scores([[0.6, 0.4], [0.0, 1.0]], [0, 1]).round(4).tolist()
    [0.5657, 0.0]
    """
    probs = probs if isinstance(probs, np.ndarray) else np.asarray(probs, dtype=np.float64)
    if probs.ndim not in (2, 3) or 0 in probs.shape:
        raise ParameterError(f"'el2n_scores' reads {PROBABILITIES}. Got shape {probs.shape} instead.")
    check_probability_range(probs, who="el2n_scores")
    return _el2n(probs, _check_class_labels(labels, len(probs), probs.shape[-1], "el2n_scores"))


def _check_class_labels(labels: np.ndarray, n: int, n_classes: int, who: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ParameterError(
            f"labels must have shape (n_examples,) = ({n},). Got shape {labels.shape} instead."
        )
    if labels.dtype.kind not in "iu":
        raise ParameterTypeError(
            f"'{who}' needs integer class labels in [0, K={n_classes}) that index the probability columns. "
            f"Got dtype {labels.dtype} instead; map the classes to 0..K-1 first."
        )
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        raise ParameterError(
            f"'{who}' needs labels in [0, K={n_classes}) (K = number of probability columns). "
            f"Got {labels[bad][:5].tolist()} at rows {np.flatnonzero(bad)[:5].tolist()}."
        )
    return labels


def _el2n(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """EL2N of validated probabilities, in float64 row chunks (a memmap is never loaded whole)."""
    scores = np.empty(len(probs))
    for start, block in iter_row_chunks(probs, chunk_rows_for(probs, 8), dtype=np.float64):
        scores[start : start + len(block)] = _block_el2n(block, labels[start : start + len(block)])
    return scores


def _block_el2n(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``mean_r ||p_r - onehot(y)||`` of a float64 (b, K) or (b, R, K) block (never modified in place)."""
    errors = np.array(probs if probs.ndim == 3 else probs[:, None, :], dtype=np.float64)  # a copy
    errors[np.arange(len(errors)), :, labels] -= 1.0
    return row_norms(errors.reshape(-1, errors.shape[-1])).reshape(errors.shape[:2]).mean(axis=1)


@SELECTORS.register("el2n")
class EL2N(ScoreSelector):
    """Keep the examples with the largest mean error L2 norm ``||p - onehot(y)||``.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    >>> EL2N().select(p, 1, labels=np.array([0, 0, 0])).indices.tolist()
    [2]
    """

    reads = PROBABILITIES
    input_values = "probabilities"
    scale_free = False
    input_ndim = (2, 3)
    needs_labels = True

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
        check_probability_range(values, who=self.name)
        labels = declared(labels, "labels")
        return _el2n(values, _check_class_labels(labels, len(values), values.shape[-1], self.name))
