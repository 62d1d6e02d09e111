"""The datadiet cache folder (converted models, extracted BIG-bench members), resolved in one place."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "datadiet"
ENV = "DATADIET_CACHE"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir`` if given, else ``$DATADIET_CACHE``, else ``$XDG_CACHE_HOME/datadiet``, else the
    platform's user cache folder for datadiet (``~/.cache/datadiet`` on Linux, from ``platformdirs``).

    Empty variables count as unset; ``~`` is expanded.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / APP
    return Path(platformdirs.user_cache_dir(APP, appauthor=False))
