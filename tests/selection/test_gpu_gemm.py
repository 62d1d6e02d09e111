"""The device paths of LESS and self-influence, run by torch on the CPU, against the numpy paths.

``on_gpu`` is patched to True while ``DATADIET_DEVICE=cpu`` resolves the device to the CPU, so the torch
chunk code (the same code a GPU runs) is exercised here. Invariants checked: its scores equal the numpy
path's within the rounding bound of the products it reorders (stated per test), at any magnitude, for chunks
smaller than the input and for a memmap read chunk by chunk; without a GPU, or on a distributed engine, the
numpy path runs, bit for bit as before.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import datadiet.selection.less as less_module
import datadiet.selection.self_influence as self_influence_module
from datadiet._core.device import ENV
from datadiet.distributed.engine import LocalEngine, use_engine
from datadiet.selection.less import Less, less_scores, relative_weights
from datadiet.selection.self_influence import SelfInfluence, gpu_device, self_influence_scores
from tests.helpers import assert_within, gamma

GROUPS = [0, 1, 0, 2, 0, 1, 2]
WEIGHTS = [2.0, 1.0, 0.5]
N, C, D = 50, 3, 8
CHUNK = 7  # rows per chunk: 8 chunks over N


@pytest.fixture
def device_path(monkeypatch):
    """Route the scorers through their device code, on the CPU; counts the chunks it copies."""
    monkeypatch.setenv(ENV, "cpu")
    monkeypatch.setattr(self_influence_module, "on_gpu", lambda: True)
    pieces: list[tuple[int, int]] = []
    copy = self_influence_module.device_rows

    def counted(array, piece, device):
        pieces.append(piece)
        return copy(array, piece, device)

    monkeypatch.setattr(self_influence_module, "device_rows", counted)
    monkeypatch.setattr(less_module, "device_rows", counted)
    return pieces


def _gradients(dtype: type, scale: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train = (rng.normal(size=(N, C, D)) * scale).astype(dtype)
    val = rng.normal(size=(len(GROUPS), C, D)).astype(dtype)
    return train, val


def _numpy_path(fn, *args, **kwargs):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(self_influence_module, "on_gpu", lambda: False)
        return fn(*args, **kwargs)


def _targets(val: np.ndarray, *, normalize: bool) -> np.ndarray:
    """The weighted group means of the (unit) validation rows: the matrix each training row is matched to."""
    val = val.astype(np.float64)
    if normalize:
        val = val / np.linalg.norm(val, axis=-1, keepdims=True)
    groups = np.asarray(GROUPS)
    means = np.stack([val[groups == g].mean(axis=0) for g in np.unique(groups)])
    return (means * relative_weights(np.asarray(WEIGHTS))[None, :, None]).reshape(len(means), -1)


def _match_bound(train: np.ndarray, val: np.ndarray, *, normalize: bool) -> np.ndarray:
    """Per row, the rounding bound of ``max_j x . t_j`` computed by two summation orders in float64.

    ``x`` is the training row (unit per checkpoint when normalising); both paths build the same targets
    on the host, so only the row's own scaling (its norms: ``d`` terms) and the product (``C d`` terms)
    are reordered: ``gamma_{C d + d}`` times ``max_j |x| . |t_j|``, for each path.
    """
    rows = train.astype(np.float64)
    if normalize:
        norms = np.linalg.norm(rows, axis=-1, keepdims=True)
        rows = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    targets = np.abs(_targets(val, normalize=normalize))
    magnitude = (np.abs(rows.reshape(len(rows), -1)) @ targets.T).max(axis=1)
    return 2 * gamma(C * D + D + 2, np.float64) * magnitude


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize(("dtype", "scale"), [(np.float32, 1.0), (np.float64, 1e150), (np.float64, 1e-150)])
def test_less_device_path_matches_numpy_within_the_product_bound(device_path, normalize, dtype, scale):
    train, val = _gradients(dtype, scale)
    kwargs = {"lr_weights": WEIGHTS, "val_groups": GROUPS, "normalize": normalize, "chunk_size": CHUNK}
    reference = _numpy_path(less_scores, train, val, **kwargs)
    assert device_path == []  # the numpy path copied nothing to a device
    scores = less_scores(train, val, **kwargs)
    assert device_path == [(start, min(start + CHUNK, N)) for start in range(0, N, CHUNK)]
    bound = _match_bound(train, val, normalize=normalize)
    assert_within(scores, reference, bound, f"LESS scores (normalize={normalize})")
    assert scores.dtype == np.float64


@pytest.mark.parametrize(("dtype", "scale"), [(np.float32, 1.0), (np.float64, 1e150), (np.float64, 1e-150)])
def test_self_influence_device_path_matches_numpy_within_the_sum_bound(device_path, dtype, scale):
    grads, _ = _gradients(dtype, scale)
    reference = _numpy_path(self_influence_scores, grads, WEIGHTS, chunk_size=CHUNK)
    scores = self_influence_scores(grads, WEIGHTS, chunk_size=CHUNK)
    assert len(device_path) == math.ceil(N / CHUNK)
    # a sum of C * D nonnegative terms, in two orders: relative error gamma_{C d} each way
    assert_within(scores, reference, 2 * gamma(C * D + C, np.float64) * reference, "self-influence")


def test_device_paths_read_a_memmap_chunk_by_chunk_like_in_memory(device_path, tmp_path, monkeypatch):
    train, val = _gradients(np.float32, 1.0, seed=1)
    np.save(tmp_path / "train.npy", train)
    stored = np.load(tmp_path / "train.npy", mmap_mode="r")
    in_memory = (Less(val_groups=GROUPS).score(train, val=val), SelfInfluence().score(train))
    monkeypatch.setattr(self_influence_module, "CHUNK_BYTES", 8 * C * D * 5)  # 5 rows per chunk
    device_path.clear()
    mapped = (Less(val_groups=GROUPS).score(stored, val=val), SelfInfluence().score(stored))
    assert device_path == 2 * [(start, min(start + 5, N)) for start in range(0, N, 5)]
    for chunked, whole in zip(mapped, in_memory, strict=True):  # per-row results: chunking changes no bit
        assert np.array_equal(chunked, whole)


def test_device_path_selects_what_numpy_selects(device_path):
    train, val = _gradients(np.float64, 1.0, seed=2)
    for selector in (Less(val_groups=GROUPS), Less(normalize=False), SelfInfluence(lr_weights=WEIGHTS)):
        kwargs = {"val": val} if isinstance(selector, Less) else {}
        expected = _numpy_path(selector.select, train, 12, **kwargs).indices
        assert selector.select(train, 12, **kwargs).indices.tolist() == expected.tolist()


def test_zero_rows_score_zero_on_the_device_path(device_path):
    train, val = _gradients(np.float64, 1.0, seed=3)
    train[[4, 9]] = 0.0
    assert less_scores(train, val, chunk_size=CHUNK)[[4, 9]].tolist() == [0.0, 0.0]
    assert self_influence_scores(train, chunk_size=CHUNK)[[4, 9]].tolist() == [0.0, 0.0]


def test_numpy_path_runs_without_a_gpu_and_on_a_distributed_engine(monkeypatch):
    monkeypatch.setenv(ENV, "cpu")
    assert gpu_device() is None  # the CPU: numpy, as before devices existed
    monkeypatch.setattr(self_influence_module, "on_gpu", lambda: True)
    assert gpu_device() is not None

    class Distributed(LocalEngine):
        name = "ray"  # its workers may have no GPU: the chunks stay on the engine

    with use_engine(Distributed()):
        assert gpu_device() is None
        train, val = _gradients(np.float64, 1.0)
        assert np.array_equal(
            less_scores(train, val, chunk_size=CHUNK), _numpy_path(less_scores, train, val, chunk_size=CHUNK)
        )
