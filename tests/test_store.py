"""RepresentationStore: round trips, provenance keys, validation, resumable writes, locking.

Invariants checked here: a loaded entry equals what was saved and stays memory-mapped; the key depends
on the provenance and nothing else; any damage to an entry raises StoreError naming the field and the
rebuild command; an interrupted write (abandoned or SIGKILLed) is never loadable and resumes to the
same bytes as a one-pass write; concurrent get_or_compute computes once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import datadiet
import datadiet.store as store_module
from datadiet.representations.base import Representation
from datadiet.store import RepresentationStore, StoreError, make_key, provenance_fields

PRELUDE = """
import numpy as np
N, D, CHUNK = 50, 6, 8
PROV = {"dataset": "toy-v1", "extractor": "hidden", "params": {"layer": 3}}
IDS = np.array([f"ex-{i:03d}" for i in range(N)])

def rows(start, stop):
    grid = np.arange(start * D, stop * D, dtype=np.float64).reshape(-1, D)
    return np.sin(grid * 0.37).astype(np.float32)
"""
_NS: dict = {}
exec(PRELUDE, _NS)
N, D, CHUNK, PROV, IDS, rows = (_NS[name] for name in ("N", "D", "CHUNK", "PROV", "IDS", "rows"))
KEY = make_key(**PROV)
REBUILD = "datadiet represent --config toy.yaml"
SRC = str(Path(datadiet.__file__).resolve().parents[1])


def _full_rep() -> Representation:
    return Representation(rows(0, N), kind="hidden", ids=IDS, meta=dict(PROV))


def _child(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + script, *args], stdout=subprocess.PIPE, text=True, env=env
    )


# ----------------------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize(
    ("values", "ids", "kind"),
    [
        (np.arange(12, dtype=np.float32).reshape(4, 3), None, "features"),
        (np.arange(5, dtype=np.int64), np.array(["a", "bb", "ccc", "d", "e"], dtype=object), "dynamics"),
        (np.linspace(0, 1, 24).reshape(2, 3, 4), np.array([10, 20]), "gradients"),
        (np.array([[True, False], [False, True]]), np.array(["x", "y"]), "hidden"),
    ],
)
def test_save_then_load_round_trips_as_read_only_memmap(tmp_path, values, ids, kind):
    store = RepresentationStore(tmp_path)
    meta = {"dataset": "d", "seed": 0, "projection": {"dim": 8}}
    rep = Representation(values, kind=kind, ids=ids, meta=meta)
    key = make_key(**meta, kind=kind)
    store.save(key, rep, provenance=meta, rebuild=REBUILD)
    loaded = store.load(key)
    assert isinstance(loaded.values, np.memmap) and not loaded.values.flags.writeable
    np.testing.assert_array_equal(loaded.values, values)
    assert loaded.values.dtype == np.asarray(values).dtype
    assert loaded.ids.tolist() == rep.ids.tolist() and loaded.ids.dtype != object
    assert loaded.kind == kind and loaded.meta == meta
    assert np.load(store.path(key) / "ids.npy", allow_pickle=False).dtype.kind in "iU"


def test_load_of_absent_key_returns_none(tmp_path):
    store = RepresentationStore(tmp_path / "not-created-yet")
    assert store.load(KEY) is None and store.state(KEY) == "absent" and store.entries() == {}


def test_manifest_records_layout_checksums_and_rebuild(tmp_path):
    store = RepresentationStore(tmp_path)
    store.save(KEY, _full_rep(), provenance=PROV, rebuild=REBUILD)
    manifest = json.loads((store.path(KEY) / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["key"] == KEY
    assert manifest["shape"] == [N, D] and manifest["dtype"] == "<f4" and manifest["ids_dtype"] == "<U6"
    assert manifest["values_bytes"] == (store.path(KEY) / "values.npy").stat().st_size
    assert manifest["rebuild"] == REBUILD and manifest["provenance"] == PROV
    assert sorted(p.name for p in store.path(KEY).iterdir()) == ["ids.npy", "manifest.json", "values.npy"]


def test_save_refuses_to_replace_an_entry_unless_asked(tmp_path):
    store = RepresentationStore(tmp_path)
    store.save(KEY, _full_rep(), provenance=PROV)
    with pytest.raises(StoreError, match="overwrite=True"):
        store.save(KEY, _full_rep(), provenance=PROV)
    doubled = Representation(rows(0, N) * 2, kind="hidden", ids=IDS)
    store.save(KEY, doubled, provenance=PROV, overwrite=True)
    np.testing.assert_array_equal(store.load(KEY).values, rows(0, N) * 2)


def test_object_values_are_refused_never_pickled(tmp_path):
    rep = Representation(np.array([{"a": 1}, {"b": 2}], dtype=object), kind="features")
    with pytest.raises(TypeError, match="numeric dtype"):
        RepresentationStore(tmp_path).save(KEY, rep, provenance=PROV)


# ---------------------------------------------------------------------------------------------------- keys
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=40, deadline=None)
@given(
    fields=st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), json_values, min_size=1, max_size=6)
)
def test_make_key_ignores_field_order(fields):
    reordered = dict(reversed(list(fields.items())))
    key = make_key(**fields)
    assert key == make_key(**reordered)
    assert len(key) >= 16 and set(key) <= set("0123456789abcdef")


@pytest.mark.parametrize(
    "change",
    [{"dataset": "toy-v2"}, {"params": {"layer": 4}}, {"checkpoint": 2}, {"extractor": "gradients"}],
)
def test_make_key_changes_with_any_field(change):
    assert make_key(**{**PROV, **change}) != make_key(**PROV)


def test_make_key_is_a_fixed_function_of_provenance():
    tuple_key = make_key(dims=(1, 2), weights=np.array([0.5, 0.25]))
    assert tuple_key == make_key(dims=[1, 2], weights=np.array([0.5, 0.25]))
    assert tuple_key != make_key(dims=[1, 2], weights=np.array([0.5, 0.26]))
    assert make_key(seed=np.int64(3)) == make_key(seed=3)
    assert make_key(beta=float("inf")) == make_key(beta=np.inf) != make_key(beta=1e308)


def test_defaulted_params_are_dropped_so_new_defaults_keep_old_keys():
    old_defaults = {"layer": -1, "pooling": "mean"}
    new_defaults = {**old_defaults, "normalize": False}
    used = {"layer": 4, "pooling": "mean"}
    old_key = make_key(model="m", params=provenance_fields(used, old_defaults))
    new_key = make_key(model="m", params=provenance_fields({**used, "normalize": False}, new_defaults))
    assert old_key == new_key
    assert provenance_fields({"lr": 1, "dim": 8}, {"lr": 1.0}) == {"dim": 8}
    assert make_key(model="m", params=provenance_fields({**used, "normalize": True}, new_defaults)) != old_key


@pytest.mark.parametrize(
    ("value", "error"),
    [(object(), "has type object"), (lambda x: x, "has type function"), ({1: "a"}, "non-string keys")],
)
def test_make_key_refuses_values_without_a_stable_fingerprint(value, error):
    with pytest.raises(TypeError, match=error):
        make_key(dataset="d", param=value)


@pytest.mark.parametrize("key", ["../etc", "abcdef0123456789/../x", "ABCDEF0123456789", "abc", 42, ""])
def test_keys_that_could_escape_root_are_refused(tmp_path, key):
    store = RepresentationStore(tmp_path)
    for call in (store.load, store.delete, store.state, store.path):
        with pytest.raises(ValueError, match="hex"):
            call(key)
    with pytest.raises(ValueError, match="hex"):
        store.save(key, _full_rep(), provenance=PROV)
    with pytest.raises(ValueError, match="hex"):
        store.writer(key, (N, D), np.float32, IDS, provenance=PROV)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ validation
def _truncate(entry: Path) -> None:
    path = entry / "values.npy"
    path.write_bytes(path.read_bytes()[:-7])


def _flip_byte(entry: Path) -> None:
    data = bytearray((entry / "values.npy").read_bytes())
    data[-3] ^= 0x01
    (entry / "values.npy").write_bytes(bytes(data))


def _edit_manifest(field: str, value: object):
    def edit(entry: Path) -> None:
        manifest = json.loads((entry / "manifest.json").read_text())
        manifest[field] = value
        (entry / "manifest.json").write_text(json.dumps(manifest))

    return edit


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (_truncate, "values_bytes"),
        (_flip_byte, "values_sha256"),
        (_edit_manifest("shape", [N, D + 1]), "shape"),
        (_edit_manifest("dtype", "<f8"), "dtype"),
        (_edit_manifest("provenance", {**PROV, "dataset": "other"}), "provenance"),
        (_edit_manifest("complete", False), "complete"),
        (lambda entry: (entry / "ids.npy").unlink(), "ids.npy"),
        (lambda entry: (entry / "values.npy").unlink(), "values.npy"),
    ],
)
def test_damaged_entry_raises_naming_field_and_rebuild_command(tmp_path, damage, field):
    store = RepresentationStore(tmp_path)
    store.save(KEY, _full_rep(), provenance=PROV, rebuild=REBUILD)
    damage(store.path(KEY))
    with pytest.raises(StoreError) as info:
        store.load(KEY)
    message = str(info.value)
    assert field in message and REBUILD in message and str(store.path(KEY)) in message


def test_unreadable_manifest_raises_naming_it(tmp_path):
    store = RepresentationStore(tmp_path)
    store.save(KEY, _full_rep(), provenance=PROV, rebuild=REBUILD)
    (store.path(KEY) / "manifest.json").write_text('{"format": ')
    with pytest.raises(StoreError, match=r"manifest\.json"):
        store.load(KEY)


def test_verify_size_skips_the_checksum_but_still_catches_truncation(tmp_path):
    store = RepresentationStore(tmp_path)
    store.save(KEY, _full_rep(), provenance=PROV, rebuild=REBUILD)
    _flip_byte(store.path(KEY))
    assert store.load(KEY, verify="size") is not None
    with pytest.raises(StoreError, match="values_sha256"):
        store.load(KEY)
    _truncate(store.path(KEY))
    with pytest.raises(StoreError, match="values_bytes"):
        store.load(KEY, verify="size")
    with pytest.raises(ValueError, match="'verify'"):
        store.load(KEY, verify="fast")


# ------------------------------------------------------------------------------------------ resumable writes
class CountingWriter:
    """Writes every pending chunk of ``writer`` (optionally only the first ``limit``), counting them."""

    def __init__(self) -> None:
        self.starts: list[int] = []

    def run(self, writer, limit: int | None = None) -> None:
        for start, stop in list(writer.pending())[:limit]:
            writer.write(start, rows(start, stop))
            self.starts.append(start)


def _writer(store: RepresentationStore, **overrides):
    args = {"shape": (N, D), "dtype": np.float32, "ids": IDS, "provenance": PROV, "kind": "hidden"}
    args.update(overrides)
    return store.writer(KEY, args.pop("shape"), args.pop("dtype"), args.pop("ids"), rebuild=REBUILD, **args)


def test_resumed_write_skips_done_chunks_and_equals_a_one_pass_write(tmp_path):
    store, reference = RepresentationStore(tmp_path / "a"), RepresentationStore(tmp_path / "b")
    with _writer(store, chunk_rows=CHUNK) as first:
        CountingWriter().run(first, limit=3)  # abandoned: the block ends without finalize()
    assert store.load(KEY) is None and store.state(KEY) == "partial" and store.entries() == {}
    second, counter = _writer(store), CountingWriter()
    assert second.chunk_rows == CHUNK and second.n_done == 3
    counter.run(second)
    rep = second.finalize()
    assert counter.starts == [CHUNK * i for i in range(3, 7)]  # 7 chunks of 8 rows for N=50
    reference.save(KEY, _full_rep(), provenance=PROV)
    one_pass = _writer(RepresentationStore(tmp_path / "c"), chunk_rows=CHUNK)
    CountingWriter().run(one_pass)
    one_pass.finalize()
    written = (store.path(KEY) / "values.npy").read_bytes()
    assert written == (reference.path(KEY) / "values.npy").read_bytes()
    assert written == (tmp_path / "c" / KEY / "values.npy").read_bytes()
    assert isinstance(rep.values, np.memmap) and rep.meta == PROV and rep.ids.tolist() == IDS.tolist()


def test_abandoned_writer_releases_its_lock_when_dropped(tmp_path):
    store = RepresentationStore(tmp_path, lock_timeout=1.0)
    CountingWriter().run(_writer(store, chunk_rows=CHUNK), limit=2)  # never closed, just dropped
    assert _writer(store).n_done == 2


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"shape": (N, D + 1)}, "shape"),
        ({"dtype": np.float64}, "dtype"),
        ({"ids": IDS[::-1]}, "ids_sha256"),
        ({"provenance": {**PROV, "params": {"layer": 4}}}, "provenance"),
        ({"kind": "features"}, "kind"),
        ({"chunk_rows": CHUNK + 1}, "chunk_rows"),
    ],
)
def test_writer_with_a_different_spec_for_a_partial_entry_names_the_field(tmp_path, override, field):
    store = RepresentationStore(tmp_path)
    with _writer(store, chunk_rows=CHUNK) as writer:
        CountingWriter().run(writer, limit=1)
    with pytest.raises(StoreError, match=f"different {field}.*store.delete"):
        _writer(store, **override)
    assert _writer(store).n_done == 1  # the partial entry is untouched


def test_writer_for_a_complete_entry_reuses_it(tmp_path):
    store = RepresentationStore(tmp_path)
    store.save(KEY, _full_rep(), provenance=PROV)
    writer = _writer(store)
    assert list(writer.pending()) == []
    np.testing.assert_array_equal(writer.finalize().values, rows(0, N))
    with pytest.raises(StoreError, match="different shape"):
        _writer(store, shape=(N, 2))


def test_writer_refuses_bad_arguments_before_touching_disk(tmp_path):
    store = RepresentationStore(tmp_path)
    with pytest.raises(ValueError, match="'chunk_rows'"):
        _writer(store, chunk_rows=0)
    with pytest.raises(TypeError, match="'chunk_rows'"):
        _writer(store, chunk_rows=2.5)
    with pytest.raises(ValueError, match="unique"):
        _writer(store, ids=np.zeros(N, dtype=int))
    with pytest.raises(TypeError, match="numeric dtype"):
        _writer(store, dtype=object)
    with pytest.raises(TypeError, match="stable fingerprint"):
        _writer(store, provenance={"model": object()})
    assert store.state(KEY) == "absent"


def test_writer_refuses_partial_chunks_and_early_finalize(tmp_path):
    writer = _writer(RepresentationStore(tmp_path), chunk_rows=CHUNK)
    with pytest.raises(ValueError, match="whole chunks"):
        writer.write(3, rows(3, 11))
    with pytest.raises(ValueError, match="shape"):
        writer.write(0, np.zeros((CHUNK, D + 1), np.float32))
    with pytest.raises(TypeError, match="float32"):
        writer.write(0, np.zeros((CHUNK, D), complex))
    writer.write(0, rows(0, 2 * CHUNK))  # several whole chunks at once are fine
    with pytest.raises(StoreError, match=r"5 of 7 chunks .* pending"):
        writer.finalize()
    writer.close()


def test_kill_inside_finalize_before_the_manifest_resumes(tmp_path, monkeypatch):
    store = RepresentationStore(tmp_path)
    writer = _writer(store, chunk_rows=CHUNK)
    CountingWriter().run(writer)

    def crash(path, data):
        raise KeyboardInterrupt("killed before the manifest")

    monkeypatch.setattr(store_module, "atomic_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        writer.finalize()
    monkeypatch.undo()
    writer.close()
    assert store.load(KEY) is None
    resumed = _writer(store)
    assert list(resumed.pending()) == []
    np.testing.assert_array_equal(resumed.finalize().values, rows(0, N))


KILLED_WRITER = """
import sys, time
from datadiet.store import RepresentationStore
root, key, n_chunks = sys.argv[1], sys.argv[2], int(sys.argv[3])
writer = RepresentationStore(root).writer(
    key, (N, D), np.float32, IDS, provenance=PROV, kind="hidden", chunk_rows=CHUNK)
