"""Where tensors run: one rule for every stage (models, gradients, projection, k-means, selection GEMMs).

The device is ``DATADIET_DEVICE`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``; ``datadiet --device`` sets
it), ``auto`` when unset: the first CUDA device when one is visible, else the CPU. It is a placement, not a
setting of any result: it enters no cache key or cell hash. On the CPU every stage runs exactly the code it
ran before devices existed, so CPU results stay bit for bit; on a GPU they agree up to floating-point
reduction order (docs/benchmarks.md gives the measured differences).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from datadiet.errors import ParameterError

if TYPE_CHECKING:
    import torch

ENV = "DATADIET_DEVICE"
SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def device_spec() -> str:
    """The requested device as written (``auto`` when ``DATADIET_DEVICE`` is unset or empty), checked."""
    spec = (os.environ.get(ENV) or "auto").strip().lower()
    return check_device_spec(spec, where=ENV)


def check_device_spec(spec: str, *, where: str = "device") -> str:
    """``spec`` if it names a device (auto, cpu, cuda, cuda:N), else a one-line error naming ``where``.

    >>> check_device_spec("cuda:1")
    'cuda:1'
    """
    if not isinstance(spec, str) or not SPEC.match(spec):
        raise ParameterError(
            f"{where}={spec!r} is not a device: use auto, cpu, cuda or cuda:N (e.g. cuda:0)."
        )
    return spec


def resolve_device(spec: str | None = None) -> torch.device:
    """The ``torch.device`` of ``spec`` (default: :func:`device_spec`); ``auto`` is CUDA when visible.

    A CUDA device that is not there is refused (never silently replaced by the CPU).
    """
    import torch

    spec = device_spec() if spec is None else check_device_spec(spec)
    if spec == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    index = int(spec.partition(":")[2] or 0)
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= visible:
        raise ParameterError(
            f"device {spec!r} was requested but {visible} CUDA device(s) are visible; set {ENV}=auto "
            "(or cpu), or run where that GPU is."
        )
    return torch.device("cuda", index)


def on_gpu(spec: str | None = None) -> bool:
    """Whether :func:`resolve_device` of ``spec`` is a CUDA device (cheap: no CUDA context on a CPU box)."""
    return resolve_device(spec).type == "cuda"
