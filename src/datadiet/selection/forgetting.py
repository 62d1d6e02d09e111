"""Forgetting events (Toneva et al., ICLR 2019): keep the examples forgotten most often.

Input: ``correct`` of shape (n_examples, T), 1 where the model classified the example correctly
at presentation (or epoch) ``t`` and 0 otherwise. Following ``mtoneva/example_forgetting``
(``run_cifar.py: train``, ``order_examples_by_forgetting.py``):

- a forgetting event is a transition ``correct[t] = 1 -> correct[t + 1] = 0`` between consecutive
  columns;
- an example that is never correct gets count ``T``, the reference's ``npresentations``
  convention (data_diet uses ``inf``, cartography 1000, DeepCore 0), so never-learned examples rank
  with the most forgotten;
- pruning removes the lowest counts first, so the top ``k`` counts are kept. Ties (typically the
  many unforgettable examples with count 0) are broken by a seeded random order, as the paper
  removes randomly among equal counts.
"""

from __future__ import annotations

import numpy as np

from datadiet._chunks import chunk_rows_for, iter_row_chunks
from datadiet.selection.base import ScoreSelector
from datadiet.selection.registry import SELECTORS

CORRECTNESS = "an (n_examples, T) trajectory of 0/1 correctness (one column per epoch or presentation)"


def forgetting_events(correct: np.ndarray) -> np.ndarray:
    """Number of 1 -> 0 transitions per example; ``T`` for examples never correct.

    Parameters
    ----------
    correct : array-like of shape (n_examples, T)
        Correctness (0/1 or bool) of each example at each presentation.

    Returns
    -------
    ndarray of shape (n_examples,) and dtype int64

    Examples
    --------
    >>> forgetting_events([[1, 0, 1, 0], [0, 1, 1, 1], [0, 0, 0, 0]]).tolist()
    [2, 0, 4]
    """
    return _forgetting_events(_check_correctness(correct, "forgetting_events"))


def _check_correctness(correct: np.ndarray, who: str) -> np.ndarray:
    """``correct`` as an array (a memmap is kept), refusing other shapes and values other than 0/1."""
    correct = correct if isinstance(correct, np.ndarray) else np.asarray(correct)
    if correct.ndim != 2 or 0 in correct.shape:
        raise ValueError(f"'{who}' reads {CORRECTNESS}. Got shape {correct.shape} instead.")
    bad: np.ndarray | None = None
    for _, block in iter_row_chunks(correct, chunk_rows_for(correct, 8)):  # isin's temporaries are 8-byte
        other = ~np.isin(block, (0, 1))
        if other.any():  # keep the 5 smallest offending values seen so far
            found = np.unique(block[other])
            bad = found[:5] if bad is None else np.unique(np.concatenate([bad, found]))[:5]
    if bad is not None:
        raise ValueError(
            f"'{who}' reads 0/1 correctness; got other values (e.g. {bad.tolist()}). "
            "Pass (prediction == label) per epoch, not probabilities or losses."
        )
    return correct


def _forgetting_events(correct: np.ndarray) -> np.ndarray:
    """Forgetting counts of validated 0/1 rows, computed in row chunks (each chunk as bool)."""
    counts = np.empty(len(correct), dtype=np.int64)
    for start, block in iter_row_chunks(correct, chunk_rows_for(correct, 8), dtype=bool):
        counts[start : start + len(block)] = _block_events(block)
    return counts


def _block_events(correct: np.ndarray) -> np.ndarray:
    counts = (correct[:, :-1] & ~correct[:, 1:]).sum(axis=1).astype(np.int64)
    counts[~correct.any(axis=1)] = correct.shape[1]
    return counts


@SELECTORS.register("forgetting")
class Forgetting(ScoreSelector):
    """Keep the examples with the most forgetting events (never-learned count ``T``).

    Ties are broken by a seeded random order.

    Examples
    --------
    >>> import numpy as np
    >>> correct = np.array([[1, 0, 1], [1, 1, 1], [0, 0, 0], [1, 0, 0]])
    >>> sel = Forgetting().select(correct, 2, seed=0)
    >>> sel.scores.tolist(), sel.indices.tolist()
    ([1.0, 0.0, 3.0, 1.0], [0, 2])
    """

    reads = CORRECTNESS
    input_ndim = (2,)
    random_ties = True

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
        return _forgetting_events(_check_correctness(values, self.name)).astype(np.float64)
