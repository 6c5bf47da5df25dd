"""``ctxbench``: run the isolation matrix, serve one mode, list the modes, report and compare runs.

``ctxbench run`` with no arguments is the main job: the core probe app on the contextvar storage,
every server mode that can run here, both connection patterns, a few seconds each; it writes
``results/<run-id>/results.json`` with report.md and report.html next to it, and prints a
summary table. Exit status: 0 no leak (or no regression, for ``compare``), 1 a leak was found
(a regression), 2 a usage or start-up error (one line on stderr, never a traceback), 130
interrupted (death by the signal: 143 for SIGTERM, 129 for SIGHUP; ``serve`` exits 0).

Every value is checked when the settings are built (:class:`~harness.settings.RunSettings`),
before a server starts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import signal
import sys
import time
import typing as t
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from harness.errors import CtxbenchError, ResultsError, UsageError
from harness.protocol import DEFAULT_BACKEND

if t.TYPE_CHECKING:
    from harness.results import Cell, Run
    from harness.settings import RunSettings

__all__ = ["build_parser", "format_totals", "main"]

Handler = Callable[[argparse.Namespace], int]


# -- argument parsing ------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit status 2)."""

    def error(self, message: str) -> t.NoReturn:
        if message == "argument --server-arg: expected one argument":
            # argparse takes the '--preload' of '--server-arg --preload' for an option of ours.
            message += (
                ": a server argument that starts with '-' goes after '=' (--server-arg=--preload)"
            )
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _concurrency_levels(text: str) -> tuple[int, ...]:
    """``--concurrency 16`` or a sweep ``--concurrency 1,8,32``, as whole numbers."""
    levels = []
    for part in _csv(text):
        try:
            levels.append(int(part))
        except ValueError:
            raise UsageError(
                f"bad --concurrency {text!r}: give a number of virtual users, or a"
                " comma-separated list of them (1,8,32,128,512)"
            ) from None
    if not levels:
        raise UsageError("--concurrency needs a number of virtual users")
    return tuple(levels)


def _driver_processes(text: str) -> int | None:
    """``--driver-processes N`` or ``auto`` (``None``)."""
    if text.strip() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(
            f"bad --driver-processes {text!r}: give a number of processes or 'auto'"
        ) from None


