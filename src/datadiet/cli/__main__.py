"""``python -m datadiet.cli``: the ``datadiet`` command."""

from datadiet.cli import main

main()
