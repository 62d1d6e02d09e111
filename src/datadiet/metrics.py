"""Evaluation metrics of the study, in a registry: accuracy and macro-F1 (labels), ROUGE-1/2/L (texts).

Each entry of :data:`METRICS` is a :class:`Metric` declaring the tasks it serves, the tasks it is the
default primary metric of, and what it reads (predicted labels or generated texts). ROUGE uses Google's
``rouge-score`` package (the reference implementation): ``RougeScorer(["rouge1", "rouge2", "rougeL"],
use_stemmer=True)``, so text is lower-cased, split on non-alphanumeric characters and Porter-stemmed;
``rougeL`` is the sentence-level longest common subsequence (not ``rougeLsum``). The F-measures are averaged
over examples (macro average, as ``evaluate``'s ``rouge`` with ``use_aggregator=False`` followed by a mean).
The dummy baseline (majority or uniform random, the better per metric) is :func:`dummy_scores`.

>>> metric_names("generation"), primary_metric("classification")
(['rouge1', 'rouge2', 'rougeL'], 'macro_f1')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from datadiet._core.registry import Registry
from datadiet.errors import MissingDependencyError, ParameterError, ParameterTypeError

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")
_INSTALL = "pip install rouge-score==0.1.2"


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    Parameters
    ----------
    fn : callable
        ``reads="labels"``: ``fn(y_true, y_pred, n_classes) -> float``. ``reads="texts"``:
        ``fn(references, predictions) -> dict`` holding this metric's name (one call may give several).
    tasks : tuple of str
        The tasks it serves ("classification", "multiple_choice", "generation").
    primary_for : tuple of str
        The tasks whose default primary metric it is.
    reads : {"labels", "texts"}
        Predicted class indices or generated texts.
    """

    fn: Callable[..., object]
    tasks: tuple[str, ...]
    primary_for: tuple[str, ...] = ()
    reads: Literal["labels", "texts"] = "labels"


METRICS: Registry[Metric] = Registry("metric")
"""Metric name -> :class:`Metric`."""


def metric_names(task: str) -> list[str]:
    """The metrics serving ``task``, in registration order (the study's default metrics for it)."""
    return [name for name in METRICS.registered() if task in METRICS.get(name).tasks]


def primary_metric(task: str) -> str:
    """The default primary metric of ``task``."""
    found = [name for name in METRICS.registered() if task in METRICS.get(name).primary_for]
    if not found:
        raise ParameterError(f"No metric is the primary metric of task {task!r}; set primary_metric.")
    return found[0]


def accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> float:
    """Share of correct predictions."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over all ``n_classes`` classes (absent classes count as 0)."""
    from sklearn.metrics import f1_score

    labels = None if n_classes is None else list(range(n_classes))
    score = f1_score(
        y_true,
        y_pred,
        labels=labels,
        average="macro",
        zero_division=0,  # pyright: ignore[reportArgumentType] (sklearn ships no stubs; inferred from "warn")
    )
    return float(score)


def rouge_scores(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F-measures of ``predictions`` against ``references``.

    Parameters
    ----------
    references : sequence of str of length n_examples
        The target texts.
    predictions : sequence of str of length n_examples
        The generated texts, in the same order; an empty prediction scores 0.

    Returns
    -------
    dict with keys "rouge1", "rouge2", "rougeL"
        F-measures averaged over examples, each in [0, 1].

    Examples
    --------
    >>> scores = rouge_scores(["the cat sat on the mat"], ["the cat is on the mat"])
    >>> {name: round(value, 4) for name, value in scores.items()}
    {'rouge1': 0.8333, 'rouge2': 0.6, 'rougeL': 0.8333}
    """
    references, predictions = _check_texts(references, predictions)
    scorer = _scorer()
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for reference, prediction in zip(references, predictions, strict=True):
        scores = scorer.score(reference, prediction)
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    return {name: total / len(references) for name, total in totals.items()}


_LABELED = ("classification", "multiple_choice")
METRICS.register("accuracy", Metric(accuracy, _LABELED, primary_for=("multiple_choice",)))
METRICS.register("macro_f1", Metric(macro_f1, _LABELED, primary_for=("classification",)))
for _name in ROUGE_TYPES:
    METRICS.register(
        _name, Metric(rouge_scores, ("generation",), ("generation",) * (_name == "rougeL"), "texts")
    )


def check_metrics(names: list[str]) -> None:
    """Refuse names that are not registered label metrics, listing those."""
    labeled = [name for name in METRICS.registered() if METRICS.get(name).reads == "labels"]
    unknown = sorted(set(names) - set(labeled))
    if unknown:
        raise ParameterError(f"Unknown metric(s) {unknown}. Available: {sorted(labeled)}.")


def score(y_true: np.ndarray, y_pred: np.ndarray, names: list[str], n_classes: int) -> dict[str, float]:
    """Every label metric in ``names`` for one set of predictions."""
    check_metrics(names)
    return {name: float(METRICS.get(name).fn(y_true, y_pred, n_classes)) for name in names}  # type: ignore[arg-type]


def text_scores(references: Sequence[str], predictions: Sequence[str], names: list[str]) -> dict[str, float]:
    """Every text metric in ``names`` (ROUGE is computed once for all three)."""
    computed: dict[Callable[..., object], dict[str, float]] = {}
    out = {}
    for name in names:
        metric = METRICS.get(name)
        if metric.reads != "texts":
            raise ParameterError(f"Metric {name!r} reads labels, not texts; use score() for it.")
        if metric.fn not in computed:
            computed[metric.fn] = metric.fn(references, predictions)  # type: ignore[assignment]
        out[name] = computed[metric.fn][name]
    return out


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


def _check_texts(references: Sequence[str], predictions: Sequence[str]) -> tuple[list[str], list[str]]:
    for name, texts in (("references", references), ("predictions", predictions)):
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            kind = type(texts).__name__
            raise ParameterTypeError(
                f"{name} must be a sequence of str (one per example). Got {kind} instead."
            )
        bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
        if bad:
            raise ParameterTypeError(f"{name} must hold only str; rows {bad[:5]} do not.")
    if len(references) != len(predictions):
        raise ParameterError(
            f"references and predictions must have one entry per example; got {len(references)} references "
            f"and {len(predictions)} predictions."
        )
    if not references:
        raise ParameterError("references and predictions are empty; ROUGE needs at least one example.")
    return list(references), list(predictions)


def _scorer():
    try:
        from rouge_score.rouge_scorer import RougeScorer
    except ImportError as exc:
        raise MissingDependencyError(f"ROUGE needs the 'rouge-score' package: {_INSTALL}.") from exc
    return RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
