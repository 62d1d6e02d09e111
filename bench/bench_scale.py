"""How every selector's cost grows with N on memory-mapped N x 1024 float32 features (out of core).

For each size N, a float32 ``.npy`` of Gaussian blobs (``round(sqrt(N))`` centres, as in
``bench_selectors.py``) is written chunk by chunk into ``--workdir`` and reused by later runs. Each selector
then runs in its own subprocess on ``np.load(mmap_mode="r")`` of the input of the shape it reads, derived
from the same features as in ``bench_selectors.py`` and cached as files too:

- features X for ``random``, ``prototypicality``, ``semdedup`` and ``s2l``;
- ``sigmoid(X)`` as 1024-epoch probability trajectories for ``hard_to_learn``, ``ambiguous`` and ``ccs``;
- ``sigmoid(X) > 0.5`` as 0/1 correctness for ``forgetting`` (stored as uint8, a quarter of float32);
- ``softmax(X)`` over 1024 classes plus random labels for ``el2n``;
- X viewed as 4 checkpoints x 256 (a reshape of the memmap, no copy) for ``self_influence`` and ``less``,
  with 1,000 validation rows (``X[random rows] + 0.1``, in memory) for ``less``.

Budget 30%. Recorded per run: the seconds of ``datadiet.select`` alone, the wall seconds of the subprocess
(start-up and imports included) and its peak RSS (``VmHWM``, which counts resident memmap pages; start-up
and imports alone are about 0.2 GiB). Targets (issue 6): at N = 1,000,000 within 10 minutes and under
3 GiB peak RSS.

Usage: ``python bench/bench_scale.py [--sizes 100000 300000 1000000] [--selectors ...] [--out FILE.md]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from datadiet._core.chunks import release_pages

D = 1024
BUDGET = 0.3
TARGET_SECONDS = 600
TARGET_RSS_GIB = 3.0
ROWS = 16_384  # rows generated per chunk
N_VAL = 1000
FEATURES = ("random", "prototypicality", "semdedup", "s2l")
INPUT_OF = {
    "hard_to_learn": "probs",
    "ambiguous": "probs",
    "ccs": "probs",
    "forgetting": "correct",
    "el2n": "softmax",
    "self_influence": "grads",
    "less": "grads",
    **{name: "features" for name in FEATURES},
}


# --- data (parent) --------------------------------------------------------------------------------
def _write_chunked(path: Path, n: int, dtype: type, fill) -> Path:
    """Write an (n, D) ``.npy`` chunk by chunk (``fill(start, stop)`` gives the rows); atomic, cached."""
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, D))
    for start in range(0, n, ROWS):
        stop = min(n, start + ROWS)
        out[start:stop] = fill(start, stop)
        out.flush()
        release_pages(out)  # keep the generator's own RSS small too
    del out
    os.replace(tmp, path)
    return path


def prepare(workdir: Path, n: int) -> dict[str, Path]:
    """The cached input files for size ``n`` (written on first use)."""
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    centres = (rng.normal(size=(max(1, round(np.sqrt(n))), D)) * 3).astype(np.float32)
    assignment = rng.integers(0, len(centres), n)
    features = workdir / f"features_{n}x{D}.npy"

    def blobs(start: int, stop: int) -> np.ndarray:
        noise = np.random.default_rng([0, start]).standard_normal((stop - start, D), dtype=np.float32)
        return centres[assignment[start:stop]] + noise

    _write_chunked(features, n, np.float32, blobs)
    x = np.load(features, mmap_mode="r")

    def rows(start: int, stop: int) -> np.ndarray:
        block = np.array(x[start:stop], dtype=np.float32)
        release_pages(x[start:stop])
        return block

    def probs(start: int, stop: int) -> np.ndarray:
        return 1 / (1 + np.exp(-rows(start, stop)))

    def softmax(start: int, stop: int) -> np.ndarray:
        block = rows(start, stop)
        e = np.exp(block - block.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    paths = {
        "features": features,
        "probs": _write_chunked(workdir / f"probs_{n}x{D}.npy", n, np.float32, probs),
        "correct": _write_chunked(
            workdir / f"correct_{n}x{D}.npy", n, np.uint8, lambda a, b: probs(a, b) > 0.5
        ),
        "softmax": _write_chunked(workdir / f"softmax_{n}x{D}.npy", n, np.float32, softmax),
        "labels": workdir / f"labels_{n}.npy",
        "val": workdir / f"val_{n}.npy",
    }
    if not paths["labels"].exists():
        np.save(paths["labels"], rng.integers(0, D, n))
    if not paths["val"].exists():
        rows = np.sort(np.random.default_rng(1).choice(n, min(N_VAL, n), replace=False))
        np.save(paths["val"], (np.asarray(x[rows]) + 0.1).reshape(len(rows), 4, D // 4))
    return paths


# --- one selector (child) -------------------------------------------------------------------------
def run_child(name: str, paths: dict[str, str]) -> None:
    import datadiet

    kind = INPUT_OF[name]
    values = np.load(paths["features" if kind == "grads" else kind], mmap_mode="r")
    kwargs: dict = {}
    if kind == "grads":
        values = values.reshape(len(values), 4, D // 4)
    if name == "el2n":
        kwargs["labels"] = np.load(paths["labels"])
    if name == "less":
        kwargs["val"] = np.load(paths["val"])
    start = time.perf_counter()
    selection = datadiet.select(name, values, BUDGET, seed=0, **kwargs)
    seconds = time.perf_counter() - start
    rss_gib = peak_rss_gib()
    report = {"seconds": seconds, "rss_gib": rss_gib, "k": selection.budget, "shape": list(values.shape)}
    print(json.dumps(report))


def peak_rss_gib(pid: int | str = "self") -> float:
    """Peak resident set (``VmHWM``) of a process, in GiB.

    Not ``ru_maxrss``: Linux carries the parent's resident size at fork over exec into the child's
    ``ru_maxrss``, so a child would report at least what the parent had resident.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return (
            float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 2**20
            if pid == "self"
            else float("nan")
        )
    return kib / 2**20


