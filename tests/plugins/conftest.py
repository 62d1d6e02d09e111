"""The example plugin is an installed package, imported by its entry point, never collected as tests."""

collect_ignore = ["datadiet-example-plugin"]
