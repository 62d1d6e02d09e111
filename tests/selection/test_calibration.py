from __future__ import annotations

import numpy as np
import pytest

import datadiet


def _probs(n=50, seed=0):
    return np.random.default_rng(seed).random((n, 4))


def test_calibration_takes_floor_alpha_k_from_scores_and_rest_at_random():
    p = _probs(100)
    plain_order = np.argsort(p.mean(1), kind="stable")  # hard_to_learn keeps lowest mean first
    sel = datadiet.select("hard_to_learn", p, 20, calibrate=0.3, seed=1)
    k_s = 6  # floor(0.3 * 20)
    assert set(plain_order[:k_s]) <= set(sel.indices.tolist())
    assert sel.budget == 20
    others = datadiet.select("hard_to_learn", p, 20, calibrate=0.3, seed=2)
    assert set(sel.indices) != set(others.indices)  # the random part changes with the seed


def test_calibration_alpha_zero_is_uniform_random_pruning():
    p = _probs(40)
    calibrated = datadiet.select("hard_to_learn", p, 10, calibrate=0.0, seed=9)
    random = datadiet.select("random", p, 10, seed=9)
    np.testing.assert_array_equal(calibrated.indices, random.indices)


def test_unbiased_weights_are_inverse_inclusion_probabilities():
    n, k = 50, 10
    sel = datadiet.select("hard_to_learn", _probs(n), k, calibrate=0.4, weighting="unbiased", seed=0)
    k_s = 4
    top = set(np.argsort(_probs(n).mean(1), kind="stable")[:k_s].tolist())
    weights = dict(zip(sel.indices.tolist(), sel.weights.tolist(), strict=True))
    for index, weight in weights.items():
        assert weight == (1.0 if index in top else (n - k_s) / (k - k_s))


def test_unbiased_weighting_estimates_the_full_loss_sum():
    # E[sum_{i in S} w_i * loss_i] = sum_i loss_i, given the score part (checked by Monte Carlo).
    n, k = 30, 6
    losses = np.random.default_rng(0).random(n)
    p = np.random.default_rng(1).random((n, 3))
    estimates = []
    for seed in range(3000):
        sel = datadiet.select("hard_to_learn", p, k, calibrate=0.5, weighting="unbiased", seed=seed)
        estimates.append(np.sum(sel.weights * losses[sel.indices]))
    assert abs(np.mean(estimates) - losses.sum()) < 0.02 * losses.sum()


def test_calibration_refuses_non_score_selectors_and_bad_alpha():
    x = _probs(20)
    with pytest.raises(ValueError, match=r"score-based.*'s2l' is not"):
        datadiet.select("s2l", x, 5, calibrate=0.5)
    with pytest.raises(ValueError, match=r"'alpha' parameter of calibration must be a float in \[0, 1\]"):
        datadiet.select("hard_to_learn", x, 5, calibrate=1.5)
    with pytest.raises(ValueError, match="weighting"):
        datadiet.select("hard_to_learn", x, 5, weighting="unbiased")


def test_calibration_with_balancing_applies_per_class():
    p = _probs(60)
    labels = np.repeat([0, 1, 2], [30, 20, 10])
    sel = datadiet.select(
        "hard_to_learn",
        p,
        0.5,
        labels=labels,
        balance="stratified",
        calibrate=0.5,
        weighting="unbiased",
        seed=3,
    )
    assert np.bincount(labels[sel.indices]).tolist() == [15, 10, 5]
    # class 2: k_c = 5, k_s = 2 from scores, 3 random from the other 8 -> weight 8/3.
    w2 = sel.weights[labels[sel.indices] == 2]
    assert sorted(np.round(w2, 6).tolist()) == [1.0, 1.0, round(8 / 3, 6), round(8 / 3, 6), round(8 / 3, 6)]
