"""Row chunks of large or memory-mapped arrays, with the pages of a memmap released after each chunk.

A sequential pass over a ``np.memmap`` leaves every page it read resident, and resident file pages count in
the process's RSS: one pass over a 4 GB file makes a 4 GB process. :func:`iter_row_chunks` reads ``rows``
rows at a time and, once the caller is done with a chunk, drops its pages from the mapping with
``madvise(MADV_DONTNEED)`` (:func:`release_pages`). The file and the page cache are untouched: a released
page is read back on its next access, so results never change; only the process's resident set does.

Every computation here is done the same way, chunk by chunk, for in-memory arrays and memmaps, so both
give bit-identical results.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

import numpy as np

try:
    from numpy.lib.array_utils import byte_bounds
except ImportError:  # numpy < 2.0
    byte_bounds = np.byte_bounds  # noqa: NPY201  # pyright: ignore[reportAttributeAccessIssue]

CHUNK_BYTES = 32 * 2**20
"""Bytes of input (or of its float64 copy) held per row chunk of a computation, and per chunk of a store
write (the unit of resumable progress)."""
GRADIENT_CHUNK_BYTES = 64 * 2**20
"""Bytes of float64 per row chunk of the gradient scorers (self-influence, LESS): their rows are whole
(n_checkpoints, d) gradients, so a chunk holds twice the default; it is their documented ``chunk_size``."""
HASH_CHUNK_BYTES = 8 * 2**20
"""Bytes read per call when a file is hashed without ``hashlib.file_digest`` (Python < 3.11)."""
ZEROS_CHUNK_BYTES = 8 * 2**20
"""Bytes of zeros written per call where a file system cannot reserve blocks with ``posix_fallocate``."""
STREAM_CHUNK_BYTES = 2**20
"""Bytes read per call when a download stream is drained (only hashed, never kept)."""
_PAGE = mmap.PAGESIZE
_PRIVATE_MODES = ("c", "copyonwrite")  # copy-on-write: MADV_DONTNEED would drop the private edits


def rows_per_chunk(row_bytes: int, chunk_bytes: int | None = None) -> int:
    """As many rows of ``row_bytes`` bytes as fit in ``chunk_bytes`` (default ``CHUNK_BYTES``; at least 1).

    >>> rows_per_chunk(4096, 2**20)
    256
    """
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    return max(1, chunk_bytes // max(1, int(row_bytes)))


def chunk_rows_for(array: np.ndarray, itemsize: int | None = None, chunk_bytes: int | None = None) -> int:
    """Rows per chunk for ``array``, counting ``itemsize`` bytes per value (default: the array's own)."""
    per_row = int(np.prod(array.shape[1:], dtype=np.int64)) * (itemsize or array.dtype.itemsize)
    return rows_per_chunk(per_row, chunk_bytes)


def iter_row_chunks(
    array: np.ndarray, rows: int, *, dtype: np.dtype | type | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, array[start:start + rows])`` for consecutive row chunks.

    Each chunk is converted to ``dtype`` when given (a copy), else returned as is (a view of a memmap
    is not copied). After the caller has finished with a chunk (when the loop asks for the next one),
    the memmap pages it covered are released (:func:`release_pages`); a chunk kept beyond its loop step
    stays valid, its pages are simply read again on access.

    Parameters
    ----------
    array : ndarray or memmap of shape (n, ...)
    rows : int
        Rows per chunk, >= 1.
    dtype : dtype, optional
        Convert each chunk to this dtype.

    Examples
    --------
    >>> [(start, chunk.tolist()) for start, chunk in iter_row_chunks(np.arange(5), 2)]
    [(0, [0, 1]), (2, [2, 3]), (4, [4])]
    """
    for start in range(0, len(array), rows):
        view = array[start : start + rows]
        yield start, (view if dtype is None else np.asarray(view, dtype=dtype))
        release_pages(view)


def take_rows(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``array[indices]`` in memory, then the memmap pages it touched released.

    ``indices`` should be sorted, so a memmap is read front to back.
    """
    rows = np.asarray(array[indices])
    release_pages(array)
    return rows


def release_pages(array: np.ndarray) -> bool:
    """Drop the resident pages of the memory-mapped region under ``array``; return whether it did.

    Works on a ``np.memmap`` and on any view of one (slices, reshapes, ``np.asarray`` of it): the file
    mapping is found through ``.base``. Only whole pages inside the array's byte range are released.
    In-memory arrays, copy-on-write maps (``mmap_mode="c"``), bare ``mmap.mmap`` buffers (their access
    mode is unknown) and systems without ``MADV_DONTNEED`` are left alone (returns False).
    """
    found = _file_mapping(array)
    if found is None or array.size == 0 or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    mapping, map_start = found
    low, high = byte_bounds(array)
    start = -(-(low - map_start) // _PAGE) * _PAGE  # round inwards to whole pages
    stop = min((high - map_start) // _PAGE * _PAGE, len(mapping))
    if stop <= start:
        return False
    mapping.madvise(mmap.MADV_DONTNEED, start, stop - start)
    return True


def is_memmap(array: object) -> bool:
    """Whether ``array`` is a view of a file mapping (a ``np.memmap`` or an array built on one)."""
    return _file_mapping(array) is not None


def _file_mapping(array: object) -> tuple[mmap.mmap, int] | None:
    """The ``mmap.mmap`` under ``array`` and the address where it starts, or None."""
    node, mode = array, None
    while node is not None:
        if isinstance(node, np.memmap):
            mode = node.mode
        if isinstance(node, mmap.mmap):
            if mode is None or mode in _PRIVATE_MODES:
                return None
            return node, np.frombuffer(node, dtype=np.uint8, count=1).ctypes.data
        node = getattr(node, "base", None)
    return None
