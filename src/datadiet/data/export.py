"""Write the kept rows of a dataset's split back in the input's own format (what ``datadiet prune`` writes).

:func:`source_rows` maps dataset ids (as :func:`~datadiet.data.loaders.load_dataset` builds them) to row
numbers in the split's file; :func:`write_subset` writes those rows, in the file's own order, as

- JSON Lines: the original lines byte for byte (parsed and re-serialised only to add ``extra_columns``);
- CSV/TSV: the header and the original records verbatim (quoting kept), extra columns appended;
- Parquet: ``pyarrow.Table.take`` (schema and metadata kept), extra columns appended;
- a Hugging Face dataset saved to disk: ``select`` then ``save_to_disk``;

with the input's compression (``.gz``, ``.bz2``). Every write is atomic, and a file in the output folder is
replaced only if this module wrote it: ``<out_dir>/.datadiet-export.json`` lists what it wrote (file name,
source, split, number of rows, sha256) and anything else is never overwritten.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datadiet._core.files import atomic_write_bytes, atomic_write_json, read_json, sha256_file
from datadiet.data.formats import TAB, read_utf8
from datadiet.data.loaders import (
    HF_INSTALL,
    SPLIT_ALIASES,
    format_of,
    is_embedded_name,
    read_source,
    split_files,
)
from datadiet.errors import DatasetError, MissingDependencyError, ParameterError

MANIFEST = ".datadiet-export.json"
"""The file in an output folder that lists what :func:`write_subset` wrote there."""
BOM = "\ufeff"
_COMPRESS = {".gz": lambda raw: gzip.compress(raw, mtime=0), ".bz2": bz2.compress}
_DECOMPRESS = {".gz": gzip.decompress, ".bz2": bz2.decompress}


@dataclass(frozen=True)
class _Located:
    """The file (or saved HF folder) holding one split of a source."""

    path: Path
    fmt: str  # jsonl, csv, tsv, parquet or hf
    split: str
    hf_key: str | None = None  # the DatasetDict key of the split; None for a saved single Dataset


def source_rows(
    source: str | os.PathLike[str],
    split: str,
    ids: Sequence[str] | np.ndarray,
    *,
    id_column: str | None = None,
    file_format: str | None = None,
) -> np.ndarray:
    """The row numbers (0-based, in the split's file) of the examples whose dataset ids are ``ids``.

    Parameters
    ----------
    source, split, file_format
        As given to :func:`~datadiet.data.loaders.load_dataset`.
    ids : sequence of str
        Dataset ids: ``"<split>-<row:06d>"`` by default, else values of ``id_column``.
    id_column : str, optional
        The column the ids were read from (``load_dataset(..., id=...)``).

    Returns
    -------
    numpy.ndarray
        int64 row numbers, one per id, in the order of ``ids``.

    Raises
    ------
    DatasetError
        Naming the first id that is not in the split.
    """
    where = _locate(source, split, file_format)
    raws, _ = read_source(Path(source), split=where.split, file_format=file_format)
    raw = raws.get(where.split) or next(iter(raws.values()))
    n = len(next(iter(raw.table.values())))
    ids = [str(i) for i in ids]
    if id_column is None:
        lookup = None
    else:
        if id_column not in raw.table:
            raise DatasetError(
                f"{raw.where}: id column {id_column!r} not found. Available columns: {list(raw.table)}."
            )
        lookup = {}
        for row, value in enumerate(raw.table[id_column]):
            lookup.setdefault(str(value), row)
    rows = []
    for id_ in ids:
        row = _default_row(id_, where.split, n) if lookup is None else lookup.get(id_)
        if row is None:
            how = f"column {id_column!r}" if id_column else f"the default ids '{where.split}-<row:06d>'"
            raise DatasetError(
                f"{raw.where}: id {id_!r} is not in the {where.split} split ({n} rows, ids from {how}); "
                "pass the ids load_dataset gave that split (and the same id column)."
            )
        rows.append(row)
    return np.asarray(rows, dtype=np.int64)


def _default_row(id_: str, split: str, n: int) -> int | None:
    prefix = f"{split}-"
    digits = id_.removeprefix(prefix)
    if not id_.startswith(prefix) or not digits.isdigit() or f"{prefix}{int(digits):06d}" != id_:
        return None
    return int(digits) if int(digits) < n else None


def write_subset(
    source: str | os.PathLike[str],
    split: str,
    rows: Sequence[int] | np.ndarray,
    out_dir: str | os.PathLike[str],
    *,
    file_format: str | None = None,
    extra_columns: Mapping[str, Sequence[Any]] | None = None,
) -> Path:
    """Write rows ``rows`` of ``split`` of ``source`` to ``out_dir`` in the input's own format.

    Parameters
    ----------
    source, split, file_format
        As given to :func:`~datadiet.data.loaders.load_dataset`; ``source`` must be a file or a folder.
    rows : sequence of int
        Row numbers in the split's file (see :func:`source_rows`), in any order; written in file order.
    out_dir : path-like
        The output folder; the file keeps its name (``<out_dir>/<file name>``).
    extra_columns : mapping of str to sequence, optional
        Columns to add (e.g. ``{"weight": [...]}``), one value per row in the order of ``rows``.

    Returns
    -------
    pathlib.Path
        The written file (or folder, for a Hugging Face dataset).

    Raises
    ------
    ParameterError
        Duplicate or out-of-range rows, an extra column of the wrong length or one the data already has.
    DatasetError
        An embedded dataset name, a missing split.
    FileExistsError
        The target exists and was not written by this module.
    """
    where = _locate(source, split, file_format)
    order, extras = _check_rows(rows, extra_columns)
    out_dir = Path(out_dir)
    target = out_dir / where.path.name
    manifest = _read_manifest(out_dir)
    _check_target(target, manifest)
    if where.fmt == "hf":
        n = _write_hf(where, order, extras, target)
    else:
        payload, n = _subset_bytes(where, order, extras)
        atomic_write_bytes(target, payload)
    manifest[target.name] = {
        "source": str(Path(source).resolve()),
        "split": where.split,
        "n_rows": n,
        "sha256": _digest(target),
    }
    atomic_write_json(out_dir / MANIFEST, manifest)
    return target


# ---------------------------------------------------------------------------------------------- locating


def _locate(source: str | os.PathLike[str], split: str, file_format: str | None) -> _Located:
    if is_embedded_name(source):
        raise DatasetError(
            f"{source!r} is an embedded dataset: it has no file to prune. Export it to a file first "
            f"(e.g. jsonl) and pass that file as the source."
        )
    path = Path(source)
    wanted = SPLIT_ALIASES.get(split, split)
    if path.is_file():
        return _Located(path, file_format or format_of(path), wanted)
    if not path.is_dir():
        raise FileNotFoundError(f"Dataset source '{path}' is neither a file nor a folder.")
    if (path / "dataset_dict.json").is_file():
        keys = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        key = next((k for k in keys if SPLIT_ALIASES.get(k, k) == wanted), None)
        if key is None:
            raise DatasetError(f"{path} has no split {split!r}. Available splits: {keys}.")
        return _Located(path, "hf", wanted, key)
    if (path / "state.json").is_file():
        return _Located(path, "hf", wanted)
    files = split_files(path)
    if wanted not in files:
        raise DatasetError(f"{path} has no split {split!r}. Available splits: {list(files)}.")
    return _Located(files[wanted], format_of(files[wanted]), wanted)


def _check_rows(
    rows: Sequence[int] | np.ndarray, extra_columns: Mapping[str, Sequence[Any]] | None
) -> tuple[np.ndarray, dict[str, list[Any]]]:
    """``rows`` sorted, and each extra column's values in that sorted order."""
    given = np.asarray(rows)
    if given.ndim != 1 or (given.size and given.dtype.kind not in "iu"):
        raise ParameterError(f"rows must be a 1-D list of integer row numbers; got dtype {given.dtype}.")
    given = given.astype(np.int64)
    unique, counts = np.unique(given, return_counts=True)
    if (counts > 1).any():
        raise ParameterError(
            f"rows holds duplicate row numbers {unique[counts > 1][:5].tolist()}; keep each once."
        )
    if given.size and given.min() < 0:
        raise ParameterError(f"rows holds negative row numbers {given[given < 0][:5].tolist()}.")
    order = np.argsort(given, kind="stable")
    extras = {}
    for name, values in (extra_columns or {}).items():
        values = list(values)
        if len(values) != len(given):
            raise ParameterError(
                f"extra column {name!r} has {len(values)} values but there are {len(given)} rows; "
                "give one per row."
            )
        extras[name] = [values[i] for i in order]
    return given[order], extras


def _check_range(rows: np.ndarray, n: int, where: Path) -> None:
    if rows.size and rows[-1] >= n:
        raise ParameterError(
            f"rows {rows[rows >= n][:5].tolist()} are out of range: '{where}' has {n} rows (0 to {n - 1})."
        )


def _check_new_columns(extras: dict[str, list[Any]], columns: Sequence[str], where: Path) -> None:
    clash = [name for name in extras if name in columns]
    if clash:
        raise ParameterError(
            f"'{where}' already has column {clash[0]!r}; give the extra column another name."
        )


# ----------------------------------------------------------------------------------------------- safety


def _read_manifest(out_dir: Path) -> dict[str, dict[str, Any]]:
    path = out_dir / MANIFEST
    if not path.exists():
        return {}
    data = read_json(path, name="export manifest")
    return data if isinstance(data, dict) else {}


def _check_target(target: Path, manifest: dict[str, dict[str, Any]]) -> None:
    if not (target.exists() or target.is_symlink()):
        return
    entry = manifest.get(target.name)
    if entry is None or entry.get("sha256") != _digest(target):
        why = "was not written by datadiet" if entry is None else "changed since datadiet wrote it"
        raise FileExistsError(
            f"'{target}' already exists and {why}; it is never overwritten: choose another --out or delete "
            "it yourself."
        )


def _digest(path: Path) -> str | None:
    if path.is_symlink():
        return None
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():  # a saved HF dataset: the digests of its files, in name order
        parts = [f"{p.relative_to(path)}:{sha256_file(p)}" for p in sorted(path.rglob("*")) if p.is_file()]
        return "dir:" + "|".join(parts)
    return None


# ---------------------------------------------------------------------------------------------- writing


def _subset_bytes(where: _Located, rows: np.ndarray, extras: dict[str, list[Any]]) -> tuple[bytes, int]:
    if where.fmt == "parquet":
        return _parquet_bytes(where.path, rows, extras)
    suffix = where.path.suffix.lower()
    raw = where.path.read_bytes()
    raw = _DECOMPRESS[suffix](raw) if suffix in _DECOMPRESS else raw
    text = read_utf8(where.path, raw)  # strict UTF-8, BOM removed
    bom = BOM if raw.startswith(BOM.encode("utf-8")) else ""
    if where.fmt == "jsonl":
        out = _jsonl_text(text, rows, extras, where.path)
    elif where.fmt in ("csv", "tsv"):
        out = _csv_text(text, TAB if where.fmt == "tsv" else ",", rows, extras, where.path)
    else:
        raise ParameterError(
            f"Unknown file_format {where.fmt!r}. Available: ['jsonl', 'csv', 'tsv', 'parquet']."
        )
    payload = (bom + out).encode("utf-8")
    return (_COMPRESS[suffix](payload) if suffix in _COMPRESS else payload), len(rows)


def _jsonl_text(text: str, rows: np.ndarray, extras: dict[str, list[Any]], path: Path) -> str:
    lines = [line for line in text.split("\n") if line.strip()]  # the rows, as read_jsonl counts them
    _check_range(rows, len(lines), path)
    kept = [lines[r] for r in rows]
    if extras:
        kept = [_with_keys(line, {k: v[i] for k, v in extras.items()}, path) for i, line in enumerate(kept)]
    return "".join(line + "\n" for line in kept)


def _with_keys(line: str, values: dict[str, Any], path: Path) -> str:
    record = json.loads(line)
    _check_new_columns(values, list(record), path)
    record.update(values)
    return json.dumps(record, ensure_ascii=False) + ("\r" if line.endswith("\r") else "")


def _csv_text(text: str, sep: str, rows: np.ndarray, extras: dict[str, list[Any]], path: Path) -> str:
    records = _csv_record_texts(text, sep)
    header, body = records[0], records[1:]
    _check_range(rows, len(body), path)
    _check_new_columns(extras, _csv_cells(header, sep), path)
    out = [_append_cells(header, list(extras), sep)]
    for i, r in enumerate(rows):
        out.append(_append_cells(body[r], [v[i] for v in extras.values()], sep))
    return "".join(_terminated(record) for record in out[:-1]) + out[-1]


def _csv_record_texts(text: str, sep: str) -> list[str]:
    """The non-blank records of ``text``, each as its exact text (line breaks included)."""
    lines = list(io.StringIO(text, newline=""))
    reader = csv.reader(iter(lines), delimiter=sep, strict=True)
    records, start = [], 0
    for cells in reader:
        if cells:
            records.append("".join(lines[start : reader.line_num]))
        start = reader.line_num
    return records


def _csv_cells(record: str, sep: str) -> list[str]:
    return next(csv.reader(io.StringIO(record, newline=""), delimiter=sep))


def _append_cells(record: str, values: list[Any], sep: str) -> str:
    if not values:
        return record
    body = record.rstrip("\r\n")
    ending = record[len(body) :]
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=sep, lineterminator="").writerow(["" if v is None else v for v in values])
    return f"{body}{sep}{buffer.getvalue()}{ending}"


