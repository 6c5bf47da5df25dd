"""ctxbench as a pytest plugin: prove in your own test suite that your app does not leak.

Installed with ctxbench (the ``pytest11`` entry point ``ctxbench``), or loaded with ``-p ctxbench``
where plugin autoloading is off (``-p pytest_ctxbench`` and ``pytest_plugins`` name it too, and it
is still loaded once). A session that does not use it is unchanged: importing this module
imports nothing but pytest (not even ctxbench's ``harness`` package: a project may have its own
top-level package of that name, and its suite runs as it is unless a test asks for a fixture),
it adds options and ini keys under the ``ctxbench`` prefix only, and its fixtures are named
``ctxbench`` and ``ctxbench_server``. Everything else (the runner, the
servers, gevent) is imported when a test first asks for a fixture.

A test is a few lines::

    def test_isolated(ctxbench):
        ctxbench.assert_isolated("myproject.wsgi:app")

``ctxbench.check(app, modes=..., connections=..., requests=...)`` runs the same matrix as
``ctxbench run`` (real servers on 127.0.0.1, every response checked) and returns a
:class:`CheckResult`; ``assert_isolated`` fails the test with the evidence (mode, connections,
phase, name, expected, seen, unit) and the path of the report. ``ctxbench_server(mode, app)``
starts one server for a live test of your own and stops it at teardown.

Settings, most specific first: the arguments of ``check``; ``--ctxbench-modes``,
``--ctxbench-requests`` and ``--ctxbench-results`` on the command line; the test's
``@pytest.mark.ctxbench(modes=..., connections=..., requests=...)`` marker; the ini keys
``ctxbench_modes``, ``ctxbench_connections``, ``ctxbench_requests``, ``ctxbench_concurrency``
and ``ctxbench_results``. Results go to ``<tmp_path>/ctxbench`` unless a results folder is set
(a relative one is taken from where pytest was started, the ini key's from the ini file's
folder), in which case each check gets a folder of its own there, named after the test's node id
(``tests_test_app.py_test_isolated``) and claimed with one ``mkdir``: a folder that is there
already (a second check in the test, an earlier session, a test whose name reads the same, an
xdist worker running at the same time) is never written into; the check takes the next free
``-2``, ``-3``, ... instead.

The servers import the app as this test session would: they run in processes of their own,
started from the current directory, so the folders pytest put on ``sys.path`` (the ``pythonpath``
ini option; a rootdir ``conftest.py``'s folder and the tests' base folders under the default
import mode) and the rootdir itself reach them through ``PYTHONPATH``. Running ``pytest`` from a
subfolder of the project, or with ``--rootdir``, finds the same app as running it from the root.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import re
import shlex
import shutil
import sys
import typing as t
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

if t.TYPE_CHECKING:
    from harness.errors import CtxbenchError
    from harness.results import Cell, Run
    from harness.servers.base import LiveServer

__all__ = ["CheckResult", "Ctxbench", "CtxbenchLeak", "CtxbenchWarning"]

#: The modes a check runs unless told otherwise: one of each way of serving a request that the
#: base install has (a thread per connection, one request at a time, a thread pool, greenlets).
DEFAULT_MODES = ("werkzeug-threaded", "gunicorn-sync", "gunicorn-gthread", "gunicorn-gevent")
DEFAULT_REQUESTS = 400
DEFAULT_CONCURRENCY = 16
#: Evidence rows shown in an assertion message; the report has the rest.
SHOWN_EVIDENCE = 5
#: The longest results folder name taken from a node id (a file name holds 255 bytes at most).
MAX_FOLDER_NAME = 120


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ctxbench", "request-context isolation (ctxbench)")
    group.addoption(
        "--ctxbench-modes",
        metavar="MODES",
        help="comma-separated server modes for ctxbench checks (see 'ctxbench list')",
    )
    group.addoption("--ctxbench-requests", type=int, metavar="N", help="requests per ctxbench cell")
    group.addoption(
        "--ctxbench-results",
        metavar="DIR",
        help="keep each test's ctxbench run folder under DIR (default: the test's tmp_path)",
    )
    # "args": a TOML list, or names in one string (commas or spaces); "string" took no list
    # (pytest deprecates one, and fails under filterwarnings = error).
    parser.addini(
        "ctxbench_modes",
        "default server modes for ctxbench checks (a list, or names separated by commas)",
        type="args",
    )
    parser.addini("ctxbench_connections", "keepalive, fresh or both (default both)")
    parser.addini("ctxbench_requests", f"requests per cell (default {DEFAULT_REQUESTS})")
    parser.addini("ctxbench_concurrency", f"virtual users (default {DEFAULT_CONCURRENCY})")
    parser.addini("ctxbench_results", "folder for the run folders (default: tmp_path)")


#: The name of the plugin's ``pytest11`` entry point (``-p ctxbench``, ``-p no:ctxbench``).
ENTRY_POINT = "ctxbench"


def pytest_plugin_registered(
    plugin: object, plugin_name: str | None, manager: pytest.PytestPluginManager
) -> None:
    # pytest registers a plugin under one name. With ctxbench installed, naming this module as
    # well (``-p pytest_ctxbench``, ``pytest_plugins = ["pytest_ctxbench"]``) loads
    # it a second time under that name, and pytest stops with "Plugin already registered under
    # a different name". Once it is registered under either name, the other is blocked, so the
    # second load is skipped.
    if plugin is not sys.modules[__name__]:
        return
    other = {ENTRY_POINT: __name__, __name__: ENTRY_POINT}.get(plugin_name or "")
    if other is not None and not manager.is_blocked(other) and not manager.has_plugin(other):
        manager.set_blocked(other)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ctxbench(modes=None, connections=None, requests=None, concurrency=None, results=None):"
        " defaults for the ctxbench fixture in this test; every test using the ctxbench or"
        " ctxbench_server fixture carries the marker, so -m 'not ctxbench' deselects them",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    # A check under a gunicorn mode passes where the project's own gunicorn.conf.py (preload_app)
    # makes its deployment leak: said once, under the session's header, as a plugin says what a
    # session runs with (a warning would fail every suite run with -W error). What gunicorn reads
    # by itself is looked for first, so that ctxbench's harness is imported only when it is
    # there, and then only the module that says it (not the servers: pytest --co stays cheap).
    if not (Path("gunicorn.conf.py").is_file() or os.environ.get("GUNICORN_CMD_ARGS")):
        return None
    if _foreign_harness() is not None:  # the fixtures say so, and their tests fail
        return None
    from harness.gunicorn_config import unread_gunicorn_settings

    unread = unread_gunicorn_settings(given="server_args=['--preload']")
    return None if unread is None else f"ctxbench: {unread}"


#: The plugin's fixtures: a test that uses either starts servers, and carries the marker.
FIXTURES = ("ctxbench", "ctxbench_server")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in FIXTURES):
            item.add_marker("ctxbench")


class CtxbenchWarning(UserWarning):
    """A check ran under fewer modes than the default ones: the others cannot run here.

    Under ``-W error`` (or a ``filterwarnings = error`` ini line) it fails the check that ran
    into it, with the same text and no traceback.
    """


class CtxbenchLeak(AssertionError):
    """Raised by :meth:`Ctxbench.assert_isolated`: the app leaked, or requests failed."""


@dataclass(frozen=True, repr=False)
class CheckResult:
    """What one check found, cell by cell."""

    app: str
    run_dir: Path
    #: The run, as written to ``results.json``.
    results: Run = field(repr=False)

    @property
    def cells(self) -> tuple[Cell, ...]:
        return self.results.cells

    @property
    def requests(self) -> int:
        return self.results.requests

    @property
    def leaks(self) -> int:
        return self.results.leaks

    @property
    def errors(self) -> int:
        return self.results.errors

    @property
    def ok(self) -> bool:
        """No leak and no failed request in any cell."""
        return self.leaks == 0 and self.errors == 0

    @property
    def report(self) -> Path:
        return self.run_dir / "report.md"

    def __repr__(self) -> str:
        # What pytest shows of a failed ``assert rv.ok`` ("where False = CheckResult(...).ok")
        # and what print(rv) shows: the verdict's counts, not only where the run was written.
        return (
            f"CheckResult(app={self.app!r}, ok={self.ok}, leaks={self.leaks},"
            f" errors={self.errors}, run_dir={self.run_dir!r})"
        )

    def explain(self, started_in: Path | None = None) -> str:
        """A few lines for an assertion message: what leaked where, and where the report is
        (relative to ``started_in``, the folder pytest was started in, when it is under it)."""
        from harness.apps import mounted
        from harness.report.summary import not_probe_answers
        from harness.report.text import fmt_counts

        leaky = [c for c in self.cells if c.leaks]
        report = self.report
        if started_in is not None and report.is_relative_to(started_in):
            # Short, so the first evidence fits too: pytest keeps whole lines of ~500
            # characters in a JUnit message, and a CI workspace's absolute paths are long.
            report = report.relative_to(started_in)
        # The app a dispatcher serves under a prefix is named with it (mount="/api"), as the
        # report's verdict names it: the dispatcher's other apps were not checked.
        app = mounted(self.app, self.results.settings.mount or "/")
        lines = [
            f"ctxbench: {app} "
            + (
                f"leaked {_culprit(leaky)} in {len(leaky)} of {len(self.cells)} cells"
                if leaky
                else f"had {self.errors:,} failed requests"
            )
            + f" ({self.leaks:,} leaking observations, {self.errors:,} errors,"
            f" {self.results.checked:,} requests checked)",
            # Second, so the path survives where only the first lines are shown (a JUnit XML
            # failure message keeps about 500 characters).
            f"  report: {report}",
        ]
        for cell in self.cells:
            if not (cell.leaks or cell.errors):
                continue
            lines.append(
                f"  {cell.mode} {cell.connections}: {cell.leaks:,} leaks, {cell.errors:,} errors"
                + (f" ({fmt_counts(cell.error_kinds)})" if cell.errors else "")
                + (
                    f"; statuses {fmt_counts(cell.error_statuses)}: {not_probe_answers([cell])}"
                    if cell.error_statuses
                    else ""
                )
            )
            for ev in cell.evidence[:SHOWN_EVIDENCE]:
                unit = ev.unit
                lines.append(
                    f"    phase={ev.phase} name={ev.name} expected={ev.expected!r}"
                    f" seen={ev.seen!r} unit=pid {unit.pid} thread {unit.thread}"
                    + ("" if unit.greenlet is None else f" greenlet {unit.greenlet}")
                )
        return "\n".join(lines)


#: The ``ctxbench run`` options behind the keywords of :meth:`Ctxbench.check` and
#: ``ctxbench_server`` (the server options: :class:`~harness.servers.base.ServerConfig`'s
#: fields): a usage error names what the test gave, not a flag it never typed.
_KEYWORDS = {
    "--app": "app",
    "--backend": "backend",
    "--concurrency": "concurrency",
    "--connections": "connections",
    "--modes": "modes",
    "--mount": "mount",
    "--port": "port",
    "--requests": "requests",
    "--sleep-ms": "sleep_ms",
    "--threads": "threads",
    "--worker-connections": "worker_connections",
    "--workers": "workers",
}
#: A flag right after another program's name is that program's (``flask --app``, ``uWSGI's
#: --mount``), not an option of ``ctxbench run``: it is kept as it is.
_OTHER_PROGRAM = "".join(
    f"(?<!{name} )" for name in ("flask", "gunicorn", "uvicorn", "waitress", "uWSGI's", "uwsgi")
)
#: What a message says, left to right: a flag with its value (any value after "bad" or "use",
#: elsewhere one that reads as a value: quoted, a number, a path), the value of a keyword the
#: message already names (``bad x= 0``), a quoted value (kept as it is: ``bad
#: server_args='--threads 4'`` quotes what the test gave, flags included), or a flag alone.
_SAYS = re.compile(
    r"(?:(?<=\bbad )|(?<=\buse ))(?P<flag>--[a-z-]+) (?P<value>'[^']*'|[^\s:;,)]+)"
    rf"|(?<![\w-]){_OTHER_PROGRAM}(?P<flag2>--[a-z-]+) (?P<value2>'[^']*'|-?\d[\d.]*|/[^\s:;,)]*)"
    r"|(?<=\bbad )(?P<keyword>[a-z_]+)= (?P<value3>[^\s:;,)]+)"
    r"|(?<!\w)(?P<quoted>'[^']*'|\"[^\"]*\")"
    rf"|(?<![\w-]){_OTHER_PROGRAM}(?P<alone>--[a-z-]+)\b(?!-)"
)


def _culprit(leaky: Sequence[Cell]) -> str:
    """Whose state leaked in ``leaky``, for the first line: the framework's context, or only the
    app's own state it gave ``observe()`` (as the report's verdict tells them apart). Short: a
    JUnit failure message keeps about 500 characters, and the first evidence must fit."""
    from harness.report.summary import framework_leaked, leaked_names

    framework = ", ".join(sorted({name for c in leaky for name in leaked_names(c)[0]}))
    own = ", ".join(sorted({name for c in leaky for name in leaked_names(c)[1]}))
    if not any(framework_leaked(c) for c in leaky):
        if not own:  # no evidence kept
            return "per-request state"
        return f"its own state (observe(): {own}), not the framework's context,"
    return f"the framework's context ({framework})" + (
        f" and its own state (observe(): {own})" if own else ""
    )


def _message(e: CtxbenchError) -> str:
    """A test failure's text for a usage or start-up error: what ``ctxbench`` would print, with
    the options of ``ctxbench run`` named as the keywords a test gives (``bad sleep_ms=-1``,
    ``mount='/api'``)."""

    def said(m: re.Match[str]) -> str:
        if m["quoted"] is not None:
            return m[0]
        if m["alone"] is not None:
            return _KEYWORDS.get(m["alone"], m["alone"])
        if m["keyword"] is not None:
            return f"{m['keyword']}={m['value3']}"
        flag, value = (m["flag"], m["value"]) if m["flag"] else (m["flag2"], m["value2"])
        if flag not in _KEYWORDS:  # a flag of its own (--ctxbench-requests): as it was typed
            return m[0]
        if value.startswith("/") or m.string[: m.start()].endswith("use "):
            value = repr(value)  # a path or a name, as a test writes it
        return f"{_KEYWORDS[flag]}={value}"

    text = _SAYS.sub(said, e.message)
    return f"ctxbench: {text}" + (f"\n{e.detail}" if e.detail else "")


def _session_paths(rootdir: Path) -> list[str]:
    """The folders this session imports from that a server process would not: the entries of
    ``sys.path`` outside the interpreter and its environment (``""`` is the current folder), then
    the rootdir; absolute, each once, in ``sys.path``'s order."""
    installed = [Path(p).resolve() for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}]
    rv: list[str] = []
    for entry in [*sys.path, str(rootdir)]:
        path = Path(entry or os.getcwd()).resolve()
        if not path.is_dir() or any(path.is_relative_to(p) for p in installed):
            continue
        if os.pathsep in str(path):  # cannot be written into PYTHONPATH
            continue
        if str(path) not in rv:
            rv.append(str(path))
    return rv


