"""Bad input gets a clear error naming the problem (and the fix), or a documented behaviour.

One test (or parametrized case) per row of the table in docs/_frag_bad_input.md: loaders, selectors,
configs, the CLI, and untrusted files (no unpickling, no ``eval``, output paths that stay in their folder).
"""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import datadiet
from datadiet import SELECTORS
from datadiet._core.files import MAX_NAME, load_array, safe_name
from datadiet.cli import app
from datadiet.config import ConfigError, ReferenceConfig, SelectionSpec, StudyConfig, from_dict, load_config
from datadiet.data.dataset import Dataset, DatasetError, encode_labels
from datadiet.data.loaders import load_dataset
from datadiet.pipeline.study import Cell
from datadiet.selection.balancing import stratified_budgets
from datadiet.selection.kmeans import NClustersClampedWarning
from datadiet.store import RepresentationStore
from tests.helpers import inputs_for

SRC = Path(datadiet.__file__).parent
runner = CliRunner()


def _jsonl(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _cli(*args: str):
    return runner.invoke(app, list(args))


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ------------------------------------------------------------------------------------------------ loaders
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jsonl", "", "is empty; it needs one JSON object per line"),
        ("blank.jsonl", "\n\n  \n", "is empty; it needs one JSON object per line"),
        ("empty.csv", "", "is empty; it needs a header row and at least one row"),
        ("header_only.csv", "text,label\n", "has a header row but no rows"),
    ],
)
def test_loader_refuses_an_empty_file(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path / name)


def test_loader_refuses_an_empty_parquet_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.string())}),
                   tmp_path / "empty.parquet")  # fmt: skip
    with pytest.raises(DatasetError, match="has no rows"):
        load_dataset(tmp_path / "empty.parquet")


def test_loader_accepts_one_class_and_balancing_gives_it_the_whole_budget(tmp_path):
    """Documented: one class loads (a test split may hold one); selection and balancing still work."""
    path = _jsonl(tmp_path / "one.jsonl", *({"text": f"t{i}", "label": "spam"} for i in range(6)))
    ds = load_dataset(path)["train"]
    assert ds.label_names == ("spam",) and ds.labels.tolist() == [0] * 6
    sel = datadiet.select("random", np.random.default_rng(0).random((6, 2)), 3, labels=ds.labels,
                          balance="stratified")  # fmt: skip
    assert sel.budget == 3 and stratified_budgets(ds.labels, 3)[1].tolist() == [3]
    from datadiet.models.frozen import FrozenHead

    with pytest.raises(
        ValueError, match=r"'num_labels' parameter of FrozenHead must be an int in the range \[2"
    ):
        FrozenHead.for_dataset(ds, np.eye(6, 2, dtype=np.float32), num_labels=ds.n_classes)


def test_loader_refuses_duplicate_ids(tmp_path):
    path = _jsonl(
        tmp_path / "dup.jsonl", {"id": "a", "text": "x", "label": 0}, {"id": "a", "text": "y", "label": 1}
    )
    with pytest.raises(DatasetError, match=r"duplicate ids \['a'\]; ids must be unique"):
        load_dataset(path, id="id")


def test_dataset_refuses_ids_that_collide_once_turned_to_text():
    with pytest.raises(DatasetError, match=r"duplicate ids \['1'\]"):
        Dataset(np.array([1, "1"], dtype=object), ["a", "b"], np.array([0, 0]), ("x",))


@pytest.mark.parametrize(
    ("name", "payload", "line"),
    [
        ("latin1.jsonl", b'{"text": "ok", "label": 0}\n{"text": "caf\xe9", "label": 1}\n', 2),
        ("latin1.csv", b"text,label\nok,0\ncaf\xe9,1\n", 3),
        ("latin1.tsv", b"text\tlabel\nok\t0\ncaf\xe9\t1\n", 3),
    ],
)
def test_loader_refuses_non_utf8_bytes_naming_line_offset_and_fix(tmp_path, name, payload, line):
    (tmp_path / name).write_bytes(payload)
    with pytest.raises(
        DatasetError, match=rf"not valid UTF-8: byte 0xe9 at byte offset \d+ \(line {line}\)"
    ) as info:
        load_dataset(tmp_path / name)
    assert "Re-encode the file as UTF-8" in str(info.value)


