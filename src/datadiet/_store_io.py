"""Low-level pieces of the representation store: fingerprints, checksums, locks and entry validation.

Nothing here unpickles: arrays go through ``np.save``/``np.load(allow_pickle=False)`` and metadata
through JSON. The public face is :mod:`datadiet.store`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import json
import math
import numbers
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from datadiet.representations.base import KINDS, Representation

FORMAT = "datadiet.store/1"
KEY_PATTERN = re.compile(r"[0-9a-f]{16,64}")
KEY_LENGTH = 32
HASH_CHUNK_BYTES = 8 * 2**20
VERIFY_MODES = ("full", "size")
MANIFEST, VALUES, IDS = "manifest.json", "values.npy", "ids.npy"
PARTIAL_VALUES, PARTIAL_IDS = "values.npy.partial", "ids.npy.partial"
PROGRESS, WRITER_SPEC = "progress.npy", "writer.json"
CHUNK_BYTES = 32 * 2**20


class StoreError(RuntimeError):
    """A store entry is corrupt, incomplete, mismatched or locked; the message says how to fix it."""


def check_key(key: object) -> str:
    """Return ``key`` if it is a lowercase hex digest (so it can never name a path outside the root)."""
    if not isinstance(key, str) or KEY_PATTERN.fullmatch(key) is None:
        raise ValueError(
            f"Store keys must be 16-64 lowercase hex characters (0-9, a-f). Got {key!r} instead. "
            "Build keys with datadiet.store.make_key(**provenance)."
        )
    return key


def check_verify(verify: object) -> str:
    if verify not in VERIFY_MODES:
        raise ValueError(
            f"The 'verify' parameter must be one of {list(VERIFY_MODES)}. Got {verify!r} instead."
        )
    return str(verify)


# ---------------------------------------------------------------------------------------------- fingerprints
def canonical(value: Any, where: str = "provenance") -> Any:
    """Turn ``value`` into JSON-native data with one spelling per value, or raise ``TypeError``.

    Tuples become lists, numpy scalars Python numbers, paths strings, sets sorted lists, arrays a
    ``{"__ndarray__": {dtype, shape, sha256}}`` record and dataclasses a dict tagged with their class.
    Anything else raises: an object without a stable fingerprint must never yield a random key.
    """
    if value is None or isinstance(value, (bool, np.bool_, str)):
        return value if not isinstance(value, np.bool_) else bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else {"__float__": repr(number)}  # JSON has no inf/nan
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return _canonical_mapping(value, where)
    if isinstance(value, (list, tuple)):
        return [canonical(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [canonical(item, f"{where}{{}}") for item in value]
        return sorted(items, key=canonical_json)
    if isinstance(value, np.ndarray):
        return _canonical_array(value, where)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {"__dataclass__": type(value).__qualname__, **_canonical_mapping(fields, where)}
    raise TypeError(
        f"{where} has type {type(value).__name__}, which has no stable fingerprint. Pass JSON-like values "
        "(str, int, float, bool, None, list, dict), numpy arrays or dataclasses; for a model, tokenizer "
        "or function pass its name or path plus a fingerprint of its weights."
    )


def _canonical_mapping(value: Mapping, where: str) -> dict[str, Any]:
    bad = [key for key in value if not isinstance(key, str)]
    if bad:
        raise TypeError(f"{where} has non-string keys {bad[:3]}; provenance keys must be strings.")
    return {key: canonical(value[key], f"{where}.{key}") for key in sorted(value)}


def _canonical_array(value: np.ndarray, where: str) -> dict[str, Any]:
    if value.dtype.hasobject:
        raise TypeError(f"{where} is an object array, which has no stable fingerprint; use a numeric array.")
    data = np.ascontiguousarray(value)
    digest = hashlib.sha256(data.tobytes()).hexdigest()
    return {"__ndarray__": {"dtype": data.dtype.str, "shape": list(data.shape), "sha256": digest}}


def canonical_json(value: Any) -> str:
    """The canonical JSON text of already-canonical data (sorted keys, no spaces, no NaN)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fingerprint(value: Any, *, length: int = KEY_LENGTH) -> str:
    """A stable hex sha256 of ``value``'s canonical JSON (see :func:`canonical`)."""
    text = f"{FORMAT}\n{canonical_json(canonical(value))}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


