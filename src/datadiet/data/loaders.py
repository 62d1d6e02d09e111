"""Load datasets from files: JSON Lines, CSV/TSV, Parquet, or a Hugging Face dataset saved to disk.

:func:`load_dataset` is the entry point. Its ``source`` is

- one file (``.jsonl``/``.ndjson``, ``.csv``, ``.tsv``, ``.parquet``/``.pq``; the text formats may be
  compressed as ``.gz`` or ``.bz2``): one split, ``"train"`` unless ``split=`` names another;
- a directory of ``train.*``, ``validation.*`` (or ``val.*``) and ``test.*`` files: one split per file;
- a directory written by ``datasets.Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``;
- the name of an embedded dataset (see :mod:`datadiet.data.embedded`), e.g. ``"reuters_r8"``.

Class names are fixed once for all splits: ``label_names=`` if given, else the names of a Hugging Face
``ClassLabel`` feature, else the sorted distinct labels of the train split (of all splits when there is no
train split). A label in another split that is not among them is an error. Files are decoded as strict UTF-8
and nothing is ever unpickled.

The ``read_*`` functions return a file's columns as ``{column name: list of values}``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from datadiet.data.dataset import TASKS, Dataset, DatasetError, Task, encode_labels
from datadiet.data.formats import (
    COMPRESSED,
    FORMATS,
    TAB,
    Table,
    read_csv,
    read_jsonl,
    read_parquet,
)
from datadiet.data.sources import DATASETS
from datadiet.errors import MissingDependencyError, ParameterError

SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "test": "test",
}
HF_INSTALL = "pip install datadiet[hf]"


@dataclass(frozen=True)
class _Spec:
    """Which columns hold what, shared by every split."""

    text: str
    text_pair: str | None
    label: str | None
    id: str | None
    task: Task
    choices: str | None
    target: str | None

    def required(self) -> list[tuple[str, str]]:
        """(option name, column name) for every column that must exist."""
        wanted = [("text", self.text), ("text_pair", self.text_pair), ("id", self.id)]
        if self.task != "generation":
            wanted.append(("label", self.label))
        wanted += [("choices", self.choices), ("target", self.target)]
        return [(option, column) for option, column in wanted if column is not None]


@dataclass(frozen=True)
class _RawSplit:
    """The columns of one split before validation, with where they came from."""

    table: Table
    where: str
    file_format: str
    class_names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per ClassLabel column


def load_dataset(
    source: str | os.PathLike[str],
    *,
    split: str | None = None,
    text: str = "text",
    text_pair: str | None = None,
    label: str | None = "label",
    id: str | None = None,
    label_names: Sequence[str] | None = None,
    task: str = "classification",
    choices: str | None = None,
    target: str | None = None,
    name: str | None = None,
    file_format: str | None = None,
) -> dict[str, Dataset]:
    """Load a dataset from a file, a directory of split files, a saved HF dataset or an embedded name.

    Parameters
    ----------
    source : str or path-like
        A file, a directory, or an embedded dataset name (``"reuters_r8"``, ``"newsgroups20"``,
        ``"rotten_tomatoes"``); see the module docstring.
    split : str, optional
        For a single file or a single saved HF ``Dataset``: the name of its split (default ``"train"``).
        For a directory, a ``DatasetDict`` or an embedded dataset: return only this split.
    text, text_pair : str
        Columns holding the input text and the optional second text of a pair.
    label : str or None, default="label"
        Column holding the class (classification) or the index of the correct option (multiple choice).
    id : str, optional
        Column holding unique example ids; default ``"<split>-<row:06d>"``.
    label_names : sequence of str, optional
        All class names, in label-index order; default: the sorted distinct labels of the train split.
    task : {"classification", "multiple_choice", "generation"}
    choices, target : str, optional
        Column of options per example (default ``"choices"``, multiple choice) and of the target text
        (default ``"target"``, generation).
    name : str, optional
        Dataset name; default the file stem or directory name.
    file_format : {"jsonl", "csv", "tsv", "parquet"}, optional
        Read a single file in this format whatever its suffix.

    Returns
    -------
    dict of str to Dataset
        One dataset per split, ``"train"`` first.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "toy.jsonl"
    >>> _ = path.write_text('{"text": "good", "label": "pos"}\\n{"text": "bad", "label": "neg"}\\n')
    >>> ds = load_dataset(path)["train"]
    >>> ds.ids.tolist(), ds.label_names, ds.labels.tolist()
    (['train-000000', 'train-000001'], ('neg', 'pos'), [1, 0])
    """
    spec = _make_spec(text, text_pair, label, id, task, choices, target, label_names)
    if is_embedded_name(source):
        return _pick_split(DATASETS.get(str(source)).load(), split, str(source))
    path = Path(source)
    raws, single = read_source(path, split=split, file_format=file_format)
    splits = _build_splits(raws, spec, label_names=label_names, name=name or _default_name(path))
    return splits if single or split is None else _pick_split(splits, split, str(path))


def _make_spec(
    text: str,
    text_pair: str | None,
    label: str | None,
    id: str | None,
    task: str,
    choices: str | None,
    target: str | None,
    label_names: Sequence[str] | None,
) -> _Spec:
    if task not in TASKS:
        raise ParameterError(f"Unknown task {task!r}. Available: {list(TASKS)}.")
    if label_names is not None and task != "classification":
        raise ParameterError(f"label_names only applies to task='classification'. Got task={task!r}.")
    if task == "multiple_choice":
        choices = choices or "choices"
    if task == "generation":
        target = target or "target"
    return _Spec(text, text_pair, label, id, cast(Task, task), choices, target)


def is_embedded_name(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names an embedded dataset (and no file or folder of that name exists)."""
    return isinstance(source, str) and source in DATASETS and not Path(source).exists()