def test_loader_keeps_a_10_mb_text_field_whole(tmp_path):
    """Documented: loading never truncates; the model's tokenizer truncates to ``model.max_length`` tokens."""
    big = "word " * (2 * 2**20)  # 10 MiB
    path = _jsonl(tmp_path / "big.jsonl", {"text": big, "label": "a"}, {"text": "short", "label": "b"})
    ds = load_dataset(path)["train"]
    assert len(ds.texts[0]) == 10 * 2**20 and ds.texts[0] == big
    assert len(ds.fingerprint()) == 16


@pytest.mark.parametrize(
    ("labels", "kinds"),
    [
        ([1, "1", 2.0], "['float', 'int', 'str']"),
        ([1, 2.0], "['float', 'int']"),
        ([1, True], "['bool', 'int']"),
        (["a", 3], "['int', 'str']"),
    ],
)
def test_loader_refuses_labels_of_mixed_types(tmp_path, labels, kinds):
    path = _jsonl(tmp_path / "mixed.jsonl", *({"text": f"t{i}", "label": y} for i, y in enumerate(labels)))
    with pytest.raises(DatasetError, match="labels mix types") as info:
        load_dataset(path)
    assert kinds in str(info.value) and "use one type (all int or all str)" in str(info.value)


def test_encode_labels_treats_numpy_scalars_as_their_python_type():
    labels, names = encode_labels([np.int64(1), 2, np.int32(1)])
    assert names == ("1", "2") and labels.tolist() == [0, 1, 0]


def test_validation_label_unseen_in_training_is_refused_until_label_names_lists_it(tmp_path):
    _jsonl(tmp_path / "train.jsonl", {"text": "a", "label": "x"}, {"text": "b", "label": "y"})
    _jsonl(tmp_path / "validation.jsonl", {"text": "c", "label": "z"}, {"text": "d", "label": "x"})
    with pytest.raises(
        DatasetError, match=r"validation split has labels \['z'\] that are not in the train"
    ) as info:
        load_dataset(tmp_path)
    assert "Pass label_names=[...]" in str(info.value)
    splits = load_dataset(tmp_path, label_names=["x", "y", "z"])
    assert splits["validation"].labels.tolist() == [2, 0]


def test_less_with_a_validation_group_unseen_in_training_selects_by_train_labels_only():
    """Documented: LESS reads no labels (``val_groups`` are just group ids); stratified balancing reads the
    training labels only, so a validation-only class gets no budget and nothing fails."""
    rng = np.random.default_rng(0)
    train_labels = np.repeat([0, 1], 10)
    sel = datadiet.select("less", rng.normal(size=(20, 2, 4)), 6, labels=train_labels,
                          val=rng.normal(size=(3, 2, 4)), val_groups=np.array([2, 2, 0]),
                          balance="stratified")  # fmt: skip
    assert np.bincount(train_labels[sel.indices]).tolist() == [3, 3]


# ---------------------------------------------------------------------------------------------- selectors
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", SELECTORS.names())
def test_selector_refuses_nan_and_inf_features_naming_the_rows(name, bad):
    values, kwargs = inputs_for(name, n=20)
    values = values.astype(float)
    values.flat[values[0].size * 4] = bad  # row 4
    with pytest.raises(ValueError, match=r"rep.values has 1 NaN/inf values \(first rows: \[4\]\)") as info:
        datadiet.select(name, values, 5, **kwargs)
    assert "Replace or drop those examples" in str(info.value)


def test_less_refuses_nan_in_the_validation_set():
    values, kwargs = inputs_for("less", n=20)
    kwargs["val"] = kwargs["val"].copy()
    kwargs["val"][1, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"val.values has 1 NaN/inf values \(first rows: \[1\]\)"):
        datadiet.select("less", values, 5, **kwargs)


def test_selector_refuses_nan_labels_and_an_empty_representation():
    with pytest.raises(ValueError, match="labels contain NaN/inf; give every example a label"):
        datadiet.select(
            "random", np.ones((3, 2)), 1, labels=np.array([0.0, np.nan, 1.0]), balance="stratified"
        )
    with pytest.raises(ValueError, match=r"rep.values is empty \(shape \(0, 3\)\); it needs at least one"):
        datadiet.select("random", np.zeros((0, 3)), 1)


N_BUDGET = 10


