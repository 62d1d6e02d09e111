"""Numbers behind the synthetic study's findings: where selections lie relative to the reference boundary,
how they retrain, and how much each method changes when only the representation changes."""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from datadiet.analysis.overlap import overlap_matrix
from datadiet.errors import ParameterError
from datadiet.selection.base import Selection

if TYPE_CHECKING:
    from datadiet.experiments.synthetic.study import ReferenceRun, SyntheticData


def boundary_distance(x: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    """Euclidean distance ``|wᵀx + b| / ||w||`` of each point to the decision boundary.

    >>> boundary_distance(np.array([[3.0, 4.0]]), np.array([0.0, 2.0]), -2.0).tolist()
    [3.0]
    """
    norm = float(np.linalg.norm(w))
    if norm == 0:
        raise ParameterError("w is zero: the model has no decision boundary.")
    return np.abs(x @ w + b) / norm


# --- representations ---------------------------------------------------------------------------
def summarize_selections(
    selections: dict[str, Selection], data: SyntheticData, run: ReferenceRun
) -> pd.DataFrame:
    """Per selection: where its points lie relative to the boundary, class balance, retrained accuracy.

    Boundary distances are to the final reference model's boundary. ``frac_nearest_quintile`` is the
    share of the selection among the 20% of training points closest to the boundary (0.2 for a
    uniform sample). ``test_accuracy`` is that of sklearn's ``LogisticRegression()`` refitted on the
    subset; ``test_accuracy_all`` refits on all training points.
    """
    dist = boundary_distance(data.x_train, run.w, run.b)
    nearest = dist <= np.quantile(dist, 0.2)
    accuracy_all = _retrained_accuracy(data, np.arange(len(data.y_train)))
    rows = []
    for name, sel in selections.items():
        idx = sel.indices
        rows.append(
            {
                "name": name,
                "method": sel.meta["method"],
                "representation": sel.meta["representation"],
                "n_selected": len(idx),
                "mean_boundary_distance": float(dist[idx].mean()),
                "mean_boundary_distance_all": float(dist.mean()),
                "median_boundary_distance": float(np.median(dist[idx])),
                "median_boundary_distance_all": float(np.median(dist)),
                "frac_nearest_quintile": float(nearest[idx].mean()),
                "frac_misclassified_by_reference": float(1 - run.train_correct[idx, -1].mean()),
                "frac_class_1": float(data.y_train[idx].mean()),
                "test_accuracy": _retrained_accuracy(data, idx),
                "test_accuracy_all": accuracy_all,
            }
        )
    return pd.DataFrame(rows).set_index("name")


def _retrained_accuracy(data: SyntheticData, idx: np.ndarray) -> float:
    """Test accuracy of sklearn's ``LogisticRegression()`` fitted on the subset (one class: predict it)."""
    from sklearn.linear_model import LogisticRegression

    y = data.y_train[idx]
    if len(np.unique(y)) < 2:
        return float(np.mean(data.y_test == y[0]))
    model = LogisticRegression().fit(data.x_train[idx], y)
    return float(model.score(data.x_test, data.y_test))


def representation_sensitivity(
    selections: dict[str, Selection], x: np.ndarray, distances: np.ndarray
) -> pd.DataFrame:
    """How much each method's selection changes when only the representation changes.

    For every method run on several representations, over the pairs of its selections:

    - ``boundary_distance_spread``: max - min of the selections' mean boundary distance;
    - ``mean_pairwise_energy_distance``: mean energy distance (:func:`energy_distance`) between the
      selected point clouds in input space, i.e. how differently the selections are *distributed*;
    - ``mean_pairwise_overlap``: mean overlap ratio, i.e. how many *exact points* they share (random
      subsets give ``k / n``; a method that samples at random within regions, like S2L, can look
      unstable here while picking from the same regions).

    Parameters
    ----------
    selections : dict of str to Selection
        With ``meta["method"]`` set, as :func:`run_selections` returns them.
    x : ndarray of shape (n, d)
        The points in input space.
    distances : ndarray of shape (n,)
        Each point's distance to the reference decision boundary.
    """
    by_method: dict[str, list[np.ndarray]] = {}
    for sel in selections.values():
        by_method.setdefault(sel.meta["method"], []).append(sel.indices)
    rows = []
    for method, chosen in by_method.items():
        if len(chosen) < 2:
            continue
        pairs = list(combinations(range(len(chosen)), 2))
        means = [float(distances[idx].mean()) for idx in chosen]
        overlaps = overlap_matrix(chosen)
        rows.append(
            {
                "method": method,
                "n_representations": len(chosen),
                "boundary_distance_spread": max(means) - min(means),
                "mean_pairwise_energy_distance": float(
                    np.mean([energy_distance(x[chosen[i]], x[chosen[j]]) for i, j in pairs])
                ),
                "mean_pairwise_overlap": float(np.mean([overlaps[i, j] for i, j in pairs])),
            }
        )
    return pd.DataFrame(rows).set_index("method")


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Energy distance ``2 E||A - B|| - E||A - A'|| - E||B - B'||`` between two point clouds.

    The V-statistic (self-pairs included, so ``energy_distance(a, a) == 0``); it is 0 only for
    identical empirical distributions.

    >>> energy_distance(np.array([[0.0], [2.0]]), np.array([[0.0], [2.0]]))
    0.0
    """
    from scipy.spatial.distance import cdist

    return float(2 * cdist(a, b).mean() - cdist(a, a).mean() - cdist(b, b).mean())
