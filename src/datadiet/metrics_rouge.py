"""ROUGE-1/2/L for generation tasks, with Google's ``rouge-score`` package (the reference implementation).

Each prediction is scored against its reference with ``RougeScorer(["rouge1", "rouge2", "rougeL"],
use_stemmer=True)``: text is lower-cased, split on non-alphanumeric characters and Porter-stemmed;
``rougeL`` is the sentence-level longest common subsequence (not ``rougeLsum``). The F-measures are
averaged over examples (macro average, as ``evaluate``'s ``rouge`` with ``use_aggregator=False``
followed by a mean).
"""

from __future__ import annotations

from collections.abc import Sequence

from datadiet.errors import MissingDependencyError, ParameterError, ParameterTypeError

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")
_INSTALL = "pip install rouge-score==0.1.2"


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
