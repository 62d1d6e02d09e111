"""LESS (Xia et al., ICML 2024): keep training examples whose gradients align with a target task.

Following ``princeton-nlp/LESS`` (``less/data_selection/matching.py``), with gradients
``g_c(z)`` of training examples and ``h_c(z')`` of validation examples at checkpoints ``c``:

- every row is L2-normalised per checkpoint, ``phi_c = g_c / ||g_c||`` and ``psi_c = h_c / ||h_c||``
  (a zero row stays 0, as ``F.normalize`` does, so a zero training gradient scores 0);
- ``S[z, z'] = sum_c w_c phi_c(z) . psi_c(z')`` with ``w = lr_weights / sum(lr_weights)`` (equal by
  default; the weights are the mean learning rate of each checkpoint's epoch);
- ``score(z) = max_j mean_{z' in group j} S[z, z']`` over validation groups (subtasks) ``j``.

Groups are given as one id per validation row (``val_groups``), so they need not be contiguous or of
equal size (the reference's reshape needs both); the default is a single group. Because the mean is
linear, ``score(z) = max_j sum_c w_c phi_c(z) . mean_{z' in j} psi_c(z')``: the N x V matrix is never
built, and training (and validation) rows are read in chunks; a memmap's pages are released after each
chunk. Ties go to the lower example index.

Training gradients in LESS are Adam-preconditioned before projection (:func:`adam_precondition`);
validation gradients stay plain SGD gradients.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Sequence

import numpy as np

from datadiet._chunks import iter_row_chunks, release_pages
from datadiet.engine import current_engine, row_chunks
from datadiet.selection.base import ScoreSelector, param_error
from datadiet.selection.registry import SELECTORS
from datadiet.selection.self_influence import (
    GRADIENTS,
    as_checkpoints,
    check_chunk_size,
    check_lr_weights,
    checkpoint_weights,
    default_chunk_rows,
)

VAL_GROUPS = "None or a 1-D sequence of hashable group ids, one per validation row"


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
            raise ValueError(
                f"{name} has shape {state.shape} but grads has shape {grads.shape}; the optimizer state "
                "must be the flat (P,) vector of the same parameters, in the same order."
            )
    if (exp_avg_sq < 0).any():
        raise ValueError("exp_avg_sq has negative entries; Adam's second moment is >= 0.")


def check_val_groups(val_groups: Sequence[Hashable] | np.ndarray | None, *, owner: str) -> list | None:
    """``val_groups`` as a list of ids (``None`` stays ``None``); raise ``param_error`` if invalid."""
    if val_groups is None:
        return None
    if isinstance(val_groups, str | bytes) or not hasattr(val_groups, "__len__"):
        raise param_error(owner, "val_groups", VAL_GROUPS, val_groups)
    ids = val_groups.tolist() if hasattr(val_groups, "tolist") else list(val_groups)
    try:
        set(ids)  # nested lists (a 2-D array) and other unhashable ids fail here
    except TypeError:
        raise param_error(owner, "val_groups", VAL_GROUPS, val_groups) from None
    return ids


def group_codes(ids: list | None, n_val: int) -> tuple[np.ndarray, int]:
    """Integer code per validation row (groups numbered by first appearance) and the number of groups."""
    if ids is None:
        return np.zeros(n_val, dtype=np.intp), 1
    if len(ids) != n_val:
        raise ValueError(
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
    chunk_size: int | None = None,
) -> np.ndarray:
    """LESS score of every training example: max over validation groups of the mean cosine match.

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
    chunk_size : int, optional
        Training rows per chunk; default as many as fit in 64 MiB of float64.

    Returns
    -------
    ndarray of shape (n_examples,)

    Examples
    --------
    >>> less_scores([[2.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 3.0]], val_groups=["a", "b"]).tolist()
    [1.0, 0.7071067811865475]
    """
    train, val = _check_train_val(train, val)
    ids = check_val_groups(val_groups, owner="less_scores")
    weights = checkpoint_weights(check_lr_weights(lr_weights, owner="less_scores"), train.shape[1])
    rows = check_chunk_size(chunk_size, train.shape[1] * train.shape[2], owner="less_scores")
    return _less(train, val, weights, group_codes(ids, len(val)), rows)


def _check_train_val(train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    arrays = [a if isinstance(a, np.ndarray) else np.asarray(a, dtype=np.float64) for a in (train, val)]
    for name, array in zip(("train", "val"), arrays, strict=True):
        if array.ndim not in (2, 3) or 0 in array.shape:
            raise ValueError(f"'less_scores' reads {GRADIENTS} for {name}. Got shape {array.shape} instead.")
    if arrays[0].shape[1:] != arrays[1].shape[1:]:
        raise ValueError(
            f"val has per-example shape {arrays[1].shape[1:]} but train has {arrays[0].shape[1:]}; "
            "both must come from the same extractor."
        )
    return as_checkpoints(arrays[0]), as_checkpoints(arrays[1])


def _normalise(block: np.ndarray) -> np.ndarray:
    """L2-normalise the last axis of a (b, C, d) float64 block; zero rows stay zero."""
    norms = np.linalg.norm(block, axis=-1, keepdims=True)
    return np.divide(block, norms, out=np.zeros_like(block), where=norms > 0)


def _group_targets(val: np.ndarray, codes: np.ndarray, n_groups: int, rows: int) -> np.ndarray:
    """Mean normalised validation row per group, flattened: shape (n_groups, C * d)."""
    sums = np.zeros((n_groups, val.shape[1] * val.shape[2]))
    for start, raw in iter_row_chunks(val, rows, dtype=np.float64):
        block = _normalise(raw)
        np.add.at(sums, codes[start : start + rows], block.reshape(len(block), -1))
    return sums / np.bincount(codes, minlength=n_groups)[:, None]


def _less(
    train: np.ndarray, val: np.ndarray, weights: np.ndarray, groups: tuple[np.ndarray, int], rows: int
) -> np.ndarray:
    n_checkpoints, dim = train.shape[1], train.shape[2]
    targets = _group_targets(val, *groups, rows).reshape(-1, n_checkpoints, dim)
    targets = (targets * (weights / weights.sum())[None, :, None]).reshape(len(targets), -1)
    parts = current_engine().map(_chunk_scores, row_chunks(len(train), rows), (train, targets))
    return np.concatenate(parts) if parts else np.empty(0)


def _chunk_scores(piece: tuple[int, int], shared: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Scores of training rows ``start:stop`` (one task of the engine's map)."""
    train, targets = shared
    view = train[piece[0] : piece[1]]
    block = _normalise(np.asarray(view, dtype=np.float64))
    release_pages(view)
    return (block.reshape(len(block), -1) @ targets.T).max(axis=1)


