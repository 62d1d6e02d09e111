"""Self-influence (TracInCP of an example on itself, Pruthi et al., NeurIPS 2020).

``SI(z) = sum_c w_c ||g_c(z)||^2`` over checkpoints ``c`` with per-checkpoint weights ``w_c``
(the learning rate between checkpoints in the paper; the reference notebook
``frederick0329/TracIn imagenet/resnet50_imagenet_self_influence.ipynb`` uses equal weights, the
default here). High self-influence marks likely mislabeled, outlying or memorised examples; the
highest scores are kept, ties to the lower example index.

The gradients must **not** be normalised beforehand: with unit rows every score is the same
constant (the pitfall in Du et al., ACL 2025). Rows are read in chunks, so a memory-mapped
(n_examples, C, d) array is never loaded whole, and its pages are released after each chunk
(:func:`datadiet._core.chunks.iter_row_chunks`).

Magnitude: nothing unscaled is squared (:func:`datadiet.selection._numerics.weighted_square_norms`), so the
ranking is that of the exact ``SI`` for gradients of any finite magnitude (``1e-170`` or ``1e150`` in float64)
and is invariant to a positive rescaling of the gradients or of ``lr_weights`` (bit for bit under a power of
two). The scores are ``SI`` itself whenever float64 holds every value; otherwise all are reported times one
power of two, with a ``ScoresRescaledWarning``. Refused with the reason: examples whose values are nonzero
but all subnormal (too few significant bits, :func:`~datadiet.selection._numerics.check_magnitudes`) and
inputs whose scores span more than float64's range (nonzero ones more than 2**1022 below the largest).

Device: when :func:`datadiet._core.device.on_gpu` (and the chunks run in this process), each chunk is copied
to the GPU in its own dtype, widened to float64 there, and its per-checkpoint scaled square norms are taken
there (:func:`~datadiet.selection._numerics.torch_scaled_square_norms`); the (n, C) results come back and
are combined on the host exactly as on the CPU. The scores agree with the CPU's up to float64 rounding (the
sums run in another order); on the CPU the numpy code runs, bit for bit as before.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from datadiet._core.checks import as_finite_array, param_error
from datadiet._core.chunks import release_pages
from datadiet._core.device import on_gpu, resolve_device
from datadiet.distributed.engine import current_engine, row_chunks
from datadiet.errors import ParameterError
from datadiet.selection._numerics import (
    as_float64_scores,
    check_magnitudes,
    combine_square_norms,
    torch_scaled_square_norms,
    weighted_square_norms,
)
from datadiet.selection.base import ScoreSelector
from datadiet.selection.registry import SELECTORS

if TYPE_CHECKING:
    import torch

GRADIENTS = "an (n_examples, C, d) array of per-checkpoint gradients, or (n_examples, d) for one checkpoint"
LR_WEIGHTS = "None or a 1-D sequence of finite weights >= 0, not all 0, one per checkpoint"
CHUNK_BYTES = 64 * 2**20  # float64 bytes per chunk of rows


def check_lr_weights(lr_weights: Sequence[float] | np.ndarray | None, *, owner: str) -> np.ndarray | None:
    """``lr_weights`` as a float64 array (``None`` stays ``None``); raise ``param_error`` if invalid."""
    if lr_weights is None:
        return None
    if isinstance(lr_weights, str | bytes):
        raise param_error(owner, "lr_weights", LR_WEIGHTS, shown(lr_weights))
    try:
        weights = np.asarray(lr_weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise param_error(owner, "lr_weights", LR_WEIGHTS, shown(lr_weights)) from None
    if weights.ndim != 1 or weights.size == 0 or not np.isfinite(weights).all():
        raise param_error(owner, "lr_weights", LR_WEIGHTS, shown(lr_weights))
    if (weights < 0).any() or not (weights > 0).any():
        raise param_error(owner, "lr_weights", LR_WEIGHTS, shown(lr_weights))
    return weights


def shown(value: object, limit: int = 8) -> object:
    """``value`` for an error message: a long sequence is abbreviated to its first ``limit`` items.

    >>> shown([1.0, 2.0]), shown(list(range(100)), 3)
    ([1.0, 2.0], '[0, 1, 2, ... (100 items)]')
    """
    items = value.tolist() if isinstance(value, np.ndarray) else value
    if isinstance(items, list | tuple) and len(items) > limit:
        return f"[{', '.join(repr(item) for item in items[:limit])}, ... ({len(items)} items)]"
    return items


def checkpoint_weights(lr_weights: np.ndarray | None, n_checkpoints: int, *, owner: str) -> np.ndarray:
    """One weight per checkpoint: ``lr_weights`` checked for length, or all ones when ``None``."""
    if lr_weights is None:
        return np.ones(n_checkpoints)
    if len(lr_weights) != n_checkpoints:
        constraint = f"one weight per checkpoint (the gradients have n_checkpoints={n_checkpoints})"
        raise param_error(owner, "lr_weights", constraint, shown(lr_weights))
    return lr_weights


def default_chunk_rows(row_size: int) -> int:
    """As many rows of ``row_size`` float64 values as fit in ``CHUNK_BYTES`` (at least 1)."""
    return max(1, CHUNK_BYTES // (8 * max(row_size, 1)))


def check_chunk_size(chunk_size: int | None, row_size: int, *, owner: str) -> int:
    """Rows per chunk: ``chunk_size`` if given, else :func:`default_chunk_rows`."""
    if chunk_size is None:
        return default_chunk_rows(row_size)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise param_error(owner, "chunk_size", "None or an int in the range [1, inf)", chunk_size)
    return int(chunk_size)


def as_checkpoints(grads: np.ndarray) -> np.ndarray:
    """View (n, d) gradients as (n, 1, d); (n, C, d) is returned unchanged (no copy)."""
    return grads[:, None, :] if grads.ndim == 2 else grads


def self_influence_scores(
    grads: np.ndarray,
    lr_weights: Sequence[float] | np.ndarray | None = None,
    *,
    chunk_size: int | None = None,
) -> np.ndarray:
    """``sum_c w_c ||g_c||^2`` for every example, computed ``chunk_size`` rows at a time.

    Parameters
    ----------
    grads : array-like of shape (n_examples, C, d) or (n_examples, d)
        Unnormalised per-checkpoint gradients (a ``np.memmap`` is read chunk by chunk).
    lr_weights : sequence of shape (C,), optional
        Weight of each checkpoint (its learning rate); default 1 each.
    chunk_size : int, optional
        Rows per chunk; default as many as fit in 64 MiB of float64.

    Returns
    -------
    ndarray of shape (n_examples,)
        ``SI`` in float64; if float64 cannot hold every value, all times one power of two (with a
        ``ScoresRescaledWarning``; see the module docstring).

    Raises
    ------
    ValueError
        For NaN/inf, an example whose values are all subnormal, or scores spanning more than float64's range.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([[[1.0, 2.0], [0.0, 1.0]], [[3.0, 0.0], [1.0, 1.0]]])
    >>> self_influence_scores(g, lr_weights=[2.0, 1.0]).tolist()
    [11.0, 20.0]
    """
    grads = as_finite_array(grads, name="grads")
    if grads.ndim not in (2, 3) or 0 in grads.shape:
        raise ParameterError(f"'self_influence_scores' reads {GRADIENTS}. Got shape {grads.shape} instead.")
    owner = "self_influence_scores"
    grads = as_checkpoints(grads)
    weights = checkpoint_weights(check_lr_weights(lr_weights, owner=owner), grads.shape[1], owner=owner)
    rows = check_chunk_size(chunk_size, grads.shape[1] * grads.shape[2], owner=owner)
    return _self_influence(grads, weights, rows, name="grads")


def _self_influence(grads: np.ndarray, weights: np.ndarray, rows: int, *, name: str) -> np.ndarray:
    """Row chunks as a map on the current engine (:mod:`datadiet.distributed.engine`), combined in order.

    Each chunk gives its rows' ``SI`` as (mantissa, exponent); :func:`as_float64_scores` turns them into
    float64 scores (the same bits whichever engine or chunking computed them).
    """
    check_magnitudes(grads, name=name)
    pieces = row_chunks(len(grads), rows)
    device = gpu_device()
    if device is None:
        parts = current_engine().map(_chunk_influence, pieces, (grads, weights))
    else:
        parts = [_device_influence(piece, grads, weights, device) for piece in pieces]
    mantissa = np.concatenate([part[0] for part in parts])
    exponent = np.concatenate([part[1] for part in parts])
    return as_float64_scores(mantissa, exponent, what="self_influence scores")


def _chunk_influence(
    piece: tuple[int, int], shared: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    grads, weights = shared
    view = grads[piece[0] : piece[1]]
    block = np.asarray(view, dtype=np.float64)
    release_pages(view)
    return weighted_square_norms(block, weights)


def _device_influence(
    piece: tuple[int, int], grads: np.ndarray, weights: np.ndarray, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_chunk_influence` with the (row, checkpoint) square norms taken on ``device``."""
    squares, row_exp = torch_scaled_square_norms(device_rows(grads, piece, device))
    return combine_square_norms(squares.cpu().numpy(), row_exp.cpu().numpy(), weights)


