"""Format-preserving export: kept rows written in the input's own format, file order, never clobbering."""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from datadiet.data.export import MANIFEST, source_rows, write_subset
from datadiet.data.loaders import load_dataset
from datadiet.errors import DatasetError, ParameterError

JSONL_LINES = [
    '{"text": "a",  "label": "x", "uid": "u0"}',  # odd spacing: must survive byte for byte
    '{"label": "y", "text": "b", "uid": "u1"}',
    '{"text": "c\\u00e9", "label": "x", "uid": "u2"}',
    '{"text": "d", "label": "y", "uid": "u3"}',
    '{"text": "e", "label": "x", "uid": "u4"}',
]
CSV_TEXT = (
    'text,label,note\n'
    '"hello, world",pos,plain\n'
    '"two\nlines",neg,"say ""hi"""\n'
    'third,pos,\n'
    '"x,y,z",neg,last\n'
)  # fmt: skip


def _jsonl(path: Path) -> Path:
    path.write_bytes(("\n".join(JSONL_LINES) + "\n").encode("utf-8"))
    return path


def test_jsonl_lines_copied_byte_for_byte_in_file_order(tmp_path):
    src = _jsonl(tmp_path / "toy.jsonl")
    out = write_subset(src, "train", [4, 0, 2], tmp_path / "out")
    assert out == tmp_path / "out" / "toy.jsonl"
    assert (
        out.read_bytes() == (JSONL_LINES[0] + "\n" + JSONL_LINES[2] + "\n" + JSONL_LINES[4] + "\n").encode()
    )
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["toy.jsonl"]["n_rows"] == 3 and manifest["toy.jsonl"]["split"] == "train"


def test_jsonl_extra_column_follows_rows_order(tmp_path):
    src = _jsonl(tmp_path / "toy.jsonl")
    out = write_subset(src, "train", [3, 1], tmp_path / "out", extra_columns={"weight": [0.5, 2.0]})
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["uid"], r["weight"]) for r in records] == [("u1", 2.0), ("u3", 0.5)]
    with pytest.raises(ParameterError, match="'label'"):
        write_subset(src, "train", [0], tmp_path / "out2", extra_columns={"label": [1]})
    with pytest.raises(ParameterError, match="2 values but there are 1 rows"):
        write_subset(src, "train", [0], tmp_path / "out2", extra_columns={"w": [1, 2]})


def test_csv_quoted_fields_round_trip_through_load_dataset(tmp_path):
    src = tmp_path / "toy.csv"
    src.write_text(CSV_TEXT, encoding="utf-8", newline="")
    out = write_subset(src, "train", [3, 1], tmp_path / "out")
    assert (
        out.read_text(encoding="utf-8")
        == 'text,label,note\n"two\nlines",neg,"say ""hi"""\n"x,y,z",neg,last\n'
    )
    ds, full = load_dataset(out)["train"], load_dataset(src)["train"]
    assert ds.texts == [full.texts[1], full.texts[3]] == ["two\nlines", "x,y,z"]
    weighted = write_subset(src, "train", [2, 0], tmp_path / "w", extra_columns={"weight": ["1,5", 3]})
    assert weighted.read_text().splitlines() == [
        "text,label,note,weight",
        '"hello, world",pos,plain,3',
        'third,pos,,"1,5"',
    ]


def test_tsv_and_gzip_and_bz2_keep_format_and_compression(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("text\tlabel\na b\tx\nc\ty\n", encoding="utf-8")
    assert write_subset(tsv, "train", [1], tmp_path / "o1").read_text() == "text\tlabel\nc\ty\n"
    gz = tmp_path / "g.jsonl.gz"
    gz.write_bytes(gzip.compress(("\n".join(JSONL_LINES) + "\n").encode()))
    out = write_subset(gz, "train", [1], tmp_path / "o2")
    assert out.name == "g.jsonl.gz" and gzip.decompress(out.read_bytes()) == (JSONL_LINES[1] + "\n").encode()
    bz = tmp_path / "b.csv.bz2"
    bz.write_bytes(bz2.compress(CSV_TEXT.encode()))
    out = write_subset(bz, "train", [2], tmp_path / "o3")
    assert bz2.decompress(out.read_bytes()) == b"text,label,note\nthird,pos,\n"


def test_parquet_schema_and_rows_kept(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"text": ["a", "b", "c", "d"], "label": [1, 0, 1, 0], "score": [0.1, 0.2, 0.3, 0.4]})
    table = table.replace_schema_metadata({b"owner": b"me"})
    src = tmp_path / "p.parquet"
    pq.write_table(table, src)
    out = write_subset(src, "train", [3, 0], tmp_path / "out")
    kept = pq.read_table(out)
    assert kept.schema.equals(table.schema, check_metadata=True)
    assert kept.to_pydict() == {"text": ["a", "d"], "label": [1, 0], "score": [0.1, 0.4]}
    extra = pq.read_table(write_subset(src, "train", [2, 1], tmp_path / "x", extra_columns={"w": [5, 6]}))
    assert extra.column("w").to_pylist() == [6, 5] and extra.column("text").to_pylist() == ["b", "c"]


