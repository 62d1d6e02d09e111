"""BIG-bench assets: one pass over a (fake) sdist, the cache, and WinoGrande/XSum parsing and splits.

The network step (``bigbench._open_url``) is replaced by a fake sdist built in ``tmp_path`` with the same
member paths; only the last test reads the real cached files, when they exist.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from datadiet.data import bigbench
from datadiet.data.bigbench import (
    KNOWN_MEMBERS,
    PERSON_CHOICES,
    TASKS_PREFIX,
    WINOGRANDE_MEMBERS,
    XSUM_MEMBER,
    TwinPair,
    bigbench_task,
    is_cached,
    parse_twin_pair,
    prefetch,
    winogrande,
    xsum,
)
from datadiet.data.dataset import DatasetError
from datadiet.data.embedded import MissingAssetError
from datadiet.data.loaders import load_dataset

OBJECT_RATS = (
    "Sentence 1: The rats fled their holes for the open spaces since the _ were crowded for them. \n"
    "Answer1: holes. \n"
    "Sentence 2: The rats fled their holes for the open spaces since the _ were roomy for them. \n"
    "Answer2: spaces."
)
OBJECT_TROPHY = (  # a stray leading period on an answer, as in the real data
    "Sentence 1: The trophy did not fit into the suitcase because the _ was too big. \nAnswer1: trophy. \n"
    "Sentence 2: The trophy did not fit into the suitcase because the _ was too small. \nAnswer2: .suitcase."
)
OBJECT_SAME_ANSWERS = (
    "Sentence 1: He used a map, not his GPS, because his _ was broken. \nAnswer1: GPS. \n"
    "Sentence 2: He used a map, not his GPS, although his _ was working. \nAnswer2: GPS."
)
PERSON_CLUB = (
    "Sentence 1: PersonX was accepted by PersonY for her club, so _ was a new member at last. \n"
    "Sentence 2: PersonX was accepted by PersonY for her club, so _ had a new member at last."
)
PERSON_TWO_BLANKS = (
    "Sentence 1: PersonX ate more cake than PersonY so _ was the chubby one. \n"
    "Sentence 2: PersonX ate more fruit than _PersonY so _ was the skinny one."
)


def _object_pair(i: int) -> str:
    return (
        f"Sentence 1: The box{i} crushed the ball{i} because the _ was heavy. \nAnswer1: box{i}. \n"
        f"Sentence 2: The box{i} crushed the ball{i} because the _ was soft. \nAnswer2: ball{i}."
    )


def _person_pair(i: int) -> str:
    return (
        f"Sentence 1: PersonX thanked PersonY for gift {i} because _ was grateful. \n"
        f"Sentence 2: PersonX thanked PersonY for gift {i} because _ was generous."
    )


# object: 10 well-formed pairs, 1 malformed; person: 11 well-formed, 2 malformed; xsum: 10 + 1 empty.
OBJECT_TASK = {
    "name": "subtask029_winogrande_full_object",
    "examples": [
        {"input": "Context Word: rats.", "target": [OBJECT_RATS]},
        {"input": "Context Word: trip.", "target": [OBJECT_TROPHY, OBJECT_SAME_ANSWERS]},
        *({"input": f"Context Word: box{i}.", "target": [_object_pair(i)]} for i in range(8)),
    ],
}
PERSON_TASK = {
    "name": "subtask030_winogrande_full_person",
    "examples": [
        {"input": "Context Word: accepted.", "target": [PERSON_CLUB]},
        {"input": "Context Word: cake.", "target": [PERSON_TWO_BLANKS, "Sentence 1: PersonX _ PersonY."]},
        *({"input": f"Context Word: gift{i}.", "target": [_person_pair(i)]} for i in range(10)),
    ],
}
XSUM_TASK = {
    "name": "xsum",
    "example_input_prefix": "\nsummarize: ",
    "example_output_prefix": "\none-sentence summary: ",
    "examples": [
        *(
            {"input": f"Article {i}.\nMore text.", "target": f"Summary {i}.", "comment": f"xsum-test-{i}"}
            for i in range(10)
        ),
        {"input": "An article without a summary.", "target": " ", "comment": "xsum-test-10"},
    ],
}
TASK_FILES = {
    WINOGRANDE_MEMBERS["object"]: OBJECT_TASK,
    WINOGRANDE_MEMBERS["person"]: PERSON_TASK,
    XSUM_MEMBER: XSUM_TASK,
}
SMALL = {"val_fraction": 0.2, "test_fraction": 0.2}


def _write_sdist(path: Path, files: dict[str, bytes]) -> Path:
    """A gzipped tar with a directory entry, an ``setup.py`` and ``files`` (archive name -> bytes)."""
    with tarfile.open(path, "w:gz") as archive:
        directory = tarfile.TarInfo("bigbench-1.0.0/bigbench")
        directory.type = tarfile.DIRTYPE
        archive.addfile(directory)
        for name, data in {"bigbench-1.0.0/setup.py": b"raise SystemExit('never run me')\n", **files}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _task_files(overrides: dict[str, bytes] | None = None) -> dict[str, bytes]:
    files = {TASKS_PREFIX + m: json.dumps(task).encode() for m, task in TASK_FILES.items()}
    files[TASKS_PREFIX + "other_task/task.json"] = b'{"examples": []}'
    return {**files, **(overrides or {})}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty datadiet cache, used by default (``$DATADIET_CACHE``)."""
    monkeypatch.setenv("DATADIET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path) -> list[str]:
    """Serve a fake sdist instead of PyPI (its sha256 pinned); the list records every download."""
    sdist = _write_sdist(tmp_path / "bigbench-1.0.0.tar.gz", _task_files())
    return _serve(sdist, monkeypatch)


def _serve(sdist: Path, monkeypatch: pytest.MonkeyPatch, *, pin: bool = True) -> list[str]:
    calls: list[str] = []
    if pin:
        monkeypatch.setattr(bigbench, "SDIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    monkeypatch.setattr(bigbench, "sdist_url", lambda: FAKE_URL)
    monkeypatch.setattr(bigbench, "_open_url", lambda url: calls.append(url) or sdist.open("rb"))
    return calls


FAKE_URL = "file:///fake/bigbench-1.0.0.tar.gz"


def _cached_files(cache: Path) -> list[str]:
    root = cache / "bigbench-1.0.0"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------- fetching


def test_fetch_extracts_only_the_known_members_in_one_download(downloads, cache):
    path = bigbench_task(XSUM_MEMBER)
    assert path == cache / "bigbench-1.0.0" / XSUM_MEMBER
    assert json.loads(path.read_text()) == XSUM_TASK
    assert downloads == [FAKE_URL]
    assert _cached_files(cache) == sorted([*KNOWN_MEMBERS, "manifest.json"])


def test_cached_members_are_not_downloaded_again(downloads):
    for member in KNOWN_MEMBERS:
        bigbench_task(member)
    bigbench_task(TASKS_PREFIX + XSUM_MEMBER)  # the full archive name works too
    winogrande(**SMALL)
    xsum(**SMALL)
    assert len(downloads) == 1
    assert all(is_cached(member) for member in KNOWN_MEMBERS)


def test_manifest_records_the_sdist_sha256_and_member_sizes(downloads, cache):
    prefetch()
    manifest = json.loads((cache / "bigbench-1.0.0" / "manifest.json").read_text())
    assert manifest["package"] == "bigbench==1.0.0"
    assert manifest["sdist"]["sha256"] == bigbench.SDIST_SHA256
    assert manifest["sdist"]["source"] == "the package index (bigbench-1.0.0.tar.gz)"
    for member in KNOWN_MEMBERS:
        data = (cache / "bigbench-1.0.0" / member).read_bytes()
        assert manifest["members"][member] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_a_damaged_cached_member_is_fetched_again(downloads, cache):
    path = bigbench_task(XSUM_MEMBER)
    path.write_text("{}")
    assert not is_cached(XSUM_MEMBER)
    assert json.loads(bigbench_task(XSUM_MEMBER).read_text()) == XSUM_TASK
    assert len(downloads) == 2


def test_an_unknown_member_is_read_in_the_same_pass(downloads, cache):
    assert json.loads(bigbench_task("other_task/task.json").read_text()) == {"examples": []}
    assert len(downloads) == 1 and all(is_cached(member) for member in KNOWN_MEMBERS)


@pytest.mark.parametrize("member", ["../task.json", "gem/../../task.json", "/etc/passwd", "", "gem//x"])
def test_member_names_with_dotdot_or_absolute_paths_are_refused(member, cache):
    with pytest.raises(ValueError, match="relative path inside"):
        bigbench_task(member)


@pytest.mark.parametrize("evil", ["bigbench-1.0.0/../../evil.json", "/tmp/evil.json"])
def test_an_archive_with_a_dotdot_or_absolute_member_is_refused(evil, tmp_path, monkeypatch, cache):
    sdist = _write_sdist(tmp_path / "evil.tar.gz", {evil: b"{}", **_task_files()})
    _serve(sdist, monkeypatch)
    with pytest.raises(DatasetError, match="refusing it"):
        prefetch()
    assert not (cache / "bigbench-1.0.0").exists()
    assert not (tmp_path / "evil.json").exists()


def test_an_archive_with_another_sha256_caches_nothing(tmp_path, monkeypatch, cache):
    _serve(_write_sdist(tmp_path / "other.tar.gz", _task_files()), monkeypatch, pin=False)
    with pytest.raises(DatasetError, match=r"not the bigbench==1\.0\.0 sdist from PyPI"):
        prefetch()
    assert not (cache / "bigbench-1.0.0").exists()


def test_a_member_that_is_not_json_caches_nothing(tmp_path, monkeypatch, cache):
    files = _task_files({TASKS_PREFIX + XSUM_MEMBER: b'{"examples": [}'})
    _serve(_write_sdist(tmp_path / "bad.tar.gz", files), monkeypatch)
    with pytest.raises(DatasetError, match=r"gem/xsum/task\.json is not valid UTF-8 JSON"):
        prefetch()
    assert not (cache / "bigbench-1.0.0").exists()


def test_a_failed_download_names_the_commands_to_run_by_hand(monkeypatch, cache):
    def offline(url):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(bigbench, "sdist_url", lambda: FAKE_URL)
    monkeypatch.setattr(bigbench, "_open_url", offline)
    with pytest.raises(MissingAssetError, match="no route to host") as error:
        bigbench_task(XSUM_MEMBER)
    assert "pip download --no-deps --no-binary :all: bigbench==1.0.0" in str(error.value)
    assert "python -m datadiet.data.bigbench --sdist bigbench-1.0.0.tar.gz" in str(error.value)


def test_the_cli_prefetches_from_a_local_sdist(tmp_path, monkeypatch):
    sdist = _write_sdist(tmp_path / "bigbench-1.0.0.tar.gz", _task_files())
    downloads = _serve(sdist, monkeypatch)
    assert bigbench.main(["--sdist", str(sdist), "--cache-dir", str(tmp_path / "c")]) == 0
    assert downloads == []
    assert _cached_files(tmp_path / "c") == sorted([*KNOWN_MEMBERS, "manifest.json"])
    manifest = json.loads((tmp_path / "c" / "bigbench-1.0.0" / "manifest.json").read_text())
    assert manifest["sdist"]["source"] == str(sdist)


# ---------------------------------------------------------------------------------------------- parsing


def test_an_object_twin_pair_is_parsed_into_sentences_and_answers():
    assert parse_twin_pair(OBJECT_RATS, subtask="object") == TwinPair(
        (
            "The rats fled their holes for the open spaces since the _ were crowded for them.",
            "The rats fled their holes for the open spaces since the _ were roomy for them.",
        ),
        ("holes", "spaces"),
    )
    assert parse_twin_pair(OBJECT_TROPHY, subtask="object").choices == ("trophy", "suitcase")


def test_a_person_twin_pair_is_answered_by_personx_then_persony():
    assert parse_twin_pair(PERSON_CLUB, subtask="person") == TwinPair(
        (
            "PersonX was accepted by PersonY for her club, so _ was a new member at last.",
            "PersonX was accepted by PersonY for her club, so _ had a new member at last.",
        ),
        PERSON_CHOICES,
    )


@pytest.mark.parametrize(
    ("target", "subtask"),
    [
        (OBJECT_SAME_ANSWERS, "object"),
        (OBJECT_RATS.replace("Answer1: holes.", "Answer1: 8-May."), "object"),  # answer not in the text
        (OBJECT_RATS.replace("were roomy", "_ were roomy"), "object"),  # two blanks
        (OBJECT_RATS.replace("Answer1: holes. \n", ""), "object"),
        (PERSON_TWO_BLANKS, "person"),
        (PERSON_CLUB.replace("had a new", "was a new"), "person"),  # identical twins
        (PERSON_CLUB, "object"),
        (None, "person"),
    ],
)
def test_malformed_twin_pairs_parse_to_none(target, subtask):
    assert parse_twin_pair(target, subtask=subtask) is None


def test_winogrande_turns_each_twin_pair_into_two_examples(downloads):
    splits = winogrande(**SMALL)
    rows = {
        i: (text, choices, int(label))
        for ds in splits.values()
        for i, text, choices, label in zip(ds.ids, ds.texts, ds.choices, ds.labels, strict=True)
    }
    assert rows["wg-object-00000-00-1"] == (
        "The rats fled their holes for the open spaces since the _ were crowded for them.",
        ["holes", "spaces"],
        0,
    )
    assert rows["wg-object-00000-00-2"] == (
        "The rats fled their holes for the open spaces since the _ were roomy for them.",
        ["holes", "spaces"],
        1,
    )
    assert rows["wg-object-00001-00-2"][1:] == (["trophy", "suitcase"], 1)
    assert rows["wg-person-00000-00-2"] == (
        "PersonX was accepted by PersonY for her club, so _ had a new member at last.",
        ["PersonX", "PersonY"],
        1,
    )
    assert "wg-object-00001-01-1" not in rows and not any(i.startswith("wg-person-00001") for i in rows)
    assert len(rows) == 2 * (10 + 11)


def test_winogrande_counts_skipped_pairs_and_records_its_sources(downloads):
    train = winogrande(**SMALL)["train"]
    assert train.task == "multiple_choice" and train.name == "winogrande"
    assert train.meta["skipped_pairs"] == {"object": 1, "person": 2}
    assert train.meta["members"] == [TASKS_PREFIX + m for m in WINOGRANDE_MEMBERS.values()]
    assert train.meta["splits"]["seed"] == 0


def test_winogrande_splits_by_pair_so_twins_share_a_split(downloads):
    splits = winogrande(**SMALL, seed=3)
    pairs = {s: [i.rsplit("-", 1)[0] for i in ds.ids] for s, ds in splits.items()}
    for split, ids in pairs.items():
        assert ids[0::2] == ids[1::2], split  # sentence 1 then 2 of the same pair
        assert splits[split].labels.tolist() == [0, 1] * (len(ids) // 2)
    held = {s: set(ids) for s, ids in pairs.items()}
    assert not (held["train"] & held["test"]) and not (held["train"] & held["validation"])
    assert not (held["validation"] & held["test"])
    # per subtask: object 10 pairs -> 2 test / 2 validation, person 11 pairs -> 2 / 2 (floors)
    assert {s: len(ds) for s, ds in splits.items()} == {"train": 26, "validation": 8, "test": 8}


def test_winogrande_splits_are_deterministic_for_a_seed(downloads):
    first, again, other = (winogrande(seed=seed, **SMALL) for seed in (5, 5, 6))
    assert all(first[s].ids.tolist() == again[s].ids.tolist() for s in first)
    assert any(first[s].ids.tolist() != other[s].ids.tolist() for s in first)


def test_xsum_is_a_generation_task_of_articles_and_summaries(downloads):
    splits = xsum(**SMALL)
    assert {s: len(ds) for s, ds in splits.items()} == {"train": 6, "validation": 2, "test": 2}
    rows = {i: (t, y) for ds in splits.values() for i, t, y in zip(ds.ids, ds.texts, ds.targets, strict=True)}
    assert sorted(rows) == [f"xsum-{i:05d}" for i in range(10)]
    assert rows["xsum-00007"] == ("Article 7.\nMore text.", "Summary 7.")
    test = splits["test"]
    assert test.task == "generation" and test.labels is None and test.meta["skipped"] == 1
    assert test.meta["prefixes"] == {"input": "\nsummarize: ", "output": "\none-sentence summary: "}


def test_load_dataset_resolves_the_embedded_names(downloads):
    # default fractions 0.1: one test pair per subtask (floor(0.1 * 10), floor(0.1 * 11))
    assert len(load_dataset("winogrande", split="test")["test"]) == 4
    assert load_dataset("xsum")["validation"].ids.tolist() == xsum()["validation"].ids.tolist()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"val_fraction": 0.0}, "'val_fraction' parameter"),
        ({"test_fraction": True}, "'test_fraction' parameter"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "should be < 1"),
        ({"val_fraction": 0.01}, "every split needs one"),
    ],
)
def test_bad_fractions_are_refused(options, match, downloads):
    with pytest.raises(ValueError, match=match):
        xsum(**options)


# ------------------------------------------------------------------------------------------- real data


@pytest.mark.skipif(
    not all(is_cached(member) for member in KNOWN_MEMBERS),
    reason="needs the real BIG-bench cache (python -m datadiet.data.bigbench)",
)
def test_real_winogrande_and_xsum_sizes():
    wino = winogrande()
    assert {s: len(ds) for s, ds in wino.items()} == {"train": 45270, "validation": 5658, "test": 5658}
    assert wino["train"].meta["skipped_pairs"] == {"object": 2, "person": 3}
    for ds in wino.values():
        assert all(len(choices) == 2 for choices in ds.choices)
        assert all(text.count("_") == 1 for text in ds.texts)
        assert np.bincount(ds.labels).tolist() == [len(ds) // 2] * 2
    subtasks = [i.split("-")[1] for ds in wino.values() for i in ds.ids]
    assert subtasks.count("object") == 2 * 12081 and subtasks.count("person") == 2 * 16212
    summaries = xsum()
    assert {s: len(ds) for s, ds in summaries.items()} == {"train": 801, "validation": 100, "test": 100}
    assert summaries["test"].meta["skipped"] == 0
