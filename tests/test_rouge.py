"""rouge_scores: hand-computed ROUGE-1/2/L F-measures, stemming, averaging and input checks."""

from __future__ import annotations

import pytest

from datadiet.metrics import rouge_scores


def test_rouge_matches_hand_counts():
    # unigrams: 5 of 6 shared (the x2, cat, on, mat); bigrams: 3 of 5 (the cat, on the, the mat);
    # LCS "the cat on the mat" = 5 of 6 tokens.
    scores = rouge_scores(["the cat sat on the mat"], ["the cat is on the mat"])
    assert scores == pytest.approx({"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6})


def test_rouge_precision_and_recall_differ_in_the_f_measure():
    # prediction "police killed gunman": 3 tokens, all in the 4-token reference -> P=1, R=3/4, F=6/7;
    # bigrams: "police killed" shared of 2 and 3 -> P=1/2, R=1/3, F=2/5; LCS = 3 -> like rouge1.
    scores = rouge_scores(["police killed the gunman"], ["police killed gunman"])
    assert scores == pytest.approx({"rouge1": 6 / 7, "rouge2": 2 / 5, "rougeL": 6 / 7})


def test_rouge_ignores_case_punctuation_and_inflection():
    scores = rouge_scores(["Cats running!"], ["cat run"])
    assert scores == pytest.approx({"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0})


def test_rouge_averages_over_examples_and_scores_empty_predictions_zero():
    references = ["a quick brown fox", "jumped over", "lazy dogs"]
    scores = rouge_scores(references, ["a quick brown fox", "", "cats"])
    assert scores == pytest.approx({"rouge1": 1 / 3, "rouge2": 1 / 3, "rougeL": 1 / 3})


def test_rouge_word_order_matters_for_rouge2_and_rougeL_only():
    scores = rouge_scores(["one two three four"], ["four three two one"])
    assert scores == pytest.approx({"rouge1": 1.0, "rouge2": 0.0, "rougeL": 1 / 4})


@pytest.mark.parametrize(
    ("references", "predictions", "error", "match"),
    [
        (["a", "b"], ["a"], ValueError, "2 references and 1 predictions"),
        ([], [], ValueError, "at least one example"),
        ("a b", "a b", TypeError, "sequence of str"),
        (["a", None], ["a", "b"], TypeError, r"rows \[1\]"),
    ],
)
def test_rouge_rejects_bad_inputs(references, predictions, error, match):
    with pytest.raises(error, match=match):
        rouge_scores(references, predictions)