def _pick_split(splits: dict[str, Dataset], split: str | None, source: str) -> dict[str, Dataset]:
    if split is None:
        return splits
    wanted = SPLIT_ALIASES.get(split, split)
    if wanted not in splits:
        raise DatasetError(f"{source} has no split {split!r}. Available splits: {list(splits)}.")
    return {wanted: splits[wanted]}


def _default_name(path: Path) -> str:
    name = path.name
    for suffix in (*COMPRESSED, *FORMATS):
        name = name.removesuffix(suffix)
    return name or "dataset"


# --------------------------------------------------------------------------------------------- reading


def read_source(path: Path, *, split: str | None, file_format: str | None) -> tuple[dict, bool]:
    """The raw splits of ``path`` and whether it was a single split."""
    if path.is_file():
        fmt = file_format or format_of(path)
        return {_single_split_name(split): _read_file(path, fmt)}, True
    if not path.is_dir():
        raise FileNotFoundError(
            f"'{path}' is neither a file, a directory nor an embedded dataset name ({DATASETS.registered()})."
        )
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        raws = _read_hf_disk(path)
        if set(raws) == {""}:
            return {_single_split_name(split): raws[""]}, True
        return raws, False
    return {s: _read_file(f, format_of(f)) for s, f in split_files(path).items()}, False


def _single_split_name(split: str | None) -> str:
    return SPLIT_ALIASES.get(split or "train", split or "train")


