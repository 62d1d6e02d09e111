"""Per-example loss gradients of chosen Linear layers, batched with hooks, randomly projected.

A Linear layer's per-example weight gradient is ``G_b = sum_t delta_bt a_bt^T`` and its bias gradient
``sum_t delta_bt``, where ``a_bt`` are the layer's inputs (tokens t of example b) and ``delta_bt`` the
gradients of the loss with respect to its outputs. :func:`per_sample_gradients` runs one forward and
one backward per batch: forward hooks keep ``a`` and the outputs, and ``torch.autograd.grad`` of the
summed per-example losses with respect to those outputs gives ``delta``. In eval mode the examples
of a batch do not interact, so ``delta_b`` is example b's own; padding tokens get ``delta = 0`` and
add nothing. Activations may be 2-D (B, in) or 3-D (B, T, in). Nothing is written to ``.grad`` and
parameters are not touched. (``torch.func.vmap`` fails on BERT in transformers 5, and one backward
per example is several times slower: see ``bench/bench_gradients.py``.)

Three ways to turn ``(a, delta)`` into features:

- ``projection="factorized"`` (default, no Adam state): each layer's :class:`FactorizedProjector`
  projects ``a`` and ``delta`` separately and never forms ``G`` (layers with a thin side, such as
  LoRA's, form their small ``G`` and project it blockwise, which is cheaper and more accurate); the
  layers' ``dim``-d features are summed (independent matrices, so inner products of the
  concatenated gradient are kept in expectation; see :mod:`datadiet.representations.projection`).
- ``adam_state`` given (LESS training gradients): ``G_b`` is materialised per layer (B x out x in
  floats: cheap for LoRA, ~90 MB per example for all of MiniLM's Linear layers), turned into Adam's
  update direction ``m' / sqrt(v' + eps)`` (:func:`datadiet.selection.less.adam_precondition`,
  here in torch), then projected with the same factorized matrices.
- ``projection="dense"``: materialise the flat gradient of each layer and project it with a dense
  :class:`Projector` (the reference codes' way; slower, used to validate the factorized one).

``dim=None`` returns the unprojected gradients, concatenated layer by layer (weight row-major, then
bias), in :func:`find_target_layers` order. :func:`per_sample_gradients_loop` is the naive
one-example-at-a-time reference (autograd on the parameters, dense projection); with the same
``seed`` it equals ``projection="dense"``.

**Precision.** ``precision="bf16"`` or ``"fp16"`` runs the forward (and so the backward) pass under
``torch.autocast``; the captured ``a`` and ``delta`` are cast to float32 before any product, so the
per-example gradients, their projection and the sum over layers are float32, like the output. fp16's
backward is run on the loss times :data:`FP16_LOSS_SCALE` (then divided out exactly) so that small
``delta`` do not underflow. Reduced precision can silently change influence scores (peer tools have
reported a cosine of -0.42 against fp32 in bf16), so the first batch is also run in fp32 and a
:class:`ReducedPrecisionWarning` names the relative error of the Gram matrix ``P P^T`` of its projected
gradients when it exceeds :data:`GRAM_TOLERANCE`. ``"fp32"`` (the default) runs exactly the fp32 code.

Matrices depend only on ``(seed, layer name, layer shape)``: every checkpoint of a model gets the
same projection, as long as the layer names (relative to ``module``) are the same. They are generated
on the first call and kept in :mod:`datadiet.representations.projection`'s process-wide cache, so
later calls (other checkpoints, other shards) do not regenerate them.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Literal, cast

import numpy as np
import torch
from torch import nn

from datadiet._core.progress import track
from datadiet.errors import ParameterError, ParameterTypeError
from datadiet.representations.base import GRADIENT_TARGETS, GradientTarget
from datadiet.representations.projection import (
    FactorizedProjector,
    ProjectionKind,
    Projector,
    _check_kind,
)

PROJECTIONS: tuple[str, ...] = ("factorized", "dense")
Target = GradientTarget | Callable[[str, nn.Module], bool]
Batch = Mapping[str, torch.Tensor]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]
AdamState = Mapping[str, tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]]
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
GRAM_TOLERANCE = 1e-2
"""Largest relative Frobenius error ``||G_r - G_32|| / ||G_32||`` of the first batch's Gram matrix
``G = P P^T`` (projected gradients, as returned) that reduced precision may cause without a warning.