@pytest.mark.parametrize(
    ("budget", "error", "message"),
    [
        (0, ValueError, r"budget=0 should be in \[1, n_examples=10\]"),
        (N_BUDGET + 1, ValueError, r"budget=11 should be in \[1, n_examples=10\]"),
        (-3, ValueError, r"budget=-3 should be in \[1, n_examples=10\]"),
        (
            1.5,
            ValueError,
            r"A float budget is a fraction in \(0, 1\]. Got 1.5 instead; pass an int for a count",
        ),
        (0.0, ValueError, r"A float budget is a fraction in \(0, 1\]. Got 0.0"),
        (float("nan"), ValueError, r"A float budget is a fraction in \(0, 1\]. Got nan"),
        (0.05, ValueError, r"budget=0.05 of n_examples=10 floors to 0 examples; use a larger budget"),
        (True, TypeError, r"must be an int count or a float fraction in \(0, 1\]. Got True instead"),
        ("3", TypeError, r"must be an int count or a float fraction in \(0, 1\]. Got '3' instead"),
        (None, TypeError, r"must be an int count or a float fraction in \(0, 1\]. Got None instead"),
    ],
)
def test_budget_out_of_range_or_of_the_wrong_type_is_refused(budget, error, message):
    with pytest.raises(error, match=message):
        datadiet.select("random", np.ones((N_BUDGET, 2)), budget)


@pytest.mark.parametrize(("budget", "k"), [(1, 1), (N_BUDGET, N_BUDGET), (1.0, N_BUDGET), (np.int64(3), 3)])
def test_budget_edges_that_are_valid_select_exactly_k(budget, k):
    for name in SELECTORS.names():
        values, kwargs = inputs_for(name, n=N_BUDGET)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NClustersClampedWarning)
            assert datadiet.select(name, values, budget, **kwargs).budget == k, name


def test_selector_refuses_labels_of_mixed_python_types():
    labels = np.array([1, "1", 2.0], dtype=object)
    with pytest.raises(TypeError, match=r"labels mix types \['float', 'int', 'str'\]; use one type"):
        datadiet.select("random", np.ones((3, 2)), 2, labels=labels, balance="stratified")


def test_selector_refuses_a_plain_list_of_mixed_labels():
    with pytest.raises(TypeError, match="labels mix types"):
        datadiet.select("random", np.ones((3, 2)), 2, labels=[1, "1", 2.0], balance="stratified")