def measure(name: str, paths: dict[str, Path], timeout: float) -> dict:
    """Run ``name`` in a subprocess: wall seconds, its peak RSS and what it reported.

    The child reports its own peak (:func:`peak_rss_gib`); a child still running at ``timeout`` has its
    ``VmHWM`` read from ``/proc`` before it is killed.
    """
    encoded = json.dumps({key: str(value) for key, value in paths.items()})
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", name, "--paths", encoded],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed: dict = {}
    timer = threading.Timer(timeout, _kill, (proc, killed))
    timer.start()
    out, err = proc.communicate()
    timer.cancel()
    wall = time.perf_counter() - start
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if lines:
        return {"wall": wall, **json.loads(lines[-1])}
    reason = "timeout" if killed else (err.strip().splitlines() or ["no output"])[-1]
    return {"wall": wall, "rss_gib": killed.get("rss_gib", float("nan")), "error": reason}


def _kill(proc: subprocess.Popen, killed: dict) -> None:
    killed["rss_gib"] = peak_rss_gib(proc.pid)
    proc.kill()


# --- driver ---------------------------------------------------------------------------------------
def within(row: dict) -> str:
    ok = "error" not in row and row["wall"] <= TARGET_SECONDS and row["rss_gib"] < TARGET_RSS_GIB
    return "yes" if ok else "no"


def write_markdown(path: Path, rows: list[dict]) -> None:
    lines = [
        f"### Out-of-core selection on memory-mapped N x {D} float32 ({platform.machine()}, "
        f"{os.cpu_count()} cores), budget {BUDGET}",
        "",
        "| selector | N | input shape | select s | wall s | peak RSS GiB | within 10 min / 3 GiB? |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for row in rows:
        shape = "x".join(map(str, row.get("shape", []))) or "-"
        seconds = f"{row['seconds']:.1f}" if "seconds" in row else row.get("error", "-")
        lines.append(
            f"| {row['selector']} | {row['n']:,} | {shape} | {seconds} | {row['wall']:.1f} | "
            f"{row['rss_gib']:.2f} | {within(row)} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--selectors", nargs="+", default=sorted(INPUT_OF))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/datadiet-scale"))
    parser.add_argument("--timeout", type=float, default=TARGET_SECONDS + 60)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--paths", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args.child, json.loads(args.paths))
    unknown = sorted(set(args.selectors) - set(INPUT_OF))
    if unknown:
        parser.error(f"unknown selectors {unknown}; available: {sorted(INPUT_OF)}")
    rows = []
    for n in args.sizes:
        start = time.perf_counter()
        paths = prepare(args.workdir, n)
        print(f"N={n:,}: inputs ready in {time.perf_counter() - start:.0f} s", flush=True)
        for name in args.selectors:
            row = {"selector": name, "n": n, **measure(name, paths, args.timeout)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                write_markdown(args.out, rows)


if __name__ == "__main__":
    main()
