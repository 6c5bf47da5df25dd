"""Whether a run's settings can run here: checked where they are built, before anything starts.

:class:`~harness.settings.RunSettings` is a record (the results document keeps it as it ran);
this module holds what checks it against the registries of this ctxbench: the server modes
(known, installed, taking the server arguments given), the apps and backends, and the connection
patterns a mode can serve (:func:`harness.expectations.applicable_patterns`). Every command that
builds settings calls :func:`checked` before it starts a server (``ctxbench run``, ``chaos``,
``soak``, ``corpus``, the pytest plugin through :func:`harness.runner.run_matrix`), so a user
mistake is one :class:`~harness.errors.UsageError` naming the option, with the limits the load
driver and the servers enforce (imported from the modules that own them:
:mod:`harness.load.spec` for the load, :mod:`harness.servers.base` for the server options),
never a traceback halfway through a run. :func:`server_config` turns the settings into a cell's
:class:`~harness.servers.base.ServerConfig`.

It is kept apart from the record so that the dependency runs one way: the settings module, and
with it the results model and the report, imports nothing of the server registry or the
expectations model (``tests/test_report.py`` checks it); this module imports both.
"""

from __future__ import annotations

import importlib.util
import shlex
import typing as t

from harness.apps import FLASK_APP, app_label
from harness.errors import UsageError, check_count
from harness.expectations import applicable_patterns
from harness.load.spec import (
    CONNECTION_PATTERNS,
    MAX_CONCURRENCY,
    MAX_DURATION_S,
    MAX_PROCESSES,
    MAX_REQUESTS,
)
from harness.protocol import DEFAULT_BACKEND, FAIL_PHASES, MAX_SLEEP_MS
from harness.servers import MODES, available_modes, get_mode, proxied_modes
from harness.servers.base import CLOSES_EVERY_CONNECTION, ServerConfig, pip_command
from harness.settings import MAX_REPEATS, RunSettings, check_number, check_unique
from harness.target import parse_target

__all__ = ["check_backend", "checked", "server_config"]


def checked(settings: RunSettings) -> RunSettings:
    """Check every value of ``settings``; return them with ``modes`` resolved.

    Raises :class:`UsageError` naming the option and the bad value, with the limits the load
    driver and the servers enforce. The modes are the ones asked for (each must be known and
    able to run here) or every mode that can run here.
    """
    check_unique("--app", settings.apps, allow_empty=False)
    check_unique("--backend", settings.backends, allow_empty=False)
    check_unique("--modes", settings.modes, allow_empty=True)
    check_unique("--connections", settings.connections, allow_empty=False)
    for pattern in settings.connections:
        if pattern not in CONNECTION_PATTERNS:
            raise UsageError(
                f"unknown connection pattern {pattern!r}: choose from keepalive, fresh, both"
            )
    if settings.duration is None and settings.requests is None:
        raise UsageError("give --duration (seconds) or --requests (a count) per measurement")
    check_number("--duration", settings.duration, high=MAX_DURATION_S, optional=True)
    check_count("--requests", settings.requests, high=MAX_REQUESTS, optional=True)
    check_count("--concurrency", settings.concurrency, high=MAX_CONCURRENCY)
    for level in settings.concurrency_levels:
        check_count("--concurrency", level, high=MAX_CONCURRENCY)
    if len(set(settings.concurrency_levels)) != len(settings.concurrency_levels):
        raise UsageError(
            f"--concurrency lists a level twice ({settings.concurrency_levels!r}): give each once"
        )
    check_count("--driver-processes", settings.driver_processes, high=MAX_PROCESSES, optional=True)
    check_count("--repeats", settings.repeats, high=MAX_REPEATS)
    check_number("--sleep-ms", settings.sleep_ms, high=MAX_SLEEP_MS, zero_ok=True)
    check_number("--warmup", settings.warmup, high=MAX_DURATION_S, zero_ok=True)
    check_number("request timeout", settings.timeout, high=MAX_DURATION_S)
    if settings.sleep_ms / 1000 >= settings.timeout:
        raise UsageError(
            f"bad --sleep-ms {settings.sleep_ms:g}: each probe request would sleep past the"
            f" driver's {settings.timeout:g} s request timeout; use less than"
            f" {settings.timeout * 1000:g}"
        )
    if settings.fail_phase is not None and settings.fail_phase not in FAIL_PHASES:
        raise UsageError(
            f"unknown --fail-phase {settings.fail_phase!r}: choose from {', '.join(FAIL_PHASES)}"
        )
    check_number("--fail-fraction", settings.fail_fraction, high=1, zero_ok=True)
    if settings.fail_fraction and settings.fail_phase is None:
        raise UsageError("--fail-fraction needs --fail-phase (where those requests fail)")
    if settings.targets:
        # As normalised: localhost:8080/api/ and 127.0.0.1:8080/api are one target.
        urls = tuple(parse_target(u).url for u in settings.targets)
        check_unique("--target", urls, allow_empty=False)
        if settings.modes:
            raise UsageError(
                "--target checks servers ctxbench did not start: drop --modes (and --proxy)"
            )
        if settings.mount is not None:
            raise UsageError(
                "--target checks servers ctxbench did not start: put the path prefix in the"
                " target's URL (http://127.0.0.1:8080/api), not in --mount"
            )
        return settings
    if settings.extra_args and not settings.modes:
        raise UsageError(
            f"--server-arg {shlex.join(settings.extra_args)} goes to the server's own command"
            " line, and every mode runs when none is named: servers of several kinds, which"
            " take different arguments; name the modes it is for (--modes gunicorn-gevent"
            " --server-arg=--preload)"
        )
    for app in settings.apps:
        for backend in settings.backends:
            server_config(settings, app, backend)  # checks the app and the server options
            check_backend(backend, app)
        # Found before a server starts: the servers would fail to import it only after the
        # core's cells had run.
        if app == FLASK_APP and importlib.util.find_spec("flask") is None:
            raise UsageError(
                "the Flask probe app (--compare-flask) needs Flask, which is not installed"
                f" here: {pip_command()} install flask"
            )
    mount = server_config(settings, settings.apps[0], settings.backends[0]).mount  # normalised
    rv = settings.replace(modes=_resolved_modes(settings), mount=mount)
    cfg = server_config(rv, rv.apps[0], rv.backends[0])
    for name in rv.modes:  # server arguments a mode cannot run with, before any starts
        get_mode(name).check_args(cfg)
    _check_something_runs(rv, cfg)
    return rv