@SELECTORS.register("less")
class Less(ScoreSelector):
    """Keep the training examples whose normalised gradients best match a validation group.

    Parameters
    ----------
    lr_weights : sequence of float, optional
        One weight per checkpoint (mean learning rate of its epoch), renormalised to sum 1;
        default equal weights.
    val_groups : sequence, optional
        Group (subtask) id of each validation row, any hashable values; default one group.

    Examples
    --------
    >>> import numpy as np
    >>> train = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> val = np.array([[0.0, 2.0]])
    >>> Less().select(train, 1, val=val).indices.tolist()
    [1]
    """

    reads = GRADIENTS
    input_ndim = (2, 3)
    needs_val = True

    def __init__(
        self,
        *,
        lr_weights: Sequence[float] | None = None,
        val_groups: Sequence[Hashable] | None = None,
    ) -> None:
        self.lr_weights = lr_weights
        self.val_groups = val_groups

    def validate_params(self, n: int) -> None:
        check_lr_weights(self.lr_weights, owner=type(self).__name__)
        check_val_groups(self.val_groups, owner=type(self).__name__)

    def _scores(
        self,
        values: np.ndarray,
        *,
        labels: np.ndarray | None,
        val: np.ndarray | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        train, val = as_checkpoints(values), as_checkpoints(val)
        lr_weights = check_lr_weights(self.lr_weights, owner=type(self).__name__)
        weights = checkpoint_weights(lr_weights, train.shape[1])
        groups = group_codes(check_val_groups(self.val_groups, owner=type(self).__name__), len(val))
        return _less(train, val, weights, groups, default_chunk_rows(train.shape[1] * train.shape[2]))