bf16 keeps 8 significant bits (unit roundoff 2**-8 = 0.4%), so well-conditioned gradients move the Gram
matrix by a few 1e-3 (3.7e-3 on a MiniLM LoRA batch, 4e-4 in fp16); 1e-2 is still 4 times below the
distortion the default projection itself adds
(``sqrt(2 / 1024) = 0.044`` per inner product, see :mod:`datadiet.representations.projection`). An error
above it means rounding, not the projection, decides scores built on inner products (LESS,
self-influence), as in the sign flips peer tools report in bf16."""
FP16_LOSS_SCALE = 2.0**10
"""fp16 extraction backpropagates the summed loss times this (a power of two: dividing it out is exact), so
output gradients below fp16's smallest normal number (6e-5) keep their precision; 1024 leaves room for
gradients up to 64 before fp16 overflows (a non-finite Gram error is always warned about)."""


def sequence_classification_loss(module: nn.Module, batch: Batch) -> torch.Tensor:
    """Per-example cross-entropy of a Hugging Face sequence classifier.

    Parameters
    ----------
    module : nn.Module
        Returns an output with ``.logits`` of shape (B, K) when called with the batch's inputs.
    batch : dict of Tensor
        Model inputs plus ``labels`` of shape (B,).

    Returns
    -------
    Tensor of shape (B,)
    """
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    logits = module(**inputs).logits
    return nn.functional.cross_entropy(logits.float(), batch["labels"], reduction="none")


def find_target_layers(module: nn.Module, target: Target = "lora") -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` layers whose weight (and bias) gradients are extracted, in module order.

    Parameters
    ----------
    module : nn.Module
    target : {"lora", "classifier", "linear"} or callable
        ``"lora"``: peft's ``lora_A``/``lora_B`` layers; ``"classifier"``: layers under a module
        named ``classifier`` or ``score`` (the head); ``"linear"``: every ``nn.Linear``. These three
        keep only layers with trainable parameters. A callable ``(name, module) -> bool`` picks
        layers itself (any ``nn.Linear`` it accepts).

    Returns
    -------
    list of (name, nn.Linear)
        Names are relative to ``module``.
    """
    if not callable(target) and target not in GRADIENT_TARGETS:
        raise ParameterError(
            f"The 'target' parameter must be one of {list(GRADIENT_TARGETS)} or a callable(name, module) -> "
            f"bool. Got {target!r} instead."
        )
    linears = [(name, mod) for name, mod in module.named_modules() if isinstance(mod, nn.Linear)]
    layers = [(name, mod) for name, mod in linears if _matches(target, name, mod)]
    if not layers:
        names = [name for name, _ in linears[:6]] or [name for name, _ in list(module.named_modules())[1:7]]
        raise ParameterError(
            f"target={target!r} matches no nn.Linear layer with trainable parameters in "
            f"{type(module).__name__} (its layers include {names}). Use 'lora' for a peft LoRA model, "
            "'classifier', 'linear', or a callable(name, module) -> bool."
        )
    return layers


def _matches(target: Target, name: str, module: nn.Linear) -> bool:
    if callable(target):
        return bool(target(name, module))
    if not any(param.requires_grad for param in module.parameters()):
        return False
    parts = name.split(".")
    if target == "lora":
        return "lora_A" in parts or "lora_B" in parts
    if target == "classifier":
        return "classifier" in parts or "score" in parts
    return True


@dataclass
class _Layer:
    """A target layer and what its features need."""

    name: str
    module: nn.Linear
    factorized: FactorizedProjector | None = None
    dense: Projector | None = None
    adam: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def has_bias(self) -> bool:
        return self.module.bias is not None

    @property
    def size(self) -> int:
        return self.module.weight.numel() + (self.module.bias.numel() if self.has_bias else 0)


def _projection_seed(seed: int | np.random.Generator) -> int:
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ParameterError(
            f"The 'seed' parameter must be an int >= 0 or a numpy Generator. Got {seed!r} instead."
        )
    return int(seed)


def _check_dim(dim: int | None) -> int | None:
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1):
        raise ParameterError(
            f"The 'dim' parameter must be an int >= 1 or None (no projection). Got {dim!r} instead."
        )
    return None if dim is None else int(dim)


