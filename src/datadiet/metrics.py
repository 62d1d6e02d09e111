"""Evaluation metrics of the study (classification): accuracy, macro-F1, and the dummy baseline."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import f1_score

from datadiet.errors import ParameterError


def accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> float:
    """Share of correct predictions."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over all ``n_classes`` classes (absent classes count as 0)."""
    labels = None if n_classes is None else list(range(n_classes))
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


METRICS: dict[str, Callable[..., float]] = {"accuracy": accuracy, "macro_f1": macro_f1}


def check_metrics(names: list[str]) -> None:
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise ParameterError(f"Unknown metric(s) {unknown}. Available: {sorted(METRICS)}.")


def score(y_true: np.ndarray, y_pred: np.ndarray, names: list[str], n_classes: int) -> dict[str, float]:
    """Every metric in ``names`` for one set of predictions."""
    check_metrics(names)
    return {name: METRICS[name](y_true, y_pred, n_classes) for name in names}


def dummy_scores(
    y_train: np.ndarray, y_test: np.ndarray, names: list[str], n_classes: int, *, seed: int = 0
) -> dict[str, float]:
    """The better, per metric, of the majority-class predictor and a uniform random predictor.

    The majority class is taken from the training labels; the random predictor draws uniformly over the
    ``n_classes`` classes with a seeded generator.

    >>> dummy_scores(np.array([0, 0, 1]), np.array([0, 0, 0, 1]), ["accuracy"], 2)["accuracy"]
    0.75
    """
    majority = np.full(len(y_test), np.bincount(y_train, minlength=n_classes).argmax())
    uniform = np.random.default_rng(seed).integers(0, n_classes, len(y_test))
    by_majority = score(y_test, majority, names, n_classes)
    by_uniform = score(y_test, uniform, names, n_classes)
    return {name: max(by_majority[name], by_uniform[name]) for name in names}
