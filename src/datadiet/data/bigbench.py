"""WinoGrande and XSum from the BIG-bench sdist on PyPI (``bigbench==1.0.0``), fetched once and cached.

``bigbench==1.0.0`` exists only as a 358 MB sdist. The first call that needs one of its task files downloads
the archive once from PyPI (pinned URL, verified sha256), streams it through :mod:`tarfile` and keeps only
the ``task.json`` members this module knows (all of them, in one pass); the archive itself is never stored.
Nothing from the archive is executed or extracted under its own name: members are matched by exact name
and read into memory, and an archive holding a member with an absolute path or ``..`` is refused. Each kept
member must be valid JSON and is written atomically; the sha256 is checked before anything is written.
``pip download`` is not used: it runs the sdist's ``setup.py`` to prepare metadata, and recent pip then
refuses bigbench anyway (its metadata declares a direct URL dependency on ``bleurt``).

Cache: ``$DATADIET_CACHE``, else ``$XDG_CACHE_HOME/datadiet``, else ``~/.cache/datadiet``; the files go to
``bigbench-1.0.0/<task path>`` below it, with ``manifest.json`` recording the sdist (source, sha256, size)
and every member (size, sha256). ``python -m datadiet.data.bigbench`` prefetches every known member;
``--sdist PATH`` reads a copy of the archive downloaded by hand instead.

Datasets (sizes for the defaults ``val_fraction=test_fraction=0.1``):

- ``winogrande``: natural_instructions subtask029 (objects; 4500 context words, 12083 twin pairs) and
  subtask030 (persons; 6500 context words, 16215 twin pairs). Every well-formed twin pair gives two
  multiple-choice examples; 2 object pairs and 3 person pairs are malformed and skipped, leaving 12081 +
  16212 pairs = 56586 examples: train 45270 / validation 5658 / test 5658.
- ``xsum``: GEM XSum test sample (gem/xsum), 1001 BBC articles with one-sentence summaries:
  train 801 / validation 100 / test 100.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import IO, Any, NamedTuple, cast

import numpy as np

from datadiet._core.cache import cache_root
from datadiet._core.checks import check_rng, seed_of
from datadiet._core.chunks import STREAM_CHUNK_BYTES
from datadiet._core.files import atomic_write_bytes, atomic_write_json, read_json, sha256_bytes
from datadiet.data.dataset import Dataset, DatasetError
from datadiet.errors import ParameterError, ParameterTypeError

logger = logging.getLogger(__name__)

PACKAGE = "bigbench==1.0.0"
SDIST_NAME = "bigbench-1.0.0.tar.gz"
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
SDIST_SIZE = 358_249_635
TASKS_PREFIX = "bigbench-1.0.0/bigbench/benchmark_tasks/"
CACHE_SUBDIR = "bigbench-1.0.0"
MANIFEST = "manifest.json"
WINOGRANDE_MEMBERS: dict[str, str] = {
    "object": "natural_instructions/subtask029_winogrande_full_object/task.json",
    "person": "natural_instructions/subtask030_winogrande_full_person/task.json",
}
XSUM_MEMBER = "gem/xsum/task.json"
KNOWN_MEMBERS: tuple[str, ...] = (*WINOGRANDE_MEMBERS.values(), XSUM_MEMBER)
PERSON_CHOICES = ("PersonX", "PersonY")
SPLITS = ("train", "validation", "test")
MAX_MEMBER_BYTES = 64 * 2**20
_OBJECT_PAIR = re.compile(r"Sentence 1:(.+)\nAnswer1:(.+)\nSentence 2:(.+)\nAnswer2:(.+)")
_PERSON_PAIR = re.compile(r"Sentence 1:(.+)\nSentence 2:(.+)")


# ------------------------------------------------------------------------------------------------ cache


def default_cache_dir() -> Path:
    """The datadiet cache: ``$DATADIET_CACHE``, else ``$XDG_CACHE_HOME/datadiet``, else ``~/.cache/datadiet``.

    The BIG-bench files go to its ``bigbench-1.0.0/`` subfolder.
    """
    return cache_root()


def bigbench_task(member: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cached copy of one member of the ``bigbench==1.0.0`` sdist, fetched on first use.

    A miss downloads the 358 MB sdist once and extracts, in the same pass, every member this module knows
    (:data:`KNOWN_MEMBERS`) that is not cached yet, plus ``member``.

    Parameters
    ----------
    member : str
        Path inside ``bigbench-1.0.0/bigbench/benchmark_tasks/`` (that prefix may be included), e.g.
        ``"gem/xsum/task.json"``; absolute paths and ``..`` are refused.
    cache_dir : path-like, optional
        The datadiet cache (default :func:`default_cache_dir`); files go to its ``bigbench-1.0.0/``.

    Returns
    -------
    Path
        The cached file, valid JSON.
    """
    name = _check_member(member)
    folder = _bigbench_dir(cache_dir)
    if not _is_cached(folder, name):
        prefetch((*KNOWN_MEMBERS, name), cache_dir=cache_dir)
    return folder / name


