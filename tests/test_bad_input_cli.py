"""Bad input reaching the CLI and ``datadiet._core.files``: one line naming the file, the field and the fix.

Output targets that are not regular files, full disks, damaged ``.npy`` headers on every array option,
store-entry files passed instead of the entry, malformed ``--param`` values, unknown option values,
damaged ``selection.json`` files given to ``overlap``, and errors raised while a progress bar is drawn.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import datadiet.cli as cli
from datadiet._core.files import atomic_write_bytes, atomic_write_json, load_array
from datadiet.cli import app, parse_params
from datadiet.errors import ParameterError
from datadiet.representations.base import Representation
from datadiet.selection.base import Selection
from datadiet.store import RepresentationStore, make_key

runner = CliRunner()
FAST = settings(max_examples=60, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


def _cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def features(tmp_path: Path) -> Path:
    path = tmp_path / "f.npy"
    np.save(path, np.random.default_rng(0).normal(size=(12, 3)))
    return path


def _select(features: Path, out: Path, *extra: object, algorithm: str = "random", budget: str = "3"):
    return _cli("select", "--features", features, "--algorithm", algorithm, "--budget", budget, "--out", out,
                *extra)  # fmt: skip


# ------------------------------------------------------------------------ output targets that are not files
def test_atomic_write_refuses_a_fifo_and_leaves_it_a_fifo(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(FileExistsError, match=r"Cannot write '.*pipe': it is a FIFO \(named pipe\), not a "
                                              r"regular file.*Give the path of a regular file"):  # fmt: skip
        atomic_write_bytes(pipe, b"data")
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)
    assert _files_in(tmp_path) == ["pipe"]


def test_atomic_write_refuses_a_symlink_to_a_device_and_keeps_the_link(tmp_path):
    link = tmp_path / "null"
    os.symlink("/dev/null", link)  # only the link is ever looked at; /dev/null is never opened
    with pytest.raises(FileExistsError, match=r"symbolic link to '/dev/null', which is a character device"):
        atomic_write_json(link, {"a": 1})
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert _files_in(tmp_path) == ["null"]


def test_atomic_write_follows_a_symlink_to_a_regular_file_and_refuses_a_dangling_one(tmp_path):
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old")
    os.symlink(target.name, link)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    dangling = tmp_path / "dangling.json"
    os.symlink("missing.json", dangling)
    with pytest.raises(FileNotFoundError, match=r"symbolic link to '.*missing.json', which is missing"):
        atomic_write_bytes(dangling, b"x")
    assert _files_in(tmp_path) == ["dangling.json", "link.json", "real.json"]


def test_cli_out_naming_a_fifo_is_one_line_and_writes_nothing(tmp_path, features):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    _one_line_error(_select(features, pipe), f"Cannot write '{pipe}': it is a FIFO")
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)


# ----------------------------------------------------------------------------------------------- full disk
def _full_disk(monkeypatch) -> None:
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)


def test_atomic_write_on_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    old = tmp_path / "kept.json"
    old.write_text("old")
    _full_disk(monkeypatch)
    for path in (tmp_path / "new.json", old):
        with pytest.raises(OSError, match=rf"Cannot write '{path}': No space left on device; nothing was "
                                          r"written under that name. Fix: free space") as info:  # fmt: skip
            atomic_write_bytes(path, b"x" * 100_000)
        assert info.value.errno == errno.ENOSPC and "\n" not in str(info.value)
    assert _files_in(tmp_path) == ["kept.json"] and old.read_text() == "old"


def test_cli_select_on_a_full_disk_is_one_line(tmp_path, features, monkeypatch):
    _full_disk(monkeypatch)
    out = tmp_path / "out" / "sel.json"
    _one_line_error(_select(features, out), "[Errno 28]", f"Cannot write '{out}': No space left on device")
    assert _files_in(out.parent) == []


LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
sys.argv = ["datadiet", *sys.argv[1:]]
from datadiet.cli import main
main()
"""


