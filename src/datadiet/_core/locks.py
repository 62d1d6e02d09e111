"""Exclusive inter-process locks on a lock file, with the `filelock <https://py-filelock.readthedocs.io>`_
package.

On Unix the lock is an ``flock``, which the OS drops when its holder dies, so a lock never goes stale. The
lock file is created if needed and left in place (unlinking it would race with the waiters). Every
:class:`FileLock` object holds its own lock: a second object on the same file waits even in the same
process, as a second process would.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import filelock

from datadiet.errors import StoreError

_WAIT_FOREVER = -1  # filelock's spelling of "no timeout"
# filelock 4 falls back to a lock file it deletes on release where flock fails; a killed holder would leave
# it stale, so datadiet keeps flock only (filelock 3 has no fallback and no such option)
_OPTIONS: dict[str, Any] = {"fallback_to_soft": False}
if "fallback_to_soft" not in inspect.signature(filelock.FileLock.__init__).parameters:
    _OPTIONS = {}


class FileLock:
    """An exclusive lock on ``path``, held from :meth:`acquire` (or ``with``) until :meth:`release`.

    Parameters
    ----------
    path : Path
        The lock file (created, with its folder, if needed).
    timeout : float or None
        Seconds to wait for another holder; ``None`` waits forever.
    what : str
        What the lock protects, for the timeout message.

    Examples
    --------
    >>> import tempfile
    >>> lock = FileLock(Path(tempfile.mkdtemp()) / "a.lock", timeout=1.0, what="an example")
    >>> with lock:
    ...     lock.held
    True
    >>> lock.held
    False
    """

    def __init__(self, path: Path, *, timeout: float | None, what: str) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.what = what
        wait = _WAIT_FOREVER if timeout is None else max(0.0, float(timeout))
        self._lock = filelock.FileLock(self.path, timeout=wait, thread_local=False, **_OPTIONS)

    def acquire(self) -> FileLock:
        """Wait for the lock; raise :class:`~datadiet.errors.StoreError` after ``timeout`` seconds."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise StoreError(
                f"Timed out after {self.timeout:g} s waiting for the lock '{self.path}' on "
                f"{self.what}: another process is writing it. Wait for that process to finish "
                "(the entry is then reused), or pass a larger lock_timeout to RepresentationStore. "
                "The lock is released when its holder exits, so a stale lock cannot be the cause."
            ) from None
        return self

    def release(self) -> None:
        """Release the lock (a no-op when it is not held)."""
        if self._lock.is_locked:
            self._lock.release(force=True)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._lock.is_locked

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
