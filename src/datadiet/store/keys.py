"""Store keys: canonical fingerprints of provenance, and the provenance field names the store owns.

A key is the sha256 of the canonical JSON of a provenance dict (:func:`make_key`), so field order never
matters and the same provenance gives the same key in any process. The pipeline builds every provenance dict
with :func:`provenance`, which accepts only the names in :data:`PROVENANCE_FIELDS`: a misspelled field is
refused instead of silently making a new key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from datadiet._core.files import sha256_bytes
from datadiet.errors import ParameterError, ParameterTypeError

FORMAT = "datadiet.store/1"
KEY_PATTERN = re.compile(r"[0-9a-f]{16,64}")
KEY_LENGTH = 32


def check_key(key: object) -> str:
    """Return ``key`` if it is a lowercase hex digest (so it can never name a path outside the root)."""
    if not isinstance(key, str) or KEY_PATTERN.fullmatch(key) is None:
        raise ParameterError(
            f"Store keys must be 16-64 lowercase hex characters (0-9, a-f). Got {key!r} instead. "
            "Build keys with datadiet.store.make_key(**provenance)."
        )
    return key


# ---------------------------------------------------------------------------------------------- fingerprints
def canonical(value: Any, where: str = "provenance") -> Any:
    """Turn ``value`` into JSON-native data with one spelling per value, or raise ``TypeError``.

    Tuples become lists, numpy scalars Python numbers, paths strings, sets sorted lists, arrays a
    ``{"__ndarray__": {dtype, shape, sha256}}`` record and dataclasses a dict tagged with their class.
    Anything else raises: an object without a stable fingerprint must never yield a random key.
    """
    if value is None or isinstance(value, (bool, np.bool_, str)):
        return value if not isinstance(value, np.bool_) else bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else {"__float__": repr(number)}  # JSON has no inf/nan
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return _canonical_mapping(value, where)
    if isinstance(value, (list, tuple)):
        return [canonical(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [canonical(item, f"{where}{{}}") for item in value]
        return sorted(items, key=canonical_json)
    if isinstance(value, np.ndarray):
        return _canonical_array(value, where)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {"__dataclass__": type(value).__qualname__, **_canonical_mapping(fields, where)}
    raise ParameterTypeError(
        f"{where} has type {type(value).__name__}, which has no stable fingerprint. Pass JSON-like values "
        "(str, int, float, bool, None, list, dict), numpy arrays or dataclasses; for a model, tokenizer "
        "or function pass its name or path plus a fingerprint of its weights."
    )


def _canonical_mapping(value: Mapping, where: str) -> dict[str, Any]:
    bad = [key for key in value if not isinstance(key, str)]
    if bad:
        raise ParameterTypeError(f"{where} has non-string keys {bad[:3]}; provenance keys must be strings.")
    return {key: canonical(value[key], f"{where}.{key}") for key in sorted(value)}


def _canonical_array(value: np.ndarray, where: str) -> dict[str, Any]:
    if value.dtype.hasobject:
        raise ParameterTypeError(
            f"{where} is an object array, which has no stable fingerprint; use a numeric array."
        )
    data = np.ascontiguousarray(value)
    digest = sha256_bytes(data.tobytes())
    return {"__ndarray__": {"dtype": data.dtype.str, "shape": list(data.shape), "sha256": digest}}


def canonical_json(value: Any) -> str:
    """The canonical JSON text of already-canonical data (sorted keys, no spaces, no NaN)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fingerprint(value: Any, *, length: int = KEY_LENGTH) -> str:
    """A stable hex sha256 of ``value``'s canonical JSON (see :func:`canonical`)."""
    text = f"{FORMAT}\n{canonical_json(canonical(value))}"
    return sha256_bytes(text.encode("utf-8"))[:length]