def test_a_write_past_the_file_size_limit_fails_in_one_line_with_no_partial_file(tmp_path):
    """A real kernel refusal (RLIMIT_FSIZE, EFBIG), in a child process running the CLI."""
    features = tmp_path / "p.npy"
    np.save(features, np.random.default_rng(0).random((3000, 4)))
    out = tmp_path / "out"
    out.mkdir()
    args = ["select", "--features", str(features), "--algorithm", "hard_to_learn", "--budget", "0.5",
            "--out", str(out / "sel.json")]  # fmt: skip
    run = subprocess.run([sys.executable, "-c", LIMITED, *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: [Errno 27] Cannot write"), run.stderr
    assert "File too large" in lines[0] and "ulimit -f" in lines[0]
    assert _files_in(out) == []


# ------------------------------------------------------------------------------- every array input: .npy
def _npy_with_header(path: Path, shape: tuple[int, ...], dtype: str = "<f8", data: bytes = b"") -> Path:
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": dtype, "fortran_order": False, "shape": shape})
        handle.write(data)
    return path


ARRAY_OPTIONS = ["--features", "--labels", "--val-features", "--val-groups"]


def _select_with(option: str, path: Path, features: Path, tmp_path: Path):
    extra = {"--features": [], "--labels": ["--labels", path], "--val-features": ["--val-features", path],
             "--val-groups": ["--val-groups", path]}[option]  # fmt: skip
    feats = path if option == "--features" else features
    algorithm = "less" if option in ("--val-features", "--val-groups") else "random"
    return _select(feats, tmp_path / "s.json", *extra, algorithm=algorithm)


@pytest.mark.parametrize("option", ARRAY_OPTIONS)
def test_every_array_option_refuses_a_header_claiming_a_huge_shape(tmp_path, features, option):
    path = _npy_with_header(tmp_path / "huge.npy", (10**6, 10**6))
    result = _select_with(option, path, features, tmp_path)
    _one_line_error(result, f"file '{path}' is damaged: its header says shape (1000000, 1000000)",
                    "recreate it with np.save")  # fmt: skip
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("option", ARRAY_OPTIONS)
def test_every_array_option_refuses_an_empty_file_naming_it(tmp_path, features, option):
    path = tmp_path / "empty.npy"
    path.write_bytes(b"")
    result = _select_with(option, path, features, tmp_path)
    _one_line_error(result, f"file '{path}' is empty (0 bytes)")
    assert "Aborted" not in result.output


@pytest.mark.parametrize("mmap", [False, True])
def test_load_array_names_the_file_when_the_header_is_truncated(tmp_path, features, mmap):
    path = tmp_path / "trunc.npy"
    path.write_bytes(features.read_bytes()[:20])
    with pytest.raises(
        ValueError, match=rf"'{path}' is not a readable .npy file \(EOF: reading array header"
    ):
        load_array(path, name="dynamics", mmap=mmap)


@pytest.mark.parametrize(
    ("descr", "message"),
    [("|O", "holds Python objects"), ([("a", "<f8"), ("b", "<i4")], "numeric or string arrays only"),
     ("<M8[D]", "numeric or string arrays only")],
)  # fmt: skip
def test_load_array_refuses_object_structured_and_date_dtypes_from_the_header(tmp_path, descr, message):
    path = _npy_with_header(tmp_path / "odd.npy", (4,), descr, b"\0" * 64)
    for mmap in (False, True):
        with pytest.raises(ValueError, match=message):
            load_array(path, name="labels", mmap=mmap)


@FAST
@given(
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple),
    dtype=st.sampled_from(["<f4", ">f8", "<i2", "|u1", "|b1", "<U3", "|S2", "<c8"]),
    cut=st.floats(0, 1, exclude_max=True),
    mmap=st.booleans(),
)
def test_any_truncated_npy_is_refused_naming_the_file_and_any_whole_one_loads(
    tmp_path, shape, dtype, cut, mmap
):
    path = tmp_path / "a.npy"
    array = np.zeros(shape, dtype=dtype)
    np.save(path, array, allow_pickle=False)
    whole = path.read_bytes()
    np.testing.assert_array_equal(load_array(path, name="labels", mmap=mmap), array)
    path.write_bytes(whole[: int(cut * len(whole))] if math.prod(shape) else whole[: int(cut * 64)])
    with pytest.raises(ValueError, match=rf"labels file '{path}' (is empty|is not a readable|is damaged)"):
        load_array(path, name="labels", mmap=mmap)
    path.write_bytes(whole + b"\0")  # a stray byte after the data: the header no longer matches the size
    with pytest.raises(ValueError, match="is damaged"):
        load_array(path, name="labels", mmap=mmap)


def test_load_array_refuses_a_fifo_without_blocking_and_names_a_folder(tmp_path):
    pipe = tmp_path / "labels.txt"
    os.mkfifo(pipe)
    with pytest.raises(
        ValueError, match=r"labels file '.*labels.txt' is a FIFO \(named pipe\), not a regular"
    ):
        load_array(pipe, name="labels")
    with pytest.raises(IsADirectoryError, match=r"labels file '.*' is a folder; pass a .npy file"):
        load_array(tmp_path, name="labels")


# ----------------------------------------------------------------------------- features: folders and files
@pytest.fixture
def entry(tmp_path: Path) -> Path:
    """A store entry of per-checkpoint gradients whose provenance records very different learning rates."""
    store = RepresentationStore(tmp_path / "store")
    key = make_key(dataset="toy", extractor="gradients")
    values = np.random.default_rng(3).normal(size=(40, 2, 6)).astype(np.float32)
    store.save(
        key, Representation(values, kind="gradients"), provenance={"dataset": "toy", "lr": [1.0, 1e-6]}
    )
    return store.path(key)


def test_values_npy_inside_a_store_entry_is_read_as_the_entry_with_its_provenance(tmp_path, entry):
    val = tmp_path / "val.npy"
    np.save(val, np.random.default_rng(4).normal(size=(5, 2, 6)))
    records = []
    for features in (entry, entry / "values.npy"):
        result = _select(features, tmp_path / "s.json", "--val-features", val, algorithm="less", budget="8")
        assert result.exit_code == 0, result.output
        records.append(json.loads((tmp_path / "s.json").read_text()))
    folder, values_file = records
    assert values_file["indices"] == folder["indices"]
    assert values_file["params"]["lr_weights"] == [1.0, 1e-6] == values_file["representation"]["lr"]


@pytest.mark.parametrize("name", ["ids.npy", "manifest.json"])
def test_another_file_inside_a_store_entry_is_refused_naming_the_entry_to_pass(tmp_path, entry, name):
    result = _select(entry / name, tmp_path / "s.json")
    _one_line_error(result, f"is a file inside the representation-store entry '{entry}'",
                    f"pass the entry folder instead: --features {entry}")  # fmt: skip


def test_a_plain_folder_and_a_text_file_as_features_say_what_to_pass(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    _one_line_error(_select(folder, tmp_path / "s.json"),
                    f"features '{folder}' is a folder but not a representation-store entry",
                    "pass a .npy file or an entry folder <store>/<key>")  # fmt: skip
    text = tmp_path / "words.csv"
    text.write_text("a\nb\nc\n")
    _one_line_error(_select(text, tmp_path / "s.json"), f"features file '{text}' holds <U1 text, not numbers",
                    "must be a numeric .npy", "np.loadtxt")  # fmt: skip


def test_a_partial_store_entry_says_to_finish_it(tmp_path):
    store = RepresentationStore(tmp_path / "store")
    key = make_key(dataset="toy", extractor="hidden")
    writer = store.writer(key, (4, 2), np.float32, provenance={"dataset": "toy"}, chunk_rows=2)
    writer.close()
    _one_line_error(_select(store.path(key), tmp_path / "s.json"), "is a partial representation-store entry",
                    "rerun the command that builds it")  # fmt: skip
    _one_line_error(_select(store.path(key) / "writer.json", tmp_path / "s.json"),
                    "is a file inside the representation-store entry")  # fmt: skip


# ------------------------------------------------------------------------------------------------ --param
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[1", "--param n_clusters='[1' is not a valid value"),
        ("{a", "--param n_clusters='{a' is not a valid value"),
        ("*alias", "--param n_clusters uses a YAML anchor or alias"),
        ("[&a [1, 2], *a, *a]", "--param n_clusters uses a YAML anchor or alias"),
        ("!!python/object/apply:os.system [echo hi]", "--param n_clusters uses a YAML tag"),
        ("!!str 3", "--param n_clusters uses a YAML tag"),
        ("2020-01-01", "--param n_clusters reads as a date"),
        (".nan", "--param n_clusters is nan; a parameter must be a finite number"),
        ("1e999", "--param n_clusters is inf"),
        ("[" * 50 + "]" * 50, "is nested more than 8 levels deep"),
        ("[" * 5000 + "]" * 5000, "is nested more than 8 levels deep"),  # refused before YAML parses it
        ("- " * 3000 + "1", "is not a valid value (RecursionError)"),
        ("1" * 20_000, "is 20000 characters long; the limit is 10000"),
    ],
)
def test_a_malformed_param_is_one_line_naming_it(tmp_path, features, value, message):
    result = _select(features, tmp_path / "s.json", "--param", f"n_clusters={value}", algorithm="s2l")
    _one_line_error(result, message)
    assert not (tmp_path / "s.json").exists()


def test_a_param_given_twice_is_refused_and_plain_values_still_parse():
    with pytest.raises(ValueError, match="--param k is given twice"):
        parse_params(["k=1", "k=2"])
    assert parse_params(["a=2e-5", "b=[1.0E3, 3]", "c={x: 1e-2}", "d=nan-ish", "e=inf", "f="]) == {
        "a": 2e-5, "b": [1000.0, 3], "c": {"x": 0.01}, "d": "nan-ish", "e": "inf", "f": None,
    }  # fmt: skip


@FAST
@given(value=st.text(max_size=40))
def test_any_param_text_gives_plain_json_data_or_one_value_error_naming_it(value):
    try:
        parsed = parse_params([f"k={value}"])
    except ValueError as exc:
        assert str(exc).startswith("--param k") and "\n" not in str(exc), str(exc)
        return
    json.dumps(parsed, allow_nan=False)  # plain, finite data only


@pytest.mark.parametrize("budget", ["1_0", "nan", "inf", "0x10", "\u0661\u0662", "3 4"])
def test_a_budget_that_python_would_coerce_is_refused(tmp_path, features, budget):
    """``float("1_0")`` is 10.0 and ``int("١٢")`` is 12: --budget takes plain decimal numbers only."""
    _one_line_error(_select(features, tmp_path / "s.json", budget=budget), "--budget must be an int count")


# ------------------------------------------------------------------------------------- option values
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--balance", "stratifed"], "--balance must be one of ['none', 'stratified', 'sqrt']. Got "
                                     "'stratifed' instead. Did you mean 'stratified'?"),
        (["--calibrate", "0.5", "--weighting", "unbiassed"], "Did you mean 'unbiased'?"),
        (["--engine", "locl"], "--engine must be one of ['local', 'ray']. Got 'locl' instead. "
                               "Did you mean 'local'?"),
        (["--ray-address", "auto"], "--ray-address needs --engine ray."),
    ],
)  # fmt: skip
def test_an_unknown_option_value_is_one_line_with_a_suggestion(tmp_path, features, args, message):
    _one_line_error(_select(features, tmp_path / "s.json", *args), message)


