"""datadiet."""
