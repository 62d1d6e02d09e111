"""Low-level pieces of the representation store: fingerprints, checksums, locks and entry validation.

Nothing here unpickles: arrays go through ``np.save``/``np.load(allow_pickle=False)`` and metadata
through JSON. The public face is :mod:`datadiet.store`.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import math
import numbers
import os
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from datadiet._core.records import (
    MAX_RECORD_BYTES,
    Check,
    FieldError,
    boolean,
    integer,
    list_of,
    mapping,
    text,
)
from datadiet.errors import ParameterError, ParameterTypeError, StoreError
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
DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
"""``errno`` values of a write that found no room: a full disk, a file-size limit, a quota."""
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_ZEROS_BYTES = 8 * 2**20


class PartialEntryRestartedWarning(UserWarning):
    """A partial entry's resume files (writer.json, progress.npy, the .partial files) were damaged, so
    the write of that entry started over."""


def check_key(key: object) -> str:
    """Return ``key`` if it is a lowercase hex digest (so it can never name a path outside the root)."""
    if not isinstance(key, str) or KEY_PATTERN.fullmatch(key) is None:
        raise ParameterError(
            f"Store keys must be 16-64 lowercase hex characters (0-9, a-f). Got {key!r} instead. "
            "Build keys with datadiet.store.make_key(**provenance)."
        )
    return key


def check_verify(verify: object) -> str:
    if verify not in VERIFY_MODES:
        raise ParameterError(
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
    raise ParameterTypeError(
        f"{where} has type {type(value).__name__}, which has no stable fingerprint. Pass JSON-like values "
        "(str, int, float, bool, None, list, dict), numpy arrays or dataclasses; for a model, tokenizer "
        "or function pass its name or path plus a fingerprint of its weights."
    )


def _canonical_mapping(value: Mapping, where: str) -> dict[str, Any]:
    bad = [key for key in value if not isinstance(key, str)]
    if bad:
        raise ParameterTypeError(f"{where} has non-string keys {bad[:3]}; provenance keys must be strings.")
    return {key: canonical(value[key], f"{where}.{key}") for key in sorted(value)}


def _canonical_array(value: np.ndarray, where: str) -> dict[str, Any]:
    if value.dtype.hasobject:
        raise ParameterTypeError(
            f"{where} is an object array, which has no stable fingerprint; use a numeric array."
        )
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
        raise ParameterTypeError(
            f"ids must be integers or strings. Got dtype {array.dtype} instead; convert them with "
            "np.asarray(ids, dtype=str)."
        )
    if array.shape != (n_rows,):
        raise ParameterError(f"ids has shape {array.shape} but the values have n_examples={n_rows}.")
    if len(np.unique(array)) != n_rows:
        raise ParameterError("ids must be unique; found duplicates. Give every example its own id.")
    return np.ascontiguousarray(array)


def check_dtype(dtype: object) -> np.dtype:
    """A numeric numpy dtype (bool, int, float or complex); structured and object dtypes raise."""
    resolved = np.dtype(dtype)  # type: ignore[call-overload]
    if resolved.kind not in "biufc" or resolved.fields is not None:
        raise ParameterTypeError(f"Stored values must have a numeric dtype. Got {resolved} instead.")
    return resolved


def check_shape(shape: object) -> tuple[int, ...]:
    """A 1-D to 3-D shape of positive ints."""
    try:
        dims = tuple(operator_index(dim) for dim in shape)  # type: ignore[union-attr]
    except TypeError as exc:
        raise ParameterTypeError(f"shape must be a tuple of ints. Got {shape!r} instead.") from exc
    if not 1 <= len(dims) <= 3 or min(dims) < 1:
        raise ParameterError(f"shape must have 1 to 3 dimensions, each >= 1. Got {dims} instead.")
    return dims


def operator_index(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterTypeError(f"{value!r} is not an int")
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
    """The parsed ``manifest.json`` of an entry; raises :class:`StoreError` if oversized or unreadable."""
    path = entry_dir / MANIFEST
    size = path.stat().st_size
    if size > MAX_RECORD_BYTES:
        raise entry_error(entry_dir, MANIFEST, f"is {size} bytes, more than a manifest ever holds", "")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise entry_error(entry_dir, MANIFEST, f"is not valid JSON ({reason})", "") from None
    if not isinstance(manifest, dict):
        raise entry_error(entry_dir, MANIFEST, "is not a JSON object", "")
    return manifest


def sha256_hex(value: Any) -> None:
    """A check (see :mod:`datadiet._core.records`): 64 lowercase hex characters."""
    if not isinstance(value, str) or re.fullmatch(r"[0-9a-f]{64}", value) is None:
        raise FieldError(f"must be a sha256 (64 lowercase hex characters). Got {short_repr(value, 60)}.")


def shape_field(value: Any) -> None:
    """A check: a list of 1 to 3 ints >= 1."""
    list_of(integer(1), min_len=1)(value)
    if len(value) > 3:
        raise FieldError(f"must have 1 to 3 dimensions. Got {len(value)}.")


def dtype_field(kinds: str, what: str) -> Check:
    """A check: a dtype string numpy reads, of one of the numpy ``kinds``."""

    def check(value: Any) -> None:
        if not isinstance(value, str):
            raise FieldError(f"must be a numpy dtype string such as '<f4'. Got {short_repr(value, 60)}.")
        try:
            dtype = np.dtype(value)
        except (TypeError, ValueError, SyntaxError):
            raise FieldError(f"must be a dtype numpy can read. Got {short_repr(value, 60)}.") from None
        if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
            raise FieldError(f"must be a {what} dtype. Got {short_repr(value, 60)}.")

    return check


_VALUES_DTYPE = dtype_field("biufc", "numeric")
_IDS_DTYPE = dtype_field("iuUS", "integer or string")
_MANIFEST_FIELDS: dict[str, Check] = {
    "format": text(),
    "key": text(),
    "complete": boolean(),
    "kind": text(KINDS),
    "shape": shape_field,
    "dtype": _VALUES_DTYPE,
    "values_bytes": integer(1),
    "values_sha256": sha256_hex,
    "ids_dtype": _IDS_DTYPE,
    "ids_bytes": integer(1),
    "ids_sha256": sha256_hex,
    "provenance": mapping(),
    "provenance_sha256": sha256_hex,
    "rebuild": text(),
    "chunk_rows": integer(1),
    "created": text(),
    "store_root": text(),
}
_MANIFEST_OPTIONAL = ("chunk_rows", "created", "store_root")  # older manifests lack them


def _problem(exc: FieldError) -> str:
    return str(exc).rstrip(".")


def check_manifest(manifest: dict[str, Any], entry_dir: Path) -> str:
    """Check the manifest's own fields (types and ranges, not the files); return its rebuild hint."""
    rebuild = rebuild_hint(manifest, entry_dir)
    for field, check in _MANIFEST_FIELDS.items():
        if field not in manifest:
            if field in _MANIFEST_OPTIONAL:
                continue
            raise entry_error(entry_dir, f"manifest field '{field}'", "is missing", rebuild)
        try:
            check(manifest[field])
        except FieldError as exc:
            raise entry_error(entry_dir, f"manifest field '{field}'", _problem(exc), rebuild) from None
    expected = {"format": FORMAT, "key": entry_dir.name, "complete": True}
    for field, value in expected.items():
        if manifest[field] != value:
            problem = f"is {manifest[field]!r}, expected {value!r}"
            raise entry_error(entry_dir, f"manifest field '{field}'", problem, rebuild)
    if fingerprint(manifest["provenance"], length=64) != manifest["provenance_sha256"]:
        problem = "does not match provenance_sha256 (the manifest was edited)"
        raise entry_error(entry_dir, "manifest field 'provenance'", problem, rebuild)
    return rebuild