def test_demo_mode_typo_gets_a_suggestion(tmp_path):
    _one_line_error(_cli("demo", "--out", tmp_path / "d", "--mode", "frozn"), "Did you mean 'frozen'?")
    assert not (tmp_path / "d").exists()


# ------------------------------------------------------------------------------- an error under a tqdm bar
def test_an_error_raised_while_a_progress_bar_is_drawn_starts_its_own_line(tmp_path, features, monkeypatch):
    from tqdm.auto import tqdm

    live = []

    def fails_midway(path: Path, *, name: str) -> None:
        bar = tqdm(total=10, desc="encode", file=sys.stderr)
        bar.update(3)
        live.append(bar)
        raise ParameterError(f"{name} file '{path}' failed halfway")  # a user error, raised mid-bar

    monkeypatch.setattr(cli, "load_features", fails_midway)
    result = _select(features, tmp_path / "s.json")
    assert result.exit_code == 2
    lines = result.output.split("\n")
    error = [line for line in lines if "error:" in line]
    assert error == [f"error: features file '{features}' failed halfway"], result.output
    assert "encode:  30%" in result.output and live  # the bar was drawn before the error


def test_an_eof_error_from_a_library_is_one_line_not_a_bare_aborted(tmp_path, features, monkeypatch):
    """np.load hitting the end of a file raises EOFError; the loader turns it into one line naming the file
    (click alone would print only "Aborted.", and the CLI leaves any exception that is not a user error as a
    traceback)."""

    def truncated(*args: object, **kwargs: object) -> None:
        raise EOFError("No data left in file")  # what np.load raises on a file cut before its data

    monkeypatch.setattr(np, "load", truncated)
    result = _select(features, tmp_path / "s.json")
    _one_line_error(result, "error: features file", "No data left in file", "recreate it with np.save")
    assert "Aborted" not in result.output