# ------------------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"trainig": {}}, r"Unknown key\(s\) \['trainig'\] in the config. Valid: \['output'"),
        ({"training": {"epoch": 3}}, r"Unknown key\(s\) \['epoch'\] in training. Valid: \['epochs'"),
        ({"training": {"epochs": "5"}}, "training.epochs must be an int. Got '5' instead."),
        ({"training": {"epochs": 2.5}}, "training.epochs must be an int. Got 2.5 instead."),
        ({"training": {"batch_size": None}}, "training.batch_size must be an int. Got None instead."),
        ({"dataset": {"slice": [10]}}, r"dataset.slice must be an int. Got \[10\] instead."),
        ({"training": {"epochs": 0}}, r"training.epochs must be an int in the range \[1, inf\). Got 0 "),
        ({"training": {"epochs": -2}}, r"training.epochs must be an int in the range \[1, inf\). Got -2"),
        ({"training": {"batch_size": -8}}, r"training.batch_size must be an int in the range \[1, inf\)"),
        ({"training": {"eval_batch_size": 0}}, r"training.eval_batch_size must be an int in the range"),
        ({"training": {"lr": 0}}, r"training.lr must be a number in the range \(0, inf\). Got 0.0 instead."),
        ({"training": {"warmup_ratio": 1.5}}, r"warmup_ratio must be a number in the range \[0, 1\]"),
        ({"training": {"weight_decay": -0.1}}, r"weight_decay must be a number in the range \[0, inf\)"),
        ({"training": {"seed": -1}}, r"training.seed must be an int in the range \[0, inf\)"),
        ({"training": {"checkpoint_epochs": [0, 1]}}, r"training.checkpoint_epochs\[0\] must be an int in"),
        ({"training": {"epochs": 3, "checkpoint_epochs": [2, 5]}},
         r"training.checkpoint_epochs must hold epochs in \[1, epochs=3\]. Got \[5\] instead"),
        ({"dataset": {"slice": 0}}, r"dataset.slice must be an int in the range \[1, inf\). Got 0 instead."),
        ({"dataset": {"label_noise": 1.0}}, r"dataset.label_noise must be a number in the range \[0, 1\)"),
        ({"model": {"lora": {"r": 0}}}, r"model.lora.r must be an int in the range \[1, inf\)"),
        ({"model": {"lora": {"dropout": 1}}}, r"model.lora.dropout must be a number in the range \[0, 1\)"),
        ({"model": {"max_length": 1}}, r"model.max_length must be an int in the range \[2, inf\)"),
        ({"represent": {"gradients": {"dim": 0}}}, r"represent.gradients.dim must be an int in the range"),
        ({"represent": {"gradients": {"batch_size": 0}}}, r"represent.gradients.batch_size must be an int"),
    ],
)  # fmt: skip
def test_reference_config_names_the_bad_field(data, error):
    with pytest.raises(ConfigError, match=error):
        from_dict(ReferenceConfig, data)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"budgets": [0.3, 100]}, r"budgets\[1\] must be a number in the range \(0, 1\]. Got 100.0 instead."),
        ({"budgets": [0]}, r"budgets\[0\] must be a number in the range \(0, 1\]. Got 0.0 instead."),
        ({"seeds": [0, -1]}, r"seeds\[1\] must be an int in the range \[0, inf\)"),
        ({"main": {"epochs": 0}}, r"main.epochs must be an int in the range \[1, inf\)"),
        ({"main": {"batch_size": 0}}, r"main.batch_size must be an int in the range \[1, inf\)"),
        ({"test_slice": 0}, r"test_slice must be an int in the range \[1, inf\)"),
        ({"selections": [{"algorithm": "el2n", "representation": "x", "calibrate": 1.5}]},
         r"selections\[0\].calibrate must be a number in the range \[0, 1\]. Got 1.5 instead."),
        ({"selections": [{"algorithm": "el2n", "representation": "x", "bogus": 1}]},
         r"Unknown key\(s\) \['bogus'\] in selections\[0\]"),
        ({"selections": [{"algorithm": "el2n", "representation": "x", "params": [1]}]},
         r"selections\[0\].params must be a mapping with string keys"),
    ],
)  # fmt: skip
def test_study_config_names_the_bad_field(data, error):
    with pytest.raises(ConfigError, match=error):
        from_dict(StudyConfig, data)


def test_config_defaults_and_edges_of_every_range_are_accepted():
    assert from_dict(ReferenceConfig, {}) == ReferenceConfig()
    edges = {
        "training": {"epochs": 1, "batch_size": 1, "warmup_ratio": 1, "seed": 0, "checkpoint_epochs": [1]},
        "dataset": {"label_noise": 0, "slice": 1},
        "model": {"lora": {"dropout": 0.0}, "max_length": 2},
    }
    cfg = from_dict(ReferenceConfig, edges)
    assert cfg.training.warmup_ratio == 1.0 and cfg.training.checkpoint_epochs == [1]
    assert from_dict(StudyConfig, {"budgets": [1, 0.01], "seeds": [0]}).budgets == [1.0, 0.01]
    assert (
        from_dict(SelectionSpec, {"algorithm": "el2n", "representation": "x", "calibrate": 0}).calibrate == 0
    )


def test_bad_config_file_through_the_cli_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training: {epochs: 3, batch_sise: 4}\n")
    _one_line_error(_cli("reference", "--config", str(path)), "Unknown key(s) ['batch_sise'] in training")
    path.write_text("training: {batch_size: 0}\n")
    _one_line_error(
        _cli("represent", "--config", str(path)), "training.batch_size must be an int in the range"
    )
    path.write_text("budgets: [0.3, 2]\n")
    _one_line_error(_cli("study", "--config", str(path)), "budgets[1] must be a number in the range (0, 1]")
    path.write_text("!!python/object/apply:os.system ['echo owned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):  # safe_load refuses python tags
        load_config(path, ReferenceConfig)


# ---------------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def features(tmp_path) -> Path:
    path = tmp_path / "f.npy"
    np.save(path, np.random.default_rng(0).normal(size=(12, 3)))
    return path


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ("0", "budget=0 should be in [1, n_examples=12]"),
        ("13", "budget=13 should be in [1, n_examples=12]"),
        ("-1", "budget=-1 should be in [1, n_examples=12]"),
        ("1.5", "A float budget is a fraction in (0, 1]. Got 1.5"),
        ("lots", "--budget must be an int count or a fraction in (0, 1]. Got 'lots'"),
    ],
)
def test_cli_budget_errors_are_one_line_and_exit_2(features, tmp_path, budget, message):
    result = _cli("select", "--features", str(features), "--algorithm", "random", "--budget", budget,
                  "--out", str(tmp_path / "s.json"))  # fmt: skip
    _one_line_error(result, message)