class ReducedPrecisionWarning(UserWarning):
    """bf16/fp16 extraction moved the projected gradients' Gram matrix beyond :data:`GRAM_TOLERANCE`."""


def _check_precision(precision: object) -> Precision:
    if precision not in PRECISIONS:
        raise ParameterError(
            f"The 'precision' parameter must be one of {list(PRECISIONS)}. Got {precision!r} instead."
        )
    return cast(Precision, precision)


def _device_type(module: nn.Module) -> str:
    param = next(module.parameters(), None)
    return "cpu" if param is None else param.device.type


def _autocast(module: nn.Module, precision: Precision) -> AbstractContextManager:
    """``torch.autocast`` on the module's device type for bf16/fp16; no context for fp32."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(_device_type(module), dtype=_AUTOCAST_DTYPES[precision])


def _fp32(module: nn.Module, precision: Precision) -> AbstractContextManager:
    """Autocast off (float32 products) around the feature computation of a reduced-precision run, also
    inside a caller's own autocast region; no context for fp32 (its code path stays as it was)."""
    return nullcontext() if precision == "fp32" else torch.autocast(_device_type(module), enabled=False)


def _plan(
    module: nn.Module,
    target: Target,
    *,
    dim: int | None,
    seed: int | np.random.Generator,
    projection: str,
    kind: str,
    adam_state: AdamState | None,
) -> list[_Layer]:
    """Validate the options and build each target layer's projector and Adam state."""
    if projection not in PROJECTIONS:
        raise ParameterError(
            f"The 'projection' parameter must be one of {list(PROJECTIONS)}. Got {projection!r} instead."
        )
    dim, kind, seed = _check_dim(dim), _check_kind("per_sample_gradients", kind), _projection_seed(seed)
    layers = [_Layer(name, mod) for name, mod in find_target_layers(module, target)]
    for layer in layers:
        out_features, in_features = layer.module.weight.shape
        if dim is not None and projection == "factorized":
            layer.factorized = FactorizedProjector(
                out_features, in_features, dim=dim, bias=layer.has_bias, seed=seed, name=layer.name, kind=kind
            )
        elif dim is not None:
            layer.dense = Projector(layer.size, dim, seed=seed, name=layer.name, kind=kind)
    if adam_state is not None:
        _attach_adam(layers, adam_state)
    return layers


def _attach_adam(layers: list[_Layer], adam_state: AdamState) -> None:
    """Look up ``(exp_avg, exp_avg_sq)`` of every target parameter, as float32 tensors of its shape."""
    if not isinstance(adam_state, Mapping):
        raise ParameterTypeError(
            "adam_state must be a dict {parameter name: (exp_avg, exp_avg_sq)}; build it with "
            f"adam_state_from_optimizer(module, optimizer). Got {type(adam_state).__name__} instead."
        )
    wanted = [
        (layer, kind)
        for layer in layers
        for kind in ("weight", "bias")
        if getattr(layer.module, kind) is not None
    ]
    missing = [f"{layer.name}.{kind}" for layer, kind in wanted if f"{layer.name}.{kind}" not in adam_state]
    if missing:
        raise ParameterError(
            f"adam_state has no entry for {len(missing)} target parameters (first: {missing[:3]}); keys "
            "must be parameter names relative to the module, as adam_state_from_optimizer builds them."
        )
    for layer, kind in wanted:
        param = getattr(layer.module, kind)
        pair = adam_state[f"{layer.name}.{kind}"]
        moments = tuple(torch.as_tensor(m, dtype=torch.float32, device=param.device) for m in pair)
        if len(moments) != 2 or any(m.numel() != param.numel() for m in moments):
            raise ParameterError(
                f"adam_state[{layer.name + '.' + kind!r}] must be (exp_avg, exp_avg_sq), each with "
                f"{param.numel()} entries like the parameter of shape {tuple(param.shape)}."
            )
        layer.adam[kind] = (moments[0].reshape(param.shape), moments[1].reshape(param.shape))