def test_an_exception_that_is_not_a_user_error_keeps_its_traceback(tmp_path, features, monkeypatch):
    """Only DatadietError and OSError are user errors: a bug (here a KeyError from inside) is not hidden."""

    def buggy(path: Path, *, name: str) -> None:
        raise KeyError("internal")

    monkeypatch.setattr(cli, "load_features", buggy)
    result = _select(features, tmp_path / "s.json")
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)


# ----------------------------------------------------------------------------------------- selection.json
def _selection(tmp_path: Path, name: str, **changes: object) -> Path:
    record = {"indices": [1, 4, 7], "budget": 3, "algorithm": "x", "params": {}, "seed": 0, "n_examples": 10,
              "scores": [float(i) for i in range(10)], "weights": [1.0, 2.0, 3.0]}  # fmt: skip
    record.update(changes)
    path = tmp_path / name
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"indices": [1, -4, 7]}, "field 'indices' item 1 must be an int in [0, 9]. Got -4."),
        ({"indices": [1, 4, 10]}, "field 'indices' item 2 must be an int in [0, 9]. Got 10."),
        ({"indices": [1, 4.5, 7]}, "field 'indices' item 1 must be an int in [0, 9]. Got 4.5."),
        ({"indices": [1, True, 7]}, "field 'indices' item 1 must be an int"),
        ({"indices": [1, 4, 4]}, "field 'indices' repeats [4]"),
        ({"indices": []}, "field 'indices' must hold at least 1 item(s)"),
        ({"indices": "1,4,7"}, "field 'indices' must be a list"),
        ({"budget": 4}, "field 'budget' is 4 but 'indices' holds 3"),
        ({"n_examples": 0}, "field 'n_examples' must be an int in [1, inf]"),
        ({"n_examples": "10"}, "field 'n_examples' must be an int"),
        ({"scores": [1.0] * 9}, "field 'scores' holds 9 values but n_examples is 10"),
        ({"scores": [1.0] * 9 + [float("nan")]}, "field 'scores' item 9 must be a finite number"),
        ({"scores": [1.0] * 9 + [10**400]}, "field 'scores' holds a number too large for a float"),
        ({"weights": [1.0, 2.0]}, "field 'weights' holds 2 values for 3 indices"),
        ({"weights": [1.0, -2.0, 1.0]}, "field 'weights' item 1 must be a number in [0, None]"),
        ({"seed": -1}, "field 'seed' must be an int in [0, inf]"),
        ({"params": [1]}, "field 'params' must be a JSON object"),
    ],
)
def test_overlap_refuses_a_damaged_selection_naming_the_file_and_field(tmp_path, changes, message):
    good, bad = _selection(tmp_path, "good.json"), _selection(tmp_path, "bad.json", **changes)
    _one_line_error(_cli("overlap", good, bad), f"selection file '{bad}': {message}", "Fix: regenerate it")


