"""Progress bars: one rich live display on stderr, drawn only on a terminal.

Every loop that reports progress uses :func:`track` (wraps an iterable) or :class:`ProgressBar` (counted
by hand). All bars share one live display, so nested loops (study cells, then a training epoch inside a
cell) show as stacked lines. A bar is drawn only when the caller asks for it (``enabled``) and stderr is a
terminal; in logs, pipes and tests nothing is written. stdout is never written or redirected, so a
command's output stays parseable. A ``transient`` bar disappears when done; any other leaves its final
line above the live bars. :func:`stop_live` ends the display at once, so an error message printed next
starts on its own line.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["ProgressBar", "stop_live", "track"]

T = TypeVar("T")

_lock = threading.RLock()
_live: Progress | None = None


def _display() -> Progress | None:
    """The live display, started on first use; None when stderr is not a terminal (hold ``_lock``)."""
    global _live
    if _live is None:
        console = Console(stderr=True)  # made now: it reads the terminal state once, when made
        if not console.is_terminal:
            return None
        _live = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=console,
            transient=True,  # finished bars that stay are printed above it, see ProgressBar.close
            redirect_stdout=False,
        )
        _live.start()
    return _live


def stop_live() -> None:
    """Stop the live display now and clear its lines; bars still open afterwards draw nothing more."""
    global _live
    with _lock:
        live, _live = _live, None
        if live is not None:
            live.stop()


atexit.register(stop_live)  # an uncaught error leaves no bar drawn and no hidden cursor


class ProgressBar:
    """One bar on the live display, advanced by hand; a no-op unless ``enabled`` and stderr is a terminal.

    Parameters
    ----------
    description : str
        The text left of the bar.
    total : int, optional
        The number of steps; unknown when None.
    completed : int
        Steps already done (a resumed run).
    enabled : bool
        Draw the bar (``progress=`` of the caller).
    transient : bool
        Remove the bar when closed; otherwise its final line stays.
    """

    def __init__(
        self,
        description: str,
        *,
        total: int | None = None,
        completed: int = 0,
        enabled: bool = True,
        transient: bool = False,
    ) -> None:
        self.transient = transient
        self._live: Progress | None = None
        self._task = TaskID(-1)
        if enabled:
            with _lock:
                self._live = _display()
                if self._live is not None:
                    self._task = self._live.add_task(description, total=total, completed=completed, note="")

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more steps done."""
        if self._live is not None:
            self._live.advance(self._task, steps)

    def note(self, text: str) -> None:
        """Show ``text`` right of the bar (the current item, say)."""
        if self._live is not None:
            self._live.update(self._task, note=text)

    def close(self) -> None:
        """End the bar; the display stops when its last bar is closed. Closing twice is harmless."""
        with _lock:
            live, self._live = self._live, None
            if live is None or live is not _live:  # never drawn, closed, or the display was stopped
                return
            if not self.transient:
                task = next(task for task in live.tasks if task.id == self._task)
                live.console.print(live.make_tasks_table([task]))
            live.remove_task(self._task)
            if not live.tasks:
                stop_live()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def track(
    iterable: Iterable[T],
    description: str,
    *,
    total: int | None = None,
    enabled: bool = True,
    transient: bool = False,
) -> Iterator[T]:
    """The items of ``iterable``, advancing a :class:`ProgressBar` after each one.

    ``total`` defaults to ``len(iterable)`` where it has one. With ``enabled=False`` this is
    ``iter(iterable)``.

    >>> list(track(range(3), "items", enabled=False))
    [0, 1, 2]
    """
    if not enabled:
        return iter(iterable)
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return _tracked(iterable, description, total, transient)


def _tracked(iterable: Iterable[T], description: str, total: int | None, transient: bool) -> Iterator[T]:
    with ProgressBar(description, total=total, transient=transient) as bar:  # drawn from the first item on
        for item in iterable:
            yield item
            bar.advance()
