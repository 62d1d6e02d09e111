"""Forgetting events (Toneva et al., ICLR 2019): keep the examples forgotten most often.

Input: ``correct`` of shape (n_examples, T) for one training run, or (n_examples, R, T) for R runs
(seeds), 1 where the model classified the example correctly at presentation (or epoch) ``t`` of run ``r``
and 0 otherwise. Following ``mtoneva/example_forgetting`` (``run_cifar.py: train``,
``order_examples_by_forgetting.py``):

- a forgetting event is a transition ``correct[r, t] = 1 -> correct[r, t + 1] = 0`` between consecutive
  presentations *of the same run*; the last presentation of run ``r`` and the first of run ``r + 1`` are
  not consecutive (concatenating runs along T would invent a 1 -> 0 event at every boundary where one
  run ends correct and the next starts wrong);
- in each run where an example is never correct it gets ``T`` for that run, the reference's
  ``npresentations`` convention (data_diet uses ``inf``, cartography 1000, DeepCore 0), so never-learned
  examples rank with the most forgotten;
- the count is summed over runs: ``count(z) = sum_r (T if run r never has z correct else events_r(z))``,
  as ``sort_examples_by_forgetting`` adds each run's statistics (2-D input is the case R = 1);
- pruning removes the lowest counts first, so the top ``k`` counts are kept. Ties (typically the
  many unforgettable examples with count 0) are broken by a seeded random order, as the paper
  removes randomly among equal counts.
"""

from __future__ import annotations

import numpy as np

from datadiet._core.chunks import chunk_rows_for, iter_row_chunks
from datadiet.errors import ParameterError
from datadiet.selection.base import ScoreSelector
from datadiet.selection.registry import SELECTORS

CORRECTNESS = (
    "an (n_examples, T) trajectory of 0/1 correctness (one column per epoch or presentation), "
    "or (n_examples, R, T) for R runs"
)


def forgetting_events(correct: np.ndarray) -> np.ndarray:
    """Per example: 1 -> 0 transitions within each run (``T`` for a run never correct), summed over runs.

    Parameters
    ----------
    correct : array-like of shape (n_examples, T) or (n_examples, R, T)
        Correctness (0/1 or bool) of each example at each presentation, for one run or for R runs.

    Returns
    -------
    ndarray of shape (n_examples,) and dtype int64

    Examples
    --------
    >>> forgetting_events([[1, 0, 1, 0], [0, 1, 1, 1], [0, 0, 0, 0]]).tolist()
    [2, 0, 4]
    >>> forgetting_events([[[0, 1], [0, 1]], [[1, 1], [0, 0]]]).tolist()  # run 2 never learns example 1
    [0, 2]
    """
    return _forgetting_events(_check_correctness(correct, "forgetting_events"))


def _check_correctness(correct: np.ndarray, who: str) -> np.ndarray:
    """``correct`` as an array (a memmap is kept), refusing other shapes and values other than 0/1."""
    correct = correct if isinstance(correct, np.ndarray) else np.asarray(correct)
    if correct.ndim not in (2, 3) or 0 in correct.shape:
        raise ParameterError(f"'{who}' reads {CORRECTNESS}. Got shape {correct.shape} instead.")
    bad: np.ndarray | None = None
    for _, block in iter_row_chunks(correct, chunk_rows_for(correct, 8)):  # isin's temporaries are 8-byte
        other = ~np.isin(block, (0, 1))
        if other.any():  # keep the 5 smallest offending values seen so far
            found = np.unique(block[other])
            bad = found[:5] if bad is None else np.unique(np.concatenate([bad, found]))[:5]
    if bad is not None:
        raise ParameterError(
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
    """Counts of a (b, T) or (b, R, T) bool block: per run, the 1 -> 0 events or ``T`` if never correct."""
    runs = correct if correct.ndim == 3 else correct[:, None, :]
    events = (runs[..., :-1] & ~runs[..., 1:]).sum(axis=-1, dtype=np.int64)
    per_run = np.where(runs.any(axis=-1), events, runs.shape[-1])
    return per_run.sum(axis=1, dtype=np.int64)


@SELECTORS.register("forgetting")
class Forgetting(ScoreSelector):
    """Keep the examples with the most forgetting events (never-learned count ``T`` per run).

    Reads (n_examples, T) correctness of one run, or (n_examples, R, T) of R runs (counts summed over
    runs, see the module docstring). Ties are broken by a seeded random order.

    Examples
    --------
    >>> import numpy as np
    >>> correct = np.array([[1, 0, 1], [1, 1, 1], [0, 0, 0], [1, 0, 0]])
    >>> sel = Forgetting().select(correct, 2, seed=0)
    >>> sel.scores.tolist(), sel.indices.tolist()
    ([1.0, 0.0, 3.0, 1.0], [0, 2])
    """

    reads = CORRECTNESS
    input_values = "binary"
    scale_free = False
    input_ndim = (2, 3)
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
