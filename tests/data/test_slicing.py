"""Stratified slices and splits: exact sizes, every class kept, deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pytest

from datadiet.data.dataset import Dataset
from datadiet.data.slicing import stratified_slice, stratified_split


def _toy(counts: dict[str, int]) -> Dataset:
    """Classes interleaved in row order, ``counts[c]`` rows of class ``c``."""
    labels = [c for c, k in counts.items() for _ in range(k)]
    order = np.random.default_rng(7).permutation(len(labels))
    records = [{"text": f"text {i}", "label": labels[j]} for i, j in enumerate(order)]
    return Dataset.from_records(records, id=None, name="toy")


def _class_counts(ds: Dataset) -> dict[str, int]:
    counts = np.bincount(ds.labels, minlength=ds.n_classes)
    return {name: int(k) for name, k in zip(ds.label_names, counts, strict=True) if k}


@pytest.mark.parametrize(
    ("counts", "n", "expected"),
    [
        ({"a": 80, "b": 20}, 10, {"a": 8, "b": 2}),
        ({"a": 50, "b": 5, "c": 1}, 4, {"a": 2, "b": 1, "c": 1}),
        ({"a": 50, "b": 5, "c": 1}, 3, {"a": 1, "b": 1, "c": 1}),
        ({"a": 50, "b": 5, "c": 1}, 2, {"a": 1, "b": 1}),
        ({"a": 50, "b": 5, "c": 1}, 56, {"a": 50, "b": 5, "c": 1}),
        ({"a": 5, "b": 5}, 5, {"a": 3, "b": 2}),
    ],
)
def test_stratified_slice_class_counts_are_exact(counts, n, expected):
    small = stratified_slice(_toy(counts), n, seed=0)
    assert len(small) == n
    assert _class_counts(small) == expected


def test_stratified_slice_keeps_every_class_when_n_allows():
    ds = _toy({"big": 300, "mid": 30, "tiny": 2, "single": 1})
    for n in range(4, 40):
        small = stratified_slice(ds, n, seed=n)
        assert len(small) == n
        assert set(_class_counts(small)) == {"big", "mid", "tiny", "single"}


def test_stratified_slice_is_deterministic_and_seed_dependent():
    ds = _toy({"a": 60, "b": 40})
    first = stratified_slice(ds, 20, seed=3)
    again = stratified_slice(ds, 20, seed=3)
    other = stratified_slice(ds, 20, seed=4)
    assert first.ids.tolist() == again.ids.tolist()
    assert first.fingerprint() == again.fingerprint()
    assert first.ids.tolist() != other.ids.tolist()


def test_stratified_slice_keeps_source_order_and_content():
    ds = _toy({"a": 30, "b": 30})
    small = stratified_slice(ds, 12, seed=1)
    position = {i: k for k, i in enumerate(ds.ids.tolist())}
    rows = [position[i] for i in small.ids.tolist()]
    assert rows == sorted(rows)
    assert small.texts == [ds.texts[r] for r in rows]
    assert small.labels.tolist() == ds.labels[rows].tolist()
    assert small.meta["subset"] == "stratified_slice(n=12, seed=1)"


def test_stratified_slice_unlabeled_dataset_is_one_class():
    ds = Dataset(np.arange(9), [f"p{i}" for i in range(9)], task="generation", targets=["t"] * 9)
    assert len(stratified_slice(ds, 4, seed=0)) == 4


@pytest.mark.parametrize(
    ("n", "error"), [(0, ValueError), (101, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_stratified_slice_rejects_bad_n(n, error):
    with pytest.raises(error, match="'n' parameter"):
        stratified_slice(_toy({"a": 60, "b": 40}), n, seed=0)


def test_stratified_split_partitions_with_exact_sizes():
    ds = _toy({"a": 70, "b": 25, "c": 5})
    rest, held = stratified_split(ds, 0.2, seed=0)
    assert (len(rest), len(held)) == (80, 20)
    assert _class_counts(held) == {"a": 14, "b": 5, "c": 1}
    assert sorted(rest.ids.tolist() + held.ids.tolist()) == sorted(ds.ids.tolist())
    assert held.split == "validation"
    assert rest.split == "train"


def test_stratified_split_accepts_an_exact_count_and_is_deterministic():
    ds = _toy({"a": 70, "b": 30})
    _, held = stratified_split(ds, 13, seed=5)
    _, again = stratified_split(ds, 13, seed=5)
    assert len(held) == 13
    assert held.ids.tolist() == again.ids.tolist()


def test_stratified_split_never_holds_out_a_single_example_class():
    ds = _toy({"a": 20, "b": 1})
    rest, held = stratified_split(ds, 0.5, seed=0)
    assert "b" in _class_counts(rest)
    assert "b" not in _class_counts(held)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, "0.1", 0, 100])
def test_stratified_split_rejects_bad_fraction(fraction):
    with pytest.raises((ValueError, TypeError), match="fraction"):
        stratified_split(_toy({"a": 60, "b": 40}), fraction, seed=0)


def test_stratified_split_rejects_a_fraction_that_floors_to_zero():
    with pytest.raises(ValueError, match=r"fraction=0.001 of n_examples=100 holds out 0"):
        stratified_split(_toy({"a": 60, "b": 40}), 0.001, seed=0)