@pytest.mark.skipif(importlib.util.find_spec("datasets") is None, reason="datasets not installed")
def test_hf_dataset_on_disk_selected_and_saved(tmp_path):
    import datasets

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 0]}),
            "test": datasets.Dataset.from_dict({"text": ["t"], "label": [1]}),
        }
    )
    dd.save_to_disk(str(tmp_path / "hf"))
    out = write_subset(tmp_path / "hf", "train", [2, 0], tmp_path / "out", extra_columns={"w": [1.0, 2.0]})
    back: Any = datasets.load_from_disk(str(out))
    assert list(back) == ["train"]
    assert back["train"].to_dict() == {"text": ["a", "c"], "label": [0, 0], "w": [2.0, 1.0]}
    again: Path = write_subset(tmp_path / "hf", "train", [1], tmp_path / "out")  # its own export: replaced
    reloaded: Any = datasets.load_from_disk(str(again))
    assert reloaded["train"]["text"] == ["b"]
    single = tmp_path / "one"
    dd["train"].save_to_disk(str(single))
    one: Any = datasets.load_from_disk(str(write_subset(single, "train", [1], tmp_path / "o2")))
    assert one["text"] == ["b"]


def test_source_rows_default_ids_and_id_column(tmp_path):
    src = _jsonl(tmp_path / "toy.jsonl")
    ds = load_dataset(src)["train"]
    picked = ds.ids[[4, 1]]
    assert source_rows(src, "train", picked).tolist() == [4, 1]
    by_uid = load_dataset(src, id="uid")["train"]
    assert source_rows(src, "train", by_uid.ids[[3, 0]], id_column="uid").tolist() == [3, 0]
    with pytest.raises(DatasetError, match="'u9'"):
        source_rows(src, "train", ["u9"], id_column="uid")
    with pytest.raises(DatasetError, match="'train-000005'"):
        source_rows(src, "train", ["train-000005"])
    val = load_dataset(src, split="val")["validation"]
    assert source_rows(src, "val", val.ids[[2]]).tolist() == [2]


def test_source_rows_in_folder_of_split_files(tmp_path):
    (tmp_path / "d").mkdir()
    _jsonl(tmp_path / "d" / "train.jsonl")
    (tmp_path / "d" / "test.jsonl").write_text('{"text": "q", "label": "x"}\n{"text": "r", "label": "y"}\n')
    ids = load_dataset(tmp_path / "d")["test"].ids
    rows = source_rows(tmp_path / "d", "test", ids[[1]])
    assert rows.tolist() == [1]
    out = write_subset(tmp_path / "d", "test", rows, tmp_path / "out")
    assert out == tmp_path / "out" / "test.jsonl" and out.read_text() == '{"text": "r", "label": "y"}\n'


def test_foreign_file_never_overwritten_own_export_rewritten(tmp_path):
    src = _jsonl(tmp_path / "toy.jsonl")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    foreign = out_dir / "toy.jsonl"
    foreign.write_text("mine\n")
    with pytest.raises(FileExistsError, match="choose another --out or delete it yourself"):
        write_subset(src, "train", [0], out_dir)
    assert foreign.read_text() == "mine\n" and not (out_dir / MANIFEST).exists()
    foreign.unlink()
    write_subset(src, "train", [0], out_dir)
    assert write_subset(src, "train", [1], out_dir).read_text() == JSONL_LINES[1] + "\n"
    foreign.write_text("edited\n")  # the user changed datadiet's export: no longer ours to replace
    with pytest.raises(FileExistsError, match="changed since datadiet wrote it"):
        write_subset(src, "train", [2], out_dir)
    assert foreign.read_text() == "edited\n"


def test_bad_rows_and_embedded_source_refused(tmp_path):
    src = _jsonl(tmp_path / "toy.jsonl")
    with pytest.raises(ParameterError, match=r"duplicate row numbers \[1\]"):
        write_subset(src, "train", [1, 2, 1], tmp_path / "o")
    with pytest.raises(ParameterError, match=r"out of range.*5 rows"):
        write_subset(src, "train", [0, 5], tmp_path / "o")
    with pytest.raises(ParameterError, match="negative"):
        write_subset(src, "train", np.array([-1]), tmp_path / "o")
    with pytest.raises(DatasetError, match=r"embedded dataset.*file"):
        write_subset("reuters_r8", "train", [0], tmp_path / "o")
    assert not (tmp_path / "o").exists()
