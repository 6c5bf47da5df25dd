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
from harness.errors import UsageError, check_count
from harness.expectations import Expectation
from harness.load.spec import MAX_REQUESTS, ConnectionPattern
from harness.preflight import checked
from harness.results import CorpusCheck, Run
from harness.runner import aggregate, load_spec
from harness.servers import LiveServer, available_modes, get_mode, live_server
from harness.servers.base import ModeTraits, ServerConfig, require_modules
from harness.settings import RunSettings

__all__ = [
    "LOAD",
    "CorpusSettings",
    "corpus_cells",
    "judge",
    "mode_traits",
    "run_corpus",
    "server_args",
]

ServerFn = Callable[..., t.ContextManager[LiveServer]]
LoadFn = Callable[[Entry, LiveServer, str, RunSettings], t.Any]


#: What the entries' apps import (the ``corpus`` extra pins the versions they were checked on).
CORPUS_LIBRARIES = ("flask", "structlog")
#: The load of a corpus cell unless told otherwise: ``requests`` probe requests in one
#: measurement, no warm-up, ``duration`` the upper bound of that measurement; the view yields
#: 10 ms, so requests overlap wherever a mode lets them.
LOAD = RunSettings(duration=120.0, requests=300, repeats=1, warmup=0.0, sleep_ms=10.0, timeout=10.0)


@dataclass(frozen=True)
class CorpusSettings:
    """What ``ctxbench corpus`` varies: the entries, and the load of their cells.

    ``load`` holds the settings a corpus run shares with ``ctxbench run`` (modes, connection
    patterns, requests per buggy cell, concurrency, sleep, workers), checked by the same rules
    (:meth:`run_settings`); its apps and backends are the entries' own.
    """

    entries: tuple[str, ...] = ()
    load: RunSettings = LOAD
    #: Probe requests per fixed-twin cell; ``None``: as many as per buggy cell.
    fixed_requests: int | None = None

    def __post_init__(self) -> None:
        try:
            select(self.entries)
        except ValueError as e:
            raise UsageError(str(e)) from None
        check_count("--fixed-requests", self.fixed_requests, high=MAX_REQUESTS, optional=True)
        # The libraries the entries reproduce bugs of: missing, every server would fail to
        # import the entry's app, after the run had started.
        found = require_modules(*CORPUS_LIBRARIES, extra="corpus")
        if not found.ok:
            raise UsageError(f"ctxbench corpus needs its libraries: {found.explain()}")

    def run_settings(self, modes: tuple[str, ...]) -> RunSettings:
        """The settings the results record: the load, with the apps and backends of the entries'
        variants and ``modes``, every value checked (:func:`harness.preflight.checked`)."""
        variants = [e.variant(v) for e in select(self.entries) for v in VARIANTS]
        return checked(
            self.load.replace(
                apps=tuple(dict.fromkeys(v.app for v in variants)),
                backends=tuple(dict.fromkeys(v.backend for v in variants)),
                modes=modes,
            )
        )

    def cell_load(self, entry: Entry, variant: str) -> RunSettings:
        """The load of a cell of ``entry``'s ``variant``: its requests, and the failing requests
        the entry needs."""
        fixed = variant == "fixed" and self.fixed_requests is not None
        return self.load.replace(
            requests=self.fixed_requests if fixed else self.load.requests,
            fail_phase=entry.load.fail_phase,
            fail_fraction=entry.load.fail_fraction if entry.load.fail_phase else 0.0,
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


def load_cell(entry: Entry, srv: LiveServer, connections: str, settings: RunSettings) -> t.Any:
    """One measurement of a corpus cell: the probe load ``settings`` describe (see
    :meth:`CorpusSettings.cell_load`), plus the streamed bodies the entry needs abandoned."""
    from harness.load import run_load

    spec = load_spec(settings, srv, connections, warmup=False)
    if not (entry.load.abandon_path and entry.load.abandon_fraction):
        return run_load(spec)
    from harness.load.hostile import HostileLoad, abort_mid_body

    path = entry.load.abandon_path
    sep = "&" if "?" in path else "?"

    def abandon(seq: int) -> t.Any:
        return abort_mid_body(srv.host, srv.port, f"{path}{sep}token=abandoned-{seq}")

    count = max(1, round(t.cast(int, settings.requests) * entry.load.abandon_fraction))
    with HostileLoad(abandon, users=2, requests=count, duration=settings.duration, keep=False):
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
    run_dir = Path(run_dir)
    # Every mode asked for must run here; by default, every registered mode that can (the
    # proxies in front of them are left to `ctxbench run`).
    modes = settings.load.modes or available_modes()
    run_settings = settings.run_settings(modes)
    entries = select(settings.entries)
    run = Run.start(run_id or run_dir.name, command, run_settings)
    started = time.monotonic()
    cells = list(corpus_cells(entries, modes, settings.load.connections))
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
                workers=settings.load.workers,
                extra_args=server_args(entry, mode),
                log_dir=run_dir / results.LOGS / f"{entry.key}-{variant}",
            ) as srv:
                for connections, expected in patterns:
                    cell_load = settings.cell_load(entry, variant)
                    result = load(entry, srv, connections, cell_load)
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
                            concurrency=cell_load.concurrency,
                        ),
                        corpus=check,
                    )
                    run = run.replace(cells=(*run.cells, measured))
                    results.write(run_dir, run)
                    if progress is not None:
                        progress(_progress_line(entry, variant, mode, connections, check, result))
        # Inside the try: a Ctrl-C while "complete" is written marks the run interrupted.
        return results.write_ended(run_dir, run, time.monotonic() - started, None)
    except BaseException as e:
        results.write_ended(run_dir, run, time.monotonic() - started, e)
        raise


def _progress_line(
    entry: Entry, variant: str, mode: str, connections: str, check: CorpusCheck, result: t.Any
) -> str:
    first = f" after {check.first_leak_at}" if check.first_leak_at else ""
    flag = "" if check.matches else "  <-- not as expected"
    return (
        f"{entry.number:>3} {entry.key} {variant} {mode} {connections}: {check.verdict}{first}"
        f" ({result.requests} requests, {result.leaks} leaks, {result.errors} errors){flag}"
    )