@contextlib.contextmanager
def _servers_import_like(config: pytest.Config) -> Iterator[None]:
    """Servers started in the block import from this session's folders (see the module's doc):
    ``PYTHONPATH`` is set for them (and whatever it held kept after), then restored."""
    before = os.environ.get("PYTHONPATH")
    paths = _session_paths(config.rootpath)
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *([before] if before else [])])
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def _folder_name(nodeid: str) -> str:
    """A results folder name for the test ``nodeid``: its node id in file-name characters
    (``tests/test_app.py::test_isolated[x]`` is ``tests_test_app.py_test_isolated[x]``)."""
    name = re.sub(r"[^A-Za-z0-9_.\[\]-]+", "_", nodeid).strip("_.") or "test"
    return name[:MAX_FOLDER_NAME]


def _claim_folder(parent: Path, name: str) -> Path:
    """Make and return ``parent/name``, or the first of ``name-2``, ``name-3``, ... that is not
    there: one ``mkdir`` each, so two processes (xdist workers) never get the same folder.
    Raises :class:`OSError` when ``parent`` cannot hold it."""
    parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        path = parent / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def _said_where(where: str) -> Iterator[None]:
    """A usage error raised in the block names where the bad setting came from (as
    :meth:`Ctxbench._source` says it: ``ctxbench_modes (ini)``, ``--ctxbench-modes``, the
    marker); a keyword of the call (``modes=``) goes unnamed, the message quotes its value."""
    from harness.errors import UsageError

    try:
        yield
    except UsageError as e:
        if where.endswith("="):
            raise
        raise UsageError(f"{where}: {e.message}", detail=e.detail) from None