def prefetch(
    members: Sequence[str] = KNOWN_MEMBERS,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    sdist: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Cache ``members`` (default: all known ones), reading the sdist once for those not cached yet.

    Parameters
    ----------
    members : sequence of str
        Member paths, as for :func:`bigbench_task`.
    cache_dir : path-like, optional
        The datadiet cache (default :func:`default_cache_dir`).
    sdist : path-like, optional
        A ``bigbench-1.0.0.tar.gz`` already on disk (its sha256 is checked); default: download it.

    Returns
    -------
    dict of str to Path
        The cached file of every member.
    """
    names = list(dict.fromkeys(_check_member(m) for m in members))
    folder = _bigbench_dir(cache_dir)
    missing = [name for name in names if not _is_cached(folder, name)]
    if missing:
        _fetch(missing, folder, sdist=None if sdist is None else Path(sdist))
    return {name: folder / name for name in names}


def is_cached(member: str, *, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``member`` is cached from the pinned sdist (size as recorded): using it needs no download."""
    return _is_cached(_bigbench_dir(cache_dir), _check_member(member))


def _bigbench_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    return (default_cache_dir() if cache_dir is None else Path(cache_dir)) / CACHE_SUBDIR


def _check_member(member: str) -> str:
    if not isinstance(member, str):
        raise ParameterTypeError(f"The 'member' parameter must be a str. Got {member!r} instead.")
    name = member.removeprefix(TASKS_PREFIX)
    if _is_unsafe(name) or str(PurePosixPath(name)) != name:
        raise ParameterError(
            f"The 'member' parameter must be a relative path inside {TASKS_PREFIX} without '..', "
            f"e.g. {XSUM_MEMBER!r}. Got {member!r} instead."
        )
    return name


def _is_unsafe(name: str) -> bool:
    path = PurePosixPath(name)
    return not name or path.is_absolute() or ".." in path.parts or "\\" in name


def _cached_members(folder: Path) -> dict[str, Any]:
    """The manifest's member entries, or ``{}`` when it is missing, unreadable or from another sdist."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest["sdist"]["sha256"] == SDIST_SHA256 and isinstance(manifest["members"], dict):
            return manifest["members"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {}


def _is_cached(folder: Path, name: str) -> bool:
    """Whether ``name`` is cached from the pinned sdist, with the size its manifest entry records."""
    entry = _cached_members(folder).get(name)
    path = folder / name
    return isinstance(entry, dict) and path.is_file() and path.stat().st_size == entry.get("size")


# ---------------------------------------------------------------------------------------------- fetching


def _fetch(members: list[str], folder: Path, *, sdist: Path | None) -> None:
    """Read ``members`` from the sdist in one streaming pass, check them, then cache them."""
    start = time.perf_counter()
    wanted = set(members) | {m for m in KNOWN_MEMBERS if not _is_cached(folder, m)}
    with _open_sdist(sdist, folder, len(wanted)) as stream:
        try:
            found, sha256, size = _read_members(stream, wanted)
        except (OSError, HTTPException, EOFError, tarfile.TarError) as exc:
            raise _fetch_error(exc, sdist) from exc
    source = f"the package index ({SDIST_NAME})" if sdist is None else str(sdist)
    if sha256 != SDIST_SHA256:
        raise DatasetError(
            f"{source} has sha256 {sha256} ({size} bytes), not the {PACKAGE} sdist from PyPI "
            f"({SDIST_SHA256}, {SDIST_SIZE} bytes); nothing was cached. Retry, or pass the genuine "
            "archive with --sdist."
        )
    absent = sorted(set(members) - set(found))
    if absent:
        raise DatasetError(f"The {PACKAGE} sdist has no member {TASKS_PREFIX}{absent[0]}; check the name.")
    for name in sorted(found):
        _check_json(name, found[name])
    for name in sorted(found):
        atomic_write_bytes(folder / name, found[name])
    _update_manifest(folder, found, {"source": source, "sha256": sha256, "size": size})
    logger.info(
        "cached %d %s members in %s (%.1f s)", len(found), PACKAGE, folder, time.perf_counter() - start
    )


@contextlib.contextmanager
def _open_sdist(sdist: Path | None, folder: Path, n_members: int) -> Iterator[IO[bytes]]:
    if sdist is not None:
        if not sdist.is_file():
            raise FileNotFoundError(
                f"The sdist '{sdist}' does not exist; pass the bigbench-1.0.0.tar.gz path."
            )
        with sdist.open("rb") as handle:
            yield handle
        return
    logger.warning(
        "datadiet: downloading %s (358 MB, needed once) from PyPI to cache %d task files in %s; "
        "the archive itself is not kept.",
        PACKAGE, n_members, folder,
    )  # fmt: skip
    try:
        response = _open_url(sdist_url())
    except (OSError, HTTPException, ValueError) as exc:
        raise _fetch_error(exc, None) from exc
    with response:
        yield response


def index_url() -> str:
    """The package index pip is configured to use (``pip config``), else pip's own default index."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.index-url"], capture_output=True, text=True
    )
    if result.returncode == 0 and result.stdout.strip():
        return result.stdout.strip()
    from pip._internal.models.index import PyPI

    return PyPI.simple_url


