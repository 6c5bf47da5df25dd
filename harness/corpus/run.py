"""``ctxbench corpus``: every corpus entry, buggy and fixed, under every mode and pattern.

For each entry, variant (``buggy``, ``fixed``) and server mode the runner starts one server
(with the entry's preload arguments when it needs the app imported before the workers patch
anything) and, for each applicable connection pattern, sends ``requests`` probe requests with
the load the entry needs (a fraction failing at a phase, or streamed bodies abandoned mid-body
next to the probe requests). Each measurement becomes an ordinary results :class:`Cell` with a
:class:`~harness.results.CorpusCheck`: what the entry's traits say the cell can show
(:func:`harness.corpus.expectation`), what it showed, and whether the two agree
(:func:`judge`). The run folder is a normal one (``results.json``, ``report.md``,
``report.html``, server logs); its report has a corpus table.
"""

from __future__ import annotations

import dataclasses
import time
import typing as t
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import results
from harness.corpus import VARIANTS, Entry, expectation, select
from harness.errors import UsageError
from harness.expectations import Expectation
from harness.load.spec import CONNECTION_PATTERNS, ConnectionPattern
from harness.results import CorpusCheck, Run
from harness.servers import MODES, LiveServer, get_mode, live_server
from harness.servers.base import ModeTraits, ServerConfig
from harness.settings import RunSettings

__all__ = [
    "CorpusSettings",
    "corpus_cells",
    "judge",
    "mode_traits",
    "run_corpus",
    "server_args",
]

ServerFn = Callable[..., t.ContextManager[LiveServer]]
LoadFn = Callable[[Entry, LiveServer, str, "CorpusSettings"], t.Any]


