"""``ctxbench``: run the isolation matrix, serve one mode, list the modes.

``ctxbench run`` with no arguments is the main job: the core probe app on the contextvar storage,
every server mode that can run here, both connection patterns, a few seconds each; it writes
``results/<run-id>/results.json`` and prints a summary table. Exit status: 0 no leak, 1 a leak
was found, 2 a usage or start-up error (one line on stderr, never a traceback), 130 interrupted.

Extension points (for ``report``, ``compare`` and ``run --compare-flask``):

- :data:`COMMANDS` and :func:`command` register a subcommand: a function that adds its
  arguments and a handler returning the exit status;
- :func:`add_run_extension` adds options to ``ctxbench run``, may rewrite its
  :class:`~harness.runner.RunSettings`, and runs after ``results.json`` is written;
- modules named in :data:`EXTENSION_MODULES` are imported, if they exist, before the parser is
  built, so ``harness/report/cli.py`` can register itself without touching this file.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import shlex
import signal
import sys
import time
import typing as t
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import CtxbenchError, UsageError

__all__ = [
    "COMMANDS",
    "EXTENSION_MODULES",
    "RUN_EXTENSIONS",
    "Command",
    "RunExtension",
    "add_run_extension",
    "command",
    "main",
]

Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    """A subcommand: its help line, how it adds its arguments, and its handler."""

    name: str
    help: str
    configure: Configure
    handler: Handler


@dataclass(frozen=True)
class RunExtension:
    """A plug-in for ``ctxbench run`` (e.g. ``--compare-flask``).

    ``add_arguments`` adds options to the run parser; ``adjust_settings`` may return changed
    settings (e.g. more apps); ``after_results`` runs once ``results.json`` is written (e.g. to
    write a report) and may return an exit status to use instead of the leak verdict.
    """

    name: str
    add_arguments: Configure | None = None
    adjust_settings: Callable[[argparse.Namespace, t.Any], t.Any] | None = None
    after_results: Callable[[argparse.Namespace, Path, dict[str, t.Any]], int | None] | None = None


#: Subcommands by name, in the order ``--help`` lists them.
COMMANDS: dict[str, Command] = {}
#: Plug-ins of ``ctxbench run``.
RUN_EXTENSIONS: list[RunExtension] = []
#: Modules imported (when installed) before the parser is built; they register themselves.
EXTENSION_MODULES = ("harness.report.cli",)


def command(name: str, help: str, configure: Configure) -> Callable[[Handler], Handler]:
    """Decorator: register ``handler`` as the subcommand ``name``."""

    def decorator(handler: Handler) -> Handler:
        COMMANDS[name] = Command(name, help, configure, handler)
        return handler

    return decorator


def add_run_extension(extension: RunExtension) -> None:
    """Register a plug-in for ``ctxbench run`` (replacing one with the same name)."""
    RUN_EXTENSIONS[:] = [e for e in RUN_EXTENSIONS if e.name != extension.name]
    RUN_EXTENSIONS.append(extension)


# -- argument parsing ------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit status 2)."""

    def error(self, message: str) -> t.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app",
        default=None,
        metavar="MODULE:ATTR",
        help="the WSGI app under test (default: the bundled core probe app)",
    )
    parser.add_argument(
        "--backend",
        default="contextvar",
        help="context storage: contextvar (correct), shared-global, thread-ident, no-reset; or a"
        " negative control of harness.controls (shared-app-slot, teardown-skips-pop, ...);"
        " anything but contextvar needs a core app",
    )
    parser.add_argument("--workers", type=int, help="server processes (gunicorn -w; default 2)")
    parser.add_argument(
        "--threads", type=int, help="threads per worker (gunicorn --threads; default per mode)"
    )
    parser.add_argument(
        "--worker-connections", type=int, help="gunicorn --worker-connections (default 1000)"
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra server argument, repeatable; write --server-arg=--backlog=64",
    )