def sdist_url() -> str:
    """Look ``bigbench`` up by name on the index's JSON simple API (PEP 691) and return its sdist's URL."""
    page = f"{index_url().rstrip('/')}/bigbench/"
    request = urllib.request.Request(page, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response).get("files", [])
    for entry in files:
        if entry.get("filename") == SDIST_NAME:
            if entry.get("hashes", {}).get("sha256", SDIST_SHA256) != SDIST_SHA256:
                raise ParameterError(f"the index lists {SDIST_NAME} with another sha256 than the pinned one.")
            return urllib.parse.urljoin(page, entry["url"])
    raise ParameterError(f"the package index lists no {SDIST_NAME}.")


def _open_url(url: str) -> IO[bytes]:
    """The network step (proxies from the usual ``*_proxy`` environment variables)."""
    return urllib.request.urlopen(url, timeout=60)


def _fetch_error(exc: BaseException, sdist: Path | None) -> DatasetError:
    from datadiet.errors import MissingAssetError

    if sdist is not None:
        return DatasetError(
            f"Could not read the sdist '{sdist}' ({exc!r}); it is damaged: download it again."
        )
    return MissingAssetError(
        f"Could not download {PACKAGE} from the package index ({exc!r}). Fetch {SDIST_NAME} by hand, e.g. "
        f"`pip download --no-deps --no-binary :all: {PACKAGE}` with a pip older than 24, then run "
        "`python -m datadiet.data.bigbench --sdist bigbench-1.0.0.tar.gz`."
    )


