"""The shared file helpers of ``datadiet._core``: digests, ``.npy`` bytes, the cache folder, locks; and the
store's provenance field names."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest

from datadiet._core import files
from datadiet._core.cache import cache_root
from datadiet._core.locks import FileLock
from datadiet.errors import StoreError
from datadiet.store import PROVENANCE_FIELDS, make_key, provenance


@pytest.mark.parametrize("file_digest", [True, False])
def test_sha256_file_equals_hashlib_with_and_without_file_digest(tmp_path, monkeypatch, file_digest):
    payload = np.random.default_rng(0).bytes(3 * 2**20 + 17)
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)
    if not file_digest:
        monkeypatch.delattr(hashlib, "file_digest", raising=False)
    assert files.sha256_file(path, chunk_bytes=2**20) == hashlib.sha256(payload).hexdigest()


def test_cached_sha256_file_hashes_a_rewritten_file_again(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"first")
    assert files.cached_sha256_file(path) == files.sha256_bytes(b"first")
    path.write_bytes(b"second!")  # another size, so another cache key
    assert files.cached_sha256_file(path) == files.sha256_bytes(b"second!")


def test_npy_bytes_are_what_np_save_writes():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    assert files.npy_bytes(array) == buffer.getvalue()


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("DATADIET_CACHE", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root(tmp_path / "given") == tmp_path / "given"
    assert cache_root() == tmp_path / "own"
    monkeypatch.setenv("DATADIET_CACHE", "")
    assert cache_root() == tmp_path / "xdg" / "datadiet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "datadiet"  # Linux: existing caches stay valid


def test_a_second_lock_object_on_one_file_waits_in_the_same_process(tmp_path):
    path = tmp_path / "sub" / "entry.lock"
    with FileLock(path, timeout=None, what="an entry") as first:
        assert first.held and path.is_file()
        with pytest.raises(StoreError, match=r"Timed out after 0\.05 s waiting for the lock .* on an entry"):
            FileLock(path, timeout=0.05, what="an entry").acquire()
    assert not first.held and path.is_file()  # released, and the lock file stays for the next waiter
    FileLock(path, timeout=0, what="an entry").acquire().release()


def test_provenance_takes_the_store_field_names_and_refuses_others():
    built = provenance(stage="dynamics", run="ab" * 16, quantity="prob")
    assert built == {"stage": "dynamics", "run": "ab" * 16, "quantity": "prob"}
    assert make_key(**built) == make_key(quantity="prob", run="ab" * 16, stage="dynamics")
    assert set(built) <= set(PROVENANCE_FIELDS)
    with pytest.raises(ValueError, match=r"Unknown provenance field\(s\) \['quantitiy'\]\. Available: \["):
        provenance(stage="dynamics", quantitiy="prob")