def _folder(text: str) -> Path:
    """A folder option: an empty one would be the current directory, never what was meant."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give a folder, not an empty value")
    return Path(text)


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",")]


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app",
        default=None,
        metavar="MODULE:NAME",
        help="the WSGI app under test, imported from the current directory: 'pkg.wsgi:app', or"
        " an app factory called in each server process, 'pkg:create_app()'"
        " (default: the bundled core probe app)",
    )
    parser.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        help="context storage: contextvar (correct), shared-global, thread-ident, no-reset,"
        " never-release; or a negative control of harness.controls (shared-app-slot,"
        " teardown-skips-pop, ...); anything but contextvar needs a core app",
    )
    from harness.servers._gunicorn import DEFAULT_WORKER_CONNECTIONS
    from harness.servers._supervised import DEFAULT_WORKERS
    from harness.servers.eventlet import DEFAULT_MAX_SIZE
    from harness.servers.uwsgi_gevent import DEFAULT_ASYNC
    from harness.servers.waitress import DEFAULT_CONNECTION_LIMIT

    # Each help names the modes that take the option, as --worker-connections' does: one that
    # named gunicorn alone read as though every mode ran with it.
    parser.add_argument(
        "--workers",
        type=int,
        help=f"server processes (gunicorn -w, uWSGI --processes, granian, uvicorn and hypercorn"
        f" --workers; default {DEFAULT_WORKERS}); waitress, eventlet and werkzeug-threaded run"
        " one and ignore it",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="threads per server process (gunicorn --threads, waitress --threads, uwsgi-threads"
        " --threads, granian --blocking-threads; else each mode's own); the other modes ignore"
        " it",
    )
    parser.add_argument(
        "--worker-connections",
        type=int,
        # Every mode that has such a limit takes it, not gunicorn alone (and two refuse values
        # they cannot serve under): the help names each, with its own default.
        help="connections a server process serves at once, where the server has such a limit:"
        f" gunicorn --worker-connections (default {DEFAULT_WORKER_CONNECTIONS}), eventlet's"
        f" pool --max-size (default {DEFAULT_MAX_SIZE}), waitress --connection-limit (default"
        f" {DEFAULT_CONNECTION_LIMIT}; 3 or more) and uwsgi-gevent's --gevent async cores"
        f" (default {DEFAULT_ASYNC}; 2 or more); the other modes ignore it",
    )
    _add_mount_option(parser)
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra server argument, repeatable; write --server-arg=--backlog=64",
    )


def _add_mount_option(parser: argparse.ArgumentParser) -> None:
    """``--mount PREFIX``, as ``run``, ``serve``, ``chaos`` and ``soak`` take it: checked where
    the settings are built (``ServerConfig.mount``, :func:`harness.protocol.parse_mount`)."""
    parser.add_argument(
        "--mount",
        metavar="PREFIX",
        help="the path prefix the app is served under, as uWSGI's --mount and gunicorn's"
        " SCRIPT_NAME: with a dispatcher (werkzeug's DispatcherMiddleware), the app it mounts"
        " there is checked; any other app is served under it (default: the root)",
    )


def _add_run_folder_options(parser: argparse.ArgumentParser) -> None:
    """``--out`` and ``--run-dir``, as every command that writes a run takes them: read by
    :func:`_run_folder`."""
    parser.add_argument("--out", type=_folder, help="folder for new run folders (default results)")
    parser.add_argument(
        "--run-dir",
        type=_folder,
        metavar="DIR",
        help="write the run into DIR itself (e.g. results/reference) instead of a new folder"
        " under --out; the run id is DIR's name; an earlier run's files there are replaced,"
        " and a folder holding other files is refused",
    )


def _add_proxy_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--proxy", default="", metavar="PROXY[,PROXY...]", help=help)


def _configure_run(parser: argparse.ArgumentParser) -> None:
    from harness.settings import DEFAULT_DURATION_S, RunSettings

    _add_matrix_options(parser)
    _add_proxy_option(
        parser,
        "run every mode behind each of these proxies (nginx, nginx-keepalive; 'none': without"
        " one), e.g. --proxy none,nginx-keepalive; same as modes named nginx-keepalive+MODE",
    )
    _add_server_options(parser)
    parser.add_argument(
        "--duration",
        type=float,
        help=f"seconds per measurement (default {DEFAULT_DURATION_S:g}; when only --requests is"
        " given, each measurement runs until that many requests are done)",
    )
    parser.add_argument("--requests", type=int, help="requests per measurement")
    parser.add_argument(
        "--concurrency",
        default=str(RunSettings.concurrency),
        metavar="N[,N...]",
        help=f"virtual users (default {RunSettings.concurrency}); a comma-separated list sweeps"
        " them, e.g. 1,8,32,128,512: every mode and connection pattern is measured, and checked"
        " for leaks, at each level",
    )
    parser.add_argument(
        "--driver-processes",
        default="1",
        metavar="N|auto",
        help="load driver processes the virtual users are shared out to (default 1; auto: half"
        " the CPUs, at most one per virtual user); for a server faster than one driver process",
    )
    _add_defaulted(parser, "--repeats", int, RunSettings.repeats, "measurements per cell")
    _add_sleep_option(parser)
    _add_defaulted(parser, "--warmup", float, RunSettings.warmup, "warm-up seconds per cell")
    _add_fail_options(parser)
    _add_run_folder_options(parser)
    parser.add_argument(
        "--compare-flask",
        action="store_true",
        help="also run the Flask probe app on every mode; the report compares the two",
    )
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="URL",
        help="check a server ctxbench did not start, e.g. http://127.0.0.1:8080 (repeatable);"
        " its app needs install_probe and CTXBENCH_PROBE=1; CTXBENCH_PROBE_SECRET is sent"
        " when set",
    )


def _add_defaulted(
    parser: argparse.ArgumentParser,
    flag: str,
    kind: type[int] | type[float],
    default: float,
    help: str,
) -> None:
    """An option whose help states its ``default``, given by the settings that own it."""
    parser.add_argument(flag, type=kind, default=default, help=f"{help} (default {default:g})")


def _add_sleep_option(parser: argparse.ArgumentParser) -> None:
    from harness.settings import RunSettings

    _add_defaulted(
        parser, "--sleep-ms", float, RunSettings.sleep_ms, "time each probe request yields"
    )


def _add_fail_options(parser: argparse.ArgumentParser) -> None:
    from harness.protocol import FAIL_PHASES

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
    _add_proxy_option(parser, "serve it behind this proxy (nginx, nginx-keepalive)")
    _add_server_options(parser)
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")


def _configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", type=_folder, metavar="RUN_DIR", help="a run folder (results/<run-id>)"
    )


def _configure_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_a", type=_folder, metavar="RUN_A", help="the baseline: a run folder or a results file"
    )
    parser.add_argument(
        "run_b", type=_folder, metavar="RUN_B", help="the run to check against it (the same)"
    )
    parser.add_argument(
        "--threshold",
        default="10%",
        help="relative change in rps or p99 that counts as a regression (default 10%%)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="compare the medians only; by default B must be worse in every repeat by more than"
        " the threshold plus the noisier run's spread (B's best repeat against A's worst), B's"
        " driver not saturated, and neither run's server starving users",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="compare only the cells both runs have; by default a cell of RUN_A that RUN_B did"
        " not measure (an interrupted run, fewer modes) is a regression",
    )


def _add_matrix_options(parser: argparse.ArgumentParser, connections: str = "both") -> None:
    """``--modes`` and ``--connections``, as every command that runs cells over modes takes them."""
    parser.add_argument(
        "--modes", default="all", help="comma-separated server modes (default all that can run)"
    )
    _add_connections_option(parser, connections)


def _add_connections_option(
    parser: argparse.ArgumentParser, default: str, *, both: bool = True
) -> None:
    """``--connections``: a pattern, or ``both`` where the command runs each (``both=False``
    for a command that runs one, ``soak``: its help offered ``both`` and the command refused it)."""
    parser.add_argument(
        "--connections",
        default=default,
        choices=("keepalive", "fresh", *("both",) * both),
        help=f"connection pattern (default {default})",
    )


def _configure_corpus(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--entries",
        default="",
        help="comma-separated corpus entries, by name or number (default: all; see --list)",
    )
    _add_matrix_options(parser)
    parser.add_argument(
        "--requests", type=int, default=300, help="probe requests per buggy cell (default 300)"
    )
    parser.add_argument(
        "--fixed-requests",
        type=int,
        help="probe requests per fixed-twin cell (default: as --requests; 10000 for the bar)",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="virtual users (default 16)")
    parser.add_argument(
        "--sleep-ms", type=float, default=10.0, help="time each probe request yields (default 10)"
    )
    parser.add_argument("--workers", type=int, help="server processes (default: per mode)")
    parser.add_argument("--list", action="store_true", help="list the entries and exit")
    _add_run_folder_options(parser)


def build_parser() -> argparse.ArgumentParser:
    """The ``ctxbench`` parser."""
    from harness.faults import cli as faults_cli  # imports this module back: a real cycle
    from harness.packages import package_version

    parser = _Parser(
        prog="ctxbench",
        description="Request-context isolation harness for Python WSGI stacks.",
    )
    version = f"ctxbench {package_version('ctxbench')} (Python {platform.python_version()})"
    parser.add_argument("-V", "--version", action="version", version=version)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    commands: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Handler]] = [
        ("run", "run the isolation matrix and write results/<run-id>/results.json",
         _configure_run, cmd_run),
        ("serve", "run one server mode in the foreground until interrupted",
         _configure_serve, cmd_serve),
        ("list", "show every server mode and whether it can run here", lambda p: None, cmd_list),
        ("locustfile", "print the path of the locustfile, for locust -f \"$(ctxbench locustfile)\"",
         lambda p: None, cmd_locustfile),
        ("report", "write report.md and report.html for a run folder",
         _configure_report, cmd_report),
        ("compare", "compare two runs; exit 1 on a regression beyond --threshold",
         _configure_compare, cmd_compare),
        ("chaos", "run faults during load (kill-worker, recycle, reload, timeout, abort,"
         " slow-client, hook-error) and judge each", faults_cli.configure_chaos,
         faults_cli.cmd_chaos),
        ("soak", "a steady load for minutes; RSS, file descriptors and threads of every server"
         " process each second", faults_cli.configure_soak, faults_cli.cmd_soak),
        ("corpus", "run the corpus of real leak bugs, buggy and fixed; exit 1 unless every"
         " cell is as its traits say", _configure_corpus, cmd_corpus),
    ]  # fmt: skip
    for name, help, configure, handler in commands:
        sub = subparsers.add_parser(name, help=help, description=help)
        configure(sub)
        sub.set_defaults(handler=handler)
    return parser


# -- shared checks ---------------------------------------------------------------------------


def _behind_proxies(modes: Sequence[str], proxy_option: str) -> tuple[str, ...]:
    """``modes`` (all that can run, if empty) behind each proxy named in ``--proxy``."""
    from harness.servers import PROXIES, PROXY_SEPARATOR, available_modes
    from harness.settings import check_unique

    if not proxy_option.strip():
        return tuple(modes)
    proxies = _csv(proxy_option)
    check_unique("--proxy", tuple(proxies), allow_empty=False)  # as --modes: each value once
    for proxy in proxies:
        if proxy != "none" and proxy not in PROXIES:
            raise UsageError(f"unknown proxy {proxy!r}: choose from none, {', '.join(PROXIES)}")
    if not modes:  # behind each proxy asked for, every registered mode that can run
        modes = available_modes()
    return tuple(
        mode if proxy == "none" else f"{proxy}{PROXY_SEPARATOR}{mode}"
        for mode in modes
        for proxy in proxies
    )


def _server_options(args: argparse.Namespace) -> dict[str, t.Any]:
    """The server options of ``run`` and ``serve`` (the fields of a ``ServerConfig``)."""
    return {
        "workers": args.workers,
        "threads": args.threads,
        "worker_connections": args.worker_connections,
        "extra_args": _server_args(args.server_arg),
        "mount": args.mount,
    }


def _server_args(values: Sequence[str]) -> tuple[str, ...]:
    try:
        return tuple(arg for value in values for arg in shlex.split(value))
    except ValueError as e:
        raise UsageError(f"bad --server-arg {values!r}: {e}") from None


def _check_run_folder(option: str, path: Path) -> Path:
    """A run folder to read and write into: the folder, or the results.json in it."""
    from harness.results import RESULTS_FILE

    if path.is_file():
        if path.name != RESULTS_FILE:
            raise UsageError(
                f"bad {option} {str(path)!r}: the report is written next to the run's"
                f" {RESULTS_FILE}; give the run folder"
            )
        path = path.parent
    if not path.is_dir():
        raise UsageError(f"bad {option} {str(path)!r}: no such folder")
    return path


def _check_results(option: str, path: Path) -> Path:
    """Results to read: a run folder, or a results document under any name (a baseline kept as
    ``baseline.json``)."""
    if not (path.is_file() or path.is_dir()):
        raise UsageError(f"bad {option} {str(path)!r}: no such folder or file")
    return path


#: The signals that stop a command: Ctrl-C, a CI runner's timeout or ``kill``, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _stop_signals_as_interrupt(received: list[int]) -> Iterator[None]:
    """Turn the :data:`STOP_SIGNALS` into KeyboardInterrupt, so every ``finally`` stops its
    server, and append each one that arrives to ``received``.

    A signal ignored when ctxbench starts stays ignored: ``nohup ctxbench soak ... &`` asks for
    a run that outlives the terminal, and closing it sends SIGHUP."""

    def interrupt(signum: int, frame: t.Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = {
        sig: signal.signal(sig, interrupt)
        for sig in STOP_SIGNALS
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _ReaderMayGo:
    """``sys.stdout`` or ``sys.stderr`` for a command whose reader may go away before it ends
    (``ctxbench run | head``, ``2>&1 | head`` in a CI job): once a write finds the pipe closed,
    the rest of that output is dropped and the command goes on to its own exit status. A
    ``BrokenPipeError`` raised instead stopped a run at its next progress line, with the exit
    status of a clean one: a leak found passed a ``set -o pipefail`` gate."""

    def __init__(self, stream: t.TextIO) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._went()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._went()

    def _went(self) -> None:
        self._gone = True
        # Python flushes the stream again at exit: what it still holds goes to /dev/null then,
        # not to a closed pipe ("Exception ignored ... BrokenPipeError" on stderr).
        with contextlib.suppress(OSError, ValueError):  # not a file (a test's capture)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def __getattr__(self, name: str) -> t.Any:  # isatty, fileno, encoding, ...
        return getattr(self._stream, name)


@contextlib.contextmanager
def _readers_may_go() -> Iterator[None]:
    """:class:`_ReaderMayGo` on stdout and stderr for the block, flushed at its end (what the
    streams still hold would meet a closed pipe at exit, and Python would exit with 120)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (t.cast(t.TextIO, _ReaderMayGo(s)) for s in saved)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved


# -- run -------------------------------------------------------------------------------------


def format_totals(run: Run, elapsed_s: float, results_path: Path) -> list[str]:
    """The totals under the summary table, and the app's own ``observe()`` names checked."""
    from harness.exercised import ONE_USER
    from harness.report.text import plural  # the report package: loaded only where it is used
    from harness.settings import RunSettings

    cells = run.cells
    unchecked = run.requests - run.checked
    out = [
        f"{plural(len(cells), 'cell')}, {plural(run.checked, 'request')} checked"
        + (f" ({unchecked:,} more failed or were made to fail)" if unchecked else "")
        + f", {plural(run.leaks, 'leak')}, {elapsed_s:.0f} s; results: {results_path}"
    ]
    leaky = [c.leaky_requests for c in cells if c.leaks]
    if leaky and all(n is not None for n in leaky):
        held = sum(t.cast(int, n) for n in leaky)
        out.append(
            f"The {plural(run.leaks, 'leak')} were in {held:,} of the"
            f" {plural(run.checked, 'request')} checked."
        )
    from harness.protocol import app_observation_names

    names = sorted({n for c in cells for n in app_observation_names(c.observed)})
    if names:
        out.append("Checked the app's own observe() state too: " + ", ".join(names))
    if cells and not run.leaks and all(c.concurrency == 1 for c in cells):
        default = RunSettings.concurrency
        out.append(
            f"Requests never overlapped: {ONE_USER}; leave --concurrency at its default"
            f" ({default}), or sweep (--concurrency 1,{default})"
        )
    return out