def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--modes", default="all", help="comma-separated server modes (default: all that can run)"
    )
    _add_server_options(parser)
    parser.add_argument(
        "--connections",
        default="both",
        choices=("keepalive", "fresh", "both"),
        help="connection pattern (default: both)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        help="seconds per measurement (default 2; 'unbounded' with --requests)",
    )
    parser.add_argument("--requests", type=int, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="virtual users (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per cell (default 3)")
    parser.add_argument(
        "--sleep-ms", type=float, default=1.0, help="time each probe request yields (default 1)"
    )
    parser.add_argument(
        "--warmup", type=float, default=0.3, help="warm-up seconds per cell (default 0.3)"
    )
    _add_fail_options(parser)
    parser.add_argument("--out", type=Path, help="directory for run folders (default results)")
    parser.add_argument(
        "--run-dir",
        type=Path,
        metavar="DIR",
        help="write the run into DIR itself (e.g. results/reference) instead of a new folder"
        " under --out; the run id is DIR's name; files already there are replaced",
    )
    for extension in RUN_EXTENSIONS:
        if extension.add_arguments is not None:
            extension.add_arguments(parser)


def _add_fail_options(parser: argparse.ArgumentParser) -> None:
    from harness.probe.state import FAIL_PHASES

    parser.add_argument(
        "--fail-phase",
        choices=FAIL_PHASES,
        help="make --fail-fraction of the requests raise at this phase (expected errors; the"
        " requests after them are judged)",
    )
    parser.add_argument(
        "--fail-fraction",
        type=float,
        default=None,
        help="fraction of requests that fail at --fail-phase (default 0.1 with --fail-phase)",
    )


def _configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", required=True, help="the server mode (see 'ctxbench list')")
    _add_server_options(parser)
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")


def _configure_list(parser: argparse.ArgumentParser) -> None:
    pass


