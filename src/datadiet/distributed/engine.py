"""Where chunked work runs: in this process (the default) or as tasks on a Ray cluster.

The heavy stages are maps over independent pieces (row chunks of a feature matrix, clusters, chunks of
examples whose gradients are extracted). They call :func:`current_engine` and hand it a function and the
pieces; the engine returns the results **in the order of the pieces**, so a stage combines them exactly as
the single-process run does and the result is the same for the same seed, whichever engine ran it.

- :class:`LocalEngine` runs the pieces one after the other in this process.
- :class:`RayEngine` runs each piece as a Ray task (``ray.remote``); large inputs travel once through the
  object store (:meth:`RayEngine.share`), and a memory-mapped ``.npy`` travels as its path, so workers map
  the same file instead of receiving a copy (on a real cluster the file must sit on storage every node
  mounts at the same path).

Pick one for a block of code with :func:`use_engine`, or by name with :func:`make_engine`::

    with use_engine(make_engine("ray", address="auto")):
        datadiet.select("semdedup", features, 0.3, seed=0)

``address=None`` starts a local Ray cluster on this machine (``num_cpus`` workers); ``"auto"`` joins the
cluster this machine is part of (``ray start --head`` on one node, ``ray start --address=<head>:6379`` on
the others); ``"ray://<head>:10001"`` connects through Ray Client from outside.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from datadiet.errors import MissingDependencyError, ParameterError

T = TypeVar("T")
R = TypeVar("R")
ENGINES = ("local", "ray")


class Engine(Protocol):
    """Runs ``fn(piece, shared)`` for every piece and returns the results in piece order."""

    name: str

    def map(self, fn: Callable[[Any, Any], R], pieces: Sequence[Any], shared: Any = None) -> list[R]: ...

    def map_stateful(
        self, setup: Callable[[Any], Any], fn: Callable[[Any, Any], R], pieces: Sequence[Any], shared: Any
    ) -> Iterator[R]: ...

    def share(self, value: Any) -> Any: ...


class LocalEngine:
    """Every piece in this process, in order."""

    name = "local"

    def map(self, fn: Callable[[Any, Any], R], pieces: Sequence[Any], shared: Any = None) -> list[R]:
        value = resolve(shared)
        return [fn(piece, value) for piece in pieces]

    def map_stateful(
        self, setup: Callable[[Any], Any], fn: Callable[[Any, Any], R], pieces: Sequence[Any], shared: Any
    ) -> Iterator[R]:
        """``state = setup(shared)`` once, then ``fn(state, piece)`` for each piece, as they finish."""
        if not pieces:
            return
        state = setup(resolve(shared))
        for piece in pieces:
            yield fn(state, piece)

    def share(self, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class MappedArray:
    """A picklable handle on a memory-mapped ``.npy``: workers reopen the file read-only."""

    path: str

    def open(self) -> np.ndarray:
        return np.load(self.path, mmap_mode="r", allow_pickle=False)


class RayEngine:
    """Each piece is one Ray task; results come back in piece order.

    Parameters
    ----------
    address : str, optional
        ``None`` starts (or reuses) a local cluster; ``"auto"`` or ``"ray://host:10001"`` joins a running one.
    num_cpus : int, optional
        CPUs of a local cluster (default: all of this machine's).
    cpus_per_task : float, default=1
        CPUs each task reserves.
    threads : int, optional
        BLAS/OpenMP threads inside each task; default: this process's BLAS thread count. Float64 GEMM
        rounding depends on the thread count, so keeping it equal keeps results bit-identical to the local
        engine.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        cpus_per_task: float = 1,
        threads: int | None = None,
    ) -> None:
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingDependencyError(
                "The ray engine needs Ray: pip install 'datadiet[ray]' (or pip install 'ray[data]')."
            ) from exc
        if cpus_per_task <= 0:
            raise ParameterError(f"cpus_per_task must be > 0. Got {cpus_per_task!r} instead.")
        self._ray = ray
        self.cpus_per_task = cpus_per_task
        self.threads = threads or _blas_threads()
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                options["num_cpus"] = num_cpus or os.cpu_count()
            ray.init(address=address, **options)
        self._task = ray.remote(_run_piece).options(num_cpus=cpus_per_task)

    def map(self, fn: Callable[[Any, Any], R], pieces: Sequence[Any], shared: Any = None) -> list[R]:
        ref = shared if _is_object_ref(shared) else self.share(shared)
        futures = [self._task.remote(fn, piece, ref, self.threads) for piece in pieces]
        return list(self._ray.get(futures))

    def map_stateful(
        self, setup: Callable[[Any], Any], fn: Callable[[Any, Any], R], pieces: Sequence[Any], shared: Any
    ) -> Iterator[R]:
        """Ray Data ``map_batches`` over the pieces with a pool of actors, each running ``setup`` once (e.g.
        loading a model); results stream back in piece order."""
        if not pieces:
            return
        import ray.data

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        items = ray.data.from_items([{"piece": i} for i in range(len(pieces))])
        results = items.map_batches(
            _StatefulWorker,
            fn_constructor_kwargs={
                "setup": setup, "fn": fn, "pieces": list(pieces), "shared": _portable(shared),
                "threads": self.threads,
            },
            batch_size=1,
            num_cpus=self.cpus_per_task,
            compute=ray.data.ActorPoolStrategy(size=max(1, min(len(pieces), self._workers()))),
        )  # fmt: skip
        for row in results.iter_rows():
            yield row["result"]

    def _workers(self) -> int:
        return max(1, int(self._ray.cluster_resources().get("CPU", 1) // self.cpus_per_task))

    def share(self, value: Any) -> Any:
        """Put ``value`` in the object store once; a memory-mapped ``.npy`` goes as its path."""
        return self._ray.put(_portable(value))

    def shutdown(self) -> None:
        self._ray.shutdown()


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    counts = [int(pool["num_threads"]) for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return max(counts, default=1)


def _set_torch_threads(threads: int) -> None:
    """torch keeps its own intra-op pool: match it too, if torch is loaded."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _run_piece(fn: Callable[[Any, Any], R], piece: Any, shared: Any, threads: int) -> R:
    """One task: the driver's BLAS/OpenMP thread count, then the piece."""
    from threadpoolctl import threadpool_limits

    _set_torch_threads(threads)
    with threadpool_limits(limits=threads):
        return fn(piece, resolve(shared))


class _StatefulWorker:
    """A Ray Data actor: ``setup`` once, then one piece per batch."""

    def __init__(self, setup: Callable, fn: Callable, pieces: list, shared: Any, threads: int) -> None:
        from threadpoolctl import threadpool_limits

        self.fn, self.pieces, self.threads = fn, pieces, threads
        _set_torch_threads(threads)
        with threadpool_limits(limits=threads):
            self.state = setup(resolve(shared))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from threadpoolctl import threadpool_limits

        (index,) = batch["piece"]
        with threadpool_limits(limits=self.threads):
            result = self.fn(self.state, self.pieces[int(index)])
        out = np.empty(1, dtype=object)
        out[0] = result
        return {"piece": batch["piece"], "result": out}


def _portable(value: Any) -> Any:
    if isinstance(value, np.memmap) and value.filename is not None and _is_whole_npy(value):
        return MappedArray(str(value.filename))
    if isinstance(value, tuple):
        return tuple(_portable(v) for v in value)
    if isinstance(value, dict):
        return {key: _portable(v) for key, v in value.items()}
    return value


def _is_whole_npy(x: np.memmap) -> bool:
    """Whether ``x`` is the full array of the ``.npy`` file it maps (not a slice or a raw file)."""
    filename = x.filename
    if filename is None or not str(filename).endswith(".npy"):
        return False
    try:
        whole = np.load(filename, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return False
    return whole.shape == x.shape and whole.dtype == x.dtype and whole.offset == x.offset


def resolve(value: Any) -> Any:
    """Undo :func:`_portable`: reopen mapped files (inside a worker, or locally)."""
    if isinstance(value, MappedArray):
        return value.open()
    if isinstance(value, tuple):
        return tuple(resolve(v) for v in value)
    if isinstance(value, dict):
        return {key: resolve(v) for key, v in value.items()}
    return value


def _is_object_ref(value: Any) -> bool:
    return type(value).__name__ == "ObjectRef"


_CURRENT: contextvars.ContextVar[Engine | None] = contextvars.ContextVar("datadiet_engine", default=None)
_LOCAL = LocalEngine()


def current_engine() -> Engine:
    """The engine of the innermost :func:`use_engine` block, else :class:`LocalEngine`."""
    return _CURRENT.get() or _LOCAL


@contextlib.contextmanager
def use_engine(engine: Engine) -> Iterator[Engine]:
    """Run the maps inside the block on ``engine``."""
    token = _CURRENT.set(engine)
    try:
        yield engine
    finally:
        _CURRENT.reset(token)


def make_engine(name: str = "local", *, address: str | None = None, num_cpus: int | None = None) -> Engine:
    """``"local"`` or ``"ray"`` (see :class:`RayEngine` for ``address`` and ``num_cpus``)."""
    if name == "local":
        return _LOCAL
    if name == "ray":
        return RayEngine(address, num_cpus=num_cpus)
    raise ParameterError(f"Unknown engine {name!r}. Available: {list(ENGINES)}.")


def row_chunks(n: int, rows: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n)`` in chunks of ``rows`` (the last may be shorter).

    >>> row_chunks(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    if rows < 1:
        raise ParameterError(f"rows must be >= 1. Got {rows!r} instead.")
    return [(start, min(start + rows, n)) for start in range(0, n, rows)]