def format_of(path: Path) -> str:
    """The file format of ``path`` from its suffix (a compression suffix is looked through)."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in FORMATS:
        return FORMATS[suffixes[-1]]
    raise DatasetError(
        f"Cannot tell the format of '{path}' from its suffix; use one of {list(FORMATS)} "
        "or pass file_format=."
    )


def _read_file(path: Path, fmt: str) -> _RawSplit:
    readers = {"jsonl": read_jsonl, "csv": read_csv, "parquet": read_parquet}
    if fmt == "tsv":
        return _RawSplit(read_csv(path, sep=TAB), str(path), fmt)
    if fmt not in readers:
        raise ParameterError(f"Unknown file_format {fmt!r}. Available: {[*readers, 'tsv']}.")
    return _RawSplit(readers[fmt](path), str(path), fmt)


def split_files(directory: Path) -> dict[str, Path]:
    """``{split: file}`` for the ``train.*``, ``validation.*``/``val.*`` and ``test.*`` files."""
    found: dict[str, list[Path]] = {}
    for file in sorted(directory.iterdir()):
        stem = file.name.split(".")[0].lower()
        if file.is_file() and stem in SPLIT_ALIASES and _has_known_suffix(file):
            found.setdefault(SPLIT_ALIASES[stem], []).append(file)
    clashes = {s: [f.name for f in files] for s, files in found.items() if len(files) > 1}
    if clashes:
        raise DatasetError(f"{directory}: several files give the same split {clashes}; keep one per split.")
    if not found:
        present = sorted(f.name for f in directory.iterdir())[:10]
        raise DatasetError(
            f"{directory} holds no train.*, validation.* (or val.*) or test.* file with a suffix in "
            f"{list(FORMATS)}, and is not a saved Hugging Face dataset. Found: {present}."
        )
    order = ["train", "validation", "test"]
    return {s: found[s][0] for s in order if s in found}


def _has_known_suffix(path: Path) -> bool:
    try:
        format_of(path)
    except DatasetError:
        return False
    return True


def _read_hf_disk(path: str | os.PathLike[str]) -> dict[str, _RawSplit]:
    """The splits of a Hugging Face ``Dataset``/``DatasetDict`` saved with ``save_to_disk``.

    A single ``Dataset`` comes back under the key ``""``. Integer labels of a ``ClassLabel`` feature are
    mapped to their names (``-1``, "no label", becomes ``None``).
    """
    try:
        import datasets
    except ImportError as exc:
        raise MissingDependencyError(
            f"Reading a Hugging Face dataset saved with save_to_disk needs `datasets`: {HF_INSTALL}"
        ) from exc
    loaded = datasets.load_from_disk(str(path))
    parts = (
        {str(s): p for s, p in loaded.items()} if isinstance(loaded, datasets.DatasetDict) else {"": loaded}
    )
    return {
        SPLIT_ALIASES.get(s, s): _hf_split(part, f"{path}[{s}]" if s else str(path))
        for s, part in parts.items()
    }


def _hf_split(part: Any, where: str) -> _RawSplit:
    if part.num_rows == 0:
        raise DatasetError(f"{where} has no rows.")
    table = part.to_dict()
    class_names = {}
    for column, feature in part.features.items():
        if type(feature).__name__ == "ClassLabel" and feature.names:
            names = class_names[column] = tuple(feature.names)
            table[column] = [_class_name(v, names) for v in table[column]]
    return _RawSplit(table, where, "hf", class_names)


def _class_name(value: int | None, names: tuple[str, ...]) -> str | None:
    """A ClassLabel value as its name; ``-1`` (no label) as ``None``, an out-of-range value as text."""
    if value is None or value < 0:
        return None
    return names[value] if value < len(names) else str(value)


# -------------------------------------------------------------------------------------------- building


def _build_splits(
    raws: dict[str, _RawSplit], spec: _Spec, *, label_names: Sequence[str] | None, name: str
) -> dict[str, Dataset]:
    order = sorted(raws, key=lambda s: (s != "train", s != "validation", s != "test", s))
    for split in order:
        _check_columns(raws[split], spec)
    names, origin = _resolve_label_names(raws, order, spec, label_names)
    return {s: _build(raws[s], spec, split=s, names=names, origin=origin, name=name) for s in order}


def _check_columns(raw: _RawSplit, spec: _Spec) -> None:
    for option, column in spec.required():
        if column not in raw.table:
            raise DatasetError(
                f"{raw.where}: column {column!r} not found. Available columns: {list(raw.table)}. "
                f"Pass {option}=<one of them> to load_dataset."
            )


def _resolve_label_names(
    raws: dict[str, _RawSplit], order: list[str], spec: _Spec, label_names: Sequence[str] | None
) -> tuple[tuple[str, ...], str]:
    """The class names of every split and where they came from."""
    if spec.task != "classification" or spec.label is None:
        return (), ""
    if label_names is not None:
        return tuple(str(n) for n in label_names), "label_names="
    class_names = next(
        (raws[s].class_names[spec.label] for s in order if spec.label in raws[s].class_names), None
    )
    if class_names:
        return class_names, "the ClassLabel feature"
    sources = ["train"] if "train" in raws else order
    values = [v for s in sources for v in _label_values(raws[s], spec.label)]
    origin = "the train split" if "train" in raws else "all splits"
    return _encode(values, None, where=" + ".join(raws[s].where for s in sources))[1], origin


def _label_values(raw: _RawSplit, column: str) -> list[Any]:
    """Label cells, with empty strings read as missing."""
    return [None if isinstance(v, str) and not v.strip() else v for v in raw.table[column]]


def _encode(values: list[Any], names: tuple[str, ...] | None, *, where: str) -> tuple[np.ndarray, tuple]:
    try:
        return encode_labels(values, names)
    except DatasetError as exc:
        raise DatasetError(f"{where}: {exc}") from exc


def _build(
    raw: _RawSplit, spec: _Spec, *, split: str, names: tuple[str, ...], origin: str, name: str
) -> Dataset:
    table, n = raw.table, len(next(iter(raw.table.values())))
    options: dict[str, Any] = {"text_pairs": table[spec.text_pair] if spec.text_pair else None}
    if spec.task == "classification" and spec.label is not None:
        options["labels"] = _class_labels(raw, spec.label, names, origin=origin, split=split)
        options["label_names"] = names
    elif spec.task == "multiple_choice":  # _make_spec named the choices column
        options["choices"] = _choice_lists(table[cast(str, spec.choices)], where=raw.where)
        labels = _label_values(raw, cast(str, spec.label))
        options["labels"] = _choice_labels(labels, options["choices"], raw.where)
    elif spec.task == "generation":  # _make_spec named the target column
        options["targets"] = table[cast(str, spec.target)]
    meta = {"source": raw.where, "format": raw.file_format, "columns": dict(spec.required())}
    try:
        return Dataset(
            np.asarray(_ids(table, spec.id, split, n, raw.where), dtype=object), list(table[spec.text]),
            task=spec.task, name=name, split=split, meta=meta, **options,
        )  # fmt: skip
    except DatasetError as exc:
        raise DatasetError(f"{raw.where}: {exc}") from exc


def _class_labels(
    raw: _RawSplit, column: str, names: tuple[str, ...], *, origin: str, split: str
) -> np.ndarray:
    values = _label_values(raw, column)
    seen = _encode(values, None, where=raw.where)[1]  # missing labels, mixed types
    known = set(names)
    unknown = [label for label in seen if label not in known]
    if unknown:
        raise DatasetError(
            f"{raw.where}: the {split} split has labels {unknown[:5]} that are not in {origin} "
            f"{list(names)[:10]}. Pass label_names=[...] to load_dataset listing every class."
        )
    return _encode(values, names, where=raw.where)[0]


def _ids(table: Table, column: str | None, split: str, n: int, where: str) -> list[str]:
    if column is None:
        return [f"{split}-{i:06d}" for i in range(n)]
    values = table[column]
    missing = [i for i, v in enumerate(values) if v is None or (isinstance(v, str) and not v.strip())]
    if missing:
        raise DatasetError(
            f"{where}: {len(missing)} rows have no id in column {column!r} (first rows: {missing[:5]}); "
            "give every row an id or leave id=None."
        )
    return [str(v) for v in values]


def _choice_lists(values: list[Any], *, where: str) -> list[list[str]]:
    bad = [i for i, v in enumerate(values) if not isinstance(v, (list, tuple)) or not v]
    if bad:
        raise DatasetError(
            f"{where}: {len(bad)} rows have no list of options (first rows: {bad[:5]}); "
            "the choices column must hold a non-empty list of strings per row."
        )
    return [[str(option) for option in v] for v in values]


def _choice_labels(values: list[Any], choices: list[list[str]], where: str) -> np.ndarray:
    """The index of the correct option: an int, a digit string, or the text of one of the options."""
    labels = []
    for row, (value, options) in enumerate(zip(values, choices, strict=True)):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            labels.append(int(value))
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            labels.append(int(value))
        elif isinstance(value, str) and value in options:
            labels.append(options.index(value))
        else:
            raise DatasetError(
                f"{where}, row {row}: label {value!r} is neither an option index nor one of the options "
                f"{options[:5]}; give the index of the correct option."
            )
    return np.asarray(labels, dtype=np.int64)