def test_cli_refuses_nan_features_and_non_utf8_labels(tmp_path, features):
    bad = np.load(features)
    bad[5, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    out = str(tmp_path / "s.json")
    _one_line_error(_cli("select", "--features", str(tmp_path / "nan.npy"), "--algorithm", "random",
                         "--budget", "3", "--out", out), "NaN/inf", "first rows: [5]")  # fmt: skip
    (tmp_path / "y.txt").write_bytes(b"a\n\xff\n" * 6)
    _one_line_error(_cli("select", "--features", str(features), "--labels", str(tmp_path / "y.txt"),
                         "--algorithm", "random", "--budget", "3", "--balance", "stratified", "--out", out),
                    "labels file", "is not valid UTF-8", "re-encode it as UTF-8")  # fmt: skip


def test_cli_out_path_that_is_a_folder_is_one_line_and_exit_2(features, tmp_path):
    (tmp_path / "taken").mkdir()
    result = _cli("select", "--features", str(features), "--algorithm", "random", "--budget", "3",
                  "--out", str(tmp_path / "taken"))  # fmt: skip
    _one_line_error(result, f"Cannot write '{tmp_path / 'taken'}': it is a folder. Give the path of a file")


# ------------------------------------------------------------------------------------------ untrusted files
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all"}


def _keyword_is(call: ast.Call, name: str, value: object) -> bool:
    return any(
        k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords
    )


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every way to run code from a file or unpickle data found in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [(node.lineno, f"import {n}") for n in names if n.split(".")[0] in UNSAFE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        last = name.rsplit(".", 1)[-1]
        if name in ("np.load", "numpy.load") and not _keyword_is(node, "allow_pickle", False):
            found.append((node.lineno, f"{name}( without allow_pickle=False"))
        elif name in ("np.save", "numpy.save") and not _keyword_is(node, "allow_pickle", False):
            found.append((node.lineno, f"{name}( without allow_pickle=False"))
        elif name == "torch.load" and not _keyword_is(node, "weights_only", True):
            found.append((node.lineno, "torch.load( without weights_only=True"))
        elif name.startswith("yaml.") and last in UNSAFE_YAML:
            found.append((node.lineno, f"{name}( (use yaml.safe_load)"))
        elif name in ("eval", "exec", "builtins.eval", "builtins.exec", "__import__"):
            found.append((node.lineno, f"{name}("))
        elif last in ("read_pickle", "to_pickle"):
            found.append((node.lineno, f"{name}("))
        if _keyword_is(node, "trust_remote_code", True):
            found.append((node.lineno, f"{name}(trust_remote_code=True)"))
    return found


def test_unsafe_call_scan_catches_each_pattern():
    code = (
        "import pickle\nfrom joblib import load\nnp.load(p)\nnp.load(p, allow_pickle=True)\n"
        "torch.load(p)\nyaml.load(s)\nyaml.unsafe_load(s)\neval('1')\nexec('x')\npd.read_pickle(p)\n"
        "AutoModel.from_pretrained(p, trust_remote_code=True)\n"
        "np.load(p, allow_pickle=False)\ntorch.load(p, weights_only=True)\nyaml.safe_load(s)\nmodel.eval()\n"
    )
    assert [line for line, _ in unsafe_calls(ast.parse(code))] == list(range(1, 12))


def test_no_pickle_eval_or_unsafe_loader_anywhere_in_the_package():
    offenders = [
        f"{path.relative_to(SRC.parent)}:{line}: {what}"
        for path in sorted(SRC.rglob("*.py"))
        for line, what in unsafe_calls(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    ]
    assert not offenders, "unsafe deserialisation or code execution:\n" + "\n".join(offenders)


@pytest.mark.parametrize("mmap", [False, True])
def test_load_array_refuses_an_object_array(tmp_path, mmap):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}, [1, 2]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="holds Python objects or is corrupt") as info:
        load_array(path, name="features", mmap=mmap)
    assert "datadiet never unpickles data: save a numeric or string array" in str(info.value)


@pytest.mark.parametrize("option", ["--features", "--labels", "--val-features"])
def test_cli_select_refuses_an_object_array(tmp_path, features, option):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([object()] * 12, dtype=object), allow_pickle=True)
    args = {"--features": str(features), "--labels": None, "--val-features": None, option: str(path)}
    extra = [arg for key, value in args.items() if value for arg in (key, value)]
    algorithm = "less" if option == "--val-features" else "random"
    result = _cli(
        "select", *extra, "--algorithm", algorithm, "--budget", "3", "--out", str(tmp_path / "s.json")
    )
    _one_line_error(result, "holds Python objects", "never unpickles")
    assert not (tmp_path / "s.json").exists()


