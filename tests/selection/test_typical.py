"""The ``typical`` selector: k-means into ``k`` clusters, the member nearest each centroid.

Every geometry here has one right answer by a wide margin (tight, far-apart groups; the expected member
computed from the group's mean), so nothing depends on the k-means engine's or BLAS's exact floats.
"""

from __future__ import annotations

import numpy as np
import pytest

import datadiet
from datadiet.errors import ParameterError
from datadiet.selection.balancing import sqrt_budgets, stratified_budgets

# Offsets inside a group: none is the group mean, and one point is much nearer the mean than the others.
OFFSETS = [
    np.array([[0.0, 0.0], [0.4, 0.0], [0.0, 0.4], [0.12, 0.13]]),
    np.array([[0.3, 0.3], [-0.3, 0.2], [0.05, 0.21], [0.1, -0.2], [-0.1, 0.5]]),
    np.array([[0.0, 0.0], [0.5, 0.5], [0.3, 0.2]]),
]
CENTERS = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])


def blobs(centers: np.ndarray = CENTERS, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three tight groups around ``centers``, rows shuffled; the points and each row's group."""
    points = np.concatenate([c + o for c, o in zip(centers, OFFSETS, strict=True)])
    groups = np.repeat(np.arange(len(OFFSETS)), [len(o) for o in OFFSETS])
    order = np.random.default_rng(seed).permutation(len(points))
    return points[order], groups[order]


def nearest_to_mean(x: np.ndarray, groups: np.ndarray, *, unit: bool = False) -> list[int]:
    """Per group, the row nearest the group's mean (of the unit rows, by cosine, if ``unit``), asserting
    that the second nearest is far behind (so the answer is unambiguous)."""
    kept = []
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        pts = x[rows] / np.linalg.norm(x[rows], axis=1, keepdims=True) if unit else x[rows]
        mean = pts.mean(axis=0)
        dist = -(pts @ mean) / np.linalg.norm(mean) if unit else np.linalg.norm(pts - mean, axis=1)
        first, second = np.sort(dist)[:2]
        assert second - first > 1e-3
        kept.append(int(rows[np.argmin(dist)]))
    return sorted(kept)


def test_typical_is_registered():
    assert "typical" in datadiet.SELECTORS.names()


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 2, 7, 29, 30])
def test_typical_keeps_exactly_the_budget_of_distinct_rows(metric, k, rng):
    x = rng.normal(size=(30, 4))
    x[10:15] = x[0]  # some exact duplicates too
    sel = datadiet.select("typical", x, k, seed=1, metric=metric)
    assert len(sel.indices) == k == len(np.unique(sel.indices))
    assert np.all((sel.indices >= 0) & (sel.indices < 30))


@pytest.mark.parametrize("seed", range(4))
def test_typical_keeps_the_point_nearest_each_groups_mean_on_separated_blobs(seed):
    x, groups = blobs(seed=seed)
    sel = datadiet.select("typical", x, 3, seed=seed, metric="euclidean")
    assert sorted(groups[sel.indices].tolist()) == [0, 1, 2]  # one point per group
    assert sorted(sel.indices.tolist()) == nearest_to_mean(x, groups)


@pytest.mark.parametrize("seed", range(4))
def test_typical_cosine_keeps_the_row_nearest_each_directions_mean(seed):
    # Groups along three directions, at very different norms (cosine ignores them): 3-d rows.
    centers = np.array([[5.0, 0.0, 0.0], [0.0, 40.0, 0.0], [0.0, 0.0, 2.0]])
    points = []
    for c, o in zip(centers, OFFSETS, strict=True):
        norm = np.linalg.norm(c)
        lift = np.zeros((len(o), 3))
        lift[:, [i for i in range(3) if c[i] == 0]] = o * norm / 4  # spread perpendicular to c
        points.append(c + lift)
    x = np.concatenate(points)
    groups = np.repeat(np.arange(3), [len(o) for o in OFFSETS])
    order = np.random.default_rng(seed).permutation(len(x))
    x, groups = x[order], groups[order]
    sel = datadiet.select("typical", x, 3, seed=seed)  # metric="cosine" is the default
    assert sorted(groups[sel.indices].tolist()) == [0, 1, 2]
    assert sorted(sel.indices.tolist()) == nearest_to_mean(x, groups, unit=True)