def server_config(settings: RunSettings, app: str, backend: str) -> ServerConfig:
    """The server options of the cell of ``settings`` that runs ``app`` on ``backend``."""
    return ServerConfig(
        app=app,
        backend=backend,
        workers=settings.workers,
        threads=settings.threads,
        worker_connections=settings.worker_connections,
        extra_args=settings.extra_args,
        mount=settings.mount,
    )


def check_backend(backend: str, app: str) -> None:
    """Check that ``backend`` names a context storage or a negative control that fits ``app``."""
    # The backends and controls load the core framework and werkzeug: imported on use, because
    # every ctxbench command imports this module to build its parser (harness.faults.cli),
    # and most never check a backend (ctxbench --help, list, report, compare).
    from harness.backends import BACKENDS
    from harness.controls import CONTROLS

    if backend not in BACKENDS and backend not in CONTROLS:
        raise UsageError(
            f"unknown backend {backend!r}: choose from {', '.join([*BACKENDS, *CONTROLS])}"
        )
    if backend != DEFAULT_BACKEND and app_label(app) == "flask":
        raise UsageError(
            f"backend {backend!r} swaps the core framework's storage and cannot apply to the"
            f" Flask app {app!r}: use --backend {DEFAULT_BACKEND} with it"
        )


def _resolved_modes(settings: RunSettings) -> tuple[str, ...]:
    """The modes asked for, each known and able to run here; or, none asked for, every mode
    that can run here, then every proxy that can run here in front of the representative
    modes."""
    if settings.modes:
        for name in settings.modes:
            get_mode(name).check_available()
        return settings.modes
    rv = available_modes([*MODES, *proxied_modes()])
    if not rv:
        raise UsageError("no server mode can run here: see 'ctxbench list'")
    return rv


def _check_something_runs(settings: RunSettings, cfg: ServerConfig) -> None:
    """A run where no mode can serve any connection pattern asked for would measure nothing
    and exit 0: refuse it (one pattern a mode cannot serve is skipped as not measured)."""
    patterns = t.cast("tuple[t.Any, ...]", settings.connections)
    if any(applicable_patterns(get_mode(m).traits_for(cfg), patterns) for m in settings.modes):
        return
    raise UsageError(
        f"nothing to measure: {', '.join(settings.modes)} cannot serve"
        f" {' or '.join(settings.connections)} connections ({CLOSES_EVERY_CONNECTION}):"
        " use --connections fresh"
    )