ESCAPES = ["..", ".", "", "../../etc/passwd", "/etc/passwd", "a/../../b", "..\\..\\x", "x\x00y", "~",
           "x" * 400, "é" * 300, "\n", " ", "..."]  # fmt: skip


def _stays_inside(folder: Path, name: str) -> bool:
    target = (folder / name).resolve()
    return target.parent == folder.resolve() and target != folder.resolve()


@pytest.mark.parametrize("text", ESCAPES)
def test_safe_name_cannot_leave_the_output_folder(tmp_path, text):
    name = safe_name(text)
    assert name not in ("", ".", "..") and "/" not in name and "\x00" not in name and len(name) <= MAX_NAME
    assert _stays_inside(tmp_path, name)
    (tmp_path / name).write_text("ok")  # a real file system accepts it


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(text=st.text(max_size=300))
def test_safe_name_is_one_short_path_component_for_any_text(text):
    name = safe_name(text)
    assert 1 <= len(name) <= MAX_NAME and name not in (".", "..")
    assert set(name) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.@+-")
    assert name == safe_name(text)


def test_long_names_stay_distinct_after_shortening():
    a, b = safe_name("x" * 300 + "a"), safe_name("x" * 300 + "b")
    assert a != b and len(a) == len(b) == MAX_NAME
    assert safe_name("less@gradients/train+balanced") == "less@gradients_train+balanced"  # unchanged


@pytest.mark.parametrize("label", ["..", "../../outside", "/abs/path", "x" * 400])
def test_study_cell_and_selection_paths_stay_in_the_study_folder(tmp_path, label):
    cell = Cell(label, SelectionSpec("random", "dynamics/prob", name=label), 0.3, 0, "selection")
    assert _stays_inside(tmp_path / "cells", f"{cell.id}.json")
    selection_folder = tmp_path / "selections" / safe_name(cell.label)
    assert _stays_inside(tmp_path / "selections", safe_name(cell.label))
    assert _stays_inside(selection_folder, "b0.30_s0.json")


def test_study_refuses_selection_names_that_collide_as_file_names():
    from datadiet.pipeline.study import plan_cells

    specs = [
        {"algorithm": "el2n", "representation": "dynamics/prob", "name": name} for name in ("a/b", "a_b")
    ]
    with pytest.raises(ValueError, match="same file name"):
        plan_cells(from_dict(StudyConfig, {"budgets": [0.3], "seeds": [0], "selections": specs}))


@pytest.mark.parametrize("key", ["../../etc", "/tmp/x", "..", "ABCDEF0123456789", "0" * 15, "g" * 32, 123])
def test_store_keys_that_could_name_a_path_outside_the_store_are_refused(tmp_path, key):
    store = RepresentationStore(tmp_path / "store")
    with pytest.raises(ValueError, match="Store keys must be 16-64 lowercase hex characters"):
        store.path(key)
    with pytest.raises(ValueError, match="Store keys must be"):
        store.load(key)


def test_reference_training_on_one_class_is_refused_before_any_work(tmp_path):
    from datadiet.pipeline.reference import run_reference

    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "validation"):
        rows = [json.dumps({"text": f"text {i}", "label": "pos"}) for i in range(6)]
        (data / f"{split}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = from_dict(ReferenceConfig, {"output": str(tmp_path / "out"), "dataset": {"source": str(data)}})
    with pytest.raises(ValueError, match=r"has 1 class \['pos'\]; a classifier needs at least 2"):
        run_reference(cfg)
    assert not (tmp_path / "out" / "store").exists() or not any((tmp_path / "out" / "store").iterdir())
