"""Low-level pieces of the representation store: entry validation, write specs and resumable partial files.

Nothing here unpickles: arrays go through ``np.save``/``np.load(allow_pickle=False)`` and metadata
through JSON. The public face is :mod:`datadiet.store`; keys and fingerprints are in
:mod:`datadiet.store.keys`, disk space in :mod:`datadiet.store._disk`, locks in :mod:`datadiet._core.locks`.
"""

from __future__ import annotations

import json
import numbers
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from datadiet._core.chunks import rows_per_chunk
from datadiet._core.files import npy_bytes, sha256_bytes, sha256_file
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
from datadiet.store.keys import FORMAT, canonical, fingerprint

VERIFY_MODES = ("full", "size")
MANIFEST, VALUES, IDS = "manifest.json", "values.npy", "ids.npy"
PARTIAL_VALUES, PARTIAL_IDS = "values.npy.partial", "ids.npy.partial"
PROGRESS, WRITER_SPEC = "progress.npy", "writer.json"


class PartialEntryRestartedWarning(UserWarning):
    """A partial entry's resume files (writer.json, progress.npy, the .partial files) were damaged, so
    the write of that entry started over."""


def check_verify(verify: object) -> str:
    if verify not in VERIFY_MODES:
        raise ParameterError(
            f"The 'verify' parameter must be one of {list(VERIFY_MODES)}. Got {verify!r} instead."
        )
    return str(verify)


# ---------------------------------------------------------------------------------------------- ids, dtypes
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
        "ids_dtype": ids.dtype.str, "ids_sha256": sha256_bytes(npy_bytes(ids)),
        "provenance": canonical(dict(provenance)), "rebuild": rebuild, "chunk_rows": chunk_rows,
    }  # fmt: skip
    return spec, ids


def auto_chunk_rows(spec: Mapping[str, Any]) -> int:
    row_bytes = int(np.prod(spec["shape"][1:], dtype=np.int64)) * np.dtype(spec["dtype"]).itemsize
    return max(1, min(spec["shape"][0], rows_per_chunk(row_bytes)))


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
