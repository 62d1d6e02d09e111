"""Model backends in the ``MODELS`` registry: which backend serves a (task, model.mode) and how it is built.

Each entry is a :class:`ModelBackend` declaring the tasks and the ``model.mode`` values it serves and a
``build(request)`` that returns a fresh, seeded :class:`~datadiet.models.base.ReferenceModel`. The heavy
backend modules (torch, transformers) are imported only by ``build``, so this module stays light. A
backend's ``build`` (a plugin's too) returns its model on the configured device
(:func:`datadiet._core.device.resolve_device`): :class:`ModelBackend` wraps it, so the reference model and a
study's main model are placed where they are built. On the CPU the move is a no-op.

>>> backend_for("generation", "lora").name, backend_for("classification", "frozen").name
('causal_lm', 'frozen_head')
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datadiet._core.registry import Registry
from datadiet.errors import ParameterError

if TYPE_CHECKING:
    import numpy as np

    from datadiet.data.dataset import Dataset


@dataclass(frozen=True)
class ModelRequest:
    """What a backend needs to build the reference (or main) model.

    Parameters
    ----------
    model : ModelConfig
        The ``model`` section of the config (path, mode, head, lora, max_length, max_new_tokens).
    seed : int
        Seeds the new weights (``training.seed``).
    train, val : Dataset
        The training split (its classes size the head) and the validation split, if any.
    embed : callable
        ``embed(ds) -> (n_examples, hidden)`` frozen encoder embeddings, cached by the caller.
    """

    model: Any
    seed: int
    train: Dataset
    val: Dataset | None
    embed: Callable[[Dataset], np.ndarray]


@dataclass(frozen=True)
class ModelBackend:
    """A registered model backend: the tasks and modes it serves and how to build it."""

    name: str
    tasks: tuple[str, ...]
    modes: tuple[str, ...]
    build: Callable[[ModelRequest], Any]
    """``build(request)``: the model; wrapped so that its ``module`` ends up on the configured device."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "build", placed(self.build))  # frozen: set once, here


def placed(build: Callable[[ModelRequest], Any]) -> Callable[[ModelRequest], Any]:
    """``build`` whose model's ``module`` is moved to :func:`~datadiet._core.device.resolve_device`.

    The device is resolved before anything is built, so a requested GPU that is not there is refused
    before embeddings are computed or weights loaded. Wrapping twice changes nothing.
    """
    if getattr(build, "_places_model", False):
        return build

    @functools.wraps(build)
    def build_placed(request: ModelRequest) -> Any:
        from datadiet._core.device import resolve_device

        device = resolve_device()
        model = build(request)
        model.module.to(device)
        return model

    build_placed._places_model = True  # type: ignore[attr-defined]
    return build_placed


MODELS: Registry[ModelBackend] = Registry("model backend")
"""Backend name -> :class:`ModelBackend`; the first registered one serving a (task, mode) is used."""


def backend_for(task: str, mode: str) -> ModelBackend:
    """The backend serving ``task`` with ``model.mode = mode``, or an error naming what each serves."""
    backends = [MODELS.get(name) for name in MODELS.registered()]
    for backend in backends:
        if task in backend.tasks and mode in backend.modes:
            return backend
    tasks = sorted({t for b in backends if mode in b.modes for t in b.tasks})
    modes = list(dict.fromkeys(m for b in backends if task in b.tasks for m in b.modes))
    raise ParameterError(
        f"model.mode {mode!r} serves {' and '.join(tasks) or 'no task'} only; "
        f"a {task} task needs {' or '.join(modes) or 'a model backend registered for it'}."
    )


def encoder_path(path: str) -> str:
    """The encoder folder: ``path``, or the packaged MiniLM for ``"embedded"``."""
    from datadiet.models.encoder import embedded_encoder_path

    return str(embedded_encoder_path()) if path == "embedded" else path


def lm_path(path: str) -> str:
    """The causal LM folder: ``path``, or the packaged SmolLM2-135M-Instruct (converted once from GGUF)."""
    from datadiet.models.causal_lm import embedded_lm_path

    return str(embedded_lm_path()) if path == "embedded" else path


def _lora(request: ModelRequest) -> Any:
    return request.model.lora if request.model.mode == "lora" else None


def _frozen_head(request: ModelRequest) -> Any:
    from datadiet.models.frozen import FrozenHead

    tables = {request.train.fingerprint(): request.embed(request.train)}
    if request.val is not None:
        tables[request.val.fingerprint()] = request.embed(request.val)
    return FrozenHead(tables, request.train.n_classes, head=request.model.head, seed=request.seed)


def _causal_lm(request: ModelRequest) -> Any:
    from datadiet.models.causal_lm import CausalLM

    m = request.model
    return CausalLM(
        lm_path(m.path), lora=_lora(request), max_length=m.max_length, max_new_tokens=m.max_new_tokens,
        seed=request.seed,
    )  # fmt: skip


def _multiple_choice(request: ModelRequest) -> Any:
    from datadiet.models.multiple_choice import EncoderMultipleChoice

    m = request.model
    return EncoderMultipleChoice(
        encoder_path(m.path), lora=_lora(request), max_length=m.max_length, seed=request.seed
    )


def _encoder_classifier(request: ModelRequest) -> Any:
    from datadiet.models.encoder import EncoderClassifier

    m = request.model
    return EncoderClassifier(
        encoder_path(m.path), request.train.n_classes, lora=_lora(request), max_length=m.max_length,
        seed=request.seed,
    )  # fmt: skip


_TUNED = ("lora", "full")
MODELS.register("frozen_head", ModelBackend("frozen_head", ("classification",), ("frozen",), _frozen_head))
MODELS.register("causal_lm", ModelBackend("causal_lm", ("generation",), _TUNED, _causal_lm))
MODELS.register(
    "multiple_choice", ModelBackend("multiple_choice", ("multiple_choice",), _TUNED, _multiple_choice)
)
MODELS.register(
    "encoder_classifier", ModelBackend("encoder_classifier", ("classification",), _TUNED, _encoder_classifier)
)