def _settings_from_args(args: argparse.Namespace) -> RunSettings:
    from harness.apps import CORE_APP, FLASK_APP, app_label
    from harness.load.spec import connection_patterns
    from harness.preflight import checked
    from harness.settings import DEFAULT_DURATION_S, RunSettings

    if args.target:
        _check_target_options(args)
    app = args.app or CORE_APP
    backends = tuple(_csv(args.backend))
    if args.modes.strip() == "all":
        modes: tuple[str, ...] = ()
    elif not args.modes.strip():
        raise UsageError("--modes is empty: name at least one mode, or leave it out for all")
    else:
        modes = tuple(_csv(args.modes))
    modes = _behind_proxies(modes, args.proxy)
    apps: tuple[str, ...] = (app,)
    if args.compare_flask:
        if set(backends) != {DEFAULT_BACKEND}:
            raise UsageError(
                "--compare-flask compares the core and Flask on the correct contextvar storage;"
                f" drop --backend {','.join(backends)} or run the mutants separately"
            )
        if app_label(app) != "core":
            raise UsageError(
                "--compare-flask sets the core probe app against Flask; it cannot be combined"
                f" with --app {app}"
            )
        apps = (app, FLASK_APP)
    if args.fail_fraction is not None and args.fail_phase is None:
        raise UsageError("--fail-fraction needs --fail-phase (where those requests fail)")
    levels = _concurrency_levels(args.concurrency)
    settings = RunSettings(
        apps=apps,
        backends=backends,
        modes=modes,
        connections=connection_patterns(args.connections),
        # Without --duration, --requests alone bounds a measurement; with neither, the default.
        duration=(
            DEFAULT_DURATION_S if args.duration is None and args.requests is None else args.duration
        ),
        requests=args.requests,
        concurrency=levels[0],
        concurrency_levels=levels if len(levels) > 1 else (),
        driver_processes=_driver_processes(args.driver_processes),
        repeats=args.repeats,
        sleep_ms=args.sleep_ms,
        warmup=args.warmup,
        **_server_options(args),
        fail_phase=args.fail_phase,
        fail_fraction=(0.1 if args.fail_phase else 0.0)
        if args.fail_fraction is None
        else args.fail_fraction,
        targets=tuple(args.target),
    )
    return checked(settings)


