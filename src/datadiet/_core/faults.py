"""Deterministic fault injection: ``DATADIET_FAULT="<site>:<n>"`` SIGKILLs the process at a named point.

The fault tests (``tests/test_faults.py``) and the soak script (``bench/soak.py``) use it to kill a real
run at an exact place instead of after a guessed sleep. ``DATADIET_FAULT="train.step:7"`` kills the
process the 7th time it reaches :func:`fault_point("train.step") <fault_point>`; several sites may be given,
comma-separated (``"represent.chunk:2,study.cell:1"``). With the variable unset a fault point costs one
environment lookup. The sites, in pipeline order:

========================  ================================================================================
``train.step``            reference training, after an optimizer step (mid-epoch)
``train.checkpoint``      reference training, after an epoch's checkpoint files, before its resume state
``train.epoch``           reference training, after an epoch's resume state is saved
``represent.hidden``      hidden-state extraction, after a chunk is written and marked done
``represent.chunk``       gradient extraction, after a chunk is written and marked done
``store.finalize``        a store write, after ``ids.npy`` is renamed into place, before ``values.npy``
                          and the manifest
``io.rename``             any atomic write, after the temp file is complete, before the rename
``study.cell``            a study, after a cell's result file is written
========================  ================================================================================
"""

from __future__ import annotations

import os
import signal

ENV = "DATADIET_FAULT"
SITES = (
    "train.step", "train.checkpoint", "train.epoch", "represent.hidden", "represent.chunk", "store.finalize",
    "io.rename", "study.cell",
)  # fmt: skip

_hits: dict[str, int] = {}


def fault_point(site: str) -> None:
    """Count a hit of ``site``; SIGKILL this process if ``$DATADIET_FAULT`` names this hit."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    _hits[site] = _hits.get(site, 0) + 1
    for item in spec.split(","):
        name, _, nth = item.strip().partition(":")
        if name == site and _hits[site] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