def test_overlap_names_the_file_whose_dataset_size_differs(tmp_path):
    a, b = _selection(tmp_path, "a.json"), _selection(tmp_path, "b.json", n_examples=20, scores=None)
    _one_line_error(_cli("overlap", a, b), f"selection file '{b}' selects from n_examples=20 but '{a}' from "
                                            "n_examples=10")  # fmt: skip


def test_from_dict_keeps_weights_with_their_indices_when_it_sorts_them():
    sel = Selection.from_dict({"indices": [7, 1, 4], "weights": [7.0, 1.0, 4.0]})
    assert sel.indices.tolist() == [1, 4, 7] and sel.weights.tolist() == [1.0, 4.0, 7.0]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 12) | st.floats(allow_nan=True) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


@FAST
@given(field=st.sampled_from(["indices", "budget", "n_examples", "scores", "weights", "seed", "params"]),
       value=JSON_VALUES)  # fmt: skip
def test_any_field_value_loads_a_consistent_selection_or_is_refused_naming_the_field(field, value):
    record = {"indices": [1, 4, 7], "budget": 3, "n_examples": 10, "scores": [0.5] * 10, "seed": 0}
    record[field] = value
    try:
        sel = Selection.from_dict(record, where="selection file 'x.json'")
    except ValueError as exc:
        assert str(exc).startswith("selection file 'x.json'") and f"'{field}'" in str(exc), str(exc)
        return
    n = sel.meta.get("n_examples")
    assert len(sel.indices) >= 1 and len(set(sel.indices.tolist())) == len(sel.indices)
    assert n is None or (0 <= sel.indices.min() and sel.indices.max() < n)
    assert sel.meta.get("budget") in (None, len(sel.indices))
    assert sel.scores is None or (np.isfinite(sel.scores).all() and (n is None or len(sel.scores) == n))
    assert sel.weights is None or (len(sel.weights) == len(sel.indices) and (sel.weights >= 0).all())


