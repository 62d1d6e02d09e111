"""Test helpers: small inputs for every registered selector (from its declarations), and tolerances for
float32 results.

Two computations of the same math by different code paths (one GEMM or one per block, batched or one
example at a time, padded or not) round differently, and BLAS picks its kernel per CPU, so their bits
differ between machines. Such results are compared with a float64 reference, within a tolerance derived
from the computation: :func:`product_error_bound` for products of matrices (a worst-case bound from the
reduction lengths), :func:`assert_float32_path_close` for networks (the measured float32 noise of the
reference path). Bit-identity is asserted only where the same code path runs twice on the same machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from datadiet.selection import SELECTORS, Selection

if TYPE_CHECKING:
    from datadiet.representations.projection import FactorizedProjector
    from datadiet.selection.base import BaseSelector

N = 60
N_VAL = 7
N_CLASSES = 3
TRAILING = {1: (), 2: (6,), 3: (2, 5)}
"""Per-example shape for each ``ndim``; every last axis has at least ``N_CLASSES`` entries, so the labels
also index class columns (as el2n's do)."""


def selector_inputs(
    cls: type[BaseSelector], n: int = N, seed: int = 0, ndim: int | None = None
) -> tuple[np.ndarray, dict]:
    """Valid inputs for ``cls``, read off its declarations only: values, plus the keyword arguments it needs.

    ``ndim`` (default: the largest of ``cls.input_ndim``) gives the shape (``TRAILING``); ``cls.input_values``
    the values: uniform in [0, 1) for "real" 1-D/2-D input and "probabilities", standard normal for
    "real" 3-D input (signed, like gradients), 0/1 for "binary". ``labels=`` (``N_CLASSES`` classes) is
    added when ``cls.needs_labels``, ``val=`` (``N_VAL`` rows of the same kind) when ``cls.needs_val``.
    A new selector is covered by declaring these; nothing here names a selector.
    """
    ndim = max(cls.input_ndim) if ndim is None else ndim
    if ndim not in cls.input_ndim:
        raise ValueError(f"{cls.__name__} does not declare {ndim}-D input (input_ndim={cls.input_ndim}).")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, size=n)
    values = _values(rng, (n, *TRAILING[ndim]), cls.input_values)
    kwargs: dict = {"labels": labels} if cls.needs_labels else {}
    if cls.needs_val:
        kwargs["val"] = _values(rng, (N_VAL, *TRAILING[ndim]), cls.input_values)
    return values, kwargs


def _values(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    if kind == "binary":
        return (rng.random(shape) < 0.6).astype(np.float32)
    if kind == "real" and len(shape) == 3:
        return rng.normal(size=shape)
    if kind in ("real", "probabilities"):
        return rng.random(shape)
    raise ValueError(f"Unknown input_values {kind!r}; add a generator for it here.")


def inputs_for(name: str, n: int = N, seed: int = 0, ndim: int | None = None) -> tuple[np.ndarray, dict]:
    """:func:`selector_inputs` for the registered selector ``name``."""
    return selector_inputs(SELECTORS.get(name), n=n, seed=seed, ndim=ndim)


def declared_cases(names: Iterable[str] | None = None) -> list[tuple[str, int]]:
    """``(name, ndim)`` for every registered selector (or ``names``) and every ``ndim`` it declares."""
    names = SELECTORS.names() if names is None else names
    return [(name, ndim) for name in names for ndim in sorted(SELECTORS.get(name).input_ndim)]


def assert_same_selection(a: Selection, b: Selection) -> None:
    """Two selections are identical: indices, scores and weights bit for bit, and the same meta."""
    np.testing.assert_array_equal(a.indices, b.indices)
    for x, y in ((a.scores, b.scores), (a.weights, b.weights)):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)
    assert a.meta == b.meta


def unit_roundoff(dtype: DTypeLike = np.float32) -> float:
    """``u = eps / 2``: the largest relative error of one rounding in ``dtype`` (2**-24 for float32)."""
    return float(np.finfo(dtype).eps) / 2


