"""Dataset cartography (Swayamdipta et al., EMNLP 2020): hard-to-learn and ambiguous examples.

Input: ``p`` of shape (n_examples, T), the probability the model gave the *correct* class of each
example at each of T epochs (or logged passes). Following ``allenai/cartography``
``selection/train_dy_filtering.py: compute_train_dy_metrics``:

- ``confidence = mean_t p``; ``hard_to_learn`` keeps the lowest confidence, so its keep priority
  is ``1 - confidence`` (the ``hard`` score of Du et al., ACL 2025).
- ``variability = std_t p``, the population standard deviation (``ddof=0``); ``ambiguous`` keeps
  the highest variability.

Ties go to the lower example index. Values outside [0, 1] are refused: they are not probabilities
(logits or losses would silently invert the ranking).
"""

from __future__ import annotations

import numpy as np

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
    if values.size and (values.min() < 0 or values.max() > 1):
        raise ValueError(
            f"'{who}' reads probabilities in [0, 1]; got values in [{values.min():.4g}, {values.max():.4g}]. "
            "Pass softmax probabilities, not logits or losses (for a loss trajectory pass exp(-loss))."
        )
    return values


def _check_trajectory(p: np.ndarray, who: str) -> np.ndarray:
    p = check_probabilities(p, who=who)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"'{who}' reads {TRAJECTORY}. Got shape {p.shape} instead.")
    return p


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
    return _check_trajectory(p, "confidence").mean(axis=1)


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
    return _check_trajectory(p, "variability").std(axis=1, ddof=0)


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
        return 1.0 - _check_trajectory(values, self.name).mean(axis=1)


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
        return _check_trajectory(values, self.name).std(axis=1, ddof=0)
