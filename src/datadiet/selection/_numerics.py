"""Scale-safe arithmetic for selectors: exact power-of-two rescaling and robust unit rows.

Every selector's definition is invariant to a positive rescaling of its input (cosines, rankings by
distance, inner product or norm), but squares are not: in float32, ``(1e20)**2`` overflows and
``(1e-30)**2`` underflows to 0; in float64 the same happens at 1e155 / 1e-170. So nothing here squares a
raw value. Values are first multiplied by a power of two (exact in binary floating point, so
``x * 2**e`` gives bit-identical results to ``x``) that brings the largest magnitude into [0.5, 1):

- :func:`global_scale` for computations that compare rows with each other (Euclidean k-means, inner
  products, norms): one factor for the whole array;
- :func:`unit_rows` for cosines: each row by its own factor, then divided by its norm.

A row that is nonzero but whose every value is *subnormal* (below ``np.finfo(dtype).tiny``) holds fewer
significant bits than the dtype promises, so no rescaling can recover its direction:
:func:`check_magnitudes` refuses it with the reason.

The ``torch_*`` functions are the twins the gradient scorers' GPU paths run (the same exact power-of-two
rescalings on float64 tensors; torch is imported only when they are called).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import DTypeLike

from datadiet._core.chunks import chunk_rows_for, iter_row_chunks
from datadiet.errors import ParameterError

if TYPE_CHECKING:
    import torch


def float_dtype(x: np.ndarray) -> type:
    """float32 for float32 input, float64 for anything else."""
    return np.float32 if x.dtype == np.float32 else np.float64


def max_abs(x: np.ndarray) -> float:
    """The largest ``|x|`` over the whole array, read in row chunks (a memmap is never loaded whole)."""
    if x.size == 0:
        return 0.0
    best = 0.0
    for _, block in iter_row_chunks(x, chunk_rows_for(x)):
        if block.size:
            best = max(best, float(np.max(np.abs(block))))
    return best


def power_of_two_scale(magnitude: float) -> float:
    """The power of two ``s`` with ``magnitude * s`` in [0.5, 1) (1.0 for 0).

    The factor is capped at ``2**1023`` (a float64 subnormal magnitude cannot be brought further up).

    >>> power_of_two_scale(3.0), power_of_two_scale(0.0), power_of_two_scale(1e300) * 1e300
    (0.25, 1.0, 0.7466108948025751)
    """
    if magnitude == 0 or not math.isfinite(magnitude):
        return 1.0
    _, exponent = math.frexp(magnitude)  # magnitude = m * 2**exponent with m in [0.5, 1)
    return math.ldexp(1.0, min(-exponent, 1023))


def global_scale(x: np.ndarray) -> float:
    """One power of two that brings ``max |x|`` into [0.5, 1) (see :func:`power_of_two_scale`)."""
    return power_of_two_scale(max_abs(x))


def scaled(block: np.ndarray, scale: float, dtype: DTypeLike) -> np.ndarray:
    """``block * scale`` as ``dtype``, multiplying in float64 so no intermediate over- or underflows.

    The product is exact when ``scale`` is a power of two and the result is a normal number of ``dtype``.
    """
    return (np.asarray(block, dtype=np.float64) * scale).astype(dtype, copy=False)


def row_scales(block: np.ndarray) -> np.ndarray:
    """Per row, the power of two that brings the row's largest ``|value|`` into [0.5, 1) (1 for zero rows).

    >>> row_scales(np.array([[3.0, -1.0], [0.0, 0.0], [1e-300, 0.0]])).tolist()[:2]
    [0.25, 1.0]
    """
    if block.shape[1] == 0:
        return np.ones(len(block))
    peak = np.max(np.abs(np.asarray(block, dtype=np.float64)), axis=1)
    _, exponents = np.frexp(peak)
    return np.where(peak > 0, np.ldexp(1.0, np.minimum(-exponents, 1023)), 1.0)


def unit_rows(block: np.ndarray, dtype: DTypeLike | None = None) -> np.ndarray:
    """Rows scaled to unit L2 norm without over- or underflow; zero rows stay zero.

    Each row is first multiplied by its own power of two (:func:`row_scales`), so the result is the same
    for ``x`` and ``c * x`` for any ``c > 0`` up to rounding (bit for bit when ``c`` is a power of two).

    Parameters
    ----------
    block : ndarray of shape (n, d)
    dtype : numpy float type, optional
        Output precision; default float32 for float32 input, else float64.

    >>> unit_rows(np.array([[3e-200, 4e-200], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    dtype = dtype or float_dtype(block)
    wide = np.asarray(block, dtype=np.float64) * row_scales(block)[:, None]
    rows = wide.astype(dtype, copy=False)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def check_magnitudes(x: np.ndarray, *, name: str) -> None:
    """Refuse rows that are nonzero but entirely subnormal (their direction has lost precision).

    Raises
    ------
    ValueError
        Naming the rows, the dtype's smallest normal number and the fix.
    """
    if not np.issubdtype(x.dtype, np.floating) or x.size == 0:
        return
    tiny = float(np.finfo(x.dtype).tiny)
    bad: list[int] = []
    n_bad = 0
    for start, block in iter_row_chunks(x, chunk_rows_for(x)):
        peak = np.max(np.abs(block.reshape(len(block), -1)), axis=1)
        rows = np.flatnonzero((peak > 0) & (peak < tiny))
        n_bad += len(rows)
        bad.extend((start + rows[: 5 - len(bad)]).tolist() if len(bad) < 5 else [])
    if n_bad:
        raise ParameterError(
            f"{name} has {n_bad} rows (first: {bad}) whose values are all subnormal (below {tiny:.3g}, the "
            f"smallest normal {x.dtype}), so they carry too few significant bits to compare reliably. "
            "Rescale the representation where it is made (selection does not depend on its scale) or "
            "store it as float64."
        )


# --- norms and scores without over- or underflow (self_influence, less, ccs, el2n, cartography) -----------


class ScoresRescaledWarning(UserWarning):
    """Scores that float64 cannot hold as they are were reported times one power of two (same ranking)."""


def scale_exponent(x: np.ndarray) -> int:
    """The int ``e`` with ``max |x| * 2**e`` in [0.5, 1) (0 for an all-zero array), read in row chunks.

    Unlike :func:`global_scale` the exponent is not capped, so ``np.ldexp(x, e)`` rescales any finite array.

    >>> scale_exponent(np.array([3.0, -1.0])), scale_exponent(np.zeros(2)), scale_exponent(np.array([1e-320]))
    (-2, 0, 1063)
    """
    peak = max_abs(x)
    return 0 if peak == 0 or not math.isfinite(peak) else -math.frexp(peak)[1]


def row_exponents(block: np.ndarray, axis: int | tuple[int, ...] = -1) -> np.ndarray:
    """Per row, the int ``e`` with the row's largest ``|value|`` (over ``axis``) times ``2**e`` in [0.5, 1).

    Zero rows get 0.

    >>> row_exponents(np.array([[3.0, -1.0], [0.0, 0.0], [0.5, 0.25]])).tolist()
    [-2, 0, 0]
    """
    peak = np.max(np.abs(np.asarray(block, dtype=np.float64)), axis=axis)
    return -np.frexp(peak)[1].astype(np.int64)


def weighted_square_norms(block: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sum_c w_c ||block[:, c]||**2`` per row as ``(mantissa, exponent)``, value ``mantissa * 2**exponent``.

    Nothing unscaled is squared: every (row, c) vector is multiplied by the power of two that brings its
    largest ``|value|`` into [0.5, 1) before its squared norm is taken; that norm and ``w_c`` are split into
    mantissa and exponent (``np.frexp``), and a row's terms are added at the exponent of its largest term.
    So the result keeps full float64 precision for any finite gradients and any weights >= 0 (subnormal
    ones included); the mantissa is 0 exactly when the sum is (every weight or vector 0), else >= 0.25.

    Parameters
    ----------
    block : ndarray of shape (n, C, d)
        Any float dtype (read as float64).
    weights : ndarray of shape (C,)
        Finite weights >= 0.

    Returns
    -------
    mantissa : ndarray of shape (n,), float64
    exponent : ndarray of shape (n,), int64

    Examples
    --------
    >>> block = np.array([[[3.0, 4.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    >>> m, e = weighted_square_norms(block, np.ones(2))
    >>> np.ldexp(m, e).tolist()
    [26.0, 0.0]
    >>> m, e = weighted_square_norms(np.array([[[3e-200, 4e-200]]]), np.ones(1))  # 2.5e-399: no float64
    >>> round(float(np.log10(m[0]) + e[0] * np.log10(2.0)), 6)
    -398.60206
    """
    return combine_square_norms(*scaled_square_norms(block), weights)


def scaled_square_norms(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first half of :func:`weighted_square_norms`: ``||2**e block[:, c]||**2`` and ``e``, each (n, C).

    ``e`` (int64) brings the largest ``|value|`` of each (row, c) vector into [0.5, 1); the squares are
    float64. :func:`torch_scaled_square_norms` is its twin on a torch device.
    """
    block = np.asarray(block, dtype=np.float64)
    row_exp = row_exponents(block, axis=-1)  # (n, C)
    scaled = np.ldexp(block, row_exp[..., None])
    return np.einsum("ncd,ncd->nc", scaled, scaled), row_exp


def combine_square_norms(
    squares: np.ndarray, row_exp: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The second half of :func:`weighted_square_norms`: ``sum_c w_c squares * 4**-row_exp`` per row, as
    ``(mantissa, exponent)``, the terms added at the exponent of the row's largest one."""
    square, square_exp = np.frexp(squares)
    weight, weight_exp = np.frexp(np.asarray(weights, dtype=np.float64))
    mantissa = square * weight  # each in [0.25, 1), or 0
    exponent = square_exp + weight_exp - 2 * row_exp  # int64
    live = mantissa > 0
    top = np.where(live, exponent, np.iinfo(np.int64).min).max(axis=1)
    top = np.where(live.any(axis=1), top, 0)
    with np.errstate(under="ignore"):
        terms = np.ldexp(mantissa, np.where(live, exponent - top[:, None], 0))
    return terms.sum(axis=1), top


def as_float64_scores(mantissa: np.ndarray, exponent: np.ndarray, *, what: str) -> np.ndarray:
    """``mantissa * 2**exponent`` as float64 scores: exactly those values when float64 holds them all.

    When some value overflows, or a nonzero one falls below the smallest normal float64 (``tiny``), every
    value is instead multiplied by the one power of two ``2**-t`` that brings the largest into [0.5, 1), and
    a :class:`ScoresRescaledWarning` says so: the ranking is the same, the scores are in units of ``2**t``.

    Raises
    ------
    ValueError
        If even then a nonzero value is below ``tiny`` (the values span more than float64's normal range,
        about 1e308, so they cannot be ranked together), naming the rows.
    """
    mantissa = np.asarray(mantissa, dtype=np.float64)
    exponent = np.asarray(exponent, dtype=np.int64)
    nonzero = mantissa != 0
    with np.errstate(over="ignore", under="ignore"):
        direct = np.ldexp(mantissa, exponent)
    if _holds(direct, nonzero):
        return direct
    top = int(np.max((exponent + np.frexp(mantissa)[1])[nonzero]))
    with np.errstate(under="ignore"):
        shifted = np.ldexp(mantissa, exponent - top)
    lost = np.flatnonzero(nonzero & (np.abs(shifted) < np.finfo(np.float64).tiny))
    if len(lost):
        raise ParameterError(
            f"{what}: {len(lost)} rows (first: {lost[:5].tolist()}) are more than 2**1022 times smaller "
            f"than the largest (about 2**{top}), which float64 cannot hold together: they would rank as ties "
            "at 0. Drop those examples, or set their inputs to 0 to rank them last on purpose."
        )
    warnings.warn(
        f"{what} lie outside float64's range as they are (the largest is about 2**{top}); they are reported "
        f"times 2**{-top}, which brings the largest into [0.5, 1) (the ranking is unchanged).",
        ScoresRescaledWarning,
        stacklevel=3,
    )
    return shifted


def _holds(values: np.ndarray, nonzero: np.ndarray) -> bool:
    """Whether every value is finite and every nonzero one a normal float64."""
    return bool(np.isfinite(values).all() and (np.abs(values[nonzero]) >= np.finfo(np.float64).tiny).all())


def check_checkpoint_magnitudes(x: np.ndarray, *, name: str) -> None:
    """:func:`check_magnitudes` for each checkpoint of (n, C, d) gradients (each is normalised on its own).

    Refuses examples with a checkpoint whose values are nonzero but all subnormal; (n, d) input is one
    checkpoint, exactly :func:`check_magnitudes`.
    """
    if x.ndim != 3:
        check_magnitudes(x, name=name)
        return
    if not np.issubdtype(x.dtype, np.floating) or x.size == 0:
        return
    tiny = float(np.finfo(x.dtype).tiny)
    bad: list[tuple[int, int]] = []
    n_bad = 0
    for start, block in iter_row_chunks(x, chunk_rows_for(x)):
        peak = np.max(np.abs(block), axis=2)
        rows, checkpoints = np.nonzero((peak > 0) & (peak < tiny))
        n_bad += len(np.unique(rows))
        room = max(0, 5 - len(bad))
        bad.extend(zip((start + rows[:room]).tolist(), checkpoints[:room].tolist(), strict=True))
    if n_bad:
        raise ParameterError(
            f"{name} has {n_bad} examples with a checkpoint whose values are all subnormal (first (example, "
            f"checkpoint): {bad[:5]}; below {tiny:.3g}, the smallest normal {x.dtype}), so its direction "
            "carries too few significant bits to compare reliably. Rescale the gradients where they are made "
            "(the selection does not depend on their scale) or store them as float64."
        )


# --- scale and norms for the clustering selectors (kmeans, prototypicality, semdedup, s2l) ---------------


def checked_scale(x: np.ndarray, *, name: str) -> float:
    """:func:`global_scale` of ``x`` after :func:`check_magnitudes`, in one chunked pass over ``x``.

    Raises
    ------
    ValueError
        The message of :func:`check_magnitudes`, when some row is nonzero but entirely subnormal.
    """
    if x.size == 0:
        return 1.0
    tiny = float(np.finfo(x.dtype).tiny) if np.issubdtype(x.dtype, np.floating) else 0.0
    best, subnormal_rows = 0.0, False
    for _, block in iter_row_chunks(x, chunk_rows_for(x)):
        values = block if np.issubdtype(block.dtype, np.floating) else np.asarray(block, dtype=np.float64)
        peak = np.max(np.abs(values.reshape(len(values), -1)), axis=1)
        best = max(best, float(np.max(peak, initial=0.0)))
        subnormal_rows = subnormal_rows or bool(np.any((peak > 0) & (peak < tiny)))
    if subnormal_rows:
        check_magnitudes(x, name=name)  # raises, naming the rows
    return power_of_two_scale(best)


def row_norms(block: np.ndarray) -> np.ndarray:
    """The L2 norm of each row of a 2-D float ``block``, in its dtype, without over- or underflow.

    Each row is multiplied by the power of two that brings its largest ``|value|`` into [0.5, 1) before
    squaring, and the norm divided by it after. Multiplying by ``2**e`` and squaring scales every square
    and every partial sum by ``4**e`` exactly, and a square root of ``4**e * s`` is exactly ``2**e`` times
    that of ``s``, so the result equals ``sqrt(einsum("ij,ij->i", block, block))`` bit for bit whenever no
    square of ``block`` over- or underflows, and stays accurate to rounding when one would.

    >>> (row_norms(np.array([[3e-30, 4e-30], [0.0, 0.0]], dtype=np.float32)) * 1e30).round(4).tolist()
    [5.0, 0.0]
    """
    if block.shape[1] == 0:
        return np.zeros(len(block), dtype=block.dtype)
    peak = np.max(np.abs(block), axis=1)
    _, exponents = np.frexp(peak)
    finfo = np.finfo(block.dtype)
    factors = np.ldexp(np.ones_like(peak), np.clip(-exponents, finfo.minexp, finfo.maxexp - 2))
    wide = block * factors[:, None]
    return np.sqrt(np.einsum("ij,ij->i", wide, wide)) / factors


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """A new array of the rows of ``x`` scaled to unit L2 norm; zero rows stay zero.

    Computed by :func:`unit_rows`, so no square over- or underflows.

    Parameters
    ----------
    x : ndarray of shape (n, d)

    Returns
    -------
    ndarray of shape (n, d)
        float32 for float32 input, float64 otherwise.

    >>> normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    x = np.asarray(x)
    return unit_rows(x, float_dtype(x))


# --- torch twins of the gradient scorers' numerics (their GPU paths: self_influence, less) ---------------
# float64 tensors in, the same exact power-of-two rescalings as the numpy functions above; the sums run in
# the device's own order, so results agree with numpy's up to rounding, not bit for bit.


def torch_pow2(exponents: torch.Tensor) -> torch.Tensor:
    """``2.0 ** exponents`` as float64, exactly, for int exponents in [-1022, 1023] (built from the bits).

    >>> import torch
    >>> torch_pow2(torch.tensor([-1022, 0, 3, 1023])).tolist() == [2.0**-1022, 1.0, 8.0, 2.0**1023]
    True
    """
    import torch

    biased = exponents.to(torch.int64).clamp(-1022, 1023) + 1023
    return torch.bitwise_left_shift(biased, 52).view(torch.float64)


def torch_ldexp(values: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """``values * 2**exponents`` (float64) for int exponents in [-2044, 2046], as two exact multiplications.

    Each factor is a normal power of two, so the product is exact, as :func:`numpy.ldexp`'s, whenever the
    result (and the halfway product) is a normal number.
    """
    import torch

    half = torch.div(exponents, 2, rounding_mode="floor")
    return values.to(torch.float64) * torch_pow2(half) * torch_pow2(exponents - half)


def torch_row_exponents(block: torch.Tensor) -> torch.Tensor:
    """:func:`row_exponents` over the last axis of a torch tensor (int64; zero rows get 0)."""
    import torch

    return -torch.frexp(block.abs().amax(dim=-1))[1].to(torch.int64)


def torch_unit_rows(block: torch.Tensor) -> torch.Tensor:
    """:func:`unit_rows` (float64) of every vector along the last axis of a torch tensor; zeros stay 0."""
    import torch

    wide = torch_ldexp(block, torch_row_exponents(block).clamp(max=1023)[..., None])
    norms = (wide * wide).sum(dim=-1, keepdim=True).sqrt()
    return wide / torch.where(norms > 0, norms, torch.ones_like(norms))  # a zero vector stays 0


def torch_scaled_square_norms(block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`scaled_square_norms` of an (n, C, d) float64 torch tensor: squares and exponents, (n, C)."""
    row_exp = torch_row_exponents(block)
    scaled = torch_ldexp(block, row_exp[..., None])
    return (scaled * scaled).sum(dim=-1), row_exp