def gamma(n: int, dtype: DTypeLike = np.float32) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)``: the relative error bound of a dot product of ``n`` terms."""
    nu = n * unit_roundoff(dtype)
    return nu / (1 - nu)


def product_error_bound(
    magnitude: ArrayLike, lengths: tuple[int, ...], dtype: DTypeLike = np.float32
) -> np.ndarray:
    """Elementwise bound on the rounding error of a product of matrices ``A_1 @ ... @ A_m`` in ``dtype``.

    A dot product of ``K`` terms rounded in any order (sequential, blocked, pairwise, split across
    threads, with or without FMA: whatever kernel BLAS picks on this CPU) is within
    ``gamma_K * sum_k |a_k| |b_k|`` of the exact value (Higham, *Accuracy and Stability of Numerical
    Algorithms*, 2nd ed., eq. 3.5); for a chain of products with inner dimensions ``K_1, ..., K_{m-1}``,
    computed in any association, the bound is ``(prod_j (1 + gamma_{K_j}) - 1) * |A_1| @ ... @ |A_m|``
    (Higham sec. 3.5). The float64 reference's own error (the same bound in float64) is added. The bound
    holds on every machine, so a result outside it is wrong, not merely rounded differently.

    Parameters
    ----------
    magnitude : array-like
        ``|A_1| @ ... @ |A_m|``, computed in float64 (the exact product of the absolute values).
    lengths : tuple of int
        The reduction lengths ``K_j`` of the products the code computes (a superset is still a bound).
    dtype : numpy dtype
        The precision of the computation under test.

    Returns
    -------
    ndarray of the shape of ``magnitude``, float64
    """
    factor = sum(np.prod([1 + gamma(k, d) for k in lengths]) - 1 for d in (dtype, np.float64))
    return factor * np.asarray(magnitude, dtype=np.float64)


def assert_within(actual: ArrayLike, reference: ArrayLike, bound: ArrayLike, what: str = "result") -> None:
    """Assert ``|actual - reference| <= bound`` elementwise (shapes equal), naming the worst element."""
    actual, reference = np.asarray(actual, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    assert actual.shape == reference.shape, f"{what}: shape {actual.shape} != {reference.shape}"
    error = np.abs(actual - reference)
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), error.shape)
    if error.size and not np.all(error <= bound):
        worst = np.unravel_index(np.argmax(error - bound), error.shape)
        raise AssertionError(
            f"{what}: |actual - reference| = {error[worst]:.3g} > tolerance {bound[worst]:.3g} at {worst}"
            f" ({int(np.sum(error > bound))} of {error.size} elements)"
        )


def assert_matmul_close(actual: ArrayLike, x: ArrayLike, w: ArrayLike, dtype: DTypeLike = np.float32) -> None:
    """Assert that ``actual`` is ``x @ w`` computed in ``dtype`` in some order: float64 product +- the bound.

    ``x`` and ``w`` are the operands the code multiplies (exactly representable in ``dtype``); the
    tolerance is :func:`product_error_bound` with ``K = x.shape[-1]``, about ``K * 6e-8`` of
    ``|x| @ |w|`` in float32. A wrong matrix, block, row or scale is off by far more.
    """
    x, w = np.asarray(x, dtype=dtype).astype(np.float64), np.asarray(w, dtype=dtype).astype(np.float64)
    bound = product_error_bound(np.abs(x) @ np.abs(w), (x.shape[-1],), dtype)
    assert_within(actual, x @ w, bound, f"x @ w ({np.dtype(dtype).name}, K = {x.shape[-1]})")


NOISE_FACTOR = 16.0


def assert_float32_path_close(
    actual: ArrayLike, reference32: ArrayLike, reference64: ArrayLike, *, factor: float = NOISE_FACTOR
) -> float:
    """Assert that a float32 result of one code path equals the math, as well as another path does.

    For a network (nonlinear, many layers) no usable a priori bound exists, so the float32 noise is
    measured on this machine: ``reference32`` and ``reference64`` are the reference path (e.g. one
    example at a time) run in float32 and with the model in float64, and ``noise = max |reference32 -
    reference64|`` (at least one unit roundoff of the largest value). ``actual`` evaluates the same
    function in float32 by another path (batched, padded, split otherwise), with the same reduction
    lengths, so its rounding error is of the same size: ``max |actual - reference64|`` must be at most
    ``factor * noise`` (16; across this suite the ratio of the two is at most 1.8). A wrong result (a lost or
    leaked token, a wrong layer, matrix or scale) is off by about the size of the values, thousands of
    times the noise. Also checks that the float32 and float64 references agree (``noise`` at most
    ``sqrt(eps32)`` of the largest value), so that ``reference64`` is the same computation.

    Returns
    -------
    float
        The measured noise.
    """
    actual, reference32, reference64 = (np.asarray(a, np.float64) for a in (actual, reference32, reference64))
    assert actual.shape == reference32.shape == reference64.shape, [actual.shape, reference64.shape]
    scale = float(np.abs(reference64).max(initial=0.0))
    noise = max(float(np.abs(reference32 - reference64).max(initial=0.0)), unit_roundoff() * scale)
    assert noise <= np.sqrt(np.finfo(np.float32).eps) * scale, (
        f"the float32 reference is {noise:.3g} from the float64 one (largest value {scale:.3g}): "
        "the float64 run does not compute the same thing"
    )
    assert_within(
        actual, reference64, factor * noise, f"float32 path vs float64 reference, noise {noise:.3g}"
    )
    return noise


def factorized_map(projector: FactorizedProjector) -> np.ndarray:
    """The explicit float64 linear map of a ``FactorizedProjector``: flat ``[G | g]`` (row-major) -> features.

    Shape ``(out_features * (in_features + bias), dim)``: ``kron(R_out, R_in)`` in the Kronecker layout;
    block-diagonal in the ``rows``/``columns`` layouts (row or column ``j`` of the gradient feeds
    features ``j * width`` to ``(j + 1) * width`` through its own block), zero-padded to ``dim``.
    """
    first, second = (np.asarray(m, dtype=np.float64) for m in projector.matrices())
    rows, cols = projector.out_features, projector.in_features + projector.bias
    if projector.mode == "kronecker":
        return np.kron(first, second)
    out = np.zeros((rows, cols, projector.dim))
    width = first.shape[2]
    for j, block in enumerate(first):
        features = slice(j * width, (j + 1) * width)
        if projector.mode == "rows":
            out[j, :, features] = block
        else:
            out[:, j, features] = block
    return out.reshape(rows * cols, projector.dim)


def decisive(logits32: ArrayLike, logits64: ArrayLike, *, factor: float = NOISE_FACTOR) -> np.ndarray:
    """Rows whose argmax no float32 code path can flip: top-two gap above twice the tolerated error.

    ``logits32`` and ``logits64`` are one path's logits in float32 and in float64; any float32 path is
    within ``factor * noise`` of the float64 logits (:func:`assert_float32_path_close`), so where the
    float64 gap between the two largest logits exceeds twice that, every path picks the same class.
    Masked (-inf) entries are ignored when measuring the noise.

    Returns
    -------
    ndarray of bool, one per row
    """
    logits32, logits64 = np.asarray(logits32, np.float64), np.asarray(logits64, np.float64)
    finite = np.isfinite(logits64)
    diff = np.abs(np.where(finite, logits32, 0.0) - np.where(finite, logits64, 0.0))
    noise = max(
        float(diff.max(initial=0.0)), unit_roundoff() * float(np.abs(logits64[finite]).max(initial=0.0))
    )
    top = np.sort(logits64, axis=-1)
    return top[..., -1] - top[..., -2] > 2 * factor * noise