@dataclass(frozen=True)
class CorpusSettings:
    """What ``ctxbench corpus`` varies."""

    entries: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()
    connections: tuple[str, ...] = CONNECTION_PATTERNS
    #: Probe requests per buggy cell and per fixed cell.
    requests: int = 300
    fixed_requests: int = 300
    concurrency: int = 16
    #: The view yields this long, so requests overlap wherever a mode lets them.
    sleep_ms: float = 10.0
    timeout: float = 10.0
    #: Upper bound of one measurement, whatever ``requests`` says.
    max_seconds: float = 120.0
    workers: int | None = None

    def __post_init__(self) -> None:
        try:
            select(self.entries)
        except ValueError as e:
            raise UsageError(str(e)) from None
        for name in ("requests", "fixed_requests", "concurrency"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise UsageError(f"bad --{name.replace('_', '-')} {value!r}: use a number >= 1")
        for pattern in self.connections:
            if pattern not in CONNECTION_PATTERNS:
                raise UsageError(f"unknown connection pattern {pattern!r}: keepalive or fresh")

    def run_settings(self, modes: tuple[str, ...]) -> RunSettings:
        """The results document's settings: the apps and backends the corpus ran."""
        entries = select(self.entries)
        variants = [e.variant(v) for e in entries for v in VARIANTS]
        return RunSettings(
            apps=tuple(dict.fromkeys(v.app for v in variants)),
            backends=tuple(dict.fromkeys(v.backend for v in variants)),
            modes=modes,
            connections=self.connections,
            duration=None,
            requests=self.requests,
            concurrency=self.concurrency,
            repeats=1,
            sleep_ms=self.sleep_ms,
            warmup=0.0,
            timeout=self.timeout,
            workers=self.workers,
        )


def server_args(entry: Entry, mode: str) -> tuple[str, ...]:
    """The server arguments ``entry`` runs with under ``mode`` (its preload arguments)."""
    return get_mode(mode).preload_args if entry.preload else ()


def mode_traits(entry: Entry, mode: str) -> ModeTraits:
    """The traits of ``mode`` as ``entry`` runs it (``--preload`` changes gevent's)."""
    cfg = ServerConfig(
        app=entry.buggy.app, backend=entry.buggy.backend, extra_args=server_args(entry, mode)
    )
    return get_mode(mode).traits_for(cfg)


def corpus_cells(
    entries: t.Sequence[Entry], modes: t.Sequence[str], patterns: t.Sequence[str]
) -> Iterator[tuple[Entry, str, str, str, Expectation]]:
    """``(entry, variant, mode, connections, expectation)`` for every cell, in run order.

    Not-applicable patterns are left out. The expectation is the buggy app's; a fixed twin is
    expected clean everywhere.
    """
    for entry in entries:
        for variant in VARIANTS:
            for mode in modes:
                traits = mode_traits(entry, mode)
                for connections in patterns:
                    cell = expectation(entry, mode, traits, t.cast(ConnectionPattern, connections))
                    if cell.applicable:
                        yield entry, variant, mode, connections, cell


def judge(
    entry: Entry, variant: str, cell: Expectation, leaks: int, first_leak_at: int | None
) -> CorpusCheck:
    """Compare what a cell showed with what the entry's traits say it can show."""
    chance = cell.chance is not None
    if variant == "fixed":
        verdict = "leaked" if leaks else "clean"
        expected, reason = False, f"The fixed twin ({entry.fix}) cannot leak"
    elif cell.can_leak:
        verdict = "caught" if leaks else ("not caught" if chance else "missed")
        expected, reason = True, cell.reason + (f" ({cell.chance})" if chance else "")
    else:
        verdict = "false leak" if leaks else "clean"
        expected, reason = False, cell.reason
    return CorpusCheck(
        entry=entry.key,
        variant=variant,
        expected=expected,
        reason=reason,
        verdict=verdict,
        matches=verdict in ("caught", "not caught", "clean"),
        chance=chance and variant == "buggy",
        first_leak_at=first_leak_at,
    )


def load_cell(entry: Entry, srv: LiveServer, connections: str, settings: CorpusSettings) -> t.Any:
    """One measurement of a corpus cell: the probe load, plus what the entry needs."""
    from harness.load import LoadSpec, run_load

    variant_requests = settings.requests
    spec = LoadSpec(
        host=srv.host,
        port=srv.port,
        concurrency=settings.concurrency,
        requests=variant_requests,
        duration=settings.max_seconds,
        connections=connections,
        sleep_ms=settings.sleep_ms,
        timeout=settings.timeout,
        mode=srv.mode,
        fail_phase=entry.load.fail_phase,
        fail_fraction=entry.load.fail_fraction if entry.load.fail_phase else 0.0,
    )
    if not (entry.load.abandon_path and entry.load.abandon_fraction):
        return run_load(spec)
    from harness.load.hostile import HostileLoad, abort_mid_body

    path = entry.load.abandon_path
    sep = "&" if "?" in path else "?"

    def abandon(seq: int) -> t.Any:
        return abort_mid_body(srv.host, srv.port, f"{path}{sep}token=abandoned-{seq}")

    count = max(1, round(variant_requests * entry.load.abandon_fraction))
    with HostileLoad(abandon, users=2, requests=count, duration=settings.max_seconds, keep=False):
        return run_load(spec)


def run_corpus(
    settings: CorpusSettings,
    run_dir: str | Path,
    *,
    command: t.Sequence[str] = (),
    run_id: str | None = None,
    server: ServerFn = live_server,
    load: LoadFn = load_cell,
    progress: Callable[[str], None] | None = None,
) -> Run:
    """Run the corpus, write ``run_dir/results.json`` after every cell, return the run."""
    from harness.runner import aggregate

    run_dir = Path(run_dir)
    # Every mode asked for must run here; by default, every registered mode that can (the
    # proxies in front of them are left to `ctxbench run`).
    modes = settings.modes or tuple(n for n, m in MODES.items() if m.available().ok)
    run_settings = settings.run_settings(tuple(modes)).checked()
    entries = select(settings.entries)
    run = Run.start(run_id or run_dir.name, command, run_settings)
    started = time.monotonic()
    cells = list(corpus_cells(entries, modes, settings.connections))
    by_server: dict[tuple[str, str, str], list[tuple[str, Expectation]]] = {}
    for entry, variant, mode, connections, expected in cells:
        by_server.setdefault((entry.key, variant, mode), []).append((connections, expected))
    try:
        for (key, variant, mode), patterns in by_server.items():
            entry = next(e for e in entries if e.key == key)
            chosen = entry.variant(variant)
            with server(
                mode,
                app=chosen.app,
                backend=chosen.backend,
                workers=settings.workers,
                extra_args=server_args(entry, mode),
                log_dir=run_dir / "logs" / f"{entry.key}-{variant}",
            ) as srv:
                for connections, expected in patterns:
                    per_variant = (
                        settings.requests if variant == "buggy" else settings.fixed_requests
                    )
                    cell_settings = _with_requests(settings, per_variant)
                    result = load(entry, srv, connections, cell_settings)
                    check = judge(entry, variant, expected, result.leaks, result.first_leak_at)
                    measured = dataclasses.replace(
                        aggregate(
                            mode=mode,
                            app=chosen.app,
                            backend=chosen.backend,
                            connections=connections,
                            runs=[result],
                            effective=srv.effective,
                            log_path=str(srv.log_path.relative_to(run_dir)),
                        ),
                        corpus=check,
                    )
                    run = run.replace(cells=(*run.cells, measured))
                    results.write(run_dir, run)
                    if progress is not None:
                        progress(_progress_line(entry, variant, mode, connections, check, result))
    except BaseException as e:
        if run.cells:
            run = run.replace(
                status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                elapsed_s=round(time.monotonic() - started, 2),
            )
            results.write(run_dir, run)
        raise
    run = run.replace(status="complete", elapsed_s=round(time.monotonic() - started, 2))
    results.write(run_dir, run)
    return run


def _with_requests(settings: CorpusSettings, requests: int) -> CorpusSettings:
    return dataclasses.replace(settings, requests=requests)


def _progress_line(
    entry: Entry, variant: str, mode: str, connections: str, check: CorpusCheck, result: t.Any
) -> str:
    first = f" after {check.first_leak_at}" if check.first_leak_at else ""
    flag = "" if check.matches else "  <-- not as expected"
    return (
        f"{entry.number:>3} {entry.key} {variant} {mode} {connections}: {check.verdict}{first}"
        f" ({result.requests} requests, {result.leaks} leaks, {result.errors} errors){flag}"
    )
