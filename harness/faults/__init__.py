"""Faults during load: a worker killed, recycled or reloaded, a request past the worker timeout,
clients that leave or dawdle, hooks that raise, each while a normal, fully checked load runs.

``FAULTS`` maps names to faults (one module per family: :mod:`.process` for the server's
processes, :mod:`.clients` for clients and hooks); :func:`run_fault_cell` runs one fault against
one mode and judges it (:mod:`.verdict`). ``ctxbench chaos`` runs the matrix.
"""

from __future__ import annotations

from . import clients, process
from .base import FAULTS, Fault, get_fault
from .runner import LoadSettings, run_fault_cell
from .verdict import VERDICTS

for _name in sorted(FAULTS, key=lambda name: FAULTS[name].order):
    FAULTS[_name] = FAULTS.pop(_name)

__all__ = [
    "FAULTS",
    "VERDICTS",
    "Fault",
    "LoadSettings",
    "clients",
    "get_fault",
    "process",
    "run_fault_cell",
]
