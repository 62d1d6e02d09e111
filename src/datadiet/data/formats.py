"""File formats: JSON Lines, CSV/TSV and Parquet readers, each returning ``{column: list of values}``.

Text formats may be compressed (``.gz``, ``.bz2``); files are decoded as strict UTF-8 (:func:`read_utf8`)
and nothing is ever unpickled. Readers know nothing about datasets; :mod:`datadiet.data.loaders` builds
:class:`~datadiet.data.dataset.Dataset` splits from their tables.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
from pathlib import Path
from typing import Any

from datadiet._core.files import utf8_problem
from datadiet.errors import DatasetError

Table = dict[str, list[Any]]
"""A file's columns: column name -> one value per row."""
FORMATS: dict[str, str] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""File suffix -> format name."""
COMPRESSED = {".gz": gzip.decompress, ".bz2": bz2.decompress}
"""Compression suffix -> decompressor."""
TAB = "\t"


def read_utf8(path: str | os.PathLike[str], raw: bytes | None = None) -> str:
    """The text of ``path`` (or of ``raw``, its bytes) decoded as strict UTF-8, without a leading BOM.

    Raises
    ------
    DatasetError
        Naming the file, the line and the byte offset of the first byte that is not UTF-8.
    """
    raw = Path(path).read_bytes() if raw is None else raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path} is not valid UTF-8: {utf8_problem(raw, exc)}. Re-encode the file as UTF-8 "
            "(e.g. iconv -f latin1 -t utf-8)."
        ) from exc
    return text.removeprefix("\ufeff")


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    decompress = COMPRESSED.get(path.suffix.lower())
    return raw if decompress is None else decompress(raw)


def read_jsonl(path: str | os.PathLike[str]) -> Table:
    """The columns of a JSON Lines file (one JSON object per line; blank lines are skipped).

    A key missing from some objects reads as ``None`` there.
    """
    path = Path(path)
    records = []
    for number, line in enumerate(read_utf8(path, _read_bytes(path)).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                "fix or remove that line."
            ) from exc
        if not isinstance(record, dict):
            raise DatasetError(
                f"{path}, line {number}: expected a JSON object, got {type(record).__name__}; "
                "write one object per line."
            )
        records.append(record)
    if not records:
        raise DatasetError(f"{path} is empty; it needs one JSON object per line.")
    columns = list(dict.fromkeys(key for record in records for key in record))
    return {column: [record.get(column) for record in records] for column in columns}


def read_csv(path: str | os.PathLike[str], *, sep: str = ",") -> Table:
    """The columns of a CSV (or, with ``sep="\\t"``, TSV) file with a header row, every cell as text.

    Cells are never turned into NaN: the text ``"NA"`` stays ``"NA"`` and an empty cell is ``""``. Quoted
    cells may hold the separator, doubled quotes (``""``) and line breaks. Blank lines are skipped. Every
    row must have exactly as many cells as the header: a row with more (which would shift the columns) or
    fewer (which would leave cells empty) is refused naming its line in the file, as are a quote left
    open, a quote followed by text, and a header that names a column twice.
    """
    path = Path(path)
    text = read_utf8(path, _read_bytes(path))
    if not text.strip():
        raise DatasetError(f"{path} is empty; it needs a header row and at least one row.")
    records = _csv_records(text, sep, path)
    header, header_line = records[0]
    _check_header(header, header_line, path)
    rows = records[1:]
    if not rows:
        raise DatasetError(f"{path} has a header row but no rows.")
    for cells, line in rows:
        if len(cells) != len(header):
            raise DatasetError(_ragged_row_message(path, line, len(cells), header, sep))
    return {column: [cells[i] for cells, _ in rows] for i, column in enumerate(header)}


def _csv_records(text: str, sep: str, path: Path) -> list[tuple[list[str], int]]:
    """The non-blank records of ``text`` with the physical line each starts on (1-based)."""
    import csv

    if len(text) > csv.field_size_limit():  # the default (128 KiB per cell) would refuse a long text
        csv.field_size_limit(len(text))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    records, line = [], 1
    try:
        for cells in reader:
            if cells:
                records.append((cells, line))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise DatasetError(
            f"{path}, line {line}: not valid {'TSV' if sep == TAB else 'CSV'} ({exc}). Quote a cell that "
            'holds the separator, a quote or a line break ("..."), double the quotes inside it (""), and '
            "close every quote."
        ) from exc
    return records


def _check_header(header: list[str], line: int, path: Path) -> None:
    seen: dict[str, int] = {}
    for position, column in enumerate(header, start=1):
        if column in seen:
            raise DatasetError(
                f"{path}, line {line}: the header names column {column!r} twice (columns {seen[column]} and "
                f"{position}); give every column its own name."
            )
        seen[column] = position


def _ragged_row_message(path: Path, line: int, n_cells: int, header: list[str], sep: str) -> str:
    separator = "tab" if sep == TAB else repr(sep)
    if n_cells > len(header):
        fix = f"quote cells that contain a {separator} and remove any trailing {separator}"
    else:
        fix = "give every row one cell per column (an empty cell is still separated)"
    return (
        f"{path}, line {line}: {n_cells} cell{'s' * (n_cells != 1)} but the header has {len(header)} "
        f"({', '.join(header)[:80]}); "
        f"{fix}."
    )


def read_parquet(path: str | os.PathLike[str]) -> Table:
    """The columns of a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{path} is not a readable Parquet file ({exc}).") from exc
    if table.num_rows == 0:
        raise DatasetError(f"{path} has no rows.")
    return table.to_pydict()
