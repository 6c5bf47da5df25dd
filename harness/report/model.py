"""A temporary adapter: the results model (:mod:`harness.results`) seen as the report's view.

The report reads a run through :func:`load_run`, which takes a :class:`harness.results.Run` (or
a JSON document, read by ``Run.from_json``) and returns the view the renderers were written
against. Reading, checking and the statistics are the results model's; this module only
reshapes. It goes away once the renderers read the model directly.
"""

from __future__ import annotations

import dataclasses
import math
import typing as t
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness import results
from harness.errors import ResultsError
from harness.results import PERCENTILES

__all__ = [
    "PERCENTILES",
    "SCHEMA",
    "Entry",
    "Latency",
    "ReportError",
    "Run",
    "load_run",
    "relative_spread",
]

SCHEMA = results.SCHEMA


class ReportError(ValueError):
    """A results document that a report cannot be built from."""


@dataclass(frozen=True)
class Latency:
    """Latency percentiles of one measurement, in milliseconds."""

    p50: float
    p90: float
    p99: float
    max: float

    def get(self, name: str) -> float:
        """Return the percentile called ``name`` (one of :data:`PERCENTILES`)."""
        if name not in PERCENTILES:
            raise KeyError(name)
        rv: float = getattr(self, name)
        return rv


@dataclass(frozen=True)
class Entry:
    """One cell of the matrix: an app on a server mode with one connection pattern."""

    mode: str
    app: str
    app_label: str
    backend: str
    connections: str
    requests: int
    leaks: int
    errors: int
    error_kinds: Mapping[str, int]
    rps: float
    rps_runs: tuple[float, ...]
    rps_spread: float
    latency: Latency
    latency_runs: tuple[Latency, ...]
    evidence: tuple[Mapping[str, Any], ...]
    effective: Mapping[str, Any]

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What identifies the entry across runs: (app label, backend, mode, connections)."""
        return (self.app_label, self.backend, self.mode, self.connections)

    @property
    def label(self) -> str:
        """A short name for charts: the mode, plus app and backend when they are not the default."""
        parts = [self.mode]
        if self.app_label != "core":
            parts.append(self.app_label)
        if self.backend != "contextvar":
            parts.append(self.backend)
        return " · ".join(parts)

    @property
    def clean(self) -> bool:
        """True when the entry neither leaked nor had errors: only those may be ranked."""
        return self.leaks == 0 and self.errors == 0

    @property
    def rps_min(self) -> float:
        return min(self.rps_runs) if self.rps_runs else self.rps

    @property
    def rps_max(self) -> float:
        return max(self.rps_runs) if self.rps_runs else self.rps

    def latency_spread(self, name: str) -> float:
        """Relative spread of one percentile over the repeats (0.0 with fewer than two)."""
        return relative_spread([run.get(name) for run in self.latency_runs])


@dataclass(frozen=True)
class Run:
    """A whole results document."""

    run_id: str
    created: str
    command: tuple[str, ...]
    machine: Mapping[str, Any]
    python: str
    packages: Mapping[str, str]
    settings: Mapping[str, Any]
    status: str = "complete"  # the runner writes "running", "interrupted" or "failed" otherwise
    entries: tuple[Entry, ...] = field(default_factory=tuple)

    @property
    def patterns(self) -> list[str]:
        """Connection patterns in a stable order (keepalive first, then the rest by name)."""
        return _ordered({e.connections for e in self.entries}, first=("keepalive", "fresh"))

    @property
    def app_labels(self) -> list[str]:
        return _ordered({e.app_label for e in self.entries}, first=("core", "flask"))

    def entries_for(self, connections: str) -> list[Entry]:
        return [e for e in self.entries if e.connections == connections]


def relative_spread(values: Sequence[float]) -> float:
    """See :func:`harness.results.spread`."""
    return results.spread(values)


def load_run(doc: results.Run | Mapping[str, Any]) -> Run:
    """The report's view of a run (a :class:`harness.results.Run` or its JSON document).

    Entries are sorted by (connections, app label, backend, mode) so that every renderer sees
    them in the same order whatever order the runner wrote them in.
    """
    if not isinstance(doc, results.Run):
        try:
            doc = results.Run.from_json(dict(doc))
        except ResultsError as exc:
            raise ReportError(str(exc)) from None
    entries = [_entry(cell) for cell in doc.cells]
    order = {"keepalive": 0, "fresh": 1}
    entries.sort(
        key=lambda e: (order.get(e.connections, 2), e.connections, e.app_label, e.backend, e.mode)
    )
    settings = {**results._encode(doc.settings), "spread_formula": results.SPREAD_FORMULA}
    return Run(
        run_id=doc.run_id,
        created=doc.created,
        command=doc.command,
        machine={k: v for k, v in dataclasses.asdict(doc.machine).items() if v is not None},
        python=doc.python,
        packages={k: "not installed" if v is None else v for k, v in doc.packages.items()},
        status=doc.status,
        settings=settings,
        entries=tuple(entries),
    )


def _entry(cell: results.Cell) -> Entry:
    return Entry(
        mode=cell.mode,
        app=cell.app,
        app_label=cell.app_label,
        backend=cell.backend,
        connections=cell.connections,
        requests=cell.requests,
        leaks=cell.leaks,
        errors=cell.errors,
        error_kinds=cell.error_kinds,
        rps=cell.rps,
        rps_runs=cell.rps_runs,
        rps_spread=cell.rps_spread,
        latency=_latency(cell.latency_ms),
        latency_runs=tuple(_latency(lat) for lat in cell.latency_runs),
        evidence=tuple(
            {**ev.to_dict(), "worker": ev.unit._asdict()} for ev in cell.evidence
        ),
        effective=cell.server.effective,
    )


def _latency(lat: results.Latency) -> Latency:
    # No answered request: NaN, which the tables show as "-" and the charts leave out.
    return Latency(
        **{n: math.nan if lat.get(n) is None else t.cast(float, lat.get(n)) for n in PERCENTILES}
    )


def _ordered(values: set[str], *, first: tuple[str, ...]) -> list[str]:
    return [v for v in first if v in values] + sorted(values - set(first))
