"""Soak test: SIGKILL a demo-like study at random (seeded) times, resume it each time, compare the results.

1. Runs the study uninterrupted in ``<workdir>/clean`` (a child process), then reruns it there once more to
   measure the fixed cost of a run that has nothing left to do (imports, data loading, checks).
2. In a fresh ``<workdir>/killed`` starts the same study ``--kills`` times, each time sending SIGKILL after a
   random delay drawn from ``Uniform(0.5 * rerun, high)``, ``high = rerun + 2 * (clean - rerun) / kills``,
   so that on average the kills spread over the whole pipeline (embeddings, reference training,
   representations, store writes, cells); after a kill that left the same state as the one before (an
   atomic step longer than the window, such as encoding a split) ``high`` grows by half until a kill
   gets past it, then returns to its base value. After every kill it checks that no partial file is
   visible under a final name. A child that finishes before its kill ends the loop early (reported).
3. Runs the study to completion and verifies that it equals the uninterrupted run: ``results.csv``
   except the timing columns, every cell's rows except timings, selections, every store entry
   (values, ids, manifest except its creation time) and the reference run's files.

The study is the demo's (frozen MiniLM encoder, MLP reference head, linear main head on Reuters R8) on a
slice, with the demo's selections. Exit status 1 if the results differ or a file is found incomplete.

Usage: ``python bench/soak.py [--kills 20] [--seed 0] [--slice 200] [--out docs/soak.md] [--keep]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from datadiet.pipeline.demo import DEMO_SELECTIONS
from datadiet.store import RepresentationStore

RUN_STUDY = """
import json, sys
from datadiet.config import StudyConfig, from_dict
from datadiet.pipeline.study import run_study
run_study(from_dict(StudyConfig, json.loads(sys.argv[1])), progress=False, report=False)
"""
TIMING = ["select_seconds", "train_seconds"]
NOT_COMPARED = {"costs.json", "study.json", "results.csv", "results.parquet"}  # timings (csv: compared apart)


def study_config(out: Path, args: argparse.Namespace) -> dict:
    return {
        "output": str(out),
        "reference": {
            "dataset": {"source": "reuters_r8", "slice": args.slice, "val_slice": args.val_slice},
            "model": {"mode": "frozen", "head": "mlp", "max_length": args.max_length},
            "training": {"epochs": args.epochs},
            "represent": {"gradients": {"dim": args.dim}},
        },
        "selections": DEMO_SELECTIONS,
        "budgets": args.budgets,
        "seeds": args.seeds,
        "main": {"head": "linear", "epochs": args.main_epochs},
        "test_slice": args.test_slice,
    }


def start(out: Path, args: argparse.Namespace) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("DATADIET_FAULT", None)
    config = json.dumps(study_config(out, args))
    return subprocess.Popen(
        [sys.executable, "-c", RUN_STUDY, config], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def run_to_end(out: Path, args: argparse.Namespace) -> float:
    began = time.perf_counter()
    proc = start(out, args)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"study failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    return time.perf_counter() - began


def run_and_kill(out: Path, args: argparse.Namespace, delay: float) -> bool:
    """Start the study, SIGKILL it after ``delay`` seconds; True if it was killed (False: it finished)."""
    proc = start(out, args)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True
    if proc.returncode != 0:
        raise SystemExit(f"study failed ({proc.returncode}):\n{proc.stderr.read().decode()[-3000:]}")
    return False


# -------------------------------------------------------------------------------------------- inspection
def check_final_names(out: Path) -> list[str]:
    """Verify complete store entries against their manifests and parse every final-named file."""
    import torch
    from safetensors.torch import load_file

    problems = []
    store = RepresentationStore(out / "store", lock_timeout=5)
    for key in store.entries():
        try:
            store.load(key, verify="full")
        except Exception as exc:
            problems.append(str(exc))
    readers = {".json": lambda p: json.loads(p.read_text()), ".npy": lambda p: np.load(p, allow_pickle=False),
               ".safetensors": load_file, ".csv": pd.read_csv, ".parquet": pd.read_parquet,
               ".pt": lambda p: torch.load(p, map_location="cpu", weights_only=True)}  # fmt: skip
    for path in out.rglob("*"):
        reader = readers[".json"] if path.name == "DONE" else readers.get(path.suffix)
        if path.is_file() and not path.name.startswith(".") and reader is not None:
            try:
                reader(path)
            except Exception as exc:
                problems.append(f"{path.relative_to(out)}: {exc}")
    return problems


def progress(out: Path) -> str:
    """Where a killed run had got to."""
    ref, store = out / "reference", RepresentationStore(out / "store")
    folders = [p for p in (out / "store").iterdir() if p.is_dir()] if (out / "store").is_dir() else []
    n_partial = sum(1 for p in folders if store.state(p.name) == "partial")
    done_chunks = sum(int(np.load(p).sum()) for p in (out / "store").glob("*/progress.npy"))
    epochs, state = "done", ref / "state" / "state.pt"
    if not (ref / "DONE").is_file():
        import torch

        epochs = f"{int(torch.load(state, weights_only=True)['epoch'])} epochs" if state.is_file() else "-"
    cells = len(list((out / "cells").glob("*.json")))
    return (
        f"reference {epochs}; store {len(store.entries())} complete, {n_partial} partial "
        f"({done_chunks} chunks done); {cells} cells"
    )


def comparable(path: Path, root: Path) -> object:
    if path.suffix != ".json" and path.name != "DONE":
        return path.read_bytes()
    data = json.loads(path.read_text(encoding="utf-8").replace(str(root), "<out>"))
    if path.name == "manifest.json":
        data.pop("created")
    if path.parent.name == "cells":
        data["rows"] = [{k: v for k, v in row.items() if k not in TIMING} for row in data["rows"]]
    return data


def final_files(root: Path) -> set[str]:
    files = (p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    return {p.relative_to(root).as_posix() for p in files if p.suffix != ".lock"}


def compare(clean: Path, killed: Path) -> tuple[int, list[str]]:
    """Number of files compared and the differences found."""
    files, differences = final_files(clean), []
    if final_files(killed) != files:
        differences.append(f"file sets differ: {sorted(final_files(killed) ^ files)[:10]}")
    first, again = (pd.read_csv(d / "results.csv").drop(columns=TIMING) for d in (clean, killed))
    if first.to_csv(index=False) != again.to_csv(index=False):
        differences.append("results.csv differs (timing columns aside)")
    compared = sorted((files & final_files(killed)) - NOT_COMPARED)
    differences += [p for p in compared if comparable(clean / p, clean) != comparable(killed / p, killed)]
    return len(compared) + 1, differences


# ----------------------------------------------------------------------------------------------- main
def soak(args: argparse.Namespace, work: Path) -> tuple[list[str], bool]:
    clean, killed = work / "clean", work / "killed"
    clean_s = run_to_end(clean, args)
    rerun_s = run_to_end(clean, args)
    rng = np.random.default_rng(args.seed)
    low = 0.5 * rerun_s
    base = high = rerun_s + 2 * max(clean_s - rerun_s, 1.0) / args.kills
    rows, problems, n_killed, before, widest = [], [], 0, progress(killed), base
    began = time.perf_counter()
    for attempt in range(1, args.kills + 1):
        delay = float(rng.uniform(low, high))
        if not run_and_kill(killed, args, delay):
            rows.append(f"| {attempt} | {delay:.1f} | finished before the kill | |")
            break
        n_killed += 1
        found = check_final_names(killed)
        problems += found
        after = progress(killed)
        rows.append(f"| {attempt} | {delay:.1f} | {after} | {len(found) or 'none'} |")
        # a kill that changed nothing hit an atomic step longer than the window (e.g. encoding a split):
        # widen the window until one gets past it, then go back to the base window
        high = min(1.5 * high, clean_s + rerun_s) if after == before else base
        before, widest = after, max(widest, high)
    final_s = run_to_end(killed, args)
    total_s = time.perf_counter() - began
    n_compared, differences = compare(clean, killed)
    ok = not problems and not differences
    lines = [
        "# Soak: SIGKILL and resume",
        "",
        f"Study: Reuters R8 slice {args.slice} (val {args.val_slice}, test {args.test_slice}), frozen MiniLM "
        f"(max_length {args.max_length}), MLP reference head {args.epochs} epochs, gradients dim {args.dim}, "
        f"{len(DEMO_SELECTIONS)} demo selections + random + full, budgets {args.budgets}, seeds {args.seeds}",
        f"Machine: {os.cpu_count()} cores; seed {args.seed}.",
        "",
        f"- uninterrupted run: {clean_s:.1f} s; rerun with nothing left to do: {rerun_s:.1f} s",
        f"- kills: {n_killed} of {args.kills} requested; delays Uniform({low:.1f}, high) s with high = "
        f"{base:.1f} s, widened 1.5x after each kill that left the same state (widest {widest:.1f} s)",
        f"- final resumed run: {final_s:.1f} s; killed runs + final run: {total_s:.1f} s",
        f"- files incomplete under a final name after a kill: {len(problems)}",
        f"- files compared with the uninterrupted run: {n_compared}; differences: {len(differences)}",
        f"- **verdict: {'identical results' if ok else 'MISMATCH'}**",
        "",
        "| kill | after (s) | state left behind | incomplete files |",
        "|---:|---:|---|---|",
        *rows,
    ]
    lines += [f"- problem: {p}" for p in problems[:20]] + [f"- differs: {d}" for d in differences[:20]]
    return lines, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slice", type=int, default=200)
    parser.add_argument("--val-slice", type=int, default=32)
    parser.add_argument("--test-slice", type=int, default=100)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--main-epochs", type=int, default=5)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--out", type=Path, default=None, help="also write the summary to this Markdown file")
    args = parser.parse_args()
    if args.kills < 1:
        parser.error(f"--kills must be >= 1. Got {args.kills} instead.")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="datadiet-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        lines, ok = soak(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