# ----------------------------------------------------------------------------------------- files and arrays
def sha256_file(path: Path, *, chunk_bytes: int = HASH_CHUNK_BYTES) -> str:
    """The sha256 of a file, read in fixed-size chunks so memory stays bounded."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk_bytes)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            n_read = handle.readinto(buffer)
            if not n_read:
                break
            digest.update(view[:n_read])
    return digest.hexdigest()


def npy_bytes(array: np.ndarray) -> bytes:
    """The ``.npy`` encoding of ``array`` (never pickled)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def normalize_ids(ids: object, n_rows: int) -> np.ndarray:
    """Example ids as a plain (non-object) array: integers as given, strings as fixed-width unicode."""
    array = np.arange(n_rows) if ids is None else np.asarray(ids)
    if array.dtype.kind == "O":
        items = array.tolist()
        if all(isinstance(item, str) for item in items):
            array = np.array(items, dtype=str)
        elif all(isinstance(item, numbers.Integral) and not isinstance(item, bool) for item in items):
            array = np.array(items, dtype=np.int64)
    if array.dtype.kind not in "iuUS":
        raise TypeError(
            f"ids must be integers or strings. Got dtype {array.dtype} instead; convert them with "
            "np.asarray(ids, dtype=str)."
        )
    if array.shape != (n_rows,):
        raise ValueError(f"ids has shape {array.shape} but the values have n_examples={n_rows}.")
    if len(np.unique(array)) != n_rows:
        raise ValueError("ids must be unique; found duplicates. Give every example its own id.")
    return np.ascontiguousarray(array)


def check_dtype(dtype: object) -> np.dtype:
    """A numeric numpy dtype (bool, int, float or complex); structured and object dtypes raise."""
    resolved = np.dtype(dtype)  # type: ignore[call-overload]
    if resolved.kind not in "biufc" or resolved.fields is not None:
        raise TypeError(f"Stored values must have a numeric dtype. Got {resolved} instead.")
    return resolved


def check_shape(shape: object) -> tuple[int, ...]:
    """A 1-D to 3-D shape of positive ints."""
    try:
        dims = tuple(operator_index(dim) for dim in shape)  # type: ignore[union-attr]
    except TypeError as exc:
        raise TypeError(f"shape must be a tuple of ints. Got {shape!r} instead.") from exc
    if not 1 <= len(dims) <= 3 or min(dims) < 1:
        raise ValueError(f"shape must have 1 to 3 dimensions, each >= 1. Got {dims} instead.")
    return dims


def operator_index(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{value!r} is not an int")
    return int(value)


# -------------------------------------------------------------------------------------------------- locking
class FileLock:
    """An exclusive ``fcntl.flock`` on ``path``; the OS drops it when its holder dies, so it never goes stale.

    Parameters
    ----------
    path : Path
        The lock file (created if needed and left in place: unlinking a lock file races with waiters).
    timeout : float or None
        Seconds to wait for another holder; ``None`` waits forever.
    what : str
        What the lock protects, for the timeout message.
    """

    def __init__(self, path: Path, *, timeout: float | None, what: str) -> None:
        self.path = path
        self.timeout = timeout
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._wait(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _wait(self, fd: int) -> None:
        if self.timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return
        deadline, pause = time.monotonic() + self.timeout, 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"Timed out after {self.timeout:g} s waiting for the lock '{self.path}' on "
                        f"{self.what}: another process is writing it. Wait for that process to finish "
                        "(the entry is then reused), or pass a larger lock_timeout to RepresentationStore. "
                        "The lock is released when its holder exits, so a stale lock cannot be the cause."
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.25)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __del__(self) -> None:  # an abandoned holder (e.g. a writer left unfinished) frees the lock
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


# ------------------------------------------------------------------------------------------ entry validation
def entry_error(entry_dir: Path, field: str, problem: str, rebuild: str) -> StoreError:
    """A :class:`StoreError` naming the entry, the field that failed and how to rebuild it."""
    how = f"rebuild it with: {rebuild}" if rebuild else "recompute it (no rebuild command was recorded)"
    return StoreError(
        f"Store entry '{entry_dir.name}' is invalid: {field} {problem}. Delete the entry folder "
        f"'{entry_dir}' (or call store.delete('{entry_dir.name}')) and {how}."
    )


def read_manifest(entry_dir: Path) -> dict[str, Any]:
    """The parsed ``manifest.json`` of an entry; unreadable JSON raises :class:`StoreError`."""
    path = entry_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise entry_error(entry_dir, "manifest.json", f"is not valid JSON ({exc})", "") from exc
    if not isinstance(manifest, dict):
        raise entry_error(entry_dir, "manifest.json", "is not a JSON object", "")
    return manifest


_MANIFEST_TYPES: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "key": str,
    "complete": bool,
    "kind": str,
    "shape": list,
    "dtype": str,
    "values_bytes": int,
    "values_sha256": str,
    "ids_dtype": str,
    "ids_bytes": int,
    "ids_sha256": str,
    "provenance": dict,
    "provenance_sha256": str,
    "rebuild": str,
}