# ------------------------------------------------------------------------- study specs refused at load
@pytest.mark.parametrize(("selection", "fragments"), [
    ("{algorithm: hard_to_lern, representation: dynamics/prob}",
     ("selections[0].algorithm", "Did you mean 'hard_to_learn'?")),
    ("{algorithm: hard_to_learn, representation: dynamcs/prob}",
     ("selections[0].representation", "Did you mean 'dynamics/prob'?")),
    ("{algorithm: semdedup, representation: hidden/final, params: {n_cluster: 3}}",
     ("selections[0]:", "Unknown parameter(s) ['n_cluster']", "Did you mean 'n_clusters'?")),
])  # fmt: skip
def test_study_refuses_a_misspelled_spec_before_reading_data_or_writing(
    tmp_path, monkeypatch, selection, fragments
):
    """The study config is checked when it is loaded: no dataset is read, no output folder is created."""
    import datadiet.pipeline.reference as reference

    def no_work(*args, **kwargs):
        raise AssertionError("the study started working before its config was checked")

    monkeypatch.setattr(reference, "prepare", no_work)
    out = tmp_path / "out"
    config = tmp_path / "study.yaml"
    config.write_text(f"output: {out}\nselections: [{selection}]\n")
    line = _one_line_error(_cli("study", "--config", config), "study.yaml", *fragments)
    assert "AssertionError" not in line
    assert not out.exists()