def _check_target_options(args: argparse.Namespace) -> None:
    """``--target`` runs no server: every option that shapes one is a mistake with it."""
    given = {
        "--modes": args.modes.strip() != "all",
        "--proxy": bool(args.proxy),
        "--app": args.app is not None,
        "--backend": args.backend != DEFAULT_BACKEND,
        "--workers": args.workers is not None,
        "--threads": args.threads is not None,
        "--worker-connections": args.worker_connections is not None,
        "--server-arg": bool(args.server_arg),
        "--compare-flask": args.compare_flask,
    }
    if args.mount is not None:
        raise UsageError(
            "--target checks a server ctxbench did not start: put the path prefix in its URL"
            f" (--target http://127.0.0.1:8080{args.mount.rstrip('/')}), not in --mount"
        )
    wrong = [option for option, set_ in given.items() if set_]
    if wrong:
        raise UsageError(
            f"--target checks a server ctxbench did not start, so {', '.join(wrong)} cannot"
            " apply: drop it, or drop --target to let ctxbench start the server"
        )


@contextlib.contextmanager
def _run_folder(args: argparse.Namespace, prefix: str = "") -> Iterator[tuple[Path, str]]:
    """The run folder and run id from ``--run-dir``, or a new folder under ``--out``, for the
    block (:func:`harness.run_folder.run_dir_for`: held, and what was made for it removed if the
    block fails before it wrote results). The caller writes the reports in it."""
    from harness.run_folder import run_dir_for

    if args.run_dir is not None and args.out is not None:
        raise UsageError("give --out (a folder for new run folders) or --run-dir, not both")
    folder = run_dir_for(args.run_dir, args.out or "results", prefix)
    with folder as run_dir, _said_what_is_kept(run_dir):
        yield run_dir, run_dir.resolve().name


@contextlib.contextmanager
def _said_what_is_kept(run_dir: Path) -> Iterator[None]:
    """On Ctrl-C (or SIGTERM, SIGHUP), or an error that stops a run after it measured something
    (a server that fails to start in a later cell), say where that was kept and how to see it:
    the run wrote it to results.json, marked interrupted or failed, but no report."""
    try:
        yield
    except KeyboardInterrupt:
        # "complete": the interrupt came while the reports were written, after the last cell.
        if kept := _kept(run_dir, ("interrupted", "complete"), "the interrupt"):
            print(f"ctxbench: {kept}", file=sys.stderr)
        raise
    except CtxbenchError as e:  # its one line says what stopped the run, then what it kept
        if kept := _kept(run_dir, ("failed",), "the error"):
            e.message += f"; {kept}"
        raise


def _kept(run_dir: Path, statuses: tuple[str, ...], stopped_by: str) -> str | None:
    from harness import results

    try:
        run = results.load(run_dir)
    except ResultsError:  # nothing written (nothing measured): nothing to say
        return None
    if run.status not in statuses:
        return None
    # A soak has no cells: what it sampled until it stopped is kept.
    kept, verb, whose = (
        ("what the soak sampled", "is", "its")
        if run.soaks
        else ("the cells finished", "are", "their")
    )
    return (
        f"{kept} before {stopped_by} {verb} kept in {run_dir / results.RESULTS_FILE} (marked"
        f" {run.status}); ctxbench report {shlex.quote(str(run_dir))} writes {whose} report"
    )


