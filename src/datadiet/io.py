"""Safe file I/O: arrays without pickle, atomic writes (write to a temp file, then rename)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from datadiet._faults import fault_point

MAX_NAME = 200
"""Longest name :func:`safe_name` returns (room left for a suffix and a temp-file prefix)."""


def load_array(path: str | os.PathLike[str], *, name: str, mmap: bool = False) -> np.ndarray:
    """Load a ``.npy`` file (never unpickling), or a ``.txt``/``.csv`` with one value per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} file '{path}' does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        except ValueError as exc:
            raise ValueError(
                f"{name} file '{path}' holds Python objects or is corrupt ({exc}); datadiet never unpickles "
                "data: save a numeric or string array."
            ) from exc
    if suffix in (".txt", ".csv"):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{name} file '{path}' is not valid UTF-8 (byte offset {exc.start}: {exc.reason}); "
                "re-encode it as UTF-8."
            ) from exc
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise ValueError(f"{name} file '{path}' is empty; write one value per line.")
        return _parse_column(lines)
    raise ValueError(f"{name} file '{path}' must be .npy (or .txt/.csv with one value per line).")


def _parse_column(lines: list[str]) -> np.ndarray:
    for dtype in (np.int64, np.float64):
        try:
            return np.array(lines, dtype=dtype)
        except ValueError:
            continue
    return np.array(lines)


def safe_name(text: str) -> str:
    """``text`` as one file or folder name that cannot leave the folder it is joined to.

    Characters outside ``[A-Za-z0-9_.@+-]`` (``/``, ``\\``, NUL, spaces, non-ASCII) become ``_``; the names
    ``""``, ``"."`` and ``".."`` become underscores; a name longer than :data:`MAX_NAME` characters is cut and
    ends with a hash of the whole ``text``, so it stays distinct and within file-system limits.

    >>> safe_name("less@gradients/train+balanced"), safe_name("../../etc"), safe_name("..")
    ('less@gradients_train+balanced', '.._.._etc', '__')
    """
    if not isinstance(text, str):
        raise TypeError(f"A name used in an output path must be a string. Got {text!r} instead.")
    name = re.sub(r"[^A-Za-z0-9_.@+-]", "_", text)
    if name in ("", ".", ".."):
        name = "_" * max(1, len(name))
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        name = f"{name[: MAX_NAME - len(digest) - 1]}-{digest}"
    return name


def atomic_write_bytes(path: str | os.PathLike[str], payload: bytes) -> Path:
    """Write ``payload`` so that ``path`` is either absent, the old file, or the complete new file."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"Cannot write '{path}': it is a folder. Give the path of a file to write.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; give the usual permissions of a written file
        fault_point("io.rename")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
        raise ValueError(f"{name} file '{path}' is not valid JSON ({exc}).") from exc
