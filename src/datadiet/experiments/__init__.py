"""Self-contained experiments built on the library (the synthetic 2-D study of Du et al., ACL 2025)."""