# ------------------------------------------------------------------------------------------- provenance
PROVENANCE_FIELDS: dict[str, str] = {
    "stage": "what made the entry (e.g. 'dynamics', 'hidden', 'gradients', 'frozen-embeddings')",
    "run": "the reference run's fingerprint (the hash of its config.json)",
    "dataset": "the dataset split's fingerprint",
    "model": "the model's name or path, or the fingerprint of its weights",
    "weights": "the fingerprint of the model's weights",
    "max_length": "the tokenizer's truncation length",
    "quantity": "the training-dynamics quantity ('prob', 'loss', 'correct')",
    "which": "the model state ('pretrained', 'early', 'final')",
    "early_epoch": "the epoch of the checkpoint that 'early' names",
    "split": "the split the rows come from ('train', 'val')",
    "checkpoint": "the checkpoint the values come from",
    "epoch": "the epoch of the checkpoint the values come from",
    "epochs": "the epochs of the checkpoints, one per checkpoint",
    "lr": "the learning rate of the checkpoint (one per checkpoint for several)",
    "adam": "whether the gradients are Adam-preconditioned",
    "dim": "the projected dimension",
    "projection_seed": "the seed of the random projection",
    "projection": "the projection's settings (seed, dim, ...)",
    "target": "the parameters whose gradients are taken",
    "extractor": "the extractor's name",
    "params": "the extractor's non-default parameters (see provenance_fields)",
}
"""The provenance field names the pipeline uses, with what each one records."""


def provenance(**fields: Any) -> dict[str, Any]:
    """A provenance dict with the store's field names (:data:`PROVENANCE_FIELDS`), in the order given.

    Raises
    ------
    ValueError
        If a field is not one of :data:`PROVENANCE_FIELDS`.

    Examples
    --------
    >>> provenance(stage="dynamics", run="0123abcd", quantity="prob")
    {'stage': 'dynamics', 'run': '0123abcd', 'quantity': 'prob'}
    """
    unknown = [name for name in fields if name not in PROVENANCE_FIELDS]
    if unknown:
        raise ParameterError(
            f"Unknown provenance field(s) {unknown}. Available: {list(PROVENANCE_FIELDS)}; add a new field "
            "to datadiet.store.keys.PROVENANCE_FIELDS with what it records."
        )
    return dict(fields)


def make_key(**provenance: Any) -> str:
    """The store key of a representation: a stable sha256 (32 hex characters) of its provenance.

    Parameters
    ----------
    **provenance
        How the representation was made, e.g. ``dataset=<fingerprint>``, ``model=<id or path>``,
        ``weights=<fingerprint>``, ``checkpoint=3``, ``extractor="hidden"``,
        ``params=provenance_fields(params, defaults)``, ``projection={"seed": 0, "dim": 512}``.
        A parent key may itself be a field, which chains fingerprints. Field order does not matter.

    Returns
    -------
    key : str
        Lowercase hex; the same provenance gives the same key in any process, on any machine.

    Raises
    ------
    TypeError
        If a value has no stable fingerprint (an arbitrary object, a function, non-string dict keys).

    Examples
    --------
    >>> make_key(dataset="r8", extractor="hidden") == make_key(extractor="hidden", dataset="r8")
    True
    >>> len(make_key(dataset="r8"))
    32
    """
    if not provenance:
        raise ParameterError("make_key needs at least one provenance field, e.g. make_key(dataset=...).")
    return fingerprint(provenance)


def provenance_fields(params: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that differ from their defaults, so a new defaulted parameter keeps old keys valid.

    Parameters
    ----------
    params : mapping
        The parameters used.
    defaults : mapping
        Each parameter's default; parameters without a default are always kept.

    Examples
    --------
    >>> provenance_fields({"layer": -1, "pooling": "mean", "dim": 8}, {"layer": -1, "pooling": "cls"})
    {'dim': 8, 'pooling': 'mean'}
    """
    return {
        name: value
        for name, value in sorted(params.items())
        if name not in defaults or not _same_value(value, defaults[name], name)
    }


def _same_value(value: Any, default: Any, name: str) -> bool:
    numbers_only = all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in (value, default))
    if numbers_only and value == default:
        return True  # 1 and 1.0 are the same default
    return canonical_json(canonical(value, name)) == canonical_json(canonical(default, name))