def _check_server_args(args: object) -> None:
    """Refuse ``server_args`` given as one string (``tuple("--preload")`` is its letters, and
    the server would fail to boot on them), showing the list that was meant."""
    from harness.errors import UsageError

    if not isinstance(args, str):
        return
    try:
        meant = shlex.split(args)
    except ValueError:  # unbalanced quotes: show it as one argument
        meant = [args]
    raise UsageError(
        f"bad server_args={args!r}: give a list with one argument per item, as on a command"
        f" line (server_args={meant!r})"
    )


def _server_options(options: dict[str, t.Any]) -> None:
    """Check ``ctxbench_server``'s keywords, and turn ``server_args`` (as ``check()`` names
    them) into :class:`~harness.servers.ServerConfig`'s ``extra_args``."""
    from dataclasses import fields

    from harness.errors import UsageError
    from harness.servers import ServerConfig

    if "server_args" in options:
        _check_server_args(options["server_args"])
        options["extra_args"] = (*options.get("extra_args", ()), *options.pop("server_args"))
    taken = [f.name for f in fields(ServerConfig) if f.name not in ("host", "extra_args")]
    taken += ["server_args", "log_dir", "ready_timeout"]
    unknown = sorted(set(options) - {*taken, "extra_args"})
    if unknown:
        raise UsageError(
            f"ctxbench_server() takes no {unknown[0]}=: it takes the mode and"
            f" {', '.join(f'{name}=' for name in taken)}"
        )
    if options.get("prefix"):
        _check_prefix(options["prefix"])


