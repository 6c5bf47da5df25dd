"""The results document: versioned, self-describing, written atomically.

A run writes ``results/<run-id>/results.json`` in the ``ctxbench.results/1`` schema (see
docs/architecture.md): the machine, the package versions, the settings, and one entry per
(app, backend, mode, connection pattern) with the measured numbers, the leak evidence and the
server's effective configuration. Reports are generated from this data, never edited by hand.

Writes go to a temporary file in the same directory, are flushed to disk and then renamed over
the target with ``os.replace``, so a reader (or an interrupted run) only ever sees a complete
previous file or a complete new one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import tempfile
import typing as t
from importlib import metadata
from pathlib import Path

from harness.errors import ResultsError

__all__ = [
    "RESULTS_FILE",
    "SCHEMA",
    "load_results",
    "machine_info",
    "new_document",
    "new_run_id",
    "package_versions",
    "validate",
    "write_atomic",
    "write_results",
]

SCHEMA = "ctxbench.results/1"
RESULTS_FILE = "results.json"
#: Distributions whose versions every results document records (``None`` if not installed).
PACKAGES = ("ctxbench", "werkzeug", "flask", "gunicorn", "gevent", "greenlet", "locust")

_Number = (int, float)
#: Required top-level keys and their types.
_TOP_LEVEL: dict[str, type | tuple[type, ...]] = {
    "schema": str,
    "run_id": str,
    "created": str,
    "command": list,
    "machine": dict,
    "python": str,
    "packages": dict,
    "settings": dict,
    "entries": list,
}
#: Required keys of every entry and their types.
_ENTRY: dict[str, type | tuple[type, ...]] = {
    "mode": str,
    "app": str,
    "app_label": str,
    "backend": str,
    "connections": str,
    "requests": int,
    "leaks": int,
    "errors": int,
    "error_kinds": dict,
    "rps": _Number,
    "rps_runs": list,
    "rps_spread": _Number,
    "latency_ms": dict,
    "latency_runs": list,
    "evidence": list,
    "server": dict,
}
_LATENCY_KEYS = ("p50", "p90", "p99", "max")


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique run id: ``YYYYmmdd-HHMMSS-xxxx`` (local time, 4 random hex digits)."""
    now = now or dt.datetime.now()
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def machine_info() -> dict[str, t.Any]:
    """Where the run happened: OS, CPU count (and how many this process may use), Python."""
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "platform": platform.platform(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "python_implementation": platform.python_implementation(),
    }


def package_versions(names: t.Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (``None`` for a package that is not installed)."""
    rv: dict[str, str | None] = {}
    for name in names:
        try:
            rv[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            rv[name] = None
    return rv


def new_document(
    run_id: str, command: t.Sequence[str], settings: dict[str, t.Any]
) -> dict[str, t.Any]:
    """An empty results document for a run; the runner appends to ``entries``."""
    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": list(command),
        "status": "running",
        "machine": machine_info(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "settings": dict(settings),
        "entries": [],
    }


def write_atomic(path: str | os.PathLike[str], data: dict[str, t.Any]) -> Path:
    """Write ``data`` as JSON to ``path`` atomically: complete old file or complete new one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return target


def write_results(run_dir: str | os.PathLike[str], doc: dict[str, t.Any]) -> Path:
    """Validate ``doc`` and write it to ``run_dir/results.json`` atomically; return the path."""
    validate(doc)
    return write_atomic(Path(run_dir) / RESULTS_FILE, doc)


def load_results(path: str | os.PathLike[str]) -> dict[str, t.Any]:
    """Read and validate a results document; ``path`` is the file or its run directory.

    Raises :class:`ResultsError` with the path and what is wrong.
    """
    file = Path(path)
    if file.is_dir():
        file = file / RESULTS_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"no results at {str(file)!r}: run 'ctxbench run' first") from None
    except OSError as e:
        raise ResultsError(f"cannot read {str(file)!r}: {e.strerror}") from None
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ResultsError(f"{str(file)!r} is not valid JSON: {e}") from None
    validate(doc, source=str(file))
    rv: dict[str, t.Any] = doc
    return rv


def _type_name(expected: type | tuple[type, ...]) -> str:
    if expected == _Number:
        return "a number"
    name = getattr(expected, "__name__", str(expected))
    return {"str": "a string", "int": "an integer", "list": "a list", "dict": "an object"}.get(
        name, name
    )


def _check(where: str, value: t.Any, expected: type | tuple[type, ...]) -> None:
    # bool is an int subclass; a count or a rate is never true/false.
    if isinstance(value, bool) or not isinstance(value, expected):
        raise ResultsError(f"{where}: expected {_type_name(expected)}, got {value!r}")


def validate(doc: t.Any, *, source: str = "results document") -> None:
    """Check that ``doc`` is a ``ctxbench.results/1`` document; raise :class:`ResultsError`."""
    if not isinstance(doc, dict):
        raise ResultsError(f"{source}: expected a JSON object, got {type(doc).__name__}")
    schema = doc.get("schema")
    if schema != SCHEMA:
        hint = (
            "it was written by another version of ctxbench"
            if isinstance(schema, str) and schema.startswith("ctxbench.results/")
            else "it is not a ctxbench results document"
        )
        raise ResultsError(f"{source}: schema is {schema!r}, expected {SCHEMA!r}: {hint}")
    for key, expected in _TOP_LEVEL.items():
        if key not in doc:
            raise ResultsError(f"{source}: missing key {key!r}")
        _check(f"{source}: {key}", doc[key], expected)
    for i, entry in enumerate(doc["entries"]):
        where = f"{source}: entries[{i}]"
        if not isinstance(entry, dict):
            raise ResultsError(f"{where}: expected an object, got {entry!r}")
        for key, expected in _ENTRY.items():
            if key not in entry:
                raise ResultsError(f"{where}: missing key {key!r}")
            _check(f"{where}.{key}", entry[key], expected)
        for key in _LATENCY_KEYS:
            if key not in entry["latency_ms"]:
                raise ResultsError(f"{where}.latency_ms: missing key {key!r}")