def rebuild_hint(manifest: Mapping[str, Any], entry_dir: Path) -> str:
    """The manifest's rebuild command, with its paths moved along when the store folder has moved.

    A manifest records ``store_root``, the store's absolute path when the entry was written. When the
    entry now lies elsewhere (the output folder was moved or copied), every path in the command that lay
    inside the folder holding the store is rewritten to where that folder is now. When that folder is the
    command's output (the default layout ``<output>/store``, ``<output>/config.resolved.json``), the command
    gets ``--output <new folder>`` so it runs as printed; otherwise a note says what to change. Manifests
    without ``store_root`` (older ones) give their command as recorded.
    """
    rebuild = manifest.get("rebuild")
    if not isinstance(rebuild, str) or not rebuild:
        return ""
    created = manifest.get("store_root")
    if not isinstance(created, str) or not os.path.isabs(created):
        return rebuild
    created, now = os.path.normpath(created), os.path.abspath(entry_dir.parent)
    if created == now:
        return rebuild
    old_base, new_base = os.path.dirname(created), os.path.dirname(now)
    if old_base == os.path.dirname(old_base):  # never rewrite paths under the file-system root
        return f"{rebuild} (the store was moved from '{created}' to '{now}')"
    default_layout = f"--config {os.path.join(old_base, 'config.resolved.json')}" in rebuild
    rebuild = re.sub(re.escape(old_base) + r"(?=[/\s'\"]|$)", lambda _: new_base, rebuild)
    if default_layout and rebuild.startswith(("datadiet represent ", "datadiet reference ")):
        return f"{rebuild} --output {new_base} (the output folder was moved from '{old_base}')"
    return (
        f"{rebuild} (the store was moved from '{created}' to '{now}'; where that command's config still "
        f"names '{old_base}' (output, represent.store, run_dir), change it to '{new_base}' first)"
    )


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
        raise ParameterError(f"Unknown representation kind {kind!r}. Available: {list(KINDS)}.")
    if not isinstance(provenance, Mapping):
        raise ParameterTypeError(f"provenance must be a dict. Got {type(provenance).__name__} instead.")
    if not isinstance(rebuild, str):
        raise ParameterTypeError(
            f"rebuild must be a str (a shell command). Got {type(rebuild).__name__} instead."
        )
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


