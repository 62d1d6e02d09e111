"""The reproduction of Du et al. (ACL 2025) behind docs/paper.md: runs, findings and verdicts."""
