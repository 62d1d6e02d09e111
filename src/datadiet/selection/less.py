"""LESS (Xia et al., ICML 2024): keep training examples whose gradients align with a target task.

Following ``princeton-nlp/LESS`` (``less/data_selection/matching.py``), with gradients
``g_c(z)`` of training examples and ``h_c(z')`` of validation examples at checkpoints ``c``:

- with ``normalize=True`` (the default, LESS's code) every row is L2-normalised per checkpoint,
  ``phi_c = g_c / ||g_c||`` and ``psi_c = h_c / ||h_c||`` (a zero row stays 0, as ``F.normalize`` does, so a
  zero training gradient scores 0); with ``normalize=False`` ``phi_c = g_c`` and ``psi_c = h_c``, the
  lr-weighted *inner product* Du et al. (ACL 2025, Appendix B) define for classification (they normalise
  only for generation tasks);
- ``S[z, z'] = sum_c w_c phi_c(z) . psi_c(z')`` with ``w = lr_weights / sum(lr_weights)`` (equal by
  default; the weights are the mean learning rate of each checkpoint's epoch). Renormalising the weights
  multiplies every score by the same ``1 / sum(lr_weights)``, so the ranking is that of the raw learning
  rates (Du et al.'s code);
- ``score(z) = max_j mean_{z' in group j} S[z, z']`` over validation groups (subtasks) ``j``.

Groups are given as one id per validation row (``val_groups``), so they need not be contiguous or of
equal size (the reference's reshape needs both); the default is a single group. Because the mean is
linear, ``score(z) = max_j sum_c w_c phi_c(z) . mean_{z' in j} psi_c(z')``: the N x V matrix is never
built, and training (and validation) rows are read in chunks; a memmap's pages are released after each
chunk. Ties go to the lower example index.

Magnitude: the cosine scores do not depend on the scale of either input, and the inner-product ranking
does not change when ``train`` or ``val`` is multiplied by a positive constant. Neither squares a raw value:
each (row, checkpoint) vector is brought to unit norm after an exact power-of-two rescaling
(:func:`datadiet.selection._numerics.unit_rows`), and for the inner product every training row and the
validation set are rescaled by powers of two that are undone at the end
(:func:`~datadiet.selection._numerics.as_float64_scores`: the scores are exact where float64 holds them,
otherwise all times one power of two, with a warning). So gradients of magnitude 1e-170 or 1e150 (float64)
or 1e-30 / 1e30 (float32) select what the same gradients at magnitude 1 do, and ``x`` and ``x * 2**j`` the
same examples bit for bit. Rows that are nonzero but all subnormal (per checkpoint when normalising) are
refused with the reason.

Training gradients in LESS are Adam-preconditioned before projection (:func:`adam_precondition`);
validation gradients stay plain SGD gradients.

Device: when :func:`datadiet._core.device.on_gpu` (and the chunks run in this process), the group targets
are computed on the host as above and copied once to the GPU; each training chunk is copied in its own dtype,
widened to float64 and rescaled there by the same powers of two
(:func:`~datadiet.selection._numerics.torch_unit_rows`, :func:`~datadiet.selection._numerics.torch_ldexp`),
and its float64 product with the targets and the max over groups run there; only the chunk's scores come
back. They agree with the CPU's up to float64 rounding (the sums run in another order); on the CPU the numpy
code runs, bit for bit as before.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from datadiet._core.checks import as_finite_array, param_error
from datadiet._core.chunks import iter_row_chunks, release_pages
from datadiet.distributed.engine import current_engine, row_chunks
from datadiet.errors import ParameterError, ParameterTypeError
from datadiet.selection._numerics import (
    as_float64_scores,
    check_checkpoint_magnitudes,
    check_magnitudes,
    row_exponents,
    scale_exponent,
    torch_ldexp,
    torch_row_exponents,
    torch_unit_rows,
    unit_rows,
)
from datadiet.selection.base import ScoreSelector, declared
from datadiet.selection.registry import SELECTORS
from datadiet.selection.self_influence import (
    GRADIENTS,
    as_checkpoints,
    check_chunk_size,
    check_lr_weights,
    checkpoint_weights,
    default_chunk_rows,
    device_rows,
    gpu_device,
    shown,
)

if TYPE_CHECKING:
    import torch

R = TypeVar("R")
VAL_GROUPS = "None or a 1-D sequence of hashable group ids (not NaN), one per validation row"


def adam_precondition(
    grads: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    *,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> np.ndarray:
    """LESS's Adam update direction ``m' / sqrt(v' + eps)`` for unprojected training gradients.

    ``m' = beta1 m + (1 - beta1) g`` and ``v' = beta2 v + (1 - beta2) g^2``, exactly as
    ``obtain_gradients_with_adam`` in ``less/data_selection/collect_grad_reps.py``: ``eps`` inside
    the square root and no bias correction (the paper's formula differs). Apply it to the full,
    unprojected gradient with the optimizer state of the same checkpoint, *before* any random
    projection; validation gradients are not preconditioned.

    Parameters
    ----------
    grads : array-like of shape (..., P)
        Flattened gradients over the P trained parameters (one row per example).
    exp_avg, exp_avg_sq : array-like of shape (P,)
        Adam's first and second moment estimates (``exp_avg``, ``exp_avg_sq``) at the checkpoint.
    beta1, beta2 : float
        Adam's decay rates, in [0, 1).
    eps : float
        Added to ``v'`` inside the square root; > 0.

    Returns
    -------
    ndarray of the shape of ``grads``

    Examples
    --------
    >>> adam_precondition([[1.0, -2.0]], [0.0, 0.0], [0.0, 0.0], eps=1e-12).round(6).tolist()
    [[3.162278, -3.162278]]
    """
    grads = np.asarray(grads, dtype=np.float64)
    exp_avg = np.asarray(exp_avg, dtype=np.float64)
    exp_avg_sq = np.asarray(exp_avg_sq, dtype=np.float64)
    _check_adam_args(grads, exp_avg, exp_avg_sq, beta1, beta2, eps)
    m = beta1 * exp_avg + (1 - beta1) * grads
    v = beta2 * exp_avg_sq + (1 - beta2) * grads**2
    return m / np.sqrt(v + eps)


def _check_adam_args(
    grads: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray, beta1: float, beta2: float, eps: float
) -> None:
    for name, value in (("beta1", beta1), ("beta2", beta2)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
            raise param_error("adam_precondition", name, "a float in the range [0, 1)", value)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < np.inf:
        raise param_error("adam_precondition", "eps", "a float in the range (0, inf)", eps)
    for name, state in (("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        if grads.ndim == 0 or state.shape != grads.shape[-1:]:
            raise ParameterError(
                f"{name} has shape {state.shape} but grads has shape {grads.shape}; the optimizer state "
                "must be the flat (P,) vector of the same parameters, in the same order."
            )
    if (exp_avg_sq < 0).any():
        raise ParameterError("exp_avg_sq has negative entries; Adam's second moment is >= 0.")


def check_val_groups(val_groups: Sequence[Hashable] | np.ndarray | None, *, owner: str) -> list | None:
    """``val_groups`` as a list of ids (``None`` stays ``None``); raise ``param_error`` if invalid."""
    if val_groups is None:
        return None
    if isinstance(val_groups, str | bytes) or not hasattr(val_groups, "__len__"):
        raise param_error(owner, "val_groups", VAL_GROUPS, shown(val_groups))
    tolist = getattr(val_groups, "tolist", None)  # numpy, pandas, torch: their ids as Python scalars
    ids = tolist() if tolist is not None else list(val_groups)
    try:
        set(ids)  # nested lists (a 2-D array) and other unhashable ids fail here
    except TypeError:
        raise param_error(owner, "val_groups", VAL_GROUPS, shown(ids)) from None
    if any(isinstance(group, float) and math.isnan(group) for group in ids):  # NaN != NaN: no group
        raise param_error(owner, "val_groups", VAL_GROUPS, shown(ids))
    return ids


def group_codes(ids: list | None, n_val: int) -> tuple[np.ndarray, int]:
    """Integer code per validation row (groups numbered by first appearance) and the number of groups."""
    if ids is None:
        return np.zeros(n_val, dtype=np.intp), 1
    if len(ids) != n_val:
        raise ParameterError(
            f"val_groups has {len(ids)} group ids but val has n_val={n_val} rows; "
            "give one id per validation row."
        )
    lookup: dict[Hashable, int] = {}
    codes = np.array([lookup.setdefault(group, len(lookup)) for group in ids], dtype=np.intp)
    return codes, len(lookup)


def less_scores(
    train: np.ndarray,
    val: np.ndarray,
    *,
    lr_weights: Sequence[float] | np.ndarray | None = None,
    val_groups: Sequence[Hashable] | np.ndarray | None = None,
    normalize: bool = True,
    chunk_size: int | None = None,
) -> np.ndarray:
    """LESS score of every training example: max over validation groups of the mean weighted match.

    Parameters
    ----------
    train : array-like of shape (n_examples, C, d) or (n_examples, d)
        Training gradient features per checkpoint (Adam-preconditioned, projected).
    val : array-like of shape (n_val, C, d) or (n_val, d)
        Validation gradient features, same per-example shape as ``train``.
    lr_weights : sequence of shape (C,), optional
        Checkpoint weights (renormalised to sum 1); default equal.
    val_groups : sequence of shape (n_val,), optional
        Group (subtask) id of each validation row; default one group.
    normalize : bool, default True
        L2-normalise every row per checkpoint (cosine match, LESS's code); False: the plain lr-weighted
        inner product (Du et al.'s classification definition). See the module docstring.
    chunk_size : int, optional
        Training rows per chunk; default as many as fit in 64 MiB of float64.

    Returns
    -------
    ndarray of shape (n_examples,)

    Examples
    --------
    >>> train, val = [[2.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 3.0]]
    >>> less_scores(train, val, val_groups=["a", "b"]).tolist()
    [1.0, 0.7071067811865475]
    >>> less_scores(train, val, val_groups=["a", "b"], normalize=False).tolist()
    [2.0, 3.0]
    """
    owner = "less_scores"
    train, val = _check_train_val(train, val)
    ids = check_val_groups(val_groups, owner=owner)
    check_normalize(normalize, owner=owner)
    weights = checkpoint_weights(check_lr_weights(lr_weights, owner=owner), train.shape[1], owner=owner)
    rows = check_chunk_size(chunk_size, train.shape[1] * train.shape[2], owner=owner)
    groups = group_codes(ids, len(val))
    return _less(train, val, weights, groups, rows, normalize=bool(normalize), names=("train", "val"))


def check_normalize(normalize: object, *, owner: str) -> None:
    """Refuse anything but a bool for ``normalize`` (a string ``"false"`` would read as True)."""
    if not isinstance(normalize, bool | np.bool_):
        raise param_error(owner, "normalize", "True or False", normalize, error=ParameterTypeError)


def _check_train_val(train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    arrays = [as_finite_array(a, name=name) for a, name in ((train, "train"), (val, "val"))]
    for name, array in zip(("train", "val"), arrays, strict=True):
        if array.ndim not in (2, 3) or 0 in array.shape:
            raise ParameterError(
                f"'less_scores' reads {GRADIENTS} for {name}. Got shape {array.shape} instead."
            )
    if arrays[0].shape[1:] != arrays[1].shape[1:]:
        raise ParameterError(
            f"val has per-example shape {arrays[1].shape[1:]} but train has {arrays[0].shape[1:]}; "
            "both must come from the same extractor."
        )
    return as_checkpoints(arrays[0]), as_checkpoints(arrays[1])


def relative_weights(weights: np.ndarray) -> np.ndarray:
    """``weights / sum(weights)`` for any finite weights >= 0 (first scaled by a power of two: exact).

    >>> relative_weights(np.array([1e308, 1e308])).tolist(), relative_weights(np.array([3.0, 1.0])).tolist()
    ([0.5, 0.5], [0.75, 0.25])
    """
    scaled = np.ldexp(weights, scale_exponent(weights))
    return scaled / scaled.sum()


def _unit_checkpoints(block: np.ndarray) -> np.ndarray:
    """Every (row, checkpoint) vector of a (b, C, d) block at unit L2 norm, any magnitude; zeros stay 0."""
    return unit_rows(block.reshape(-1, block.shape[-1]), np.float64).reshape(block.shape)


def _group_means(
    val: np.ndarray,
    codes: np.ndarray,
    n_groups: int,
    rows: int,
    transform: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Mean of ``transform(rows)`` per validation group: shape (n_groups, C, d)."""
    sums = np.zeros((n_groups, val.shape[1] * val.shape[2]))
    for start, raw in iter_row_chunks(val, rows, dtype=np.float64):
        block = transform(raw)
        np.add.at(sums, codes[start : start + rows], block.reshape(len(block), -1))
    means = sums / np.bincount(codes, minlength=n_groups)[:, None]
    return means.reshape(n_groups, val.shape[1], val.shape[2])


def _less(
    train: np.ndarray,
    val: np.ndarray,
    weights: np.ndarray,
    groups: tuple[np.ndarray, int],
    rows: int,
    *,
    normalize: bool,
    names: tuple[str, str],
) -> np.ndarray:
    """Scores of validated (n, C, d) train and val: targets once, then row chunks on the current engine."""
    relative = relative_weights(weights)[None, :, None]
    pieces = row_chunks(len(train), rows)
    if normalize:
        for array, name in zip((train, val), names, strict=True):
            check_checkpoint_magnitudes(array, name=name)
        targets = (_group_means(val, *groups, rows, _unit_checkpoints) * relative).reshape(groups[1], -1)
        return np.concatenate(_chunk_map(_chunk_cosine, _device_cosine, pieces, train, targets))
    for array, name in zip((train, val), names, strict=True):
        check_magnitudes(array, name=name)
    val_exponent = scale_exponent(val)
    means = _group_means(val, *groups, rows, lambda block: np.ldexp(block, val_exponent))
    targets = (means * relative).reshape(groups[1], -1)
    target_exponent = scale_exponent(targets)
    targets = np.ldexp(targets, target_exponent)
    parts = _chunk_map(_chunk_inner, _device_inner, pieces, train, targets)
    mantissa = np.concatenate([part[0] for part in parts])
    exponent = np.concatenate([part[1] for part in parts]) - val_exponent - target_exponent
    return as_float64_scores(mantissa, exponent, what="less scores (normalize=False)")


def _train_rows(piece: tuple[int, int], train: np.ndarray) -> np.ndarray:
    """Training rows ``start:stop`` as a float64 (b, C, d) block; a memmap's pages are then released."""
    view = train[piece[0] : piece[1]]
    block = np.asarray(view, dtype=np.float64)
    release_pages(view)
    return block


def _chunk_cosine(piece: tuple[int, int], shared: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Cosine scores of training rows ``start:stop`` (one task of the engine's map)."""
    train, targets = shared
    block = _unit_checkpoints(_train_rows(piece, train))
    return (block.reshape(len(block), -1) @ targets.T).max(axis=1)


def _chunk_inner(
    piece: tuple[int, int], shared: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Inner-product scores of training rows ``start:stop`` as (mantissa, exponent) (one engine task).

    Each row is first scaled by the power of two bringing its largest ``|value|`` into [0.5, 1) (exact), so
    no product over- or underflows; the row's exponent is returned with its best match.
    """
    train, targets = shared
    block = _train_rows(piece, train).reshape(piece[1] - piece[0], -1)
    exponents = row_exponents(block)
    best = (np.ldexp(block, exponents[:, None]) @ targets.T).max(axis=1)
    return best, -exponents


def _chunk_map(
    on_host: Callable[[tuple[int, int], tuple[np.ndarray, np.ndarray]], R],
    on_device: Callable[[tuple[int, int], np.ndarray, torch.Tensor, torch.device], R],
    pieces: list[tuple[int, int]],
    train: np.ndarray,
    targets: np.ndarray,
) -> list[R]:
    """Every chunk's result in order: ``on_host`` on the current engine, or ``on_device`` on the GPU."""
    device = gpu_device()
    if device is None:
        return current_engine().map(on_host, pieces, (train, targets))
    import torch

    table = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float64)).to(device)
    return [on_device(piece, train, table, device) for piece in pieces]


def _device_cosine(
    piece: tuple[int, int], train: np.ndarray, targets: torch.Tensor, device: torch.device
) -> np.ndarray:
    """:func:`_chunk_cosine` on ``device`` (``targets`` already there)."""
    block = torch_unit_rows(device_rows(train, piece, device))
    return (block.reshape(len(block), -1) @ targets.T).amax(dim=1).cpu().numpy()


def _device_inner(
    piece: tuple[int, int], train: np.ndarray, targets: torch.Tensor, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_chunk_inner` on ``device`` (``targets`` already there)."""
    block = device_rows(train, piece, device).reshape(piece[1] - piece[0], -1)
    exponents = torch_row_exponents(block)
    best = (torch_ldexp(block, exponents[:, None]) @ targets.T).amax(dim=1)
    return best.cpu().numpy(), -exponents.cpu().numpy()


@SELECTORS.register("less")
class Less(ScoreSelector):
    """Keep the training examples whose gradients best match a validation group (cosine by default).

    Parameters
    ----------
    lr_weights : sequence of float, optional
        One weight per checkpoint (mean learning rate of its epoch), renormalised to sum 1;
        default equal weights.
    val_groups : sequence, optional
        Group (subtask) id of each validation row, any hashable values; default one group.
    normalize : bool, default True
        True: L2-normalise every row per checkpoint first (LESS's code, a cosine match). False: the plain
        lr-weighted inner product (Du et al.'s definition for classification).

    Examples
    --------
    >>> import numpy as np
    >>> train = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0]])
    >>> val = np.array([[0.0, 2.0]])
    >>> Less().select(train, 1, val=val).indices.tolist()  # cosines 0, 1, 0.707
    [1]
    >>> Less(normalize=False).select(train, 1, val=val).indices.tolist()  # inner products 0, 2, 6
    [2]
    """

    reads = GRADIENTS
    input_ndim = (2, 3)
    needs_val = True

    def __init__(
        self,
        *,
        lr_weights: Sequence[float] | None = None,
        val_groups: Sequence[Hashable] | None = None,
        normalize: bool = True,
    ) -> None:
        self.lr_weights = lr_weights
        self.val_groups = val_groups
        self.normalize = normalize

    def validate_params(self, n: int) -> None:
        owner = type(self).__name__
        check_lr_weights(self.lr_weights, owner=owner)
        check_val_groups(self.val_groups, owner=owner)
        check_normalize(self.normalize, owner=owner)

    def _scores(
        self,
        values: np.ndarray,
        *,
        labels: np.ndarray | None,
        val: np.ndarray | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        owner = type(self).__name__
        train, val = as_checkpoints(values), as_checkpoints(declared(val, "val"))
        lr_weights = check_lr_weights(self.lr_weights, owner=owner)
        weights = checkpoint_weights(lr_weights, train.shape[1], owner=owner)
        groups = group_codes(check_val_groups(self.val_groups, owner=owner), len(val))
        rows = default_chunk_rows(train.shape[1] * train.shape[2])
        names = ("rep.values", "val.values")
        return _less(train, val, weights, groups, rows, normalize=bool(self.normalize), names=names)
