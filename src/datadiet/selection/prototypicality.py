"""Self-supervised prototypicality (Sorscher et al. 2022, "Beyond neural scaling laws").

Definition
----------
Cluster the feature rows with :func:`~datadiet.selection.kmeans.kmeans` and take, for every example,
``d_i`` = distance to its *assigned* centroid. "Nearest" is the k-means assignment under the chosen metric:

- ``metric="cosine"`` (default, as in the paper): spherical k-means; the assigned centroid is the one of
  largest cosine and ``d_i = 1 - cos(x_i, c)``. Cosine ignores the norm of a row: a long row pointing along
  its centroid is prototypical (``d = 0``).
- ``metric="euclidean"``: plain k-means; ``d_i = ||x_i - c||``. The same long row is atypical (far away).

``keep="hard"`` keeps the largest ``d`` (score ``d``); ``keep="easy"`` keeps the smallest (score ``-d``).
Ties go to the lower example index.

Scale: both metrics are invariant to a positive rescaling of the features (cosine per row, euclidean
for the whole array). The clustering runs on exactly rescaled rows (:mod:`~datadiet.selection.kmeans`),
so ``x`` and ``x * 2**e`` give the same clusters bit for bit; ``d`` is reported in float64 in the input's
units, so no float32 distance overflows. Rows whose values are all subnormal are refused.

Reference and differences
-------------------------
Follows the paper ("cosine distance to nearest centroid") and the released ImageNet scores, which implement
keep-hard as the largest cosine distance. Re-implementations differ: RS2 keeps ``round(f |C_j|)`` per cluster
(here the ranking is global) and uses ``k = n_classes``; Du et al. use the squared Euclidean faiss distance
on unnormalised features (``metric="euclidean"`` gives the same ranking, as the square root is monotone).
The default ``n_clusters`` here is ``round(sqrt(n))``; pass the number of classes to match RS2.
"""

from __future__ import annotations

from typing import Literal, cast, get_args

import numpy as np

from datadiet._core.checks import check_choice, check_number
from datadiet.errors import ParameterError
from datadiet.selection.base import ScoreSelector
from datadiet.selection.kmeans import kmeans
from datadiet.selection.registry import SELECTORS

Metric = Literal["cosine", "euclidean"]
Keep = Literal["hard", "easy"]
METRICS: tuple[str, ...] = get_args(Metric)
KEEPS: tuple[str, ...] = get_args(Keep)


def prototype_distances(
    x: np.ndarray,
    *,
    n_clusters: int | None = None,
    metric: str = "cosine",
    rng: int | np.random.Generator,
    name: str = "x",
) -> np.ndarray:
    """Distance of every row to its assigned k-means centroid, in float64 and the input's units.

    Parameters
    ----------
    x : ndarray of shape (n_examples, d)
        Features.
    n_clusters : int or None, default=None
        Number of clusters; None means ``round(sqrt(n_examples))``.
    metric : {"cosine", "euclidean"}, default="cosine"
        ``1 - cos`` under spherical k-means, or ``||x - c||`` under plain k-means.
    rng : int or numpy.random.Generator
        Seeds the clustering.
    name : str, default="x"
        What to call ``x`` in error messages.

    Returns
    -------
    ndarray of shape (n_examples,)
        ``d_i``; larger means less prototypical (harder).

    Raises
    ------
    ValueError
        For rows whose values are all subnormal, or (euclidean, float64 input within a factor
        ``2 sqrt(d)`` of 1.8e308) distances beyond the float64 range.
    """
    result = kmeans(x, n_clusters, metric=metric, rng=rng, name=name)
    with np.errstate(over="ignore"):
        scaled = cast(np.ndarray, result.scaled_distances)  # never None: KMeansResult.__post_init__ sets it
        distances = scaled.astype(np.float64) / result.scale
    if not np.isfinite(distances).all():
        raise ParameterError(
            f"{name} has distances to its centroids beyond the float64 range (its largest values are "
            "near 1.8e308). Rescale the representation where it is made (the selection does not depend "
            "on its scale)."
        )
    return distances


@SELECTORS.register("prototypicality")
class Prototypicality(ScoreSelector):
    """Rank examples by their distance to the nearest k-means centroid.

    Parameters
    ----------
    n_clusters : int or None, default=None
        Number of clusters; None means ``round(sqrt(n_examples))``.
    metric : {"cosine", "euclidean"}, default="cosine"
        Distance used to fit, assign and score (see the module docstring).
    keep : {"hard", "easy"}, default="hard"
        Keep the least prototypical (largest distance) or the most prototypical examples.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, -0.1], [0.0, 1.0], [0.1, 1.0], [-0.1, 1.0], [1.0, 1.0]])
    >>> Prototypicality(n_clusters=2).select(x, 1).indices.tolist()
    [6]
    >>> Prototypicality(n_clusters=2, keep="easy").select(x[:6], 2).indices.tolist()
    [0, 3]
    """

    reads = "an (n_examples, d) feature array"
    input_ndim = (2,)

    def __init__(
        self, *, n_clusters: int | None = None, metric: Metric = "cosine", keep: Keep = "hard"
    ) -> None:
        self.n_clusters = n_clusters
        self.metric = metric
        self.keep = keep

    def validate_params(self, n: int) -> None:
        check_number(type(self).__name__, "n_clusters", self.n_clusters, integer=True, low=1, optional=True)
        check_choice(type(self).__name__, "metric", self.metric, METRICS)
        check_choice(type(self).__name__, "keep", self.keep, KEEPS)

    def _scores(self, values, *, labels, val, rng):
        distances = prototype_distances(
            values, n_clusters=self.n_clusters, metric=self.metric, rng=rng, name="rep.values"
        )
        return distances if self.keep == "hard" else -distances
