"""The synthetic 2-D study of Du et al. (ACL 2025): data, reference run, selections, findings and figures."""

from datadiet.experiments.synthetic.study import SyntheticResult, run_synthetic_study

__all__ = ["SyntheticResult", "run_synthetic_study"]
