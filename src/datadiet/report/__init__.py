"""Matplotlib figures and reports (figure modules import matplotlib; import them explicitly)."""