def _check_prefix(prefix: object) -> None:
    """Refuse a ``prefix=`` that is no command here in one line: it is a command the server
    runs under (``["taskset", "-c", "0"]``), easily taken for the path prefix an app is served
    under (``mount=``), and one that is not there failed with a ``FileNotFoundError`` from deep
    in ``subprocess``, or with "give strings" of a string."""
    from harness.errors import UsageError

    if isinstance(prefix, str) or not isinstance(prefix, (list, tuple)):
        why = "give a list, one argument per item"
    else:
        if isinstance(prefix[0], str) and shutil.which(prefix[0]) is not None:
            return
        why = f"{prefix[0]!r} is no command here"
    raise UsageError(
        f"bad prefix={prefix!r}: {why}; prefix= is a command the server runs under"
        " (prefix=['taskset', '-c', '0']), and the path prefix an app is served under is mount="
        " (mount='/api')"
    )


def _csv(value: str | Sequence[str]) -> tuple[str, ...]:
    """Names from one comma-separated string or a list of them (an ini list, shell-split)."""
    items = [value] if isinstance(value, str) else value
    parts = [p for item in items for p in str(item).split(",")]
    return tuple(p.strip() for p in parts if p.strip())


#: The keywords of ``@pytest.mark.ctxbench``: the settings :meth:`Ctxbench._source` reads from it.
MARKER_KEYS = ("modes", "connections", "requests", "concurrency", "results")