def test_typical_breaks_a_tie_for_nearest_by_the_lower_index():
    # Group around (8, 0): four points at distance exactly 1 from its mean; a far group of one point.
    x = np.array([[40.0, 40.0], [8.0, 1.0], [9.0, 0.0], [7.0, 0.0], [8.0, -1.0]])
    sel = datadiet.select("typical", x, 2, seed=0, metric="euclidean")
    assert sorted(sel.indices.tolist()) == [0, 1]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_typical_same_seed_gives_identical_indices(metric, rng):
    x = rng.normal(size=(120, 8))
    a = datadiet.select("typical", x, 17, seed=5, metric=metric)
    b = datadiet.select("typical", x, 17, seed=5, metric=metric)
    assert np.array_equal(a.indices, b.indices)
    c = datadiet.select("typical", x, 17, seed=np.random.default_rng(5), metric=metric)
    assert np.array_equal(a.indices, c.indices)  # an int seed and its generator agree


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_typical_on_identical_rows_still_keeps_k_distinct_rows(metric):
    x = np.tile([[1.0, 2.0, 3.0]], (12, 1))
    sel = datadiet.select("typical", x, 5, seed=0, metric=metric)
    assert len(sel.indices) == 5 == len(np.unique(sel.indices))
    assert 0 in sel.indices  # the one cluster's member nearest its centroid: all tie, the lowest index


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_typical_with_fewer_distinct_rows_than_k_keeps_one_of_each_then_fills_at_random(metric):
    x = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4)[[0, 4, 1, 5, 2, 6, 3, 7]]  # alternating rows
    sel = datadiet.select("typical", x, 5, seed=3, metric=metric)
    assert len(sel.indices) == 5 == len(np.unique(sel.indices))
    assert {0, 1} <= set(sel.indices.tolist())  # each distinct point's first row (ties: lower index)


def test_typical_with_k_equal_to_n_keeps_every_row(rng):
    x = rng.normal(size=(9, 3))
    assert sorted(datadiet.select("typical", x, 9, seed=0).indices.tolist()) == list(range(9))
    assert sorted(datadiet.select("typical", x, 1.0, seed=0, metric="euclidean").indices.tolist()) == list(
        range(9)
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"metric": "manhattan"},
            r"^The 'metric' parameter of typical must be one of \['cosine', 'euclidean'\]\. "
            r"Got 'manhattan' instead\.$",
        ),
        ({"metric": "Cosine"}, r"^The 'metric' parameter of typical must be one of"),
        ({"max_iter": 0}, r"^The 'max_iter' parameter of typical must be an int in the range \[1, 10000\]"),
        ({"max_iter": 10_001}, r"^The 'max_iter' parameter of typical .* Got 10001 instead\.$"),
    ],
)
def test_typical_parameter_errors_name_the_parameter(params, message, rng):
    with pytest.raises(ParameterError, match=message):
        datadiet.select("typical", rng.normal(size=(10, 2)), 3, **params)


def test_typical_unknown_parameter_lists_the_valid_ones(rng):
    with pytest.raises(ValueError, match=r"Unknown parameter\(s\) \['metrc'\].*\['max_iter', 'metric'\]"):
        datadiet.select("typical", rng.normal(size=(10, 2)), 3, metrc="cosine")


@pytest.mark.parametrize(("balance", "rule"), [("stratified", stratified_budgets), ("sqrt", sqrt_budgets)])
@pytest.mark.parametrize("k", [3, 12, 40])
def test_typical_with_balance_keeps_each_class_its_budget(balance, rule, k, rng):
    labels = np.repeat([1, 0, 2], [60, 24, 6])
    rng.shuffle(labels)
    x = rng.normal(size=(len(labels), 5))
    sel = datadiet.select("typical", x, k, labels=labels, balance=balance, seed=2)
    assert len(sel.indices) == k == len(np.unique(sel.indices))
    classes, k_c = rule(labels, k)
    assert np.bincount(labels[sel.indices], minlength=3)[classes].tolist() == k_c.tolist()
    assert sel.meta["balance"] == balance


def test_typical_with_balance_clusters_inside_each_class():
    """Six separated groups, three in each class; a budget of 3 per class keeps each group's typical row."""
    x, groups = blobs(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]))
    y, more = blobs(np.array([[10.0, 10.0], [20.0, 0.0], [0.0, 20.0]]), seed=1)
    x, groups = np.concatenate([x, y]), np.concatenate([groups, more + 3])
    labels = np.where(np.isin(groups, [0, 1, 3]), 0, 1)  # class 0: groups 0, 1, 3; class 1: 2, 4, 5
    sel = datadiet.select("typical", x, 6, labels=labels, balance="stratified", seed=0, metric="euclidean")
    assert stratified_budgets(labels, 6)[1].tolist() == [3, 3]
    assert sorted(sel.indices.tolist()) == nearest_to_mean(x, groups)