for i, (start, stop) in enumerate(writer.pending()):
    if i == n_chunks:  # rows of the next chunk reach disk but the chunk is never marked done
        writer._values[start:stop] = 99.0
        writer._values.flush()
        print("stalled", flush=True)
        time.sleep(60)
    writer.write(start, rows(start, stop))
    print("wrote", start, flush=True)
"""


def test_sigkill_mid_write_leaves_a_partial_entry_that_resumes_identically(tmp_path):
    child = _child(KILLED_WRITER, str(tmp_path), KEY, "3")
    lines = [child.stdout.readline().strip() for _ in range(4)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert lines[-1] == "stalled", lines
    store = RepresentationStore(tmp_path, lock_timeout=5.0)
    assert store.load(KEY) is None and store.state(KEY) == "partial"
    resumed, counter = _writer(store), CountingWriter()
    counter.run(resumed)
    resumed.finalize()
    assert counter.starts == [24, 32, 40, 48]
    reference = RepresentationStore(tmp_path / "ref")
    reference.save(KEY, _full_rep(), provenance=PROV)
    assert (store.path(KEY) / "values.npy").read_bytes() == (reference.path(KEY) / "values.npy").read_bytes()


# ------------------------------------------------------------------------------------------------ concurrency
RACING_COMPUTE = """
import hashlib, os, sys, time
from datadiet.representations.base import Representation
from datadiet.store import RepresentationStore
root, key, counter, go = sys.argv[1:5]
store = RepresentationStore(root, lock_timeout=30)

