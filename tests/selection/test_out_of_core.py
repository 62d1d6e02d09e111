"""Out-of-core selection: a memmap gives exactly the in-memory result and is never loaded whole.

Invariants checked here:

- every registered selector, for every input ndim it declares, returns the same indices (and scores) for an
  array and for the same data as a ``np.load(mmap_mode="r")`` memmap, with one chunk or many;
- NaN/inf in the last chunk of a memmap is found, with a clear error;
- validating a memmap allocates no full-size temporary;
- :func:`release_pages` really drops a memmap's resident pages (``RssFile`` in ``/proc/self/status``).
"""

from __future__ import annotations

import mmap
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import datadiet
from datadiet._core import chunks as _chunks
from datadiet._core.checks import as_finite_array
from datadiet._core.chunks import is_memmap, iter_row_chunks, release_pages, take_rows
from datadiet.representations.base import Representation, as_representation
from datadiet.selection import self_influence
from tests.helpers import declared_cases, inputs_for

CASES = declared_cases()  # every registered selector with every input ndim it declares
N = 90


def _as_memmap(array: np.ndarray, path: Path) -> np.memmap:
    np.save(path, array)
    return np.load(path, mmap_mode="r")


def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few rows per chunk everywhere, so every chunked loop runs many times."""
    monkeypatch.setattr(_chunks, "CHUNK_BYTES", 256)
    monkeypatch.setattr(self_influence, "CHUNK_BYTES", 256)


def _assert_same_up_to_ties(indices: np.ndarray, reference: datadiet.Selection, atol: float) -> None:
    """``indices`` equal ``reference``'s, or differ only among examples whose score is within ``atol`` of
    the lowest kept score (the cut-off): only those can change sides when scores move by rounding."""
    differ = np.setxor1d(indices, reference.indices)
    cut_off = reference.scores[reference.indices].min()
    assert np.all(np.abs(reference.scores[differ] - cut_off) <= atol), differ.tolist()


def _assert_same(a: datadiet.Selection, b: datadiet.Selection) -> None:
    np.testing.assert_array_equal(a.indices, b.indices)
    assert (a.scores is None) == (b.scores is None)
    if a.scores is not None:
        np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize("many_chunks", [False, True], ids=["one_chunk", "many_chunks"])
@pytest.mark.parametrize(("name", "ndim"), CASES)
def test_memmap_selection_equals_in_memory_selection(name, ndim, many_chunks, tmp_path, monkeypatch):
    values, kwargs = inputs_for(name, n=N, ndim=ndim)
    one_pass = datadiet.select(name, values, 0.3, seed=4, **kwargs)
    if many_chunks:
        _small_chunks(monkeypatch)
    in_memory = datadiet.select(name, values, 0.3, seed=4, **kwargs)
    # chunked equals one pass up to rounding (GEMMs of other shapes may round differently in the last bit):
    # close scores, and the same indices except among examples tied with the cut-off up to that rounding
    if one_pass.scores is None:
        np.testing.assert_array_equal(in_memory.indices, one_pass.indices)
    else:
        atol = 1e-12 * max(1.0, float(np.abs(one_pass.scores).max()))
        np.testing.assert_allclose(in_memory.scores, one_pass.scores, rtol=1e-12, atol=atol)
        _assert_same_up_to_ties(in_memory.indices, one_pass, 2 * atol)
    mapped = _as_memmap(values, tmp_path / "values.npy")
    _assert_same(datadiet.select(name, mapped, 0.3, seed=4, **kwargs), in_memory)


@pytest.mark.filterwarnings("error::datadiet.selection.kmeans.NClustersClampedWarning")  # rows not lost
@pytest.mark.parametrize(("dtype", "factor"), [(np.float32, 1e30), (np.float32, 1e-30), (np.float64, 1e-170)])
@pytest.mark.parametrize("name", ["prototypicality", "semdedup", "s2l"])
def test_memmap_selection_at_extreme_scales_equals_in_memory_selection(
    name, dtype, factor, tmp_path, monkeypatch
):
    _small_chunks(monkeypatch)
    values = (inputs_for(name, n=N)[0] * factor).astype(dtype)  # squares of these over- or underflow
    in_memory = datadiet.select(name, values, 0.3, seed=4)
    _assert_same(datadiet.select(name, _as_memmap(values, tmp_path / "values.npy"), 0.3, seed=4), in_memory)


@pytest.mark.parametrize(("name", "ndim"), CASES)
def test_memmap_stratified_selection_equals_in_memory_selection(name, ndim, tmp_path, monkeypatch):
    _small_chunks(monkeypatch)
    values, kwargs = inputs_for(name, n=N, ndim=ndim)
    labels = kwargs.pop("labels", np.random.default_rng(2).integers(0, 3, size=N))
    mapped = _as_memmap(values, tmp_path / "values.npy")
    args = {"labels": labels, "balance": "stratified", "seed": 1, **kwargs}
    _assert_same(datadiet.select(name, mapped, 0.4, **args), datadiet.select(name, values, 0.4, **args))


def test_memmap_val_for_less_equals_in_memory_val(tmp_path, monkeypatch):
    _small_chunks(monkeypatch)
    values, kwargs = inputs_for("less", n=N)
    val = _as_memmap(kwargs["val"], tmp_path / "val.npy")
    _assert_same(
        datadiet.select("less", values, 0.3, val=val),
        datadiet.select("less", values, 0.3, val=kwargs["val"]),
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize(("name", "ndim"), CASES)
def test_nan_or_inf_in_the_last_chunk_of_a_memmap_is_refused(name, ndim, bad, tmp_path, monkeypatch):
    _small_chunks(monkeypatch)
    values, kwargs = inputs_for(name, n=N, ndim=ndim)
    values = values.astype(np.float64)
    values.flat[-1] = bad
    mapped = _as_memmap(values, tmp_path / "values.npy")
    with pytest.raises(ValueError, match=re.escape(f"has 1 NaN/inf values (first rows: [{N - 1}])")):
        datadiet.select(name, mapped, 0.3, **kwargs)


def test_representation_and_validation_keep_a_memmap_without_copying(tmp_path):
    mapped = _as_memmap(np.arange(12.0).reshape(4, 3), tmp_path / "values.npy")
    rep = as_representation(mapped)
    assert isinstance(rep.values, np.memmap) and is_memmap(rep.values)
    assert np.shares_memory(rep.values, mapped)
    assert as_finite_array(Representation(mapped).values, name="x") is mapped


def test_validating_a_memmap_allocates_no_full_size_temporary(tmp_path):
    mapped = _as_memmap(np.ones((12_800, 1024), dtype=np.float32), tmp_path / "big.npy")  # 50 MiB
    tracemalloc.start()
    try:
        as_finite_array(mapped, name="x", ndim=(2,))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.25 * mapped.nbytes


def test_iter_row_chunks_covers_every_row_once_and_converts():
    x = np.arange(14).reshape(7, 2)
    chunks = list(iter_row_chunks(x, 3, dtype=np.float64))
    assert [start for start, _ in chunks] == [0, 3, 6]
    np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), x)
    assert all(c.dtype == np.float64 for _, c in chunks)


def test_release_pages_leaves_in_memory_and_copy_on_write_arrays_alone(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.ones((2048, 1024), dtype=np.float32))
    assert not release_pages(np.ones((2048, 1024)))
    assert not release_pages(np.load(path, mmap_mode="c"))
    mapped = np.load(path, mmap_mode="r")
    assert release_pages(mapped) and release_pages(np.asarray(mapped).reshape(2048, 4, 256)[100:600])
    np.testing.assert_array_equal(take_rows(mapped, np.array([0, 5, 2047])), np.ones((3, 1024)))
    assert float(mapped.sum()) == 2048 * 1024  # released pages read back intact


def _rss_file_bytes() -> int | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(r"RssFile:\s+(\d+) kB", status)
    return None if found is None else int(found.group(1)) * 1024


@pytest.mark.skipif(not hasattr(mmap, "MADV_DONTNEED"), reason="needs madvise(MADV_DONTNEED)")
def test_release_pages_drops_resident_pages_of_a_full_pass(tmp_path):
    path = tmp_path / "pass.npy"
    np.save(path, np.ones((51_200, 1024), dtype=np.float32))  # 200 MiB
    if _rss_file_bytes() is None:
        pytest.skip("no RssFile in /proc/self/status")
    mapped = np.load(path, mmap_mode="r")
    before = _rss_file_bytes()
    total = sum(float(block.sum()) for _, block in iter_row_chunks(mapped, 4096))
    released = _rss_file_bytes() - before
    for start in range(0, len(mapped), 4096):  # the same pass, pages kept
        total -= float(mapped[start : start + 4096].sum())
    kept = _rss_file_bytes() - before
    assert total == 0
    if kept < 100 * 2**20:
        pytest.skip(f"could not observe resident pages (RssFile grew {kept / 2**20:.0f} MiB)")
    assert released < 40 * 2**20