def build_parser() -> argparse.ArgumentParser:
    """The ``ctxbench`` parser, with every registered subcommand and run extension."""
    for module in EXTENSION_MODULES:
        with contextlib.suppress(ModuleNotFoundError):
            if importlib.util.find_spec(module) is not None:
                importlib.import_module(module)
    parser = _Parser(
        prog="ctxbench",
        description="Request-context isolation harness for Python WSGI stacks.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for cmd in COMMANDS.values():
        sub = subparsers.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.configure(sub)
        sub.set_defaults(handler=cmd.handler)
    return parser


# -- shared checks ---------------------------------------------------------------------------


def _check_backend(backend: str, app: str) -> None:
    from harness.backends import BACKENDS
    from harness.controls import CONTROLS
    from harness.runner import app_label

    if backend not in BACKENDS and backend not in CONTROLS:
        raise UsageError(
            f"unknown backend {backend!r}: choose from {', '.join([*BACKENDS, *CONTROLS])}"
        )
    if backend != "contextvar" and app_label(app) == "flask":
        raise UsageError(
            f"backend {backend!r} swaps the core framework's storage and cannot apply to the"
            f" Flask app {app!r}: use --backend contextvar with it"
        )


def _server_args(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(arg for value in values for arg in shlex.split(value))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt, so every ``finally`` stops its server."""

    def interrupt(signum: int, frame: t.Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- run -------------------------------------------------------------------------------------


def _settings_from_args(args: argparse.Namespace) -> t.Any:
    from harness.runner import CONNECTION_PATTERNS, RunSettings
    from harness.wsgi import DEFAULT_APP, parse_import_string

    app = args.app or DEFAULT_APP
    parse_import_string(app)
    backends = tuple(_csv(args.backend)) or ("contextvar",)
    for backend in backends:
        _check_backend(backend, app)
    modes = () if args.modes.strip() in ("", "all") else tuple(_csv(args.modes))
    duration = args.duration
    if duration is None and args.requests is None:
        duration = 2.0
    return RunSettings(
        apps=(app,),
        backends=backends,
        modes=modes,
        connections=CONNECTION_PATTERNS if args.connections == "both" else (args.connections,),
        duration=duration,
        requests=args.requests,
        concurrency=args.concurrency,
        repeats=args.repeats,
        sleep_ms=args.sleep_ms,
        warmup=args.warmup,
        workers=args.workers,
        threads=args.threads,
        worker_connections=args.worker_connections,
        extra_args=_server_args(args.server_arg),
        fail_phase=args.fail_phase,
        fail_fraction=_fail_fraction(args),
    )


def _fail_fraction(args: argparse.Namespace) -> float:
    if args.fail_fraction is None:
        return 0.1 if args.fail_phase else 0.0
    if args.fail_phase is None:
        raise UsageError("--fail-fraction needs --fail-phase (the phase those requests fail at)")
    if not 0.0 <= args.fail_fraction <= 1.0:
        raise UsageError(f"bad --fail-fraction {args.fail_fraction!r}: use a number in [0, 1]")
    return float(args.fail_fraction)


def cmd_run(args: argparse.Namespace) -> int:
    from harness import results
    from harness.report import format_summary, load_run
    from harness.runner import run_matrix

    settings = _settings_from_args(args)
    for extension in RUN_EXTENSIONS:
        if extension.adjust_settings is not None:
            settings = extension.adjust_settings(args, settings)
    settings.resolved_modes()  # unknown or unavailable modes fail before anything starts
    if args.run_dir is not None:
        if args.out is not None:
            raise UsageError("give --out (a folder for new run folders) or --run-dir, not both")
        run_dir = Path(args.run_dir)
        run_id = run_dir.resolve().name
    else:
        run_id = results.new_run_id()
        run_dir = Path(args.out or "results") / run_id
    started = time.monotonic()
    doc = run_matrix(settings, run_dir, command=["ctxbench", *args.argv], run_id=run_id)
    print(format_summary(load_run(doc)))
    for cell in doc.get("not_applicable", []):
        print(f"not measured: {cell['mode']} {cell['connections']}: {cell['reason']}")
    leaks = sum(e["leaks"] for e in doc["entries"])
    cells = len(doc["entries"])
    print(
        f"\n{cells} cell{'' if cells == 1 else 's'},"
        f" {sum(e['requests'] for e in doc['entries']):,} requests"
        f" checked, {leaks:,} leaks, {time.monotonic() - started:.0f} s;"
        f" results: {run_dir / results.RESULTS_FILE}"
    )
    status = 1 if leaks else 0
    for extension in RUN_EXTENSIONS:
        if extension.after_results is not None:
            override = extension.after_results(args, run_dir, doc)
            if override is not None:
                status = override
    return status


# -- serve -----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from harness.servers import live_server
    from harness.servers.base import log_tail
    from harness.wsgi import DEFAULT_APP, parse_import_string

    app = args.app or DEFAULT_APP
    parse_import_string(app)
    _check_backend(args.backend, app)
    with live_server(
        args.mode,
        app=app,
        backend=args.backend,
        port=args.port,
        workers=args.workers,
        threads=args.threads,
        worker_connections=args.worker_connections,
        extra_args=_server_args(args.server_arg),
    ) as srv:
        eff = srv.effective
        print(f"{srv.mode} serving {app} ({args.backend}) at {srv.url}/", flush=True)
        print(
            f"  pid={srv.pid} effective: {eff.get('worker_class')} workers={eff.get('workers')}"
            f" threads={eff.get('threads')} pids={eff.get('worker_pids')}",
            flush=True,
        )
        print(f"  probe: {srv.url}/_ctxbench/probe?token=T&sleep_ms=1", flush=True)
        print("  press Ctrl-C to stop", flush=True)
        returncode = srv.process.wait()
        raise CtxbenchError(
            f"{srv.mode} exited on its own with status {returncode}",
            detail=log_tail(srv.log_path),
        )


# -- list ------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from harness.servers import MODES

    width = max(len(name) for name in MODES)
    for name, mode in MODES.items():
        availability = mode.available()
        state = "ok" if availability.ok else f"unavailable: {availability.reason}"
        print(f"{name.ljust(width)}  {state.ljust(4)}  {mode.summary}")
    return 0


command("run", "run the isolation matrix and write results/<run-id>/results.json", _configure_run)(
    cmd_run
)
command("serve", "run one server mode in the foreground until interrupted", _configure_serve)(
    cmd_serve
)
command("list", "show every server mode and whether it can run here", _configure_list)(cmd_list)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ctxbench`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        with _sigterm_as_interrupt():
            status: int = args.handler(args)
            return status
    except KeyboardInterrupt:
        print("ctxbench: interrupted; every server was stopped", file=sys.stderr)
        return 130
    except CtxbenchError as e:
        print(f"ctxbench: error: {e.message}", file=sys.stderr)
        if e.detail:
            print("\n".join(f"  | {line}" for line in e.detail.splitlines()), file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # e.g. `ctxbench list | head -1`
        return 0


if __name__ == "__main__":
    sys.exit(main())
