"""Safe file I/O: arrays without pickle, atomic writes (write to a temp file, then rename), sha256 digests."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from datadiet._core.chunks import HASH_CHUNK_BYTES
from datadiet._core.faults import fault_point
from datadiet.errors import ParameterError, ParameterTypeError

MAX_NAME = 200
"""Longest name :func:`safe_name` returns (room left for a suffix and a temp-file prefix)."""
ARRAY_KINDS = "biufcUS"
"""dtype kinds :func:`load_array` reads from a ``.npy``: bool, integers, floats, complex, strings."""
_WRITE_FIXES = {
    errno.ENOSPC: "free space on that disk or write elsewhere",
    errno.EDQUOT: "free space within your disk quota or write elsewhere",
    errno.EFBIG: "the file is larger than the file-size limit (ulimit -f) or the file system allows; "
    "raise the limit or write elsewhere",
}


def load_array(path: str | os.PathLike[str], *, name: str, mmap: bool = False) -> np.ndarray:
    """Load a ``.npy`` file (never unpickling), or a ``.txt``/``.csv`` with one value per line.

    A ``.npy`` header is checked before any data is read, memory-mapped or not: the file must be a
    regular file, its dtype numeric or string (never objects or records), and its size exactly the
    header's plus ``prod(shape) * itemsize`` bytes, so a damaged or truncated file (or a header that
    claims a huge shape) is refused naming the file instead of failing mid-read or exhausting memory.
    """
    path = Path(path)
    _check_input_file(path, name)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_npy(path, name, mmap)
    if suffix in (".txt", ".csv"):
        return _load_column(path, name)
    raise ParameterError(f"{name} file '{path}' must be .npy (or .txt/.csv with one value per line).")


def _check_input_file(path: Path, name: str) -> None:
    if path.is_dir():
        raise IsADirectoryError(
            f"{name} file '{path}' is a folder; pass a .npy file (or .txt/.csv with one value per line)."
        )
    if not path.exists():
        raise FileNotFoundError(f"{name} file '{path}' does not exist.")
    if not path.is_file():
        raise ParameterError(
            f"{name} file '{path}' is {_file_kind(path)}, not a regular file; pass a .npy file."
        )


def _load_npy(path: Path, name: str, mmap: bool) -> np.ndarray:
    shape, _ = _checked_npy_header(path, name)
    try:
        if mmap and math.prod(shape) > 0:  # an empty array cannot be memory-mapped; it is tiny anyway
            return np.load(path, allow_pickle=False, mmap_mode="r")
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ParameterError(
            f"{name} file '{path}' could not be read ({_first_line(exc)}); {_RESAVE}."
        ) from exc


_RESAVE = "recreate it with np.save"


def _checked_npy_header(path: Path, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype in the header of ``path``, refusing anything :func:`np.load` should not read."""
    size = path.stat().st_size
    if size == 0:
        raise ParameterError(f"{name} file '{path}' is empty (0 bytes), not a .npy array; {_RESAVE}.")
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise ParameterError(f".npy format version {version} is not read by datadiet")
            shape, _, dtype = read[version](handle)
        except (ValueError, EOFError, OSError) as exc:
            raise ParameterError(
                f"{name} file '{path}' is not a readable .npy file ({_first_line(exc)}); it is truncated or "
                f"not a .npy array: {_RESAVE}."
            ) from exc
        offset = handle.tell()
    _check_npy_dtype(dtype, path, name)
    expected = math.prod(shape) * dtype.itemsize
    if size - offset != expected:
        raise ParameterError(
            f"{name} file '{path}' is damaged: its header says shape {shape} of {dtype} ({expected} bytes of "
            f"data) but the file holds {size - offset} bytes after the header; {_RESAVE}."
        )
    return shape, dtype


def _check_npy_dtype(dtype: np.dtype, path: Path, name: str) -> None:
    if dtype.hasobject:
        raise ParameterError(
            f"{name} file '{path}' holds Python objects or is corrupt (dtype {dtype}); datadiet never "
            "unpickles data: save a numeric or string array."
        )
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None:
        raise ParameterError(
            f"{name} file '{path}' has dtype {dtype}; datadiet reads numeric or string arrays only: save one "
            "field per file (e.g. np.save(path, array['field']))."
        )


def _load_column(path: Path, name: str) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ParameterError(
            f"{name} file '{path}' is not valid UTF-8 (byte offset {exc.start}: {exc.reason}); "
            "re-encode it as UTF-8."
        ) from exc
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ParameterError(f"{name} file '{path}' is empty; write one value per line.")
    return _parse_column(lines)


