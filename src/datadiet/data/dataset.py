"""The `Dataset`: one split of examples with ids, text inputs, labels and a task type.

Inputs by task:

- ``classification``: ``texts`` (and optionally ``text_pairs``), ``labels`` = class index into
  ``label_names``;
- ``multiple_choice``: ``texts`` (the context/question), ``choices`` (options per example), ``labels`` = index
  of the correct option;
- ``generation``: ``texts`` (the prompt) and ``targets``; no labels.

A dataset is immutable; ``subset`` and ``head`` return new ones. ``fingerprint`` is a content hash (ids,
inputs, labels, label names, task) used to key cached representations.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np

from datadiet.errors import DatasetError

Task = Literal["classification", "multiple_choice", "generation"]
TASKS: tuple[str, ...] = ("classification", "multiple_choice", "generation")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Dataset:
    """One split of a dataset.

    Parameters
    ----------
    ids : ndarray of shape (n_examples,)
        Unique example ids (strings).
    texts : list of str
        The text, question or prompt of every example.
    labels : ndarray of shape (n_examples,) of int, optional
        Class index (classification) or correct option index (multiple choice).
    label_names : tuple of str
        Class names, in label-index order (classification).
    task : {"classification", "multiple_choice", "generation"}
    text_pairs : list of str, optional
        Second text of a pair (classification).
    choices : list of list of str, optional
        Options per example (multiple choice).
    targets : list of str, optional
        Target text per example (generation).
    name, split : str
        Where it came from.
    meta : dict
        Provenance (source path, slicing, label noise, ...).

    Examples
    --------
    >>> ds = Dataset.from_records([{"text": "a b", "label": "x"}, {"text": "c", "label": "y"}], name="toy")
    >>> len(ds), ds.label_names, ds.labels.tolist()
    (2, ('x', 'y'), [0, 1])
    """

    ids: np.ndarray
    texts: list[str]
    labels: np.ndarray | None = None
    label_names: tuple[str, ...] = ()
    task: Task = "classification"
    text_pairs: list[str] | None = None
    choices: list[list[str]] | None = None
    targets: list[str] | None = None
    name: str = "dataset"
    split: str = "train"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", np.asarray([str(i) for i in self.ids], dtype=object))
        if self.labels is not None:
            object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64))
        object.__setattr__(self, "label_names", tuple(str(n) for n in self.label_names))
        validate_dataset(self)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    def subset(self, indices: Sequence[int] | np.ndarray, *, note: str | None = None) -> Dataset:
        """The examples at ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        meta = dict(self.meta)
        if note:
            meta["subset"] = note
        return Dataset(
            ids=self.ids[idx],
            texts=[self.texts[i] for i in idx],
            labels=None if self.labels is None else self.labels[idx],
            label_names=self.label_names,
            task=self.task,
            text_pairs=_pick(self.text_pairs, idx),
            choices=_pick(self.choices, idx),
            targets=_pick(self.targets, idx),
            name=self.name,
            split=self.split,
            meta=meta,
        )

    def head(self, n: int) -> Dataset:
        return self.subset(np.arange(min(n, len(self))), note=f"head({n})")

    def fingerprint(self) -> str:
        """A sha256 over the content that matters for training (not ``meta``)."""
        digest = hashlib.sha256()
        header = {"task": self.task, "label_names": list(self.label_names), "n": len(self)}
        digest.update(json.dumps(header, sort_keys=True).encode())
        for column in (self.ids.tolist(), self.texts, self.text_pairs, self.choices, self.targets):
            digest.update(json.dumps(column, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if self.labels is not None:
            digest.update(self.labels.astype("<i8").tobytes())
        return digest.hexdigest()[:16]

    @classmethod
    def from_records(
        cls,
        records: Sequence[dict[str, Any]],
        *,
        text: str = "text",
        label: str | None = "label",
        id: str | None = None,
        label_names: Sequence[str] | None = None,
        name: str = "dataset",
        split: str = "train",
    ) -> Dataset:
        """A classification dataset from dicts; label names are the sorted distinct labels unless given."""
        texts: list[Any] = [r.get(text) for r in records]  # validate_dataset refuses non-text
        ids = [r[id] if id else i for i, r in enumerate(records)]
        if label is None:
            return cls(np.asarray(ids, dtype=object), texts, name=name, split=split, task="classification")
        raw = [r.get(label) for r in records]
        labels, names = encode_labels(raw, label_names)
        return cls(np.asarray(ids, dtype=object), texts, labels, names, name=name, split=split)


def _pick(column: list[_T] | None, idx: np.ndarray) -> list[_T] | None:
    """The entries of an optional column at ``idx`` (None stays None)."""
    return None if column is None else [column[i] for i in idx]


def encode_labels(raw: Sequence[Any], label_names: Sequence[str] | None = None) -> tuple[np.ndarray, tuple]:
    """Map raw labels to indices into ``label_names`` (default: sorted distinct labels, as strings)."""
    missing = [
        i for i, value in enumerate(raw) if value is None or (isinstance(value, float) and value != value)
    ]
    if missing:
        raise DatasetError(
            f"{len(missing)} examples have no label (first rows: {missing[:5]}); label or drop them."
        )
    kinds = {_label_kind(value) for value in raw}
    if len(kinds) > 1:  # [1, "1", 2.0] or [1, True] would silently give separate classes
        raise DatasetError(f"labels mix types {sorted(kinds)}; use one type (all int or all str).")
    as_text = [str(value) for value in raw]
    names = tuple(label_names) if label_names is not None else tuple(sorted(set(as_text), key=_natural_key))
    lookup = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(as_text) - set(lookup))
    if unknown:
        raise DatasetError(f"labels {unknown[:5]} are not among the known label names {list(names)[:10]}.")
    return np.array([lookup[v] for v in as_text], dtype=np.int64), names


def _label_kind(value: Any) -> str:
    """The type of a label, with numpy scalars named as their Python counterparts."""
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, int | np.integer):
        return "int"
    if isinstance(value, float | np.floating):
        return "float"
    return "str" if isinstance(value, str) else type(value).__name__


