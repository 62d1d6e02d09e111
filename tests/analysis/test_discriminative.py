"""Discriminative power of loss and gradient representations (Du et al. Remark 3.1, Theorem 3.3)."""

from __future__ import annotations

import numpy as np
import pytest

from datadiet.analysis.discriminative import (
    gradient_jacobian,
    gradient_sensitivity,
    gradient_sensitivity_bound,
    logistic_loss,
    loss_gradient,
    loss_sensitivity,
    margin,
)


def _random_points(n: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        scale = rng.uniform(0.1, 3.0)
        yield rng.normal(size=d) * scale, rng.normal(size=d), int(rng.choice([-1, 1]))


def test_loss_sensitivity_at_zero_margin_is_half_the_weight_norm():
    assert float(loss_sensitivity(0.0, 3.0)) == pytest.approx(1.5)


def test_gradient_bound_at_zero_margin_is_half_plus_quarter_alpha():
    alpha = np.array([0.0, 1.0, 2.5])
    np.testing.assert_allclose(gradient_sensitivity_bound(0.0, alpha), 0.5 + alpha / 4)


def test_loss_sensitivity_matches_closed_form_and_is_decreasing():
    z = np.linspace(-5, 5, 11)
    np.testing.assert_allclose(loss_sensitivity(z, 2.0), 2.0 / (1 + np.exp(z)))
    assert np.all(np.diff(loss_sensitivity(z, 2.0)) < 0)
    np.testing.assert_allclose(
        gradient_sensitivity_bound(z, 1.5), 1 / (1 + np.exp(z)) + np.exp(z) / (1 + np.exp(z)) ** 2 * 1.5
    )


@pytest.mark.parametrize("d", [1, 2, 5])
def test_bound_is_at_least_the_exact_operator_norm(d):
    for h, w, y in _random_points(200, d, seed=d):
        z = margin(h, w, y)
        alpha = np.linalg.norm(w) * np.linalg.norm(h)
        exact = gradient_sensitivity(h, w, y)
        assert exact <= float(gradient_sensitivity_bound(z, alpha)) + 1e-12


def test_loss_sensitivity_is_the_norm_of_the_loss_gradient_in_h():
    eps = 1e-6
    for h, w, y in _random_points(50, 3, seed=7):
        numeric = np.array(
            [
                (logistic_loss(h + eps * e, w, y) - logistic_loss(h - eps * e, w, y)) / (2 * eps)
                for e in np.eye(3)
            ]
        )
        assert np.linalg.norm(numeric) == pytest.approx(
            float(loss_sensitivity(margin(h, w, y), np.linalg.norm(w))), rel=1e-5, abs=1e-9
        )


def test_gradient_jacobian_matches_finite_differences():
    eps = 1e-6
    for h, w, y in _random_points(50, 4, seed=3):
        numeric = np.column_stack(
            [
                (loss_gradient(h + eps * e, w, y) - loss_gradient(h - eps * e, w, y)) / (2 * eps)
                for e in np.eye(4)
            ]
        )
        np.testing.assert_allclose(gradient_jacobian(h, w, y), numeric, rtol=1e-5, atol=1e-8)


def test_loss_gradient_matches_finite_differences_in_w():
    eps = 1e-6
    for h, w, y in _random_points(20, 3, seed=11):
        numeric = np.array(
            [
                (logistic_loss(h, w + eps * e, y) - logistic_loss(h, w - eps * e, y)) / (2 * eps)
                for e in np.eye(3)
            ]
        )
        np.testing.assert_allclose(loss_gradient(h, w, y), numeric, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("z", [-800.0, 800.0])
def test_extreme_margins_stay_finite(z):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        c_l = loss_sensitivity(z, 2.0)
        bound = gradient_sensitivity_bound(z, 5.0)
    assert np.isfinite(c_l) and np.isfinite(bound)
    if z > 0:  # confidently correct: both vanish
        assert float(c_l) == pytest.approx(0.0, abs=1e-300) and float(bound) == pytest.approx(0.0, abs=1e-300)
    else:  # confidently wrong: C_l -> ||w||, bound -> 1
        assert float(c_l) == pytest.approx(2.0) and float(bound) == pytest.approx(1.0)


@pytest.mark.parametrize("y", [-1, 1])
def test_exact_quantities_finite_far_from_the_boundary(y):
    w = np.array([1.0, 0.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for h in (np.array([800.0, 1.0]), np.array([-800.0, 1.0])):
            assert np.isfinite(gradient_sensitivity(h, w, y))
            assert np.isfinite(logistic_loss(h, w, y))
            assert np.isfinite(loss_gradient(h, w, y)).all()


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="w_norm"):
        loss_sensitivity(0.0, -1.0)
    with pytest.raises(ValueError, match="alpha"):
        gradient_sensitivity_bound(0.0, -0.1)
    with pytest.raises(ValueError, match=r"\{-1, \+1\}"):
        gradient_sensitivity(np.ones(2), np.ones(2), 0)
    with pytest.raises(ValueError, match="same length"):
        gradient_jacobian(np.ones(2), np.ones(3), 1)
    with pytest.raises(ValueError, match="NaN"):
        loss_sensitivity(np.nan, 1.0)