def check_manifest(manifest: dict[str, Any], entry_dir: Path) -> str:
    """Check the manifest's own fields (not the files); return its rebuild command."""
    rebuild = manifest.get("rebuild") if isinstance(manifest.get("rebuild"), str) else ""
    for field, kind in _MANIFEST_TYPES.items():
        if not isinstance(manifest.get(field), kind):
            raise entry_error(
                entry_dir, f"manifest field '{field}'", "is missing or has the wrong type", rebuild
            )
    expected = {"format": FORMAT, "key": entry_dir.name, "complete": True}
    for field, value in expected.items():
        if manifest[field] != value:
            problem = f"is {manifest[field]!r}, expected {value!r}"
            raise entry_error(entry_dir, f"manifest field '{field}'", problem, rebuild)
    if manifest["kind"] not in KINDS:
        raise entry_error(entry_dir, "manifest field 'kind'", f"is not one of {list(KINDS)}", rebuild)
    if fingerprint(manifest["provenance"], length=64) != manifest["provenance_sha256"]:
        problem = "does not match provenance_sha256 (the manifest was edited)"
        raise entry_error(entry_dir, "manifest field 'provenance'", problem, rebuild)
    return rebuild


def check_values(manifest: dict[str, Any], entry_dir: Path, rebuild: str, verify: str) -> np.memmap:
    """Open ``values.npy`` read-only after checking its size, header and (``verify="full"``) checksum."""
    path = entry_dir / "values.npy"
    _check_file(path, manifest["values_bytes"], "values", entry_dir, rebuild)
    try:
        values = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise entry_error(entry_dir, "values.npy", f"has an unreadable header ({exc})", rebuild) from exc
    if list(values.shape) != manifest["shape"]:
        problem = f"is {manifest['shape']} but values.npy holds {list(values.shape)}"
        raise entry_error(entry_dir, "manifest field 'shape'", problem, rebuild)
    if values.dtype.str != manifest["dtype"]:
        problem = f"is {manifest['dtype']!r} but values.npy holds {values.dtype.str!r}"
        raise entry_error(entry_dir, "manifest field 'dtype'", problem, rebuild)
    if verify == "full" and sha256_file(path) != manifest["values_sha256"]:
        problem = "does not match values.npy (the file was modified or corrupted)"
        raise entry_error(entry_dir, "values_sha256", problem, rebuild)
    return values


def check_ids(manifest: dict[str, Any], entry_dir: Path, rebuild: str) -> np.ndarray:
    """Load ``ids.npy`` after checking its size and checksum (always in full: ids are small)."""
    path = entry_dir / "ids.npy"
    _check_file(path, manifest["ids_bytes"], "ids", entry_dir, rebuild)
    if sha256_file(path) != manifest["ids_sha256"]:
        problem = "does not match ids.npy (the file was modified or corrupted)"
        raise entry_error(entry_dir, "ids_sha256", problem, rebuild)
    try:
        ids = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise entry_error(entry_dir, "ids.npy", f"is unreadable ({exc})", rebuild) from exc
    if ids.shape != (manifest["shape"][0],) or ids.dtype.str != manifest["ids_dtype"]:
        problem = (
            f"holds {ids.dtype.str} {ids.shape}, expected {manifest['ids_dtype']} ({manifest['shape'][0]},)"
        )
        raise entry_error(entry_dir, "ids.npy", problem, rebuild)
    return ids