def gpu_device() -> torch.device | None:
    """The GPU the gradient scorers' chunk products run on, or None for the numpy path.

    A device only when :func:`~datadiet._core.device.on_gpu` and the chunks run in this process (the local
    engine: a Ray worker may have no GPU).
    """
    if current_engine().name != "local" or not on_gpu():
        return None
    return resolve_device()


def device_rows(array: np.ndarray, piece: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Rows ``start:stop`` of ``array`` as a float64 tensor on ``device``; a memmap's pages are then released.

    Float rows travel in their own dtype (float32 gradients cross half the bytes) and are widened on the
    device; other dtypes are converted to float64 first.
    """
    import torch

    view = array[piece[0] : piece[1]]
    floating = view.dtype in (np.float16, np.float32, np.float64)
    host = np.array(view, dtype=view.dtype if floating else np.float64)  # a writable copy of the chunk
    release_pages(view)
    return torch.from_numpy(host).to(device).to(torch.float64)


@SELECTORS.register("self_influence")
class SelfInfluence(ScoreSelector):
    """Keep the examples with the highest self-influence ``sum_c w_c ||g_c||^2``.

    Parameters
    ----------
    lr_weights : sequence of float, optional
        One weight per checkpoint (its learning rate); default equal weights of 1.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([[1.0, 0.0], [3.0, 4.0], [0.0, 2.0]])
    >>> SelfInfluence().select(g, 2).indices.tolist()
    [1, 2]
    """

    reads = GRADIENTS
    input_ndim = (2, 3)

    def __init__(self, *, lr_weights: Sequence[float] | None = None) -> None:
        self.lr_weights = lr_weights

    def validate_params(self, n: int) -> None:
        check_lr_weights(self.lr_weights, owner=type(self).__name__)

    def _scores(
        self,
        values: np.ndarray,
        *,
        labels: np.ndarray | None,
        val: np.ndarray | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        owner = type(self).__name__
        grads = as_checkpoints(values)
        lr_weights = check_lr_weights(self.lr_weights, owner=owner)
        weights = checkpoint_weights(lr_weights, grads.shape[1], owner=owner)
        rows = default_chunk_rows(grads.shape[1] * grads.shape[2])
        return _self_influence(grads, weights, rows, name="rep.values")
