"""Representation extractors in the ``EXTRACTORS`` registry: what ``datadiet represent`` can extract.

An extractor is a class registered under its *kind* (the name ``reference.represent.kinds`` lists). It
declares the representation names it produces, each with the setting that makes it extracted beyond listing
the kind, and implements :meth:`Extractor.extract`, which fills store entries and returns their index
records (what ``representations.json`` maps each name to). The built-in ``dynamics``, ``hidden`` and
``gradients`` extractors live with the represent stage (:mod:`datadiet.pipeline.represent`), imported the
first time the registry is queried.

A minimal extractor (see docs/extending.md)::

    @EXTRACTORS.register("lengths")
    class Lengths(Extractor):
        outputs = (Output("lengths/chars"),)

        def extract(self, ctx):
            compute = lambda: Representation(np.array([[len(t)] for t in ctx.train.texts], float), "features")
            return ctx.cached("lengths/chars", {"stage": "lengths", "run": ctx.run_id}, compute)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from datadiet._core.registry import Registry
from datadiet.representations.base import Representation

KINDS_KEY = "reference.represent.kinds"
"""Where a study config lists the kinds to extract."""


def _always(ref: Any) -> bool:
    return True


@dataclass(frozen=True)
class Output:
    """One representation an extractor produces.

    Parameters
    ----------
    name : str
        The name a study uses, ``"<kind>/<which>"`` (e.g. ``"hidden/final"``).
    setting : str
        The setting needed beyond listing the kind, as a YAML path reads (``""``: none).
    when : callable
        ``when(ref) -> bool``: whether a reference config with the kind listed extracts it.
    """

    name: str
    setting: str = ""
    when: Callable[[Any], bool] = _always


class ExtractionContext(Protocol):
    """What an extractor gets: the stage (config, splits, store), the finished run and its fingerprint."""

    @property
    def stage(self) -> Any: ...

    @property
    def run(self) -> Any: ...

    @property
    def run_id(self) -> str: ...

    @property
    def train(self) -> Any: ...

    def cached(
        self, name: str, provenance: dict[str, Any], compute: Callable[[], Representation]
    ) -> dict[str, dict[str, Any]]: ...


class Extractor(ABC):
    """A representation extractor: subclasses declare ``outputs`` and implement :meth:`extract`."""

    name: ClassVar[str] = "base"
    outputs: ClassVar[tuple[Output, ...]] = ()

    @abstractmethod
    def extract(self, ctx: ExtractionContext) -> dict[str, dict[str, Any]]:
        """Fill the store entries of this kind; return ``{representation name: index record}``."""


EXTRACTORS: Registry[type[Extractor]] = Registry("extractor", builtins=("datadiet.pipeline.represent",))
"""Kind -> :class:`Extractor` subclass."""


def outputs() -> dict[str, tuple[str, Output]]:
    """Every representation name a registered extractor produces -> (its kind, its declaration)."""
    return {out.name: (kind, out) for kind in EXTRACTORS.registered() for out in EXTRACTORS.get(kind).outputs}


def setting_text(kind: str, out: Output) -> str:
    """The settings that make ``out`` extracted, as a user reads them."""
    listed = f"'{kind}' in {KINDS_KEY}"
    return f"{listed} and {out.setting}" if out.setting else listed


def representation_names(ref: Any) -> dict[str, str]:
    """Every representation a study can name -> the setting that makes ``datadiet represent`` extract it."""
    return {name: setting_text(kind, out) for name, (kind, out) in outputs().items()}


def extracted(name: str, ref: Any) -> bool:
    """Whether this reference config's ``represent`` stage extracts ``name`` (one of the names above)."""
    kind, out = outputs().get(name, ("", None))
    return out is not None and kind in ref.represent.kinds and out.when(ref)


VAL_SUFFIX = "/val"
"""How a validation-split representation is named: ``<training name>/val`` (``hidden/final/val``)."""


def val_counterpart(name: str) -> str:
    """The validation-split representation of the training-split one ``name`` (a view suffix is kept).

    >>> val_counterpart("gradients/train"), val_counterpart("dynamics/loss"), val_counterpart("hidden/a:x")
    ('gradients/val', 'dynamics/loss/val', 'hidden/a/val:x')
    """
    base, sep, view = name.partition(":")
    val = "gradients/val" if base == "gradients/train" else base + VAL_SUFFIX
    return val + sep + view


def is_val(name: str) -> bool:
    """Whether ``name`` is a validation-split representation (``gradients/val``, ``<...>/val``).

    >>> is_val("gradients/val"), is_val("hidden/final/val:flatten"), is_val("dynamics/prob")
    (True, True, False)
    """
    base = name.partition(":")[0]
    return base == "gradients/val" or base.endswith(VAL_SUFFIX)