def _check_file(path: Path, n_bytes: int, field: str, entry_dir: Path, rebuild: str) -> None:
    if not path.is_file():
        raise entry_error(entry_dir, f"{path.name}", "is missing", rebuild)
    size = path.stat().st_size
    if size != n_bytes:
        problem = f"says {n_bytes} bytes but {path.name} has {size} (truncated or replaced)"
        raise entry_error(entry_dir, f"{field}_bytes", problem, rebuild)


# ------------------------------------------------------------------------------------------------ writing
def write_spec(
    key: str,
    shape: Any,
    dtype: Any,
    ids: Any,
    kind: str,
    provenance: Mapping[str, Any],
    rebuild: str,
    chunk_rows: int | None,
) -> tuple[dict[str, Any], np.ndarray]:
    """The JSON description of a write (compared field by field when a writer resumes) and the ids."""
    shape = check_shape(shape)
    ids = normalize_ids(ids, shape[0])
    if kind not in KINDS:
        raise ValueError(f"Unknown representation kind {kind!r}. Available: {list(KINDS)}.")
    if not isinstance(provenance, Mapping):
        raise TypeError(f"provenance must be a dict. Got {type(provenance).__name__} instead.")
    if not isinstance(rebuild, str):
        raise TypeError(f"rebuild must be a str (a shell command). Got {type(rebuild).__name__} instead.")
    if chunk_rows is not None:
        error = ValueError if isinstance(chunk_rows, int) and not isinstance(chunk_rows, bool) else TypeError
        if error is TypeError or chunk_rows < 1:
            raise error(
                f"The 'chunk_rows' parameter must be an int >= 1 or None. Got {chunk_rows!r} instead."
            )
    spec = {
        "format": FORMAT, "key": key, "kind": kind, "shape": list(shape), "dtype": check_dtype(dtype).str,
        "ids_dtype": ids.dtype.str, "ids_sha256": hashlib.sha256(npy_bytes(ids)).hexdigest(),
        "provenance": canonical(dict(provenance)), "rebuild": rebuild, "chunk_rows": chunk_rows,
    }  # fmt: skip
    return spec, ids


def auto_chunk_rows(spec: Mapping[str, Any]) -> int:
    row_bytes = int(np.prod(spec["shape"][1:], dtype=np.int64)) * np.dtype(spec["dtype"]).itemsize
    return max(1, min(spec["shape"][0], CHUNK_BYTES // max(1, row_bytes)))


def read_spec(path: Path) -> dict[str, Any] | None:
    """A partial entry's ``writer.json``, or ``None`` if missing or unreadable (then the write restarts)."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(spec, dict) and spec.get("format") == FORMAT and isinstance(spec.get("chunk_rows"), int)
    return spec if ok else None


def reopen_partial(
    entry: Path, spec: Mapping[str, Any], empty: np.ndarray
) -> tuple[np.memmap | None, np.ndarray]:
    """The partial values and progress if they are consistent with ``spec``; else ``(None, empty)``."""
    try:
        values = np.lib.format.open_memmap(entry / PARTIAL_VALUES, mode="r+")
        done = np.load(entry / PROGRESS, allow_pickle=False)
        ids_ok = sha256_file(entry / PARTIAL_IDS) == spec["ids_sha256"]
    except (OSError, ValueError):
        return None, empty
    layout_ok = list(values.shape) == spec["shape"] and values.dtype.str == spec["dtype"]
    if not (ids_ok and layout_ok and done.dtype == bool and done.shape == empty.shape):
        return None, empty
    return values, done


def short_repr(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def memmap_representation(
    values: np.memmap, kind: str, ids: np.ndarray, meta: dict[str, Any]
) -> Representation:
    """A Representation whose ``values`` stays the read-only memmap (the constructor drops the subclass)."""
    rep = Representation(values, kind, ids, dict(meta))  # type: ignore[arg-type]
    object.__setattr__(rep, "values", values)
    return rep