def _parse_column(lines: list[str]) -> np.ndarray:
    for dtype in (np.int64, np.float64):
        try:
            return np.array(lines, dtype=dtype)
        except ValueError:
            continue
    return np.array(lines)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _file_kind(path: Path) -> str:
    """What ``path`` is, for a message: "a FIFO (named pipe)", "a character device", ..."""
    mode = path.stat().st_mode
    kinds = (
        (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
    )  # fmt: skip
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def utf8_problem(raw: bytes, exc: UnicodeDecodeError) -> str:
    """Where ``raw`` stops being UTF-8, for a one-line error: the byte, its offset and line, the reason.

    >>> raw = b"ok\\ncaf\\xe9"
    >>> try:
    ...     raw.decode("utf-8")
    ... except UnicodeDecodeError as exc:
    ...     print(utf8_problem(raw, exc))
    byte 0xe9 at byte offset 6 (line 2) unexpected end of data
    """
    line = raw.count(b"\n", 0, exc.start) + 1
    return f"byte 0x{raw[exc.start]:02x} at byte offset {exc.start} (line {line}) {exc.reason}"


def npy_bytes(array: np.ndarray) -> bytes:
    """The ``.npy`` encoding of ``array`` (never pickled), as :func:`np.save` writes it."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def sha256_bytes(payload: bytes) -> str:
    """The hex sha256 of ``payload`` (canonical bytes: a fingerprint's text, an array's buffer, a file).

    >>> sha256_bytes(b"")[:16]
    'e3b0c44298fc1c14'
    """
    return hashlib.sha256(payload).hexdigest()


def sha256_file(path: str | os.PathLike[str], *, chunk_bytes: int = HASH_CHUNK_BYTES) -> str:
    """The hex sha256 of a file, read in bounded pieces (``hashlib.file_digest`` where Python has it)."""
    file_digest = getattr(hashlib, "file_digest", None)  # Python >= 3.11
    with open(path, "rb", buffering=0) as handle:
        if file_digest is not None:
            return file_digest(handle, "sha256").hexdigest()
        digest, buffer = hashlib.sha256(), bytearray(chunk_bytes)
        view = memoryview(buffer)
        while n_read := handle.readinto(buffer):
            digest.update(view[:n_read])
        return digest.hexdigest()


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def cached_sha256_file(path: str | os.PathLike[str]) -> str:
    """:func:`sha256_file`, remembered per (resolved path, mtime, size): a rewritten file is hashed again."""
    path = Path(path)
    info = path.stat()
    key = (str(path.resolve()), info.st_mtime_ns, info.st_size)
    if key not in _FILE_DIGESTS:
        _FILE_DIGESTS[key] = sha256_file(path)
    return _FILE_DIGESTS[key]


def safe_name(text: str) -> str:
    """``text`` as one file or folder name that cannot leave the folder it is joined to.

    Characters outside ``[A-Za-z0-9_.@+-]`` (``/``, ``\\``, NUL, spaces, non-ASCII) become ``_``; the names
    ``""``, ``"."`` and ``".."`` become underscores; a name longer than :data:`MAX_NAME` characters is cut and
    ends with a hash of the whole ``text``, so it stays distinct and within file-system limits.

    >>> safe_name("less@gradients/train+balanced"), safe_name("../../etc"), safe_name("..")
    ('less@gradients_train+balanced', '.._.._etc', '__')
    """
    if not isinstance(text, str):
        raise ParameterTypeError(f"A name used in an output path must be a string. Got {text!r} instead.")
    name = re.sub(r"[^A-Za-z0-9_.@+-]", "_", text)
    if name in ("", ".", ".."):
        name = "_" * max(1, len(name))
    if len(name) > MAX_NAME:
        digest = sha256_bytes(text.encode("utf-8", "surrogatepass"))[:16]
        name = f"{name[: MAX_NAME - len(digest) - 1]}-{digest}"
    return name


def atomic_write_bytes(path: str | os.PathLike[str], payload: bytes) -> Path:
    """Write ``payload`` so that ``path`` is either absent, the old file, or the complete new file.

    ``path`` must be absent or a regular file: a folder, FIFO, socket or device is refused (replacing a
    device node with a file would break it). A symbolic link is followed: the regular file it points to is
    replaced and the link kept; a link to anything else, or to nothing, is refused. A failed write (a full
    disk, a quota, a file-size limit) raises one ``OSError`` naming ``path`` and leaves no temp file.
    """
    path = Path(path)
    target = _write_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise _write_error(path, exc) from exc
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; give the usual permissions of a written file
        fault_point("io.rename")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_target(path: Path) -> Path:
    """The file to replace for a write to ``path`` (the target of a symlink), or raise naming the fix."""
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    what = f"it is a symbolic link to '{target}', which is" if target is not path else "it is"
    if target is not path and not target.exists():
        raise FileNotFoundError(
            f"Cannot write '{path}': {what} missing. Remove the link or give the path of a file to write."
        )
    if target.is_dir():
        raise IsADirectoryError(f"Cannot write '{path}': {what} a folder. Give the path of a file to write.")
    if target.exists() and not target.is_file():
        raise FileExistsError(
            f"Cannot write '{path}': {what} {_file_kind(target)}, not a regular file, and datadiet only "
            "replaces regular files. Give the path of a regular file to write."
        )
    return target


def _write_error(path: Path, exc: OSError) -> OSError:
    fix = _WRITE_FIXES.get(exc.errno or 0, "check the disk and the folder's permissions")
    reason = exc.strerror or _first_line(exc)
    return OSError(
        exc.errno, f"Cannot write '{path}': {reason}; nothing was written under that name. Fix: {fix}."
    )


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write ``text`` as UTF-8 (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def read_json(path: str | os.PathLike[str], *, name: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} file '{path}' does not exist.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ParameterError(f"{name} file '{path}' is not valid JSON ({exc}).") from exc