class Ctxbench:
    """The ``ctxbench`` fixture: run isolation checks against an app from a test."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self._request = request
        self._tmp_path = tmp_path
        self._runs = 0

    # -- settings ------------------------------------------------------------------------------

    def _check_markers(self) -> None:
        """Fail in one line on a ``ctxbench`` marker with what it does not take: a misspelt
        keyword (``mode=``) or a positional argument was ignored, and the check ran with the
        settings from elsewhere as if the marker said nothing."""
        for mark in self._request.node.iter_markers("ctxbench"):
            unknown = sorted(set(mark.kwargs) - set(MARKER_KEYS))
            if not (mark.args or unknown):
                continue
            given = f"{unknown[0]}=" if unknown else f"positional argument ({mark.args[0]!r})"
            pytest.fail(
                f"ctxbench: @pytest.mark.ctxbench takes no {given}: it takes"
                f" {', '.join(f'{key}=' for key in MARKER_KEYS)}",
                pytrace=False,
            )

    def _source(self, name: str, given: t.Any) -> tuple[t.Any, str]:
        """The value of setting ``name``, most specific first, and where it came from (for a
        message about a bad one)."""
        if given is not None:
            return given, f"{name}="
        config = self._request.config
        option = config.getoption(f"ctxbench_{name}", None)
        if option is not None:
            return option, f"--ctxbench-{name}"
        marker = self._request.node.get_closest_marker("ctxbench")
        if marker is not None and marker.kwargs.get(name) is not None:
            return marker.kwargs[name], f"@pytest.mark.ctxbench({name}=...)"
        key = f"ctxbench_{name}"
        try:
            value = config.getini(key)
        except (TypeError, ValueError, pytest.UsageError) as e:  # a TOML value of another type
            failure = f"ctxbench: {e}"
        else:
            return value or None, f"{key} (ini)"
        pytest.fail(failure, pytrace=False)  # out of the except block: the message alone

    def _count(self, name: str, given: int | None, default: int) -> int:
        """A whole-number setting (an ini value is text); a bad one is a one-line failure
        naming where it was set."""
        from harness.errors import check_count
        from harness.load.spec import MAX_CONCURRENCY, MAX_REQUESTS

        value, where = self._source(name, given)
        if value is None:
            return default
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        check_count(where, value, high={"requests": MAX_REQUESTS}.get(name, MAX_CONCURRENCY))
        return t.cast(int, value)

    def _run_dir(self) -> Path:
        """The folder of the next check: under the test's ``tmp_path``, or one claimed under
        the results folder (see the module's doc). A results folder that cannot be written is
        a one-line failure naming where it was set."""
        self._runs += 1
        folder, where = self._source("results", None)
        if folder is None:
            return self._tmp_path / ("ctxbench" if self._runs == 1 else f"ctxbench-{self._runs}")
        # A relative folder is where pytest was started (the ini key's: beside the ini file),
        # not wherever a test has changed the current directory to.
        config = self._request.config
        if where.endswith(" (ini)") and config.inipath is not None:
            base = config.inipath.parent
        else:
            base = config.invocation_params.dir
        name = _folder_name(self._request.node.nodeid)
        try:
            return _claim_folder(base / folder, name)
        except OSError as e:
            why = e.strerror or str(e)
        pytest.fail(  # out of the except block: the message alone, not chained to the OSError
            f"ctxbench: cannot make a results folder under {where} {str(folder)!r}: {why};"
            " name a folder this user can write",
            pytrace=False,
        )

    # -- checks ----------------------------------------------------------------------------------

    def check(
        self,
        app: str,
        *,
        modes: str | Sequence[str] | None = None,
        connections: str | None = None,
        requests: int | None = None,
        concurrency: int | None = None,
        sleep_ms: float = 1.0,
        backend: str = "contextvar",  # DEFAULT_BACKEND: this plugin imports nothing but pytest
        server_args: Sequence[str] = (),
        mount: str | None = None,
    ) -> CheckResult:
        """Serve ``app`` (an import string: ``module:name``, or ``module:create_app()`` for an app
        factory) under each mode and check it.

        ``mount`` is the path prefix the app is served under (``ctxbench run --mount``): with a
        dispatcher (werkzeug's ``DispatcherMiddleware``), the app it mounts there is checked.
        ``server_args`` go to every server's command line, one argument per item
        (``["--threads", "4"]``); a string is refused, since its letters would be the items, and
        so are server arguments without ``modes`` named (the default modes are servers of
        several kinds, which take different arguments).

        Every mode runs each connection pattern (``keepalive``, ``fresh`` or ``both``) with
        ``requests`` requests from ``concurrency`` virtual users; every response is checked.
        A mode that cannot run here fails the test with the install step, like ``ctxbench run``.
        """
        from harness.errors import CtxbenchError, UsageError
        from harness.load.spec import CONNECTION_PATTERNS, connection_patterns
        from harness.runner import run_matrix
        from harness.servers import MODES, available_modes, get_mode
        from harness.settings import RunSettings

        self._check_markers()
        modes_set, modes_from = self._source("modes", modes)
        chosen = _csv(modes_set or "")
        named = bool(chosen)
        if not named and not server_args:  # server args without modes are refused below
            chosen = available_modes(DEFAULT_MODES)
            missing: dict[str, list[str]] = {}  # why -> the default modes it stops
            for m in DEFAULT_MODES:
                if m not in chosen:
                    missing.setdefault(MODES[m].available().explain(), []).append(m)
            if missing:
                self._warn(
                    f"ctxbench: checked under {', '.join(chosen)} only; "
                    + "; ".join(f"{', '.join(m)} cannot run here: {why}"
                                for why, m in missing.items())
                    + ". Install them, or name the modes to check (modes=..., --ctxbench-modes"
                    " or the ctxbench_modes ini key) to check only those without this warning"
                )  # fmt: skip
        pattern_set, pattern_from = self._source("connections", connections)
        pattern = pattern_set or "both"
        failure = None
        try:
            n = self._count("requests", requests, DEFAULT_REQUESTS)
            users = self._count("concurrency", concurrency, DEFAULT_CONCURRENCY)
            _check_server_args(server_args)
            # A mode or a pattern that is none is named with where it was set: the failure
            # shows the message alone, not the ini line or the marker that gave it. The command
            # line's modes are checked also where the call's own win: a typo goes unseen else.
            for name in _csv(self._request.config.getoption("ctxbench_modes", None) or ""):
                with _said_where("--ctxbench-modes"):
                    get_mode(name)
            for name in chosen:
                with _said_where(modes_from):
                    get_mode(name)
            if pattern not in (*CONNECTION_PATTERNS, "both"):
                with _said_where(pattern_from):
                    raise UsageError(
                        f"unknown connection pattern {pattern!r}: choose from"
                        f" {', '.join(CONNECTION_PATTERNS)}, both"
                    )
            if server_args and not named:
                kinds = ", ".join(DEFAULT_MODES)
                raise UsageError(
                    f"server_args={list(server_args)!r} go to every mode's server command line,"
                    f" and the default modes are servers of several kinds ({kinds}): name the"
                    " modes they are for (modes=['gunicorn-gevent'] with server_args=['--preload'])"
                )
            settings = RunSettings(
                apps=(app,),
                backends=(backend,),
                modes=chosen,
                connections=connection_patterns(pattern),
                duration=None,
                requests=n,
                concurrency=users,
                repeats=1,
                sleep_ms=sleep_ms,
                warmup=0.0,
                extra_args=tuple(server_args),
                mount=mount,
            )
            run_dir = self._run_dir()
            try:
                with _servers_import_like(self._request.config):
                    run = run_matrix(
                        settings, run_dir, command=["pytest", self._request.node.nodeid]
                    )
            except BaseException:
                # A claimed results folder the run left empty (a bad setting, a bad app path)
                # goes again; the run removed what it made in it, and rmdir takes only an
                # empty folder.
                with contextlib.suppress(OSError):
                    run_dir.rmdir()
                raise
        except CtxbenchError as e:
            failure = _message(e)
        if failure is not None:  # out of the except block: the message alone, not chained to it
            pytest.fail(failure, pytrace=False)
        from harness.report import write_reports

        write_reports(run_dir, run)
        return CheckResult(app=app, run_dir=run_dir, results=run)

    def _warn(self, text: str) -> None:
        """Warn with a :class:`CtxbenchWarning`; where warnings are errors, fail the check with
        the text alone (not a traceback through pytest's ``Node.warn``)."""
        try:
            self._request.node.warn(CtxbenchWarning(text))
        except CtxbenchWarning:
            failure = text
        else:
            return
        pytest.fail(
            f"{failure}\n(a CtxbenchWarning, made an error by -W error or a filterwarnings"
            " 'error' entry)",
            pytrace=False,
        )

    def assert_isolated(self, app: str, **kwargs: t.Any) -> CheckResult:
        """Like :meth:`check`, and fail the test when any request leaked or failed."""
        __tracebackhide__ = True
        rv = self.check(app, **kwargs)
        if not rv.ok:
            raise CtxbenchLeak(rv.explain(self._request.config.invocation_params.dir))
        return rv


#: ctxbench's own ``harness`` package: beside this module, installed or in a checkout.
_HARNESS = Path(__file__).resolve().with_name("harness")


def _foreign_harness() -> str | None:
    """The file of the ``harness`` this session imports when it is not ctxbench's package (a
    project's own package or module of that name), else ``None``. Nothing is imported here."""
    module = sys.modules.get("harness")
    if module is not None:
        origin = getattr(module, "__file__", None)
    else:
        spec = importlib.util.find_spec("harness")
        origin = spec.origin if spec is not None else None
    if origin is None or Path(origin).resolve().parent == _HARNESS:
        return None
    return str(origin)


def _fail_unless_harness_is_ours() -> None:
    """Fail the test in one line when ``harness`` in this session is not ctxbench's package: a
    project with a top-level package or module of its own of that name (a process holds one
    module of a name, and ctxbench's servers import theirs by it). Nothing is imported here."""
    origin = _foreign_harness()
    if origin is None:
        return
    pytest.fail(
        f"ctxbench: 'harness' in this session is {origin}, not ctxbench's own package of that"
        " name: a project with a top-level package or module named 'harness' cannot use"
        " ctxbench's fixtures yet (a process holds one package of a name, and ctxbench's servers"
        " import theirs by it); rename it",
        pytrace=False,
    )


@pytest.fixture
def ctxbench(request: pytest.FixtureRequest, tmp_path: Path) -> Ctxbench:
    """Run ctxbench isolation checks from a test: ``ctxbench.assert_isolated("pkg.wsgi:app")``."""
    _fail_unless_harness_is_ours()
    return Ctxbench(request, tmp_path)


@pytest.fixture
def ctxbench_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., LiveServer]]:
    """A factory: ``srv = ctxbench_server("gunicorn-gevent", app="pkg.wsgi:app")`` starts a server
    on 127.0.0.1 (``srv.url``, ``srv.port``, ``srv.effective``, ``srv.log_path``: under the test's
    ``tmp_path``, a folder per server); every one is stopped at teardown.
    Keyword arguments are those of :func:`harness.servers.live_server`, with the server's own
    arguments as ``server_args``, as :meth:`Ctxbench.check` names them (``mount="/api"``: the
    probe is at ``srv.url + "/api/_ctxbench/probe"``).
    """
    from contextlib import ExitStack

    _fail_unless_harness_is_ours()
    from harness.errors import CtxbenchError
    from harness.servers import live_server

    starts = itertools.count(1)
    with ExitStack() as stack:

        def start(mode: str, **options: t.Any) -> LiveServer:
            # A log folder per server: two of one mode would share (and truncate) one log.
            n = next(starts)
            logs = "ctxbench-logs" if n == 1 else f"ctxbench-logs-{n}"
            options.setdefault("log_dir", tmp_path / logs)
            try:
                _server_options(options)
                with _servers_import_like(request.config):
                    return stack.enter_context(live_server(mode, **options))
            except CtxbenchError as e:
                failure = _message(e)
            pytest.fail(failure, pytrace=False)  # as check(): the message, not the harness's stack

        yield start