_SPEC_FIELDS: dict[str, Check] = {
    "format": text((FORMAT,)),
    "key": text(),
    "kind": text(KINDS),
    "shape": shape_field,
    "dtype": _VALUES_DTYPE,
    "ids_dtype": _IDS_DTYPE,
    "ids_sha256": sha256_hex,
    "provenance": mapping(),
    "rebuild": text(),
    "chunk_rows": integer(1),
}
_MAX_SPEC_BYTES = 64 * 2**20


def read_spec(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A partial entry's ``writer.json`` checked field by field, as ``(spec, None)``.

    ``(None, None)`` when there is none (the write never got that far: it starts afresh), and
    ``(None, problem)`` when it is damaged (then the write starts over and says why).
    """
    if not path.is_file():
        return None, None
    try:
        size = path.stat().st_size
        if size > _MAX_SPEC_BYTES:
            return None, f"{path.name} is {size} bytes, more than a write spec ever holds"
        spec = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return None, f"{path.name} is unreadable ({exc.strerror or exc})"
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"{path.name} is not valid JSON ({reason})"
    if not isinstance(spec, dict):
        return None, f"{path.name} is not a JSON object"
    for field, check in _SPEC_FIELDS.items():
        if field not in spec:
            return None, f"{path.name} has no field '{field}'"
        try:
            check(spec[field])
        except FieldError as exc:
            return None, f"{path.name} field '{field}' {_problem(exc)}"
    return spec, None


def reopen_partial(
    entry: Path, spec: Mapping[str, Any], n_chunks: int
) -> tuple[np.memmap | None, np.ndarray | None, str | None]:
    """The partial values (writable) and the chunks done, checked against ``spec``.

    Returns ``(values, done, None)``, or ``(None, None, problem)`` naming the damaged or mismatched file;
    the caller then starts the entry over.
    """
    problem = _check_partial_ids(entry, spec) or _check_partial_values(entry, spec)
    if problem:
        return None, None, problem
    done, problem = _read_progress(entry / PROGRESS, n_chunks)
    if problem:
        return None, None, problem
    try:
        values = np.lib.format.open_memmap(entry / PARTIAL_VALUES, mode="r+")
    except (OSError, ValueError, EOFError) as exc:
        return None, None, f"{PARTIAL_VALUES} cannot be reopened ({_reason(exc)})"
    return values, done, None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_partial_ids(entry: Path, spec: Mapping[str, Any]) -> str | None:
    path = entry / PARTIAL_IDS
    if not path.is_file():
        return f"{PARTIAL_IDS} is missing"
    try:
        if sha256_file(path) != spec["ids_sha256"]:
            return f"{PARTIAL_IDS} does not match the ids_sha256 of {WRITER_SPEC} (modified or truncated)"
    except OSError as exc:
        return f"{PARTIAL_IDS} is unreadable ({_reason(exc)})"
    return None


def _check_partial_values(entry: Path, spec: Mapping[str, Any]) -> str | None:
    """Header and exact byte size (a truncated file must not be silently extended by a writable map)."""
    path = entry / PARTIAL_VALUES
    if not path.is_file():
        return f"{PARTIAL_VALUES} is missing"
    try:
        shape, dtype, offset, size = _npy_layout(path)
    except (OSError, ValueError, EOFError) as exc:
        return f"{PARTIAL_VALUES} is unreadable ({_reason(exc)})"
    if (list(shape), dtype.str) != (spec["shape"], spec["dtype"]):
        wanted = f"{spec['dtype']} {spec['shape']}"
        return f"{PARTIAL_VALUES} holds {dtype.str} {list(shape)}, not the {wanted} of {WRITER_SPEC}"
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != expected:
        return f"{PARTIAL_VALUES} has {size} bytes, expected {expected} (truncated or extended)"
    return None


def _npy_layout(path: Path) -> tuple[tuple[int, ...], np.dtype, int, int]:
    """Shape, dtype, data offset and file size of a ``.npy`` file, from its header alone."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version not in readers:
            raise ParameterError(f"unsupported .npy format version {version}")
        shape, fortran_order, dtype = readers[version](handle)
        if fortran_order:
            raise ParameterError("Fortran-ordered data")
        return shape, dtype, handle.tell(), os.fstat(handle.fileno()).st_size


def _read_progress(path: Path, n_chunks: int) -> tuple[np.ndarray | None, str | None]:
    expected = len(npy_bytes(np.zeros(n_chunks, dtype=bool)))
    try:
        size = path.stat().st_size
        if size != expected:
            return None, f"{path.name} has {size} bytes, expected {expected}"
        done = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except (OSError, ValueError, EOFError) as exc:
        return None, f"{path.name} is unreadable ({_reason(exc)})"
    if done.dtype != bool or done.shape != (n_chunks,):
        return None, f"{path.name} holds {done.dtype} {done.shape}, expected bool ({n_chunks},)"
    return done, None


# ------------------------------------------------------------------------------------------- disk space
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
    zeros = bytes(min(_ZEROS_BYTES, stop - start))
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
