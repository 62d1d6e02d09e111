"""Time every registered selector on 100k x 256 float32 features (2 cores); write docs/benchmarks.md rows.

Each selector gets an input of the shape it reads, all derived from the same clustered feature matrix:
features for the clustering selectors, sigmoid(X) as 256-epoch probability trajectories, X reshaped to
4 checkpoints x 64 for the gradient selectors, and so on. Peers measured in the same run:

- ``random`` (the floor: what any selector costs beyond drawing k indices);
- the k-means fit alone (the share of the clustering selectors spent clustering);
- LESS chunked vs the dense N x V similarity matrix of the reference code;
- SemDeDup blockwise vs the reference's dense per-cluster n_c x n_c matrix.

Usage: ``python bench/bench_selectors.py [--n 100000] [--d 256] [--out docs/benchmarks.md]``
"""

from __future__ import annotations

import argparse
import platform
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

import datadiet
from datadiet.selection._numerics import normalize_rows
from datadiet.selection.kmeans import default_n_clusters, kmeans
from datadiet.selection.semdedup import cluster_order, duplicate_scores

BUDGET = 0.3


def make_features(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Gaussian blobs around sqrt(n) centres, float32."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(default_n_clusters(n), d)).astype(np.float32) * 3
    x = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, d)).astype(np.float32)
    return x.astype(np.float32)


def inputs(x: np.ndarray, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, dict]]:
    n, d = x.shape
    probs = (1 / (1 + np.exp(-x))).astype(np.float32)
    grads = x.reshape(n, 4, d // 4)
    val = grads[rng.choice(n, 1000, replace=False)] + 0.1
    labels = rng.integers(0, d, n)
    soft = np.exp(x - x.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    specs = {
        "forgetting": ((probs > 0.5).astype(np.float32), {}),
        "el2n": (soft, {"labels": labels}),
        "self_influence": (grads, {}),
        "less": (grads, {"val": val}),
        "hard_to_learn": (probs, {}),
        "ambiguous": (probs, {}),
        "ccs": (probs, {}),
    }
    return {name: specs.get(name, (x, {})) for name in datadiet.SELECTORS.names()}


def measure(func: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and peak traced MiB of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    func()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak


def less_dense(train: np.ndarray, val: np.ndarray) -> np.ndarray:
    """The reference code's way: one dense N x V matrix (normalised rows, equal weights)."""
    t = train / np.maximum(np.linalg.norm(train, axis=2, keepdims=True), 1e-12)
    v = val / np.maximum(np.linalg.norm(val, axis=2, keepdims=True), 1e-12)
    s = np.einsum("ncd,vcd->nv", t, v) / train.shape[1]
    return s.mean(1)


def semdedup_dense(x: np.ndarray, result) -> np.ndarray:
    """The reference's way: per cluster, the full n_c x n_c similarity matrix, triu, max over columns."""
    xn = normalize_rows(x)
    m = np.zeros(len(x))
    for members in result.members():
        order = members[np.argsort(-result.distances[members], kind="stable")]
        sims = xn[order] @ xn[order].T
        m[order] = np.triu(sims, k=1).max(axis=0) if len(order) > 1 else 0.0
    return m


def semdedup_blockwise(x: np.ndarray, result) -> np.ndarray:
    """datadiet's per-cluster blockwise M on the same clustering."""
    xn = normalize_rows(x)
    m = np.zeros(len(x))
    for members in result.members():
        order = cluster_order(result.distances[members], "hard", np.random.default_rng(0))
        m[members] = duplicate_scores(xn[members], order)
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = make_features(args.n, args.d)
    rows = []
    for name, (values, kwargs) in inputs(x, rng).items():
        seconds, peak = measure(
            lambda name=name, values=values, kwargs=kwargs: datadiet.select(
                name, values, BUDGET, seed=0, **kwargs
            )
        )
        rows.append((name, f"{tuple(values.shape)}", seconds, peak))
        print(f"{name:16s} {values.shape!s:20s} {seconds:8.2f} s  peak {peak:8.1f} MiB", flush=True)
    k = default_n_clusters(args.n)
    km_seconds, _ = measure(lambda: kmeans(x, k, rng=np.random.default_rng(0)))
    clusters = kmeans(x, k, metric="cosine", rng=np.random.default_rng(0))
    ours = measure(lambda: semdedup_blockwise(x, clusters))
    dense = measure(lambda: semdedup_dense(x, clusters))
    np.testing.assert_allclose(semdedup_blockwise(x, clusters), semdedup_dense(x, clusters), atol=1e-5)
    print(
        f"SemDeDup M on fixed clusters: blockwise {ours[0]:.2f} s / {ours[1]:.0f} MiB, "
        f"dense {dense[0]:.2f} s / {dense[1]:.0f} MiB"
    )
    grads, kwargs = inputs(x, rng)["less"]
    dense_seconds, dense_peak = measure(lambda: less_dense(grads, kwargs["val"]))
    print(f"kmeans fit (k={k}) {km_seconds:.2f} s")
    print(f"LESS dense reference {dense_seconds:.2f} s, {dense_peak:.0f} MiB")
    if args.out:
        write_markdown(args.out, rows, args, km_seconds, k, (dense_seconds, dense_peak), (ours, dense))


def write_markdown(path, rows, args, km_seconds, k, less_dense_cost, semdedup_costs) -> None:
    dense_seconds, dense_peak = less_dense_cost
    (ours_s, ours_m), (dense_s, dense_m) = semdedup_costs
    random_seconds = dict((r[0], r[2]) for r in rows)["random"]
    lines = [
        f"### Selectors on {args.n:,} x {args.d} float32, budget {BUDGET} ({platform.machine()}, "
        f"{__import__('os').cpu_count()} cores)",
        "",
        "| selector | input shape | seconds | x random | peak traced MiB |",
        "|---|---|---:|---:|---:|",
        *(f"| {n} | {s} | {t:.2f} | {t / random_seconds:.0f} | {m:.0f} |" for n, s, t, m in rows),
        "",
        f"k-means fit alone (k={k}, the clustering selectors' default): {km_seconds:.2f} s. "
        f"LESS reference-style dense N x V matrix: {dense_seconds:.2f} s and {dense_peak:.0f} MiB peak.",
        f"SemDeDup's M on the same clusters: blockwise {ours_s:.2f} s / {ours_m:.0f} MiB vs the reference's "
        f"dense per-cluster matrix {dense_s:.2f} s / {dense_m:.0f} MiB (same values).",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