def adam_state_from_optimizer(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """``{parameter name: (exp_avg, exp_avg_sq)}`` for every parameter with Adam(W) state.

    Parameters
    ----------
    module : nn.Module
        The model the optimizer trains (names are relative to it).
    optimizer : torch.optim.Optimizer
        An ``Adam``/``AdamW`` optimizer (or one loaded from a checkpoint's state dict).

    Returns
    -------
    dict of str to (Tensor, Tensor)
    """
    state = {}
    for name, param in module.named_parameters():
        moments = optimizer.state.get(param, {})
        if "exp_avg" in moments and "exp_avg_sq" in moments:
            state[name] = (moments["exp_avg"].detach(), moments["exp_avg_sq"].detach())
    return state


def adam_direction(
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    *,
    betas: tuple[float, float] = ADAM_BETAS,
    eps: float = ADAM_EPS,
) -> torch.Tensor:
    """LESS's ``m' / sqrt(v' + eps)``, the torch twin of :func:`datadiet.selection.less.adam_precondition`.

    Parameters
    ----------
    grad : Tensor of shape (B, *param_shape)
        Per-example gradients.
    exp_avg, exp_avg_sq : Tensor of shape param_shape
        Adam's moments at the checkpoint.

    Returns
    -------
    Tensor of the shape of ``grad``
    """
    m = betas[0] * exp_avg + (1 - betas[0]) * grad
    v = betas[1] * exp_avg_sq + (1 - betas[1]) * grad * grad
    return m / torch.sqrt(v + eps)


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode (no dropout) and restore each one's mode afterwards."""
    modes = {mod: mod.training for mod in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for mod, training in modes.items():
            mod.train(training)


class _Capture:
    """Forward hooks that keep each target layer's inputs and outputs for one batch."""

    def __init__(self, layers: list[_Layer]) -> None:
        self.layers = layers
        self.records: dict[str, list[tuple[torch.Tensor, torch.Tensor, int]]] = {}
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> _Capture:
        for layer in self.layers:
            hook = layer.module.register_forward_hook(self._hook(layer.name), with_kwargs=True)
            self.handles.append(hook)
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.records.clear()

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
            inputs = args[0] if args else kwargs["input"]
            self.records.setdefault(name, []).append((inputs.detach(), output, output._version))

        return hook

    def run(
        self, module: nn.Module, batch: Batch, loss_fn: LossFn, precision: Precision = "fp32"
    ) -> tuple[int, dict[str, list]]:
        """Forward and backward one batch: ``(B, {layer name: [(a, delta), ...]})``, one pair per call.

        With bf16/fp16 the forward runs under autocast (the backward follows its dtypes); ``a`` and
        ``delta`` come back float32 either way.
        """
        self.records.clear()
        with _autocast(module, precision):
            losses = loss_fn(module, batch)
        if not isinstance(losses, torch.Tensor) or losses.ndim != 1:
            shape = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
            raise ParameterError(
                f"loss_fn must return per-example losses of shape (B,). Got {shape} instead; "
                "use reduction='none' and do not average over the batch."
            )
        calls = [(name, *record) for name, records in self.records.items() for record in records]
        if not calls:
            return len(losses), {}
        _check_outputs(calls)
        total = losses.sum() if precision != "fp16" else losses.float().sum() * FP16_LOSS_SCALE
        deltas = torch.autograd.grad(total, [out for _, _, out, _ in calls], allow_unused=True)
        pairs: dict[str, list] = {}
        for (name, a, out, _), delta in zip(calls, deltas, strict=True):
            delta = torch.zeros_like(out) if delta is None else delta
            delta = _per_example(delta, len(losses))
            if precision == "fp16":
                delta = delta / FP16_LOSS_SCALE  # exact: a power of two
            pairs.setdefault(name, []).append((_per_example(a, len(losses)), delta))
        self.records.clear()
        return len(losses), pairs


def _check_outputs(calls: list[tuple[str, torch.Tensor, torch.Tensor, int]]) -> None:
    for name, _, out, version in calls:
        if not out.requires_grad:
            raise ParameterError(
                f"The output of layer {name!r} does not require grad (its parameters and inputs are "
                "frozen, or the forward ran under torch.no_grad); unfreeze it or choose another target."
            )
        if out._version != version:
            raise ParameterError(
                f"The output of layer {name!r} was modified in place after the layer ran, so its gradient "
                "cannot be read; use per_sample_gradients_loop for this model."
            )


def _per_example(x: torch.Tensor, n: int) -> torch.Tensor:
    """(n * m, ..., F) -> (n, m * ..., F) float32: the rows of example b are its tokens (example-major)."""
    if x.ndim < 2 or x.shape[0] % n:
        raise ParameterError(
            f"A target layer saw activations of shape {tuple(x.shape)} for a batch of {n} losses; the "
            "leading dimension must be the batch (or a multiple of it, example-major)."
        )
    return x.reshape(n, -1, x.shape[-1]).float()


def _layer_gradient(layer: _Layer, pairs: list, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Materialised per-example gradients: weight (n, out, in) and bias (n, out) or None."""
    weight = layer.module.weight
    grad = torch.zeros(n, *weight.shape, device=weight.device)
    bias = torch.zeros(n, weight.shape[0], device=weight.device) if layer.has_bias else None
    for a, delta in pairs:
        grad += delta.transpose(1, 2) @ a
        if bias is not None:
            bias += delta.sum(1)
    return grad, bias


def _precondition(
    layer: _Layer, grad: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not layer.adam:
        return grad, bias
    grad = adam_direction(grad, *layer.adam["weight"])
    if bias is not None:
        bias = adam_direction(bias, *layer.adam["bias"])
    return grad, bias


def _flat(grad: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """(n, out, in) and (n, out) -> (n, out * in + out): weight row-major, then bias."""
    flat = grad.reshape(len(grad), -1)
    return flat if bias is None else torch.cat([flat, bias], dim=1)


def _layer_features(layer: _Layer, pairs: list, n: int) -> torch.Tensor:
    """One layer's (n, dim) projected features, or its (n, size) flat gradient when unprojected."""
    if layer.factorized is not None and not layer.adam:
        features = [layer.factorized.project(a, delta) for a, delta in pairs]
        return torch.stack(features).sum(0) if features else torch.zeros(n, layer.factorized.dim)
    grad, bias = _precondition(layer, *_layer_gradient(layer, pairs, n))
    if layer.factorized is not None:
        return layer.factorized.project_gradient(grad, bias)
    flat = _flat(grad, bias)
    return flat if layer.dense is None else layer.dense(flat)


def _combine(features: list[torch.Tensor], dim: int | None) -> torch.Tensor:
    """Sum the layers' projections (independent blocks) or concatenate unprojected gradients."""
    features = [f.to(features[0].device) for f in features]
    return torch.cat(features, dim=1) if dim is None else torch.stack(features).sum(0)


def _batch_features(
    capture: _Capture, module: nn.Module, batch: Batch, loss_fn: LossFn, layers: list[_Layer],
    dim: int | None, precision: Precision,
) -> torch.Tensor:  # fmt: skip
    """One batch's (B, width) float32 features: forward and backward in ``precision``, products in fp32."""
    n, pairs = capture.run(module, batch, loss_fn, precision)
    with torch.no_grad(), _fp32(module, precision):
        features = _combine([_layer_features(layer, pairs.get(layer.name, []), n) for layer in layers], dim)
    if precision != "fp32" and not bool(torch.isfinite(features).all()):
        raise ParameterError(
            f"precision={precision} gave non-finite gradients (the {precision} forward or backward "
            "overflowed); use represent.gradients.precision: fp32 (or bf16, which has fp32's range)."
        )
    return features


def gram_error(features: torch.Tensor, reference: torch.Tensor, *, normalize: bool = False) -> float:
    """``||G - G_ref||_F / ||G_ref||_F`` for the Gram matrices ``G = P P^T`` of two (B, width) feature sets.

    Computed in float64; rows are L2-normalised first when ``normalize`` (as the output is). Two zero
    matrices give 0, a zero reference against a non-zero matrix gives inf, a non-finite feature gives nan.

    >>> p = torch.eye(3)
    >>> gram_error(p, p), round(gram_error(1.01 * p, p), 4)
    (0.0, 0.0201)
    """
    grams = []
    for p in (features, reference):
        p = p.detach().double()
        if normalize:
            p = nn.functional.normalize(p, dim=1)
        grams.append(p @ p.T)
    diff, norm = float(torch.linalg.norm(grams[0] - grams[1])), float(torch.linalg.norm(grams[1]))
    if norm == 0:
        return 0.0 if diff == 0 else diff * math.inf  # nan stays nan
    return diff / norm


def _check_gram(
    features: torch.Tensor, reference: torch.Tensor, precision: Precision, normalize: bool
) -> None:
    """A :class:`ReducedPrecisionWarning` when the Gram error exceeds :data:`GRAM_TOLERANCE` (or is nan)."""
    error = gram_error(features, reference, normalize=normalize)
    if not error <= GRAM_TOLERANCE:  # nan included
        warnings.warn(
            f"precision={precision} moved the Gram matrix of the first batch's projected gradients by a "
            f"relative error of {error:.3g} against fp32 (tolerance {GRAM_TOLERANCE:g}), so scores built on "
            "them (LESS, self-influence) may be wrong; use represent.gradients.precision: fp32.",
            ReducedPrecisionWarning,
            stacklevel=3,
        )


def _finish(rows: list[torch.Tensor], width: int, normalize: bool) -> np.ndarray:
    out = torch.cat(rows).numpy().astype(np.float32, copy=False) if rows else np.zeros((0, width), np.float32)
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)
    return out


def per_sample_gradients(
    module: nn.Module,
    batches: Iterable[Batch],
    loss_fn: LossFn,
    *,
    target: Target = "lora",
    dim: int | None = 1024,
    seed: int | np.random.Generator = 0,
    projection: Literal["factorized", "dense"] = "factorized",
    kind: ProjectionKind = "rademacher",
    adam_state: AdamState | None = None,
    normalize: bool = False,
    precision: Precision = "fp32",
    check_gram: bool = True,
    progress: bool = True,
) -> np.ndarray:
    """Projected per-example gradients of the target layers, one forward and backward per batch.

    Parameters
    ----------
    module : nn.Module
        The model; run in eval mode (each submodule's mode is restored), never modified.
    batches : iterable of dict of Tensor
        Batches as ``loss_fn`` takes them (on the model's device).
    loss_fn : callable (module, batch) -> Tensor of shape (B,)
        Per-example losses, e.g. :func:`sequence_classification_loss`; their sum is backpropagated.
    target : {"lora", "classifier", "linear"} or callable
        Which ``nn.Linear`` layers count (:func:`find_target_layers`).
    dim : int or None
        Output dimension (summed over layers); ``None`` returns unprojected gradients.
    seed : int or numpy Generator
        Projection seed; the matrices depend only on it, the layer names and shapes.
    projection : {"factorized", "dense"}
        Per-layer Kronecker projection without forming gradients, or dense projection of them.
    kind : {"rademacher", "normal", "sparse", "very_sparse"}
        Entry distribution of the random matrices.
    adam_state : dict of str to (exp_avg, exp_avg_sq), optional
        Adam moments per parameter name (:func:`adam_state_from_optimizer`); if given, features are
        LESS's Adam update directions instead of raw gradients.
    normalize : bool
        L2-normalise each row (zero rows stay 0); leave False for self-influence.
    precision : {"fp32", "bf16", "fp16"}
        Forward/backward precision (autocast on the module's device; faster on a GPU only). Products,
        projection and the sum over layers are float32 whatever it is (see the module notes).
    check_gram : bool
        With bf16/fp16, also run the first batch in fp32 and warn (:class:`ReducedPrecisionWarning`)
        when the Gram matrices differ by more than :data:`GRAM_TOLERANCE`; ignored for fp32.
    progress : bool
        Show a progress bar over batches.

    Returns
    -------
    ndarray of shape (n_examples, dim) or (n_examples, n_params), float32

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    >>> def loss_fn(module, batch):
    ...     return nn.functional.cross_entropy(module(batch["x"]), batch["y"], reduction="none")
    >>> batches = [{"x": torch.linspace(-1, 1, 20).reshape(5, 4), "y": torch.tensor([0, 1, 0, 1, 1])}]
    >>> per_sample_gradients(model, batches, loss_fn, target="linear", dim=16, progress=False).shape
    (5, 16)
    >>> exact = per_sample_gradients(model, batches, loss_fn, target="linear", dim=None, progress=False)
    >>> loop = per_sample_gradients_loop(model, batches, loss_fn, target="linear", dim=None, progress=False)
    >>> exact.shape, bool(abs(exact - loop).max() <= 1e-5 * abs(loop).max())  # up to float32 rounding
    ((5, 23), True)
    """
    precision = _check_precision(precision)
    layers = _plan(
        module, target, dim=dim, seed=seed, projection=projection, kind=kind, adam_state=adam_state
    )
    width = dim if dim is not None else sum(layer.size for layer in layers)
    total = len(cast(Sized, batches)) if hasattr(batches, "__len__") else None
    rows = []
    check = check_gram and precision != "fp32"
    with _eval_mode(module), _Capture(layers) as capture:
        for batch in track(batches, "gradients", total=total, enabled=progress):
            features = _batch_features(capture, module, batch, loss_fn, layers, dim, precision)
            if check:  # the first batch only
                reference = _batch_features(capture, module, batch, loss_fn, layers, dim, "fp32")
                _check_gram(features, reference, precision, normalize)
                check = False
            rows.append(features.cpu())
    return _finish(rows, width, normalize)


def _examples(batches: Iterable[Batch]) -> Iterator[dict]:
    """Split each batch into batches of one (tensors whose first dimension is the batch size)."""
    for batch in batches:
        tensors = [value for value in batch.values() if isinstance(value, torch.Tensor) and value.ndim]
        if not tensors:
            raise ParameterError(
                "A batch holds no tensors; per_sample_gradients_loop needs tensors of shape (B, ...)."
            )
        n = tensors[0].shape[0]
        for b in range(n):
            yield {
                key: value[b : b + 1]
                if isinstance(value, torch.Tensor) and value.ndim and len(value) == n
                else value
                for key, value in batch.items()
            }


def _layer_params(layers: list[_Layer]) -> list[torch.Tensor]:
    params = [p for layer in layers for p in (layer.module.weight, layer.module.bias) if p is not None]
    frozen = [layer.name for layer in layers if not all(p.requires_grad for p in layer.module.parameters())]
    if frozen:
        raise ParameterError(
            f"per_sample_gradients_loop differentiates parameters, but layers {frozen[:3]} have frozen "
            "ones; unfreeze them or use per_sample_gradients."
        )
    return params


def _example_features(
    module: nn.Module,
    example: dict,
    loss_fn: LossFn,
    layers: list[_Layer],
    params: list[torch.Tensor],
    dim: int | None,
) -> torch.Tensor:
    """One example's features: autograd on the parameters, flatten, (precondition,) dense projection."""
    losses = loss_fn(module, example)
    grads = torch.autograd.grad(losses.sum(), params, allow_unused=True)
    grads = iter([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)])
    features = []
    with torch.no_grad():
        for layer in layers:
            grad = next(grads).float().unsqueeze(0)
            bias = next(grads).float().unsqueeze(0) if layer.has_bias else None
            flat = _flat(*_precondition(layer, grad, bias))
            features.append(flat if layer.dense is None else layer.dense(flat))
        return _combine(features, dim).cpu()


def per_sample_gradients_loop(
    module: nn.Module,
    batches: Iterable[Batch],
    loss_fn: LossFn,
    *,
    target: Target = "lora",
    dim: int | None = 1024,
    seed: int | np.random.Generator = 0,
    kind: ProjectionKind = "rademacher",
    adam_state: AdamState | None = None,
    normalize: bool = False,
    progress: bool = True,
) -> np.ndarray:
    """The naive reference: one example at a time, autograd on the parameters, dense projection.

    Each batch is split into batches of one; for each, ``torch.autograd.grad`` of its loss with
    respect to the target layers' parameters is flattened (weight row-major, then bias), optionally
    Adam-preconditioned, and projected with the same per-layer :class:`Projector` as
    ``per_sample_gradients(..., projection="dense")``, which it therefore equals. Slow (one backward
    per example); for validation and benchmarks. Parameters as in :func:`per_sample_gradients`.

    Returns
    -------
    ndarray of shape (n_examples, dim) or (n_examples, n_params), float32
    """
    layers = _plan(module, target, dim=dim, seed=seed, projection="dense", kind=kind, adam_state=adam_state)
    params = _layer_params(layers)
    width = dim if dim is not None else sum(layer.size for layer in layers)
    rows = []
    with _eval_mode(module):
        for example in track(_examples(batches), "gradients", enabled=progress):
            rows.append(_example_features(module, example, loss_fn, layers, params, dim))
    return _finish(rows, width, normalize)
