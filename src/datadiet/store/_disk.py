"""Disk space for store writes: blocks reserved before a file is mapped, and one line for a full disk."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np

from datadiet._core.chunks import ZEROS_CHUNK_BYTES

DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
"""``errno`` values of a write that found no room: a full disk, a file-size limit, a quota."""
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def create_values(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.memmap:
    """A new zero-filled ``.npy`` mapped writable, with every block reserved on disk first.

    A plain ``open_memmap(..., "w+")`` file is sparse: a store into it that needs a block on a full disk
    kills the process with SIGBUS. Reserving the blocks turns a full disk into an ``OSError`` here.
    """
    values = np.lib.format.open_memmap(path, "w+", dtype, shape)
    try:
        reserve_blocks(path, start=int(values.offset), zero_filled=True)
    except BaseException:
        del values
        raise
    return values


def reserve_blocks(path: Path, *, start: int, zero_filled: bool) -> None:
    """Allocate the blocks of ``path`` from byte ``start`` on, so writes through a map cannot hit ENOSPC.

    Uses ``posix_fallocate``; where a file system does not support it, writes zeros: over the whole range
    when it is known to hold only zeros (``zero_filled``), else into its holes only.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size <= start:
            return
        if hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(fd, start, size - start)
                return
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
        if zero_filled:
            _write_zeros(fd, start, size)
        else:
            _fill_holes(fd, start, size)
    finally:
        os.close(fd)


def _write_zeros(fd: int, start: int, stop: int) -> None:
    zeros = bytes(min(ZEROS_CHUNK_BYTES, stop - start))
    position = start
    while position < stop:
        position += os.pwrite(fd, zeros[: stop - position], position)


def _fill_holes(fd: int, start: int, size: int) -> None:
    """Write zeros where ``fd`` has holes (which read as zeros, so the content is unchanged)."""
    if not hasattr(os, "SEEK_HOLE"):
        return
    position = start
    while position < size:
        try:
            hole = os.lseek(fd, position, os.SEEK_HOLE)
        except OSError:  # the file system cannot tell: leave the file as it is
            return
        if hole >= size:
            return
        try:
            data = os.lseek(fd, hole, os.SEEK_DATA)
        except OSError:  # ENXIO: a hole up to the end
            data = size
        _write_zeros(fd, hole, data)
        position = data


def disk_full_error(exc: OSError, key: str, entry: Path, doing: str, kept: str) -> OSError:
    """One line for a write that found no room: the entry, what needed the space, the free space, the fix
    and what was kept (``kept``)."""
    try:
        free = f"; {shutil.disk_usage(entry if entry.exists() else entry.parent).free:,} bytes free there"
    except OSError:
        free = ""
    remedy = {
        errno.EFBIG: "Raise the file-size limit (ulimit -f)",
        errno.EDQUOT: "Raise your disk quota or free some of it",
    }.get(exc.errno or 0, "Free space on that disk")
    return OSError(
        exc.errno,
        f"No room to write store entry '{key}' in '{entry}': {doing} failed ({os.strerror(exc.errno or 0)}"
        f"{free}). {remedy}, or set represent.store to a folder on a disk with room, and rerun; {kept}.",
    )
