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
"""

from __future__ import annotations

import math

import numpy as np

from datadiet._chunks import chunk_rows_for, iter_row_chunks


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


def scaled(block: np.ndarray, scale: float, dtype: type) -> np.ndarray:
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


def unit_rows(block: np.ndarray, dtype: type | None = None) -> np.ndarray:
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
        raise ValueError(
            f"{name} has {n_bad} rows (first: {bad}) whose values are all subnormal (below {tiny:.3g}, the "
            f"smallest normal {x.dtype}), so they carry too few significant bits to compare reliably. "
            "Rescale the representation where it is made (selection does not depend on its scale) or "
            "store it as float64."
        )