def _natural_key(text: str) -> tuple:
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


def validate_dataset(ds: Dataset) -> None:
    """Raise :class:`DatasetError` naming the problem and the fix."""
    n = len(ds.ids)
    if ds.task not in TASKS:
        raise DatasetError(f"Unknown task {ds.task!r}. Available: {list(TASKS)}.")
    if n == 0:
        raise DatasetError(f"{ds.name}/{ds.split} is empty; it needs at least one example.")
    _check_unique_ids(ds.ids, ds)
    _check_texts("texts", ds.texts, n, ds)
    if ds.text_pairs is not None:
        _check_texts("text_pairs", ds.text_pairs, n, ds)
    _check_task_columns(ds, n)


def _check_unique_ids(ids: np.ndarray, ds: Dataset) -> None:
    values, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        dupes = values[counts > 1][:5].tolist()
        raise DatasetError(f"{ds.name}/{ds.split} has duplicate ids {dupes}; ids must be unique.")


def _check_texts(column: str, texts: Sequence[Any], n: int, ds: Dataset) -> None:
    if len(texts) != n:
        raise DatasetError(f"{column} has {len(texts)} entries but there are {n} ids.")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise DatasetError(
            f"{ds.name}/{ds.split}: {len(bad)} examples have an empty or non-text {column} "
            f"(first ids: {ds.ids[bad[:5]].tolist()}); fill or drop them."
        )


def _check_task_columns(ds: Dataset, n: int) -> None:
    if ds.task == "generation":
        if ds.targets is None or len(ds.targets) != n:
            raise DatasetError("a generation dataset needs one target text per example.")
        _check_texts("targets", ds.targets, n, ds)
        return
    if ds.labels is None:
        if ds.split == "train":
            raise DatasetError(f"{ds.name}/{ds.split} has no labels; a training split needs them.")
        return
    if ds.labels.shape != (n,):
        raise DatasetError(f"labels has shape {ds.labels.shape} but there are {n} examples.")
    if ds.task == "classification":
        high = ds.n_classes
        if high == 0:
            raise DatasetError("a classification dataset needs label_names.")
    else:
        if ds.choices is None or len(ds.choices) != n:
            raise DatasetError("a multiple-choice dataset needs a list of options per example.")
        high = np.array([len(c) for c in ds.choices])  # each example's own number of options
    bad = np.flatnonzero((ds.labels < 0) | (ds.labels >= high))
    if len(bad):
        raise DatasetError(
            f"{len(bad)} labels are out of range (first ids: {ds.ids[bad[:5]].tolist()}); a label indexes a "
            "class (classification) or that example's own options (multiple choice)."
        )
