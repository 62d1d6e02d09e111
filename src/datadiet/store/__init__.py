"""RepresentationStore: cached representations as memory-mapped ``.npy`` files plus a JSON manifest.

Each entry is a folder ``<root>/<key>/`` holding ``values.npy`` (read back with ``mmap_mode="r"``),
``ids.npy`` (integers, or strings as fixed-width unicode; never objects) and ``manifest.json`` (shape,
dtype, sizes and sha256 of both files, kind, provenance and the command that rebuilds the entry).
The key is a fingerprint chain in the style of HF ``datasets``: :func:`make_key` hashes the canonical
JSON of the provenance (dataset fingerprint, model and weights fingerprint, checkpoint, extractor and
its non-default parameters, projection seed and dimension, ...); the store owns the field names
(:data:`~datadiet.store.keys.PROVENANCE_FIELDS`, built with :func:`provenance`).

Invariants
----------
- An entry is loadable only once its ``manifest.json`` exists, and the manifest is written last and
  atomically, after the data files have been renamed into place. A killed writer leaves a *partial*
  entry, which :meth:`RepresentationStore.load` reports as absent and a new writer resumes.
- Loading validates the files against the manifest and raises :class:`StoreError` naming the field
  and the rebuild command; it never silently recomputes.
- Writers hold an exclusive ``flock`` on ``<root>/<key>.lock``, so two processes never write one entry.
- A writer reserves the blocks of ``values.npy.partial`` before mapping it, so a full disk is an ``OSError``
  naming the entry (never a SIGBUS from a store into a sparse mapping). A damaged resume file of a partial
  entry restarts that entry with a :class:`PartialEntryRestartedWarning`.
- Every manifest field is checked for type and range before use; the rebuild command follows the entry when
  its store folder moves (the manifest records ``store_root``).

``verify`` defaults to ``"full"`` (size, header *and* sha256 of ``values.npy``, hashed in bounded reads):
sha256 runs at about 1 GB/s, which costs less than one extra read of data that every selector reads in
full anyway, and it is the only check that catches a flipped byte. Pass ``verify="size"`` (shape, dtype,
byte size and the small ids file) to reopen a large entry many times within a job.
"""

from __future__ import annotations

import datetime
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from datadiet._core.faults import fault_point
from datadiet._core.files import atomic_write_bytes, atomic_write_json, npy_bytes, sha256_file
from datadiet._core.locks import FileLock
from datadiet.errors import ParameterError, ParameterTypeError
from datadiet.representations.base import Representation
from datadiet.store._disk import DISK_FULL, create_values, disk_full_error, reserve_blocks
from datadiet.store._io import (
    IDS,
    MANIFEST,
    PARTIAL_IDS,
    PARTIAL_VALUES,
    PROGRESS,
    VALUES,
    WRITER_SPEC,
    PartialEntryRestartedWarning,
    StoreError,
    auto_chunk_rows,
    check_ids,
    check_manifest,
    check_values,
    check_verify,
    memmap_representation,
    read_manifest,
    read_spec,
    reopen_partial,
    short_repr,
    write_spec,
)
from datadiet.store.keys import (
    FORMAT,
    KEY_PATTERN,
    PROVENANCE_FIELDS,
    check_key,
    fingerprint,
    make_key,
    provenance,
    provenance_fields,
)

__all__ = [
    "PROVENANCE_FIELDS",
    "PartialEntryRestartedWarning",
    "RepresentationStore",
    "StoreError",
    "StoreWriter",
    "make_key",
    "provenance",
    "provenance_fields",
]

_COMPARED = ("kind", "shape", "dtype", "ids_sha256", "provenance")


