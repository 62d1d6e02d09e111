"""Discriminative power of loss and gradient representations for a logistic model (Du et al., ACL 2025).

Setting: a hidden state ``h`` of shape (d,), a weight ``w`` of shape (d,), a label ``y`` in {-1, +1}
and the signed margin ``z = y · wᵀh``. With ``σ`` the logistic function::

    ℓ(h)   = log(1 + e^{-z})
    C_l    = ||∂ℓ/∂h|| = ||w|| σ(-z) = ||w|| / (1 + e^{z})
    g(h)   = ∂ℓ/∂w = -y σ(-z) h
    ∂g/∂h  = -y σ(-z) I + σ(z) σ(-z) h wᵀ
    C_g    = ||∂g/∂h||_op <= σ(-z) + σ(z) σ(-z) α,   α = ||w|| ||h||

Both vanish like ``e^{-z}`` for confidently correct points: the loss and the gradient carry little
information about where such a point lies in hidden space. Every function here is written with
:func:`scipy.special.expit` (never ``exp`` of the margin), so it stays finite for any ``|z|``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from datadiet.errors import ParameterError

__all__ = [
    "gradient_jacobian",
    "gradient_sensitivity",
    "gradient_sensitivity_bound",
    "logistic_loss",
    "loss_gradient",
    "loss_sensitivity",
    "margin",
]


def loss_sensitivity(z: np.ndarray | float, w_norm: np.ndarray | float) -> np.ndarray:
    """``C_l = ||w|| / (1 + e^z)``, the norm of the loss gradient with respect to the hidden state.

    Parameters
    ----------
    z : float or ndarray
        Signed margin ``y · wᵀh``.
    w_norm : float or ndarray
        ``||w||`` (>= 0); broadcast against ``z``.

    Returns
    -------
    ndarray
        ``C_l`` with the broadcast shape of the inputs.

    Examples
    --------
    >>> float(loss_sensitivity(0.0, 2.0))
    1.0
    """
    z = _as_float(z, "z")
    w_norm = _nonnegative(w_norm, "w_norm")
    return w_norm * expit(-z)


def gradient_sensitivity_bound(z: np.ndarray | float, alpha: np.ndarray | float) -> np.ndarray:
    """Upper bound ``1/(1 + e^z) + e^z/(1 + e^z)² · α`` on ``C_g = ||∂g/∂h||_op``.

    Parameters
    ----------
    z : float or ndarray
        Signed margin ``y · wᵀh``.
    alpha : float or ndarray
        ``||w|| · ||h||`` (>= 0); broadcast against ``z``.

    Returns
    -------
    ndarray
        The bound, with the broadcast shape of the inputs. ``e^z / (1 + e^z)²`` is computed as
        ``σ(z) σ(-z)``.

    Examples
    --------
    >>> float(gradient_sensitivity_bound(0.0, 4.0))
    1.5
    """
    z = _as_float(z, "z")
    alpha = _nonnegative(alpha, "alpha")
    return expit(-z) + expit(z) * expit(-z) * alpha


def gradient_sensitivity(h: np.ndarray, w: np.ndarray, y: int) -> float:
    """Exact ``C_g``: the operator (spectral) norm of ``∂g/∂h`` at one point.

    Parameters
    ----------
    h : ndarray of shape (d,)
        Hidden state.
    w : ndarray of shape (d,)
        Weight of the logistic model.
    y : {-1, +1}
        Label.

    Returns
    -------
    float

    Examples
    --------
    >>> round(gradient_sensitivity(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 1), 3)
    0.64
    """
    return float(np.linalg.norm(gradient_jacobian(h, w, y), 2))


def gradient_jacobian(h: np.ndarray, w: np.ndarray, y: int) -> np.ndarray:
    """``∂g/∂h = -y σ(-z) I + σ(z) σ(-z) h wᵀ`` with ``g = ∂ℓ/∂w``.

    Returns
    -------
    ndarray of shape (d, d)
        Entry ``[i, j]`` is ``∂g_i / ∂h_j``.
    """
    h, w, sign = _check_point(h, w, y)
    z = sign * (w @ h)
    return -sign * expit(-z) * np.eye(len(h)) + expit(z) * expit(-z) * np.outer(h, w)


def loss_gradient(h: np.ndarray, w: np.ndarray, y: int) -> np.ndarray:
    """``g(h) = ∂ℓ/∂w = -y σ(-z) h``, the per-example gradient with respect to the weight."""
    h, w, sign = _check_point(h, w, y)
    return -sign * expit(-sign * (w @ h)) * h


def logistic_loss(h: np.ndarray, w: np.ndarray, y: int) -> float:
    """``ℓ = log(1 + e^{-z})``, computed as ``logaddexp(0, -z)``."""
    h, w, sign = _check_point(h, w, y)
    return float(np.logaddexp(0.0, -sign * (w @ h)))


def margin(h: np.ndarray, w: np.ndarray, y: np.ndarray | int) -> np.ndarray:
    """Signed margins ``z = y · wᵀh`` of one point (h of shape (d,)) or many (h of shape (n, d)).

    >>> margin(np.array([[1.0, 2.0], [0.0, 1.0]]), np.array([1.0, 1.0]), np.array([1, -1])).tolist()
    [3.0, -1.0]
    """
    h = _as_float(h, "h")
    w = _as_float(w, "w")
    y = _check_signs(y)
    if h.shape[-1:] != w.shape or w.ndim != 1:
        raise ParameterError(
            f"h has shape {h.shape} but w has shape {w.shape}; the last dimensions must match."
        )
    return y * (h @ w)


# --- input checks -----------------------------------------------------------------------------
def _as_float(value: object, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if np.isnan(array).any():
        raise ParameterError(f"{name} contains NaN.")
    return array


def _nonnegative(value: object, name: str) -> np.ndarray:
    array = _as_float(value, name)
    if (array < 0).any():
        raise ParameterError(f"The '{name}' parameter must be >= 0 (it is a norm). Got {value!r} instead.")
    return array


def _check_signs(y: object) -> np.ndarray:
    array = np.asarray(y)
    if not np.isin(array, (-1, 1)).all():
        raise ParameterError(
            f"y must hold labels in {{-1, +1}} (map 0/1 labels with 2*y - 1). Got {y!r} instead."
        )
    return array.astype(np.float64)


def _check_point(h: object, w: object, y: object) -> tuple[np.ndarray, np.ndarray, float]:
    h = _as_float(h, "h")
    w = _as_float(w, "w")
    if h.ndim != 1 or h.shape != w.shape:
        raise ParameterError(f"h and w must be 1-D of the same length. Got shapes {h.shape} and {w.shape}.")
    signs = _check_signs(y)
    if signs.ndim != 0:
        raise ParameterError(f"y must be a single label for a single point. Got shape {signs.shape}.")
    return h, w, float(signs)