def _terminated(record: str) -> str:
    return record if record.endswith(("\n", "\r")) else record + "\n"


def _parquet_bytes(path: Path, rows: np.ndarray, extras: dict[str, list[Any]]) -> tuple[bytes, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    _check_range(rows, table.num_rows, path)
    _check_new_columns(extras, table.column_names, path)
    kept = table.take(pa.array(rows, type=pa.int64()))
    for name, values in extras.items():
        kept = kept.append_column(name, pa.array(values))
    buffer = io.BytesIO()
    pq.write_table(kept, buffer)
    return buffer.getvalue(), kept.num_rows


def _write_hf(where: _Located, rows: np.ndarray, extras: dict[str, list[Any]], target: Path) -> int:
    try:
        import datasets
    except ImportError as exc:
        raise MissingDependencyError(
            f"Writing a Hugging Face dataset saved with save_to_disk needs `datasets`: {HF_INSTALL}"
        ) from exc
    loaded = datasets.load_from_disk(str(where.path))
    part: Any = loaded[where.hf_key] if where.hf_key is not None else loaded  # a datasets.Dataset
    _check_range(rows, part.num_rows, where.path)
    _check_new_columns(extras, part.column_names, where.path)
    kept = part.select(rows.tolist())
    for name, values in extras.items():
        kept = kept.add_column(name, values)
    out = datasets.DatasetDict({where.hf_key: kept}) if where.hf_key is not None else kept
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        out.save_to_disk(str(tmp / "data"))
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)  # only our own export reaches here (_check_target)
        os.replace(tmp / "data", target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return kept.num_rows


# ------------------------------------------------------------------------------- prune's other outputs


def export_name(source: str | os.PathLike[str], split: str, file_format: str | None = None) -> str:
    """The name the kept rows of ``split`` get in the output folder: the input file's (or folder's) name,
    ``<name>.<split>.jsonl`` for an embedded dataset."""
    if is_embedded_name(source):
        return f"{source}.{split}.jsonl"
    return _locate(source, split, file_format).path.name


def check_targets(out_dir: str | os.PathLike[str], names: Sequence[str]) -> None:
    """Refuse (``FileExistsError``) before anything is written when one of ``names`` exists in ``out_dir``
    and was not written there by datadiet (or changed since)."""
    out_dir = Path(out_dir)
    manifest = _read_manifest(out_dir)
    for name in names:
        _check_target(out_dir / name, manifest)


def write_owned_json(out_dir: str | os.PathLike[str], name: str, data: Any) -> Path:
    """Write ``data`` as ``<out_dir>/<name>`` atomically, refusing to replace a file datadiet did not write,
    and list it in the export manifest (so a later run may replace it)."""
    out_dir = Path(out_dir)
    target = out_dir / name
    manifest = _read_manifest(out_dir)
    _check_target(target, manifest)
    atomic_write_json(target, data)
    manifest[name] = {"n_rows": None, "sha256": _digest(target)}
    atomic_write_json(out_dir / MANIFEST, manifest)
    return target


def write_examples(
    ds: Any,
    positions: Sequence[int] | np.ndarray,
    out_dir: str | os.PathLike[str],
    name: str,
    *,
    extra_columns: Mapping[str, Sequence[Any]] | None = None,
) -> Path:
    """Write the examples at ``positions`` of the dataset ``ds`` as JSON Lines (``id``, ``text``, the text
    pair, choices or target when it has them, ``label`` as its class name), in the dataset's order: what an
    embedded dataset, which has no file of its own, is pruned to."""
    order, extras = _check_rows(positions, extra_columns)
    out_dir = Path(out_dir)
    target = out_dir / name
    manifest = _read_manifest(out_dir)
    _check_target(target, manifest)
    _check_range(order, len(ds), target)
    lines = []
    for j, i in enumerate(order.tolist()):
        record: dict[str, Any] = {"id": str(ds.ids[i]), "text": ds.texts[i]}
        for column, values in (("text_pair", ds.text_pairs), ("choices", ds.choices), ("target", ds.targets)):
            if values is not None:
                record[column] = values[i]
        if ds.labels is not None:
            record["label"] = (
                ds.label_names[ds.labels[i]] if ds.task == "classification" else int(ds.labels[i])
            )
        record.update({column: values[j] for column, values in extras.items()})
        lines.append(json.dumps(record, ensure_ascii=False))
    atomic_write_bytes(target, ("\n".join(lines) + "\n").encode("utf-8"))
    manifest[name] = {"source": str(ds.name), "split": str(ds.split), "n_rows": len(order),
                      "sha256": _digest(target)}  # fmt: skip
    atomic_write_json(out_dir / MANIFEST, manifest)
    return target