def cmd_run(args: argparse.Namespace) -> int:
    from harness import results, runner
    from harness.report import format_summary, write_reports
    from harness.report.summary import REPORT_IT, label, pattern_at, summarize, swept
    from harness.report.text import plural
    from harness.servers._gunicorn import unread_settings

    settings = _settings_from_args(args)  # every value checked before anything starts
    started = time.monotonic()
    with _run_folder(args) as (run_dir, run_id):
        command = ["ctxbench", *args.argv]
        run = runner.run_matrix(settings, run_dir, command=command, run_id=run_id)
        reports = write_reports(run_dir, run)  # with the folder held, as its results
    print(format_summary(run))
    for skipped in run.not_measured:
        print(f"not measured: {skipped.mode} {skipped.connections}: {skipped.reason}")
    if args.modes.strip() == "all" and not args.target and (left_out := _cannot_run_here()):
        print(left_out)
    if not args.target and (unread := unread_settings(settings.modes)):
        print(unread)
    print()
    print("\n".join(format_totals(run, time.monotonic() - started, run_dir / results.RESULTS_FILE)))
    print("report: " + ", ".join(str(p) for p in reports))
    failed = [c for c in run.cells if c.failed]
    if failed and not run.leaks:
        # Not every cell was measured to the end: no "no leak" verdict on what was not.
        print(f"ctxbench: error: {plural(len(failed), 'cell')} failed: {failed[0].error}",
              file=sys.stderr)  # fmt: skip
        return 2
    summary, sweep = summarize(run), swept(run.cells)
    unanswered = not run.leaks and (
        _not_probe_answers(run.cells, sweep) or _unchecked(summary.unchecked, run_dir, sweep)
    )
    if unanswered:
        print(f"ctxbench: error: {unanswered}", file=sys.stderr)
        return 2
    if summary.missed and not (summary.stack_leaks or summary.app_leaks):
        # A negative control that missed its leak: the harness is blind there, so no exit
        # status of a verdict (0, or 1 for the controls that did leak) may stand for the run.
        # Named as the terminal's list of missed leaks names them: with a user's app (and the
        # prefix it was mounted at), which two cells may differ by alone.
        cells = ", ".join(f"{label(c)} {pattern_at(c, sweep)}" for c in summary.missed)
        print(
            f"ctxbench: error: the harness missed the leak a deliberately broken backend must"
            f" show, in {plural(len(summary.missed), 'cell')} ({cells}): {REPORT_IT}",
            file=sys.stderr,
        )
        return 2
    return 1 if run.leaks else 0


def _cannot_run_here() -> str | None:
    """The line that names the modes and proxies that ``--modes all`` (the default) left out
    because they cannot run here, so a clean run is not read as clean under them too; ``None``
    when every one can run."""
    from harness.report.text import plural
    from harness.servers import MODES, PROXIES

    # What available_modes() leaves out of the default, and each proxy that cannot run at all.
    left_out = [name for name, mode in MODES.items() if not mode.available().ok]
    left_out += [f"{name}+MODE" for name, proxy in PROXIES.items() if not proxy.available().ok]
    if not left_out:
        return None
    return (
        f"not measured: {plural(len(left_out), 'mode')} that cannot run here:"
        f" {', '.join(left_out)} ('ctxbench list' says why, with each one's install step)"
    )


def _unchecked(few: Sequence[Cell], run_dir: Path | None, sweep: bool) -> str | None:
    """Why no "no leak" verdict can be given on ``few``, cells with too few requests checked
    (:func:`harness.report.summary.too_few_checked`: most failed before an answer came, reset,
    refused or timed out), each with its level in a concurrency sweep (``sweep``). ``None``
    when there are none."""
    from harness.report.summary import MIN_CHECKED_SHARE, unanswered, unchecked_cells

    if not few:
        return None
    log = few[0].server.log
    if all(c.target is not None for c in few):  # --target: the server and its log are the user's
        where = "s of the targets (ctxbench did not start them)"
    else:
        where = f" ({run_dir / log})" if run_dir is not None and log else ""
    return (
        f"too few requests were checked for a verdict (under {MIN_CHECKED_SHARE:.0%}) in"
        f" {unchecked_cells(few, sweep)}: the others {unanswered(few)}, so no verdict is given;"
        f" read the server log{where} for why"
    )


def _not_probe_answers(cells: Sequence[Cell], sweep: bool) -> str | None:
    """Why no "no leak" verdict can be given when the app answered probe requests in the probe's
    place (a 401 of an auth hook, a login redirect, a rate limiter's 429): those requests were
    never checked; each cell with its level in a concurrency sweep (``sweep``). ``None`` when
    every answer came from the probe."""
    from harness.report.summary import app_answers, not_probe_answers
    from harness.report.text import plural

    answered = [c for c in cells if c.not_probe_answers]
    if not answered:
        return None
    return (
        f"{sum(c.not_probe_answers for c in answered):,} of"
        f" {plural(sum(c.requests for c in answered), 'request')} got an answer that was not the"
        f" probe's, in {app_answers(answered, sweep)}: {not_probe_answers(answered)}"
    )


