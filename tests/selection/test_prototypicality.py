from __future__ import annotations

import numpy as np
import pytest

from datadiet.selection.prototypicality import Prototypicality, prototype_distances
from datadiet.selection.registry import SELECTORS

CENTERS = np.array([[10.0, 0.0], [0.0, 10.0]])
# Four outliers, each clearly nearer one blob (5 from its centre, 29.7 degrees off its axis) and placed in
# mirror pairs, so the fitted centroids stay exactly at the blob centres.
OUTLIERS = np.array([[7.0, 4.0], [7.0, -4.0], [4.0, 7.0], [-4.0, 7.0]])


def _blobs_with_outliers() -> tuple[np.ndarray, list[int], list[int]]:
    """Two blobs (an exact centre plus a ring of radius 1) followed by four outliers.

    Returns the data, the indices of the two exact centres and the indices of the outliers.
    """
    # Half-step offset: no ring point lies on a centre's ray, so under cosine the centre is the nearest.
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False) + np.pi / 40
    ring = np.column_stack([np.cos(angles), np.sin(angles)])
    blobs = [np.vstack([center, center + ring]) for center in CENTERS]  # 41 rows each
    x = np.vstack([*blobs, OUTLIERS])
    return x, [0, 41], [82, 83, 84, 85]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_keep_hard_picks_the_outliers(metric):
    x, _, outliers = _blobs_with_outliers()
    selection = Prototypicality(n_clusters=2, metric=metric).select(x, 4, seed=0)
    assert selection.indices.tolist() == outliers


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_keep_easy_picks_the_points_nearest_the_centres(metric):
    x, centres, _ = _blobs_with_outliers()
    selection = Prototypicality(n_clusters=2, metric=metric, keep="easy").select(x, 2, seed=0)
    assert selection.indices.tolist() == centres


def test_easy_scores_are_the_negated_hard_scores():
    x, _, _ = _blobs_with_outliers()
    hard = Prototypicality(n_clusters=2).score(x, seed=4)
    easy = Prototypicality(n_clusters=2, keep="easy").score(x, seed=4)
    assert np.array_equal(easy, -hard)


def test_cosine_ignores_the_norm_but_euclidean_does_not():
    # One cluster along the x axis; row 3 is ten times longer but points exactly along the centroid.
    x = np.array([[1.0, 0.2], [1.0, -0.2], [1.0, 0.0], [10.0, 0.0]])
    cosine = prototype_distances(x, n_clusters=1, metric="cosine", rng=0)
    euclidean = prototype_distances(x, n_clusters=1, metric="euclidean", rng=0)
    # cosine: the unit rows average to (0.9871, 0) -> the centroid is (1, 0), and d_3 = 1 - cos 0 = 0
    assert cosine[3] == pytest.approx(0.0, abs=1e-12)
    assert cosine[0] == pytest.approx(1 - 1 / np.hypot(1.0, 0.2), abs=1e-12)
    # euclidean: the centroid is the mean (3.25, 0), so d_3 = 6.75 is the largest
    np.testing.assert_allclose(euclidean, [np.hypot(2.25, 0.2), np.hypot(2.25, 0.2), 2.25, 6.75])
    assert Prototypicality(n_clusters=1, metric="cosine").select(x, 1).indices.tolist() == [0]
    assert Prototypicality(n_clusters=1, metric="euclidean").select(x, 1).indices.tolist() == [3]


def test_ties_go_to_the_lower_index():
    x = np.array([[1.0, 0.1], [1.0, -0.1], [1.0, 0.1], [1.0, -0.1]])  # all at the same distance
    assert Prototypicality(n_clusters=1).select(x, 2).indices.tolist() == [0, 1]


@pytest.mark.parametrize("budget", [1, 2, 17, 50, 85, 86])
def test_prototypicality_keeps_exactly_k(budget):
    x, _, _ = _blobs_with_outliers()
    assert len(Prototypicality().select(x, budget, seed=1).indices) == budget


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"metric": "l1"},
            r"The 'metric' parameter of Prototypicality must be one of \['cosine', 'euclidean'\]",
        ),
        ({"keep": "middle"}, r"'keep' parameter of Prototypicality must be one of \['hard', 'easy'\]"),
        ({"n_clusters": 0}, r"'n_clusters' parameter of Prototypicality must be None or an int"),
    ],
)
def test_prototypicality_rejects_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        Prototypicality(**params).select(np.eye(4), 2)


def test_prototypicality_reads_2d_features_only():
    with pytest.raises(ValueError, match=r"reads an \(n_examples, d\) feature array"):
        Prototypicality().select(np.zeros((5, 2, 3)), 2)


def test_prototypicality_is_registered_with_its_parameters():
    assert SELECTORS.get("prototypicality") is Prototypicality
    assert SELECTORS.parameters("prototypicality") == {"n_clusters": None, "metric": "cosine", "keep": "hard"}
