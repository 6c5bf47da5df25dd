"""Typed view of a results document (``ctxbench.results/1``), read once, used by every renderer.

The renderers never index into the raw JSON: they read a :class:`Run` made by :func:`load_run`,
which validates what a report needs and fills what older or partial documents leave out (a run
with one repeat has no spread, an interrupted run may have no ``server`` block). Anything the
document gets wrong in a way the report cannot paper over raises :class:`ReportError` naming the
entry and the field.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PERCENTILES",
    "SCHEMA",
    "Entry",
    "Latency",
    "ReportError",
    "Run",
    "load_run",
    "read_results",
    "relative_spread",
]

SCHEMA = "ctxbench.results/1"
PERCENTILES = ("p50", "p90", "p99", "max")


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
    """``(max - min) / median`` of repeated measurements; 0.0 when fewer than two or median 0.

    The full range, not the standard deviation: with three to five repeats the range is what a
    reader can check against the listed runs.
    """
    if len(values) < 2:
        return 0.0
    mid = statistics.median(values)
    if mid <= 0:
        return 0.0
    return (max(values) - min(values)) / mid


def read_results(path: Path) -> dict[str, Any]:
    """Read a results.json (or a run directory holding one) into a dict."""
    if path.is_dir():
        path = path / "results.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(
            f"No results document at {str(path)!r}.\n"
            "Pass a run directory written by `ctxbench run` (results/<run-id>/) or its"
            " results.json."
        ) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{str(path)!r} holds a JSON {type(doc).__name__}, not an object.")
    return doc


def load_run(doc: Mapping[str, Any]) -> Run:
    """Validate a results document and return its typed view.

    Entries are sorted by (connections, app label, backend, mode) so that every renderer sees
    them in the same order whatever order the runner wrote them in.
    """
    schema = doc.get("schema")
    if schema != SCHEMA:
        raise ReportError(
            f"Unsupported results schema {schema!r}; this report reads {SCHEMA!r}.\n"
            "Re-run the benchmark with this version of ctxbench, or render it with the version"
            " that wrote it."
        )
    raw_entries = doc.get("entries")
    if not isinstance(raw_entries, list):
        raise ReportError("The results document has no 'entries' list.")
    entries = [_load_entry(i, raw) for i, raw in enumerate(raw_entries)]
    order = {"keepalive": 0, "fresh": 1}
    entries.sort(
        key=lambda e: (order.get(e.connections, 2), e.connections, e.app_label, e.backend, e.mode)
    )
    return Run(
        run_id=str(doc.get("run_id", "")),
        created=str(doc.get("created", "")),
        command=tuple(str(c) for c in doc.get("command") or ()),
        machine=_mapping(doc.get("machine")),
        python=str(doc.get("python", "")),
        packages={
            str(k): "not installed" if v is None else str(v)
            for k, v in _mapping(doc.get("packages")).items()
        },
        status=str(doc.get("status", "complete")),
        settings=_mapping(doc.get("settings")),
        entries=tuple(entries),
    )


def _load_entry(index: int, raw: Any) -> Entry:
    if not isinstance(raw, Mapping):
        raise ReportError(f"entries[{index}] is a {type(raw).__name__}, not an object.")
    where = f"entries[{index}]"
    for name in ("mode", "connections"):
        if not isinstance(raw.get(name), str):
            raise ReportError(f"{where} has no {name!r} string (got {raw.get(name)!r}).")
    rps = _number(raw, "rps", where)
    rps_runs = tuple(float(v) for v in raw.get("rps_runs") or ())
    spread = raw.get("rps_spread")
    rps_spread = float(spread) if isinstance(spread, int | float) else relative_spread(rps_runs)
    latency = _latency(raw.get("latency_ms"), f"{where}.latency_ms")
    latency_runs = tuple(
        _latency(run, f"{where}.latency_runs[{i}]")
        for i, run in enumerate(raw.get("latency_runs") or ())
    )
    server = _mapping(raw.get("server"))
    app = str(raw.get("app", ""))
    return Entry(
        mode=raw["mode"],
        app=app,
        app_label=str(raw.get("app_label") or _label_from_app(app)),
        backend=str(raw.get("backend") or "contextvar"),
        connections=raw["connections"],
        requests=int(_number(raw, "requests", where)),
        leaks=int(_number(raw, "leaks", where)),
        errors=int(_number(raw, "errors", where)),
        error_kinds={str(k): int(v) for k, v in _mapping(raw.get("error_kinds")).items()},
        rps=rps,
        rps_runs=rps_runs,
        rps_spread=rps_spread,
        latency=latency,
        latency_runs=latency_runs,
        evidence=tuple(_mapping(ev) for ev in raw.get("evidence") or ()),
        effective=_mapping(server.get("effective")),
    )


def _latency(raw: Any, where: str) -> Latency:
    if not isinstance(raw, Mapping):
        raise ReportError(f"{where} is missing or not an object (got {raw!r}).")
    # The runner writes null percentiles when no request succeeded: keep them as NaN, which the
    # tables show as "-" and the charts leave out.
    values = {
        name: math.nan if raw.get(name) is None else _number(raw, name, where)
        for name in PERCENTILES
    }
    return Latency(**values)


def _number(raw: Mapping[str, Any], name: str, where: str) -> float:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportError(f"{where}.{name} should be a number, got {value!r}.")
    return float(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _label_from_app(app: str) -> str:
    # "harness.apps.flask_app:app" -> "flask"; anything unknown keeps its import string.
    module = app.partition(":")[0].rpartition(".")[2]
    return module.removesuffix("_app") or app or "core"


def _ordered(values: set[str], *, first: tuple[str, ...]) -> list[str]:
    return [v for v in first if v in values] + sorted(values - set(first))