# -- corpus ----------------------------------------------------------------------------------


def cmd_corpus(args: argparse.Namespace) -> int:
    from harness import results
    from harness.corpus import ENTRIES
    from harness.corpus.run import LOAD, CorpusSettings, run_corpus
    from harness.load.spec import connection_patterns
    from harness.report import write_reports
    from harness.report.corpus import corpus_table, corpus_verdict
    from harness.report.summary import swept, too_few_checked
    from harness.report.tree import text_table

    if args.list:
        for entry in ENTRIES.values():
            print(f"{entry.number:>3}  {entry.key:<30}  {entry.title} ({entry.source})")
        return 0
    if args.modes.strip() == "all":
        modes: tuple[str, ...] = ()
    else:
        modes = tuple(_csv(args.modes))
        if not modes:
            raise UsageError("--modes is empty: name at least one mode, or leave it out for all")
    settings = CorpusSettings(
        entries=tuple(_csv(args.entries)) if args.entries.strip() else (),
        load=LOAD.replace(
            modes=modes,
            connections=connection_patterns(args.connections),
            requests=args.requests,
            concurrency=args.concurrency,
            sleep_ms=args.sleep_ms,
            workers=args.workers,
        ),
        fixed_requests=args.fixed_requests,
    )
    started = time.monotonic()
    with _run_folder(args, prefix="corpus-") as (run_dir, run_id):
        run = run_corpus(
            settings,
            run_dir,
            command=["ctxbench", *args.argv],
            run_id=run_id,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
        reports = write_reports(run_dir, run)  # with the folder held, as its results
    print("\n".join(text_table(corpus_table(run.cells))))
    ok, sentence = corpus_verdict(run.cells)
    print()
    print(sentence)
    print("\n".join(format_totals(run, time.monotonic() - started, run_dir / results.RESULTS_FILE)))
    print("report: " + ", ".join(str(p) for p in reports))
    # A cell that came out "clean" (or a chance entry "not caught") on requests mostly never
    # checked has no verdict either, as under `run`.
    unchecked = _unchecked(
        [
            c
            for c in run.cells
            if c.corpus is not None and c.corpus.verdict != "caught"
            if not c.failed and too_few_checked(c)
        ],
        run_dir,
        swept(run.cells),
    )
    if ok and unchecked:
        print(f"ctxbench: error: {unchecked}", file=sys.stderr)
        return 2
    return 0 if ok else 1


# -- serve -----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from harness.apps import CORE_APP
    from harness.preflight import check_backend
    from harness.protocol import probe_path
    from harness.servers import ServerConfig, get_mode, live_server
    from harness.servers._gunicorn import unread_settings
    from harness.servers._process import log_tail

    modes = _behind_proxies([args.mode], args.proxy or "none")
    if len(modes) != 1:
        raise UsageError(
            f"serve runs one server: give --proxy one proxy, not {args.proxy!r}"
            f" (or run the modes {', '.join(modes)} one by one)"
        )
    [mode] = modes
    get_mode(mode)
    cfg = ServerConfig(
        app=args.app or CORE_APP, backend=args.backend, port=args.port, **_server_options(args)
    )
    check_backend(cfg.backend, cfg.app)
    with live_server(mode, cfg) as srv:
        eff = srv.effective
        url = srv.url + (srv.mount or "").rstrip("/")
        print(f"{srv.mode} serving {cfg.app} ({cfg.backend}) at {url}/", flush=True)
        print(
            f"  pid={srv.pid} effective: {eff.get('worker_class')} workers={eff.get('workers')}"
            f" threads={eff.get('threads')} pids={eff.get('worker_pids')}",
            flush=True,
        )
        for note in _not_applied(args, srv.mode, eff):
            print(f"  {note}", flush=True)
        print(f"  probe: {srv.url}{probe_path(srv.mount)}?token=T&sleep_ms=1", flush=True)
        if unread := unread_settings([mode]):
            print(f"  {unread}", flush=True)
        print("  press Ctrl-C to stop", flush=True)
        returncode = srv.process.wait()
        raise CtxbenchError(
            f"{srv.mode} exited on its own with status {returncode}",
            detail=log_tail(srv.log_path),
        )


def _not_applied(args: argparse.Namespace, mode: str, effective: dict[str, t.Any]) -> list[str]:
    """A line for each server option given that the server ran without, as the mode recorded
    them (``ignored_options``, which ``run`` names under its table too).

    A server takes them without a word where they mean nothing to it (waitress has one
    process, gunicorn's gevent worker no thread pool, the werkzeug dev server a thread per
    connection): ``serve --mode waitress --workers 2`` served with one process, and only
    ``workers=1`` on the effective line said so.
    """
    from harness.results import ServerInfo

    rv = []
    for option in ServerInfo(effective=effective).ignored_options:
        key = option.removeprefix("--").replace("-", "_")
        ran = effective.get(key)
        runs = f"runs {key}={ran}" if ran is not None else f"has no {key}"
        rv.append(
            f"{option} {getattr(args, key, None)} does not apply to {mode}, which {runs}"
            " ('ctxbench list' says what each mode runs)"
        )
    return rv


# -- list ------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from harness.servers import MODES, PROXIES, PROXY_SEPARATOR
    from harness.servers.base import Availability

    width = max(len(name) for name in [*MODES, *PROXIES])

    def show(name: str, availability: Availability, summary: str) -> None:
        state = "ok" if availability.ok else f"unavailable: {availability.explain()}"
        print(f"{name.ljust(width)}  {state.ljust(4)}  {summary}")

    for name, mode in MODES.items():
        show(name, mode.available(), mode.summary)
    if PROXIES:
        print(
            f"\nproxies, in front of any mode (--proxy NAME, or a mode named"
            f" NAME{PROXY_SEPARATOR}MODE):"
        )
        for name, proxy in PROXIES.items():
            show(name, proxy.available(), proxy.summary)
    return 0


# -- locustfile ------------------------------------------------------------------------------

#: The locustfile that ships with ctxbench: a file for ``locust -f``, never a module to import
#: (``import locust`` monkey-patches the importing process with gevent).
LOCUSTFILE = Path(__file__).resolve().parent / "locustfiles" / "isolation.py"


def cmd_locustfile(args: argparse.Namespace) -> int:
    print(LOCUSTFILE)
    return 0


# -- report and compare ----------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from harness import results
    from harness.report import write_reports

    run_dir = _check_run_folder("RUN_DIR", args.run_dir)
    run = results.load(run_dir)
    for path in write_reports(run_dir, run):
        print(path)
    if run.status != "complete":
        print(f"note: run {run.run_id} is {run.status}, not complete: {run.status_reason}",
              file=sys.stderr)  # fmt: skip
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness import results
    from harness.report import compare_runs, parse_threshold

    threshold = parse_threshold(args.threshold)
    run_a = results.load(_check_results("RUN_A", args.run_a))
    run_b = results.load(_check_results("RUN_B", args.run_b))
    if run_a.run_id == run_b.run_id and run_a != run_b:
        # Two CI jobs' --run-dir results/ci: name them by path. One run read twice is refused
        # by compare_runs, by the run's own id.
        run_a, run_b = (
            run.replace(run_id=f"{run.run_id} ({path})")
            for run, path in ((run_a, args.run_a), (run_b, args.run_b))
        )
    text, regressions = compare_runs(
        run_a, run_b, threshold, strict=args.strict, allow_missing=args.allow_missing
    )
    print(text, end="")
    return 1 if regressions else 0


def _stopped(args: argparse.Namespace | None) -> str:
    """What an interrupt left behind: nothing ctxbench started, and a ``--target``'s server,
    which ctxbench did not start, as it was (the user may fear the run stopped it)."""
    if args is None:  # while the command line was read: nothing had started
        return "no server was started"
    if getattr(args, "target", None):
        return "no server was started, and the --target servers are left running"
    return "every server was stopped"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status; an interrupt returns 128 + the number of the
    signal (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP), or 0 for ``serve``, whose only
    way to end is a signal (as gunicorn's)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args: argparse.Namespace | None = None
    received: list[int] = []
    with _readers_may_go():
        try:
            # Inside the try: building the parser imports most of the harness (a few tenths of
            # a second), and a Ctrl-C typed then is an interrupt like any other, not a traceback.
            args = build_parser().parse_args(argv)
            args.argv = argv
            with _stop_signals_as_interrupt(received):
                status: int = args.handler(args)
                return status
        except KeyboardInterrupt:
            print(f"ctxbench: interrupted; {_stopped(args)}", file=sys.stderr)
            if args is not None and args.command == "serve":
                return 0
            return 128 + (received[0] if received else signal.SIGINT)
        except CtxbenchError as e:
            print(f"ctxbench: error: {e.message}", file=sys.stderr)
            if e.detail:
                detail = "\n".join(f"  | {line}" for line in e.detail.splitlines())
                print(detail, file=sys.stderr)
            return e.exit_code


def console_script() -> t.NoReturn:
    """The ``ctxbench`` command: :func:`main`, then, when a signal interrupted it, death by that
    signal, as Python's own end after an uncaught Ctrl-C (the shell still reports 130, 143 or
    129). A shell running ctxbench in a script or a loop stops at a Ctrl-C only when the
    command died of it: an exit with status 130 tells bash the command handled the Ctrl-C
    itself, and the loop went on to its next ctxbench."""
    status = main()
    if status - 128 in STOP_SIGNALS:  # every server is stopped and the output flushed
        signal.signal(status - 128, signal.SIG_DFL)
        os.kill(os.getpid(), status - 128)
    sys.exit(status)


if __name__ == "__main__":
    console_script()
