"""Analysis of selections: overlap and rank correlation, label distributions, discriminative power and
the synthetic 2-D study of Du et al. (ACL 2025)."""

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
from datadiet.analysis.synthetic import SyntheticResult, run_synthetic_study

__all__ = [
    "SyntheticResult",
    "gradient_sensitivity",
    "gradient_sensitivity_bound",
    "label_distribution",
    "loss_sensitivity",
    "overlap_matrix",
    "random_overlap_expectation",
    "rank_correlation",
    "run_synthetic_study",
]