class RepresentationStore:
    """A folder of cached representations keyed by provenance.

    Parameters
    ----------
    root : str or path
        The store folder (created on the first write).
    lock_timeout : float or None, default=3600.0
        Seconds a writer waits for another process writing the same key; ``None`` waits forever.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> store = RepresentationStore(tempfile.mkdtemp())
    >>> key = make_key(dataset="toy", extractor="features")
    >>> rep = store.get_or_compute(
    ...     key, lambda: Representation(np.eye(3, dtype=np.float32)), provenance={"dataset": "toy"}
    ... )
    >>> type(rep.values).__name__, store.load(key).meta
    ('memmap', {'dataset': 'toy'})
    """

    def __init__(self, root: str | os.PathLike[str], *, lock_timeout: float | None = 3600.0) -> None:
        self.root = Path(root)
        self.lock_timeout = lock_timeout

    def path(self, key: str) -> Path:
        """The folder of entry ``key`` (validated, so it is always inside ``root``)."""
        return self.root / check_key(key)

    def _lock(self, key: str) -> FileLock:
        return FileLock(self.root / f"{key}.lock", timeout=self.lock_timeout, what=f"store entry '{key}'")

    def state(self, key: str) -> Literal["absent", "partial", "complete"]:
        """Whether ``key`` is absent, partially written (not loadable) or complete (has a manifest)."""
        entry = self.path(key)
        if (entry / MANIFEST).is_file():
            return "complete"
        return "partial" if entry.is_dir() else "absent"

    def load(self, key: str, *, verify: Literal["full", "size"] = "full") -> Representation | None:
        """The stored representation, or ``None`` when ``key`` is absent or only partially written.

        Parameters
        ----------
        key : str
            The entry's key.
        verify : {"full", "size"}, default="full"
            ``"full"`` also checks the sha256 of ``values.npy`` (one chunked read); ``"size"`` checks
            only its shape, dtype and byte size. ``ids.npy`` is always checked in full.

        Returns
        -------
        rep : Representation or None
            ``values`` is a read-only ``np.memmap``; ``meta`` is the provenance from the manifest.

        Raises
        ------
        StoreError
            If the entry does not match its manifest; the message names the field and the fix.
        """
        entry, mode = self.path(key), check_verify(verify)
        if not (entry / MANIFEST).is_file():
            return None
        manifest = read_manifest(entry)
        rebuild = check_manifest(manifest, entry)
        values = check_values(manifest, entry, rebuild, mode)
        ids = check_ids(manifest, entry, rebuild)
        return memmap_representation(values, manifest["kind"], ids, manifest["provenance"])

    def save(
        self, key: str, rep: Representation, *, provenance: Mapping[str, Any], rebuild: str = "",
        overwrite: bool = False,
    ) -> Representation:  # fmt: skip
        """Write ``rep`` under ``key`` (temp files renamed into place, manifest last) and return it mapped.

        ``provenance`` becomes the loaded ``meta``; ``rebuild`` is the command that recreates the entry,
        quoted in every error about it. An existing complete entry raises unless ``overwrite=True``.
        """
        check_key(key)
        with self._lock(key):
            return self._save_locked(key, rep, provenance, rebuild, overwrite)

    def _save_locked(
        self, key: str, rep: Representation, provenance: Mapping[str, Any], rebuild: str, overwrite: bool
    ) -> Representation:
        if not isinstance(rep, Representation):
            raise ParameterTypeError(f"rep must be a Representation. Got {type(rep).__name__} instead.")
        manifest = self.path(key) / MANIFEST
        if manifest.is_file():
            if not overwrite:
                raise StoreError(
                    f"Store entry '{key}' already exists. Load it with store.load('{key}'), or pass "
                    "overwrite=True to replace it."
                )
            manifest.unlink()  # invisible from here until the new manifest lands
        spec, ids = write_spec(
            key, rep.values.shape, rep.values.dtype, rep.ids, rep.kind, provenance, rebuild, None
        )
        writer = StoreWriter(self, spec, ids, lock=None, fresh=True)
        for start, stop in writer.pending():
            writer.write(start, rep.values[start:stop])
        return writer.finalize()

    def writer(
        self, key: str, shape: tuple[int, ...], dtype: Any, ids: Any = None, *,
        provenance: Mapping[str, Any], kind: str = "features", rebuild: str = "",
        chunk_rows: int | None = None,
    ) -> StoreWriter:  # fmt: skip
        """A resumable writer for a long extraction; it holds the entry's lock until closed or finalized.

        Parameters
        ----------
        key : str
            The entry's key.
        shape : tuple of int
            Shape of the full values array (rows are examples).
        dtype : numpy dtype
            Numeric dtype of the values.
        ids : array-like of shape (n_examples,), optional
            Example ids (integers or strings); default ``0..n-1``.
        provenance : mapping
            How the values are made; a partial entry only resumes under the same provenance.
        kind : {"dynamics", "hidden", "gradients", "features"}, default="features"
        rebuild : str, default=""
            The command that recreates the entry, quoted in error messages.
        chunk_rows : int, optional
            Rows per chunk, the unit of progress; default about 32 MiB of values, or the partial entry's.

        Raises
        ------
        StoreError
            If a partial or complete entry for ``key`` has a different shape, dtype, ids, kind,
            provenance or chunk_rows, or another process holds the lock past ``lock_timeout``.
        """
        spec, ids = write_spec(check_key(key), shape, dtype, ids, kind, provenance, rebuild, chunk_rows)
        lock = self._lock(key).acquire()
        try:
            return StoreWriter(self, spec, ids, lock=lock, fresh=False)
        except BaseException:
            lock.release()
            raise

    def get_or_compute(
        self, key: str, compute: Callable[[], Representation], *, provenance: Mapping[str, Any],
        rebuild: str = "", verify: Literal["full", "size"] = "full",
    ) -> Representation:  # fmt: skip
        """Load ``key``; else take its lock, load again (another process may have finished), compute, save.

        ``compute`` runs at most once across processes sharing the store. A corrupt entry raises
        :class:`StoreError` rather than being recomputed silently.
        """
        rep = self.load(key, verify=verify)
        if rep is not None:
            return rep
        with self._lock(key):
            rep = self.load(key, verify=verify)
            if rep is not None:
                return rep
            return self._save_locked(key, compute(), provenance, rebuild, overwrite=False)

    def entries(self) -> dict[str, dict[str, Any]]:
        """Complete entries as ``{key: provenance}``, sorted by key (partial entries are left out)."""
        if not self.root.is_dir():
            return {}
        found = {}
        for entry in sorted(self.root.iterdir()):
            if KEY_PATTERN.fullmatch(entry.name) and (entry / MANIFEST).is_file():
                found[entry.name] = read_manifest(entry).get("provenance", {})
        return found

    def delete(self, key: str) -> bool:
        """Remove entry ``key`` (complete or partial), waiting for any writer; return whether it existed."""
        entry = self.path(key)
        with self._lock(key):
            if not entry.exists():
                return False
            (entry / MANIFEST).unlink(missing_ok=True)  # never visible half-deleted
            shutil.rmtree(entry)
            return True


