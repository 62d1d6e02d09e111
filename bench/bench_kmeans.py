"""k-means engines side by side: faiss with our k-means|| seeding vs scikit-learn vs faiss's random init.

All three fit ``k = round(sqrt(n))`` clusters on the same float32 Gaussian blobs (``sqrt(n)`` centres, the
data of ``bench/bench_selectors.py``) and are scored the same way: every row assigned to its nearest
centroid, inertia = sum of squared distances over all rows, both as a ratio to scikit-learn.

- ``faiss (k-means||)``: ``kmeans(engine="faiss")``, the datadiet default when faiss is installed
  (k-means|| on the fitting sample, greedy k-means++ on the cell means, faiss Lloyd);
- ``sklearn``: ``kmeans(engine="sklearn")``, scikit-learn ``KMeans(init="k-means++", n_init=1)``;
- ``faiss (random init)``: ``faiss.Kmeans`` with its own random init, same iteration cap and tolerance,
  then the same assignment (what the reference codes run).

With ``--repeat R`` every engine runs ``R`` times, the engines taking turns, and the fastest run counts
(on a shared machine the slowest runs measure the other users); inertia is the same on every run.

Usage: ``python bench/bench_kmeans.py [--sizes 25000x256 100000x256 400000x64] [--repeat R] [--quick]
[--out FILE.md]`` (a size is ``NxD``; the 400k set is 64-wide so that scikit-learn finishes in minutes on
2 cores).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from datadiet.selection.kmeans import assign, default_n_clusters, kmeans

MAX_ITER, TOL = 300, 1e-4


def make_features(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Gaussian blobs around sqrt(n) centres, float32 (as in bench_selectors.py)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(default_n_clusters(n), d)).astype(np.float32) * 3
    x = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, d)).astype(np.float32)
    return x.astype(np.float32)


def faiss_random_init(x: np.ndarray, k: int) -> np.ndarray:
    """faiss's own k-means (random init, its own 256-points-per-centroid sample), 2 threads."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(min(2, previous))
    try:
        model = faiss.Kmeans(x.shape[1], k, niter=MAX_ITER, seed=1234, early_stop_threshold=TOL)
        model.train(x)
    finally:
        faiss.omp_set_num_threads(previous)
    return model.centroids


def run(x: np.ndarray, k: int, repeat: int = 1) -> dict[str, tuple[float, float]]:
    """Fastest seconds of ``repeat`` runs (engines taking turns) and inertia of each engine on ``x``."""
    engines: dict[str, Callable[[], np.ndarray]] = {
        "faiss (k-means||)": lambda: (
            kmeans(x, k, rng=0, engine="faiss", max_iter=MAX_ITER, tol=TOL).distances
        ),
        "sklearn": lambda: kmeans(x, k, rng=0, engine="sklearn", max_iter=MAX_ITER, tol=TOL).distances,
        "faiss (random init)": lambda: assign(x, faiss_random_init(x, k))[1],
    }
    results: dict[str, tuple[float, float]] = {}
    for _ in range(repeat):
        for name, fit in engines.items():
            start = time.perf_counter()
            distances = fit()
            seconds = time.perf_counter() - start
            best = min(seconds, results.get(name, (math.inf, 0.0))[0])
            results[name] = (best, float(np.sum(distances.astype(np.float64) ** 2)))
            print(f"  {name:20s} {seconds:8.2f} s  inertia {results[name][1]:.6g}", flush=True)
    return results


def parse_size(text: str) -> tuple[int, int]:
    """``"100000x256"`` -> ``(100000, 256)``."""
    n, _, d = text.lower().partition("x")
    return int(n), int(d or 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=parse_size, nargs="+", default=[(25_000, 256), (100_000, 256), (400_000, 64)]
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine; the fastest counts")
    parser.add_argument("--quick", action="store_true", help="a small smoke run (5,000 and 10,000 x 32)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.sizes = [(5_000, 32), (10_000, 32)]
    run(make_features(500, 8), 5)  # warm-up: imports, thread pools
    load_before = os.getloadavg()[0]
    rows = []
    for n, d in args.sizes:
        k = default_n_clusters(n)
        print(f"{n:,} x {d}, k={k}", flush=True)
        rows.append((n, d, k, run(make_features(n, d), k, args.repeat)))
    if args.out:
        write_markdown(args.out, rows, args.repeat, (load_before, os.getloadavg()[0]))


def write_markdown(path: Path, rows: list, repeat: int, load: tuple[float, float]) -> None:
    lines = [
        f"### k-means engines on float32 Gaussian blobs, k = sqrt(n) ({platform.machine()}, "
        f"{os.cpu_count()} cores, 2 threads, faiss {faiss.__version__})",
        "",
        f"Fastest of {repeat} run(s) per engine; 1-minute load average {load[0]:.1f} before, "
        f"{load[1]:.1f} after.",
        "",
        "| n x d | k | engine | seconds | x sklearn time | inertia | / sklearn inertia |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for n, d, k, results in rows:
        base_seconds, base_inertia = results["sklearn"]
        for name, (seconds, inertia) in results.items():
            cell = name.replace("|", "\\|")  # a table cell cannot hold a bare pipe
            lines.append(
                f"| {n:,} x {d} | {k} | {cell} | {seconds:.2f} | {seconds / base_seconds:.3f} | "
                f"{inertia:.5g} | {inertia / base_inertia:.4f} |"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([*lines, ""]))


if __name__ == "__main__":
    main()
