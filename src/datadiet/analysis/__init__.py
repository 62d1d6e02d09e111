"""Analysis of selections: overlap and rank correlation, label distributions, discriminative power: pure
functions (the synthetic 2-D study of Du et al. lives in :mod:`datadiet.experiments.synthetic`)."""

from datadiet.analysis.discriminative import (
    gradient_sensitivity,
    gradient_sensitivity_bound,
    loss_sensitivity,
)
from datadiet.analysis.overlap import (
    label_distribution,
    overlap_matrix,
    random_overlap_expectation,
    rank_correlation,
)

__all__ = [
    "gradient_sensitivity",
    "gradient_sensitivity_bound",
    "label_distribution",
    "loss_sensitivity",
    "overlap_matrix",
    "random_overlap_expectation",
    "rank_correlation",
]