class StoreWriter:
    """Chunked, resumable writing of one entry; create it with :meth:`RepresentationStore.writer`.

    Rows are grouped in chunks of ``chunk_rows``; a chunk is marked done in ``progress.npy`` (atomically)
    only after its rows are flushed to disk, so a killed process loses at most the chunk in flight.
    Use it as a context manager: leaving the block without :meth:`finalize` keeps the partial entry.
    """

    def __init__(
        self, store: RepresentationStore, spec: dict[str, Any], ids: np.ndarray, *,
        lock: FileLock | None, fresh: bool,
    ) -> None:  # fmt: skip
        self.store, self.key, self._lock = store, spec["key"], lock
        self.entry = store.path(self.key)
        self.entry.mkdir(parents=True, exist_ok=True)
        self.complete = (self.entry / MANIFEST).is_file()
        self._values: np.memmap | None = None
        if self.complete:
            manifest = read_manifest(self.entry)
            check_manifest(manifest, self.entry)
            self._check_against(manifest, spec, "a complete")
            self.spec = {**spec, "chunk_rows": manifest.get("chunk_rows") or 1}
            self._done = np.ones(0, dtype=bool)
            return
        self.spec = self._resume(spec, fresh)
        if self._values is None:
            self._start(ids)

    @property
    def chunk_rows(self) -> int:
        return int(self.spec["chunk_rows"])

    @property
    def n_chunks(self) -> int:
        return len(self._done)

    @property
    def n_done(self) -> int:
        """Chunks already written (including those from an earlier, interrupted writer)."""
        return int(self._done.sum())

    def pending(self) -> Iterator[tuple[int, int]]:
        """The ``(start, stop)`` row ranges still to write, one per chunk."""
        n_rows = self.spec["shape"][0]
        for chunk in np.flatnonzero(~self._done).tolist():
            yield chunk * self.chunk_rows, min((chunk + 1) * self.chunk_rows, n_rows)

    def write(self, start: int, array: np.ndarray) -> None:
        """Write rows ``start : start + len(array)`` (whole chunks) and mark them done.

        Raises
        ------
        ValueError
            If the rows are not whole chunks or the row shape differs.
        TypeError
            If ``array`` cannot be cast to the entry's dtype without changing its kind.
        """
        values = self._open_values()
        array = np.asarray(array)
        first, last = self._chunk_range(start, array)
        dtype = values.dtype
        if not np.can_cast(array.dtype, dtype, casting="same_kind"):
            raise ParameterTypeError(
                f"Cannot store {array.dtype} rows in entry '{self.key}' of dtype {dtype}."
            )
        stop = start + array.shape[0]
        with self._room(f"writing rows {start}:{stop}", "the chunks already written are kept"):
            values[start:stop] = array  # its blocks are reserved: a full disk cannot SIGBUS here
            values.flush()  # the data is on disk before the chunk is marked done
            self._done[first:last] = True
            atomic_write_bytes(self.entry / PROGRESS, npy_bytes(self._done))

    def _chunk_range(self, start: int, array: np.ndarray) -> tuple[int, int]:
        shape, rows = tuple(self.spec["shape"]), self.chunk_rows
        if array.ndim != len(shape) or array.shape[1:] != shape[1:]:
            raise ParameterError(
                f"Rows for entry '{self.key}' must have shape (n, *{shape[1:]}). Got {array.shape}."
            )
        stop = start + array.shape[0]
        aligned = start % rows == 0 and (stop % rows == 0 or stop == shape[0])
        if not (0 <= start < stop <= shape[0] and aligned):
            raise ParameterError(
                f"write(start={start}) with {array.shape[0]} rows does not cover whole chunks of "
                f"chunk_rows={rows} within n_examples={shape[0]}. Write the ranges given by pending()."
            )
        return start // rows, -(-stop // rows)

    def finalize(self) -> Representation:
        """Checksum the values, rename the files into place, write the manifest and return the entry.

        Raises
        ------
        StoreError
            If chunks are still pending.
        """
        if self.complete:
            self.close()
            return self.store.load(self.key)  # type: ignore[return-value]
        self._open_values()
        if not self._done.all():
            start, stop = next(self.pending())
            raise StoreError(
                f"{self.n_chunks - self.n_done} of {self.n_chunks} chunks of store entry '{self.key}' are "
                f"still pending (first: rows {start}:{stop}); write the ranges from pending() first."
            )
        self._values.flush()  # type: ignore[union-attr]
        self._values = None
        manifest = self._manifest()
        os.replace(self.entry / PARTIAL_IDS, self.entry / IDS)
        fault_point("store.finalize")
        os.replace(self.entry / PARTIAL_VALUES, self.entry / VALUES)
        with self._room("writing manifest.json", "the values are kept: rerun to finish the entry"):
            atomic_write_json(self.entry / MANIFEST, manifest)
        for name in (PROGRESS, WRITER_SPEC):
            (self.entry / name).unlink(missing_ok=True)
        self.complete = True
        self.close()
        return self.store.load(self.key, verify="size")  # type: ignore[return-value]

    def close(self) -> None:
        """Release the memory map and the lock; an unfinished entry stays partial and can be resumed."""
        self._values = None
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open_values(self) -> np.memmap:
        if self._values is None or (self._lock is not None and not self._lock.held):
            raise StoreError(f"The writer of store entry '{self.key}' is closed; open a new one to resume.")
        return self._values

    def _resume(self, spec: dict[str, Any], fresh: bool) -> dict[str, Any]:
        """Reopen an interrupted write with the same spec; leave ``_values`` unset to start afresh.

        A damaged resume file (writer.json, progress.npy, a .partial file) starts the entry over, with a
        :class:`PartialEntryRestartedWarning` saying what was damaged; a different spec is refused.
        """
        fresh_spec = {**spec, "chunk_rows": spec["chunk_rows"] or auto_chunk_rows(spec)}
        existing, problem = (None, None) if fresh else read_spec(self.entry / WRITER_SPEC)
        if existing is not None and existing["key"] != self.key:
            existing, problem = None, f"{WRITER_SPEC} names another entry ({existing['key']!r})"
        if existing is None:
            if problem:
                self._restart(problem)
            return fresh_spec
        self._check_against(existing, spec, "a partial")
        spec = {**spec, "chunk_rows": existing["chunk_rows"]}
        for final, partial in ((VALUES, PARTIAL_VALUES), (IDS, PARTIAL_IDS)):  # killed inside finalize()
            if not (self.entry / partial).exists() and (self.entry / final).exists():
                os.replace(self.entry / final, self.entry / partial)
        n_chunks = -(-spec["shape"][0] // spec["chunk_rows"])
        values, done, problem = reopen_partial(self.entry, spec, n_chunks)
        if values is None or done is None:
            self._restart(str(problem))
            return spec
        with self._room(f"reserving the blocks of {PARTIAL_VALUES}", "the chunks already written are kept"):
            reserve_blocks(self.entry / PARTIAL_VALUES, start=int(values.offset), zero_filled=False)
        self._values, self._done = values, done
        return spec

    def _restart(self, problem: str) -> None:
        warnings.warn(
            f"Store entry '{self.key}' in '{self.entry}': the interrupted write cannot be resumed because "
            f"{problem}; starting that entry over.",
            PartialEntryRestartedWarning,
            stacklevel=5,
        )

    @contextmanager
    def _room(self, doing: str, kept: str) -> Iterator[None]:
        """Turn a full disk (or a file-size limit or quota) into one line naming the entry."""
        try:
            yield
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise disk_full_error(exc, self.key, self.entry, doing, kept) from None
            raise

    def _check_against(self, existing: Mapping[str, Any], spec: Mapping[str, Any], what: str) -> None:
        fields = (*_COMPARED, "chunk_rows") if what == "a partial" and spec["chunk_rows"] else _COMPARED
        for field in fields:
            if existing.get(field) != spec[field]:
                raise StoreError(
                    f"Store entry '{self.key}' holds {what} write with a different {field} "
                    f"(stored {short_repr(existing.get(field))}, requested {short_repr(spec[field])}). "
                    f"Use the same {field} to resume or reuse it, build the key from the provenance with "
                    f"make_key(), or delete the entry with store.delete('{self.key}') to start over."
                )

    def _start(self, ids: np.ndarray) -> None:
        """Create the partial files, reserving the values' blocks first; no room removes them again."""
        for name in (WRITER_SPEC, PROGRESS, VALUES, IDS):  # no manifest: leftovers of an earlier write
            (self.entry / name).unlink(missing_ok=True)
        shape, dtype = tuple(self.spec["shape"]), np.dtype(self.spec["dtype"])
        needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        doing = f"creating its partial files ({PARTIAL_VALUES} needs {needed:,} bytes)"
        try:
            with self._room(doing, "its partial files were removed"):
                atomic_write_bytes(self.entry / PARTIAL_IDS, npy_bytes(ids))
                self._values = create_values(self.entry / PARTIAL_VALUES, dtype, shape)
                self._done = np.zeros(-(-shape[0] // self.chunk_rows), dtype=bool)
                atomic_write_bytes(self.entry / PROGRESS, npy_bytes(self._done))
                atomic_write_json(self.entry / WRITER_SPEC, self.spec)  # last: its presence means "resumable"
        except BaseException:
            self._values = None
            self._discard_partial()
            raise

    def _discard_partial(self) -> None:
        for name in (WRITER_SPEC, PROGRESS, PARTIAL_VALUES, PARTIAL_IDS):
            (self.entry / name).unlink(missing_ok=True)
        try:
            self.entry.rmdir()  # only when empty
        except OSError:
            pass

    def _manifest(self) -> dict[str, Any]:
        values, ids = self.entry / PARTIAL_VALUES, self.entry / PARTIAL_IDS
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        spec = self.spec
        return {
            "format": FORMAT, "key": self.key, "complete": True, "kind": spec["kind"],
            "shape": spec["shape"], "dtype": spec["dtype"],
            "values_bytes": values.stat().st_size, "values_sha256": sha256_file(values),
            "ids_dtype": spec["ids_dtype"], "ids_bytes": ids.stat().st_size, "ids_sha256": sha256_file(ids),
            "provenance": spec["provenance"], "provenance_sha256": fingerprint(spec["provenance"], length=64),
            "rebuild": spec["rebuild"], "chunk_rows": spec["chunk_rows"], "created": created,
            "store_root": os.path.abspath(self.store.root),
        }  # fmt: skip