def compute():
    with open(counter, "a") as handle:
        handle.write("computed\\n")
    time.sleep(0.5)  # long enough that the other process is waiting on the lock
    return Representation(rows(0, N), kind="hidden", ids=IDS)

print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
rep = store.get_or_compute(key, compute, provenance=PROV, rebuild="make features")
print(hashlib.sha256(np.ascontiguousarray(rep.values).tobytes()).hexdigest(), type(rep.values).__name__)
"""


def test_concurrent_get_or_compute_runs_compute_once(tmp_path):
    counter, go = tmp_path / "counter.txt", tmp_path / "go"
    args = (str(tmp_path / "store"), KEY, str(counter), str(go))
    children = [_child(RACING_COMPUTE, *args) for _ in range(2)]
    assert [child.stdout.readline().strip() for child in children] == ["ready", "ready"]
    go.touch()
    outputs = [child.communicate(timeout=60)[0].split() for child in children]
    assert all(child.returncode == 0 for child in children)
    assert counter.read_text().splitlines() == ["computed"]
    assert outputs[0] == outputs[1] and outputs[0][1] == "memmap"
    np.testing.assert_array_equal(RepresentationStore(tmp_path / "store").load(KEY).values, rows(0, N))


def test_get_or_compute_loads_without_computing_when_present(tmp_path):
    store = RepresentationStore(tmp_path)
    calls = []
    first = store.get_or_compute(KEY, lambda: calls.append(1) or _full_rep(), provenance=PROV)
    second = store.get_or_compute(KEY, lambda: calls.append(1) or _full_rep(), provenance=PROV)
    assert calls == [1] and second.meta == first.meta == PROV


def test_waiting_for_a_held_lock_times_out_with_a_clear_message(tmp_path):
    store = RepresentationStore(tmp_path, lock_timeout=0.2)
    holder = _writer(store)
    started = time.monotonic()
    with pytest.raises(
        StoreError, match=r"Timed out after 0\.2 s .*another process is writing.*lock_timeout"
    ):
        store.get_or_compute(KEY, _full_rep, provenance=PROV)
    assert time.monotonic() - started < 2
    holder.close()
    assert store.get_or_compute(KEY, _full_rep, provenance=PROV).n_examples == N


# ------------------------------------------------------------------------------------------ listing, delete
def test_entries_list_complete_entries_and_delete_removes_them(tmp_path):
    store = RepresentationStore(tmp_path)
    other = make_key(dataset="other")
    store.save(KEY, _full_rep(), provenance=PROV)
    store.save(other, _full_rep(), provenance={"dataset": "other"})
    store.writer(make_key(dataset="partial"), (N, D), np.float32, provenance={"dataset": "partial"}).close()
    assert store.entries() == dict(sorted({KEY: PROV, other: {"dataset": "other"}}.items()))
    assert store.delete(KEY) is True and store.delete(KEY) is False
    assert list(store.entries()) == [other] and store.load(KEY) is None