class _HashingReader:
    """A read-only stream that hashes and counts every byte read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.sha256, self.size = raw, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(STREAM_CHUNK_BYTES):
            pass


def _read_members(stream: IO[bytes], wanted: set[str]) -> tuple[dict[str, bytes], str, int]:
    """The bytes of the ``wanted`` members, and the sha256 and size of the whole stream."""
    reader = _HashingReader(stream)
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=cast(IO[bytes], reader), mode="r|gz") as archive:
        for info in archive:
            if _is_unsafe(info.name):
                raise DatasetError(
                    f"The {PACKAGE} archive holds a member named {info.name!r} (absolute or with '..'); "
                    "refusing it. Download the genuine sdist from PyPI."
                )
            name = info.name.removeprefix(TASKS_PREFIX)
            if info.name.startswith(TASKS_PREFIX) and name in wanted:
                found[name] = _member_bytes(archive, info)
    reader.drain()
    return found, reader.sha256.hexdigest(), reader.size


def _member_bytes(archive: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    if not info.isfile() or info.size > MAX_MEMBER_BYTES:
        raise DatasetError(
            f"The {PACKAGE} member {info.name!r} is not a regular file of at most {MAX_MEMBER_BYTES} bytes; "
            "refusing the archive. Download the genuine sdist from PyPI."
        )
    handle = archive.extractfile(info)
    return b"" if handle is None else handle.read()


def _check_json(name: str, data: bytes) -> None:
    try:
        json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(
            f"The {PACKAGE} member {name} is not valid UTF-8 JSON ({exc}); nothing cached."
        ) from exc


def _update_manifest(folder: Path, found: dict[str, bytes], sdist: dict[str, Any]) -> None:
    members = _cached_members(folder)
    for name, data in found.items():
        members[name] = {"size": len(data), "sha256": sha256_bytes(data)}
    manifest = {"package": PACKAGE, "sdist": sdist, "members": dict(sorted(members.items()))}
    atomic_write_json(folder / MANIFEST, manifest)


# ---------------------------------------------------------------------------------------------- datasets


class TwinPair(NamedTuple):
    """A WinoGrande twin pair: two sentences with a blank ``_``, the same two options, answers 0 and 1."""

    sentences: tuple[str, str]
    choices: tuple[str, str]


def parse_twin_pair(target: object, *, subtask: str) -> TwinPair | None:
    """Parse one BIG-bench WinoGrande target into a twin pair, or ``None`` when it is malformed.

    ``object`` targets read ``"Sentence 1: ... \\nAnswer1: ... \\nSentence 2: ... \\nAnswer2: ..."``;
    the options are the two answers, trailing (and stray leading) periods stripped. ``person`` targets
    hold only the two sentences; their options are ``("PersonX", "PersonY")``, sentence 1 answered by
    PersonX and sentence 2 by PersonY (the task's own definition). A pair is malformed unless each
    sentence holds exactly one ``_``, the sentences differ, the options are non-empty and differ
    (ignoring case), and both options occur (ignoring case) in both sentences.

    Parameters
    ----------
    target : str
        One entry of an example's ``target`` list; anything but a str is malformed.
    subtask : {"object", "person"}

    Returns
    -------
    TwinPair or None

    Examples
    --------
    >>> target = ("Sentence 1: The cup fit in the box as the _ was small. \\nAnswer1: cup. \\n"
    ...           "Sentence 2: The cup fit in the box as the _ was large. \\nAnswer2: box.")
    >>> parse_twin_pair(target, subtask="object")
    TwinPair(sentences=('The cup fit in the box as the _ was small.', 'The cup fit in the box as the _ was large.'), choices=('cup', 'box'))
    """  # noqa: E501
    if subtask not in WINOGRANDE_MEMBERS:
        raise ParameterError(f"Unknown subtask {subtask!r}. Available: {list(WINOGRANDE_MEMBERS)}.")
    pattern = _PERSON_PAIR if subtask == "person" else _OBJECT_PAIR
    match = pattern.fullmatch(target.strip()) if isinstance(target, str) else None
    if match is None:
        return None
    fields = [field.strip() for field in match.groups()]
    if subtask == "person":
        pair = TwinPair((fields[0], fields[1]), PERSON_CHOICES)
    else:
        pair = TwinPair((fields[0], fields[2]), (_clean_answer(fields[1]), _clean_answer(fields[3])))
    return pair if _is_well_formed(pair) else None


def _clean_answer(text: str) -> str:
    return text.strip().strip(".").strip()


def _is_well_formed(pair: TwinPair) -> bool:
    options = [option.lower() for option in pair.choices]
    sentences = [sentence.lower() for sentence in pair.sentences]
    return (
        all(sentence.count("_") == 1 for sentence in sentences)
        and sentences[0] != sentences[1]
        and all(options)
        and options[0] != options[1]
        and all(option in sentence for option in options for sentence in sentences)
    )


def winogrande(
    *, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int | np.random.Generator = 0
) -> dict[str, Dataset]:
    """WinoGrande twin sentences (BIG-bench natural_instructions subtasks 029 objects and 030 persons).

    Every well-formed twin pair (see :func:`parse_twin_pair`) gives two multiple-choice examples: the text
    is one sentence with its blank ``_`` kept, the choices are the pair's two options and the label is 0
    for sentence 1 and 1 for sentence 2 (so labels are exactly balanced in every split). The id
    ``wg-object-00012-03-1`` is sentence 1 of target 3 of example 12 (both 0-based) of the object
    subtask. Malformed pairs are skipped and counted in ``meta["skipped_pairs"]``: 2 object pairs (two
    equal answers; answers mangled into dates) and 3 person pairs (two blanks in a sentence).

    Splits are drawn per twin pair, never per sentence, so the twins of a pair share a split; within each
    subtask ``floor(test_fraction * n_pairs)`` pairs go to test and ``floor(val_fraction * n_pairs)`` to
    validation, at random from ``seed``, the rest to train. Examples keep the source order (objects
    first). Defaults: object 12081 pairs (train 9665 / validation 1208 / test 1208), person 16212 pairs
    (12970 / 1621 / 1621), that is train 45270 / validation 5658 / test 5658 examples.

    Parameters
    ----------
    val_fraction, test_fraction : float in (0, 1), default=0.1
        Shares of the twin pairs of each subtask held out for validation and test.
    seed : int or numpy.random.Generator, default=0
        Seeds the split draws (one child generator per subtask).

    Returns
    -------
    dict of str to Dataset
        ``"train"``, ``"validation"`` and ``"test"``, task ``"multiple_choice"``.
    """
    _check_fractions(val_fraction, test_fraction)
    rows: dict[str, list[tuple[str, TwinPair]]] = {split: [] for split in SPLITS}
    skipped: dict[str, int] = {}
    rngs = check_rng(seed).spawn(len(WINOGRANDE_MEMBERS))
    for rng, (subtask, member) in zip(rngs, WINOGRANDE_MEMBERS.items(), strict=True):
        pairs, skipped[subtask] = _twin_pairs(_load_task(member)[1], subtask)
        for split, indices in _split_indices(len(pairs), val_fraction, test_fraction, rng).items():
            rows[split].extend(pairs[i] for i in indices)
    meta = {
        "source": PACKAGE,
        "members": [TASKS_PREFIX + member for member in WINOGRANDE_MEMBERS.values()],
        "skipped_pairs": skipped,
        "splits": _split_meta(val_fraction, test_fraction, seed, unit="twin pair, per subtask"),
    }
    return {split: _winogrande_split(rows[split], split, meta) for split in SPLITS}


def _twin_pairs(examples: list[Any], subtask: str) -> tuple[list[tuple[str, TwinPair]], int]:
    """``(pair id, pair)`` for every well-formed target, in source order, and the number skipped."""
    pairs, skipped = [], 0
    for row, example in enumerate(examples):
        targets = example.get("target") if isinstance(example, dict) else None
        targets = [targets] if not isinstance(targets, list) else targets
        for k, target in enumerate(targets):
            pair = parse_twin_pair(target, subtask=subtask)
            if pair is None:
                skipped += 1
            else:
                pairs.append((f"wg-{subtask}-{row:05d}-{k:02d}", pair))
    return pairs, skipped


def _winogrande_split(rows: list[tuple[str, TwinPair]], split: str, meta: dict[str, Any]) -> Dataset:
    ids, texts, choices, labels = [], [], [], []
    for pair_id, pair in rows:
        for label, sentence in enumerate(pair.sentences):
            ids.append(f"{pair_id}-{label + 1}")
            texts.append(sentence)
            choices.append(list(pair.choices))
            labels.append(label)
    return Dataset(
        ids=np.asarray(ids, dtype=object), texts=texts, labels=np.asarray(labels, dtype=np.int64),
        task="multiple_choice", choices=choices, name="winogrande", split=split, meta=dict(meta),
    )  # fmt: skip


def xsum(
    *, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int | np.random.Generator = 0
) -> dict[str, Dataset]:
    """XSum: BBC articles and their one-sentence summaries (BIG-bench ``gem/xsum``, 1001 examples).

    A generation task: the text is the article, the target its summary, both as in the source. The id
    ``xsum-00012`` is example 12 (0-based; BIG-bench's own comment calls it ``xsum-test-12``). Examples
    without a non-empty text input and target would be skipped and counted (none are). Test and
    validation are ``floor(fraction * 1001)`` = 100 examples each by default, drawn at random from
    ``seed``; train keeps the other 801. BIG-bench's prompt prefixes are in ``meta["prefixes"]``.

    Parameters
    ----------
    val_fraction, test_fraction : float in (0, 1), default=0.1
        Shares of the examples held out for validation and test.
    seed : int or numpy.random.Generator, default=0
        Seeds the split draw.

    Returns
    -------
    dict of str to Dataset
        ``"train"``, ``"validation"`` and ``"test"``, task ``"generation"``.
    """
    _check_fractions(val_fraction, test_fraction)
    task, examples = _load_task(XSUM_MEMBER)
    rows = [(f"xsum-{i:05d}", e["input"], e["target"]) for i, e in enumerate(examples) if _is_text_pair(e)]
    meta = {
        "source": PACKAGE,
        "members": [TASKS_PREFIX + XSUM_MEMBER],
        "skipped": len(examples) - len(rows),
        "prefixes": {k: task.get(f"example_{k}_prefix") for k in ("input", "output")},
        "splits": _split_meta(val_fraction, test_fraction, seed, unit="example"),
    }
    splits = _split_indices(len(rows), val_fraction, test_fraction, check_rng(seed))
    return {split: _xsum_split([rows[i] for i in indices], split, meta) for split, indices in splits.items()}


def _xsum_split(rows: list[tuple[str, str, str]], split: str, meta: dict[str, Any]) -> Dataset:
    ids, texts, targets = (list(column) for column in zip(*rows, strict=True))
    return Dataset(
        ids=np.asarray(ids, dtype=object), texts=texts, targets=targets, task="generation", name="xsum",
        split=split, meta=dict(meta),
    )  # fmt: skip


def _is_text_pair(example: Any) -> bool:
    return isinstance(example, dict) and all(
        isinstance(example.get(key), str) and example[key].strip() for key in ("input", "target")
    )


def _load_task(member: str) -> tuple[dict[str, Any], list[Any]]:
    """A cached BIG-bench task (fetched if needed) and its non-empty ``examples`` list."""
    path = bigbench_task(member)
    task = read_json(path, name="BIG-bench task")
    examples = task.get("examples") if isinstance(task, dict) else None
    if not isinstance(examples, list) or not examples:
        raise DatasetError(
            f"{path} has no 'examples' list; delete it and {path.parent / MANIFEST} to fetch it again."
        )
    return task, examples


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
            raise ParameterError(f"The '{name}' parameter must be a float in (0, 1). Got {value!r} instead.")
    if val_fraction + test_fraction >= 1:
        raise ParameterError(
            f"val_fraction={val_fraction} + test_fraction={test_fraction} should be < 1 "
            "to leave a train split."
        )


def _split_indices(
    n: int, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Sorted row indices per split: ``floor(fraction * n)`` test and validation rows, the rest train."""
    n_test, n_val = int(np.floor(test_fraction * n)), int(np.floor(val_fraction * n))
    if min(n_test, n_val, n - n_test - n_val) < 1:
        raise ParameterError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} of n={n} give {n_val} "
            f"validation, {n_test} test and {n - n_val - n_test} train rows; every split needs one. "
            "Use larger fractions."
        )
    order = rng.permutation(n)
    parts = {
        "train": order[n_test + n_val :],
        "validation": order[n_test : n_test + n_val],
        "test": order[:n_test],
    }
    return {split: np.sort(indices) for split, indices in parts.items()}


def _split_meta(val_fraction: float, test_fraction: float, seed: Any, *, unit: str) -> dict[str, Any]:
    return {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed_of(seed), "unit": unit}


# ---------------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m datadiet.data.bigbench``: cache every known member (one 358 MB download, once)."""
    parser = argparse.ArgumentParser(
        prog="python -m datadiet.data.bigbench",
        description=f"Cache the BIG-bench task files datadiet uses ({PACKAGE}: WinoGrande, XSum).",
    )
    parser.add_argument("--cache-dir", type=Path, help="the datadiet cache (default: $DATADIET_CACHE, ...)")
    parser.add_argument("--sdist", type=Path, help="a bigbench-1.0.0.tar.gz downloaded by hand")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    try:
        paths = prefetch(cache_dir=args.cache_dir, sdist=args.sdist)
    except (DatasetError, FileNotFoundError) as exc:
        parser.exit(1, f"error: {exc}\n")
    folder = _bigbench_dir(args.cache_dir)
    elapsed = time.perf_counter() - start
    logger.info("%d %s task files ready in %s (%.1f s)", len(paths), PACKAGE, folder, elapsed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
