"""The locustfile (``ctxbench locustfile``) against live servers: exit 0 on the correct core,
non-zero on a mutant.

Locust always runs as its own process (``import locust`` would monkey-patch this test process
with gevent), against a server started with :func:`harness.servers.live_server` on 127.0.0.1.
The counts come from the locustfile's ``ctxbench summary {...}`` log line, which the master (or
the single process) writes after aggregation. Each run is bounded (a few seconds, a handful of
users) and each subprocess has a hard timeout; servers and locust processes are stopped however
a test ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from harness.cli import LOCUSTFILE
from harness.servers import free_port

pytestmark = [
    pytest.mark.locust,
    pytest.mark.live,
    pytest.mark.skipif(find_spec("locust") is None, reason="locust is not installed"),
    pytest.mark.skipif(
        find_spec("harness.apps.core_app") is None, reason="harness.apps.core_app is missing"
    ),
]

ROOT = Path(__file__).resolve().parent.parent
LEAK_EXIT_CODE = 3
RUN_SECONDS = 2
USERS = 12
SUMMARY = re.compile(r"ctxbench summary (\{.*\})")
#: What a locust master prints when it cannot bind its port: locust 2.47 raises
#: ``RPCError("Socket bind failure: ...")``, logged as "The Locust master port (...) was busy"
#: or, with pyzmq 27 (whose message also names the address), as a traceback.
MASTER_PORT_BUSY = re.compile(r"Socket bind failure: Address already in use")
#: Tries for a master port: each is a free port the master may lose before it binds it.
MASTER_PORT_ATTEMPTS = 3
#: psutil (ctxbench[soak]) reads where a locust master listens.
HAVE_PSUTIL = find_spec("psutil") is not None


@dataclass
class LocustRun:
    returncode: int
    output: str
    summary: dict[str, Any]
    #: Wall seconds from starting locust to its exit: the measured window lies inside it.
    wall_s: float
    #: The TCP addresses the locust process listened on, seen while it ran (``listen=True``).
    bound: frozenset[tuple[str, int]] = frozenset()

    def explain(self) -> str:
        tail = "\n".join(self.output.splitlines()[-40:])
        return (
            f"locust exited {self.returncode} after {self.wall_s:.1f} s; summary {self.summary};"
            f" output tail:\n{tail}"
        )


def _locust_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args]


def _env() -> dict[str, str]:
    # Nothing from the caller's environment may reconfigure locust (LOCUST_* options).
    return {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}


def _headless(url: str, *extra: str) -> list[str]:
    return _locust_cmd(
        "--headless",
        "-u",
        str(USERS),
        "-r",
        str(USERS),
        "-t",
        f"{RUN_SECONDS}s",
        "-H",
        url,
        "--only-summary",
        "--sleep-ms",
        "2",
        *extra,
    )


def _parse(
    returncode: int, output: str, started: float, bound: frozenset[tuple[str, int]] = frozenset()
) -> LocustRun:
    found = SUMMARY.findall(output)
    summary = json.loads(found[-1]) if found else {}
    return LocustRun(returncode, output, summary, time.monotonic() - started, bound)


def _master_port_lost(run: LocustRun) -> bool:
    """Whether the master gave up because another program had taken its port."""
    return MASTER_PORT_BUSY.search(run.output) is not None


def _on_free_master_port(attempt: Callable[[], LocustRun]) -> LocustRun:
    """``attempt()`` with a master on a port free when picked, again if the master lost it.

    locust cannot bind port 0 and say which port it got, so a free port is picked and closed
    (here, or by the locustfile under ``--processes``), and the master binds it a second later:
    any other program (another test run's master, an outgoing connection's ephemeral port) may
    take it in between.
    """
    for _ in range(MASTER_PORT_ATTEMPTS - 1):
        run = attempt()
        if not _master_port_lost(run):
            return run
    return attempt()


def _master_bind(port: int) -> tuple[str, ...]:
    # No --master-bind-host: the locustfile's default (127.0.0.1) is what is tested.
    return ("--master-bind-port", str(port))


class _Locust:
    """One locust process in a session of its own, its output read as it comes.

    A master that lost its port logs it and then does not always exit: with ``--processes`` it
    waits for its forked workers, which wait on whatever holds the port. The reader stops the
    whole group on that line; teardown stops the group in any case, so no worker outlives a test.
    """

    def __init__(
        self, argv: list[str], *, capture: bool = True, env: dict[str, str] | None = None
    ) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env or _env(),
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        if capture:
            self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if MASTER_PORT_BUSY.search(line):
                self.kill()

    def finish(
        self, timeout: float, started: float, bound: frozenset[tuple[str, int]] = frozenset()
    ) -> LocustRun:
        """Wait for the exit (or the kill on a lost port) and every line of output."""
        returncode = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=timeout)
        return _parse(returncode, "".join(self.lines), started, bound)

    def bound(self) -> frozenset[tuple[str, int]]:
        """Where this locust listens (TCP), polled until it listens or exits, 30 s at most."""
        bound: set[tuple[str, int]] = set()
        deadline = time.monotonic() + 30
        while not bound and self.proc.poll() is None and time.monotonic() < deadline:
            bound = _listening(self.proc.pid)
            time.sleep(0.05)
        return frozenset(bound)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(self.proc.pid, signal.SIGKILL)

    def __enter__(self) -> _Locust:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.reader.join()
            self.proc.stdout.close()


def run_locust(
    url: str, *extra: str, env: dict[str, str] | None = None, listen: bool = False
) -> LocustRun:
    """Run one headless locust (possibly with --processes) to completion.

    With ``--processes`` the locustfile has the master bind a free port on 127.0.0.1 and tells
    the workers it forks (locust's default is port 5557 on every interface, which two test runs
    at once would share): the command is the README's, nothing added. ``listen``: record where
    the process listened (:attr:`LocustRun.bound`; needs psutil).
    """
    if "--processes" not in extra:
        return _run_headless(url, *extra, env=env, listen=listen)
    return _on_free_master_port(lambda: _run_headless(url, *extra, env=env, listen=listen))


def _run_headless(
    url: str, *extra: str, env: dict[str, str] | None = None, listen: bool = False
) -> LocustRun:
    started = time.monotonic()
    with _Locust(_headless(url, *extra), env=env) as locust:
        bound = locust.bound() if listen else frozenset()
        return locust.finish(RUN_SECONDS + 45, started, bound)


def run_locust_distributed(url: str, workers: int, *extra: str, listen: bool = False) -> LocustRun:
    """A --master with --expect-workers and separate --worker processes, all torn down;
    ``listen`` as for :func:`run_locust` (the master's addresses)."""
    return _on_free_master_port(
        lambda: _distributed_once(url, workers, free_port(), *extra, listen=listen)
    )


def _distributed_once(
    url: str, workers: int, port: int, *extra: str, listen: bool = False
) -> LocustRun:
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        master = stack.enter_context(
            _Locust(
                _headless(
                    url, "--master", *_master_bind(port), "--expect-workers", str(workers), *extra
                )
            )
        )
        worker_argv = _locust_cmd(
            "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)
        )
        started_workers = [
            stack.enter_context(_Locust(worker_argv, capture=False)) for _ in range(workers)
        ]
        bound = master.bound() if listen else frozenset()
        run = master.finish(RUN_SECONDS + 45, started, bound)
        if not _master_port_lost(run):
            for worker in started_workers:
                worker.proc.wait(timeout=30)  # they quit when the master tells them to
        return run


@pytest.fixture(scope="module")
def correct_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from harness.servers import live_server

    with live_server(
        "gunicorn-gthread", workers=2, threads=4, log_dir=tmp_path_factory.mktemp("correct")
    ) as srv:
        yield srv


def test_a_locustfile_slow_to_import_still_loads_for_the_whole_run_time(
    correct_server: Any, tmp_path: Path
) -> None:
    """locust arms ``--run-time`` from gevent's cached clock, read when the event loop was made:
    imports that took longer than the run time (a busy machine) ended the run at once, before
    any request, as no verdict (exit 2). A locustfile that blocks longer than RUN_SECONDS after
    the loop exists, then loads the harness's, stands in for them."""
    slow = tmp_path / "slow_locustfile.py"
    slow.write_text(
        "from harness.locustfiles.isolation import *  # noqa: F403\n"
        "import gevent.monkey\n"
        f"gevent.monkey.get_original('time', 'sleep')({RUN_SECONDS + 0.5})\n"
    )
    cmd = _headless(correct_server.url, "--ctx-mode", "gunicorn-gthread")
    cmd[cmd.index(str(LOCUSTFILE))] = str(slow)
    started = time.monotonic()
    with _Locust(cmd) as locust:
        run = locust.finish(RUN_SECONDS + 45, started)
    assert run.returncode == 0, run.explain()
    assert run.summary["checked"] > 0 and run.summary["elapsed_s"] >= RUN_SECONDS / 2, run.explain()


@pytest.fixture(scope="module")
def mutant_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # One process-wide slot, eight threads, and a 2 ms yield per request: requests overlap in
    # one process, so a request sees another's context.
    from harness.servers import live_server

    with live_server(
        "gunicorn-gthread",
        backend="shared-global",
        workers=1,
        threads=8,
        log_dir=tmp_path_factory.mktemp("mutant"),
    ) as srv:
        yield srv


@pytest.mark.parametrize(
    "extra", [pytest.param((), id="single"), pytest.param(("--processes", "2"), id="processes-2")]
)
def test_correct_core_exits_0_without_leaks(correct_server: Any, extra: tuple[str, ...]) -> None:
    """With ``--processes``, the README's command, the master also listens on loopback only
    (:func:`assert_master_on_loopback`)."""
    listen = bool(extra) and HAVE_PSUTIL
    run = run_locust(correct_server.url, "--ctx-mode", "gunicorn-gthread", *extra, listen=listen)
    assert run.returncode == 0, run.explain()
    assert run.summary["leaks"] == 0, run.explain()
    assert run.summary["leak_failures"] == 0, run.explain()
    assert run.summary["errors"] == 0, run.explain()
    assert run.summary["checked"] > 100, run.explain()
    assert run.summary["role"] == ("master" if extra else "local")
    if extra:
        assert_master_on_loopback(run)


@pytest.mark.parametrize(
    "extra",
    [
        # --exit-code-on-error 0 must not hide a leak.
        pytest.param(("--exit-code-on-error", "0"), id="single"),
        pytest.param(("--processes", "2"), id="processes-2"),
    ],
)
def test_mutant_leaks_and_exits_nonzero(
    mutant_server: Any, extra: tuple[str, ...], tmp_path: Path
) -> None:
    csv = tmp_path / "run"
    run = run_locust(mutant_server.url, "--ctx-mode", "gunicorn-gthread", *extra, "--csv", str(csv))
    assert run.returncode == LEAK_EXIT_CODE, run.explain()
    assert run.summary["leaks"] > 0, run.explain()
    # Our counter and locust's own failure count agree once aggregated on the master.
    assert run.summary["leaky_requests"] == run.summary["leak_failures"], run.explain()
    assert run.summary["role"] == ("master" if "--processes" in extra else "local")
    assert "context leak in the response to token" in run.output
    # Counts as the no-verdict line writes them ("0 of 4,437"), where it said "2164 context
    # leaks in 2164 responses".
    said = f"ctxbench: {run.summary['leaks']:,} context leaks in {run.summary['leaky_requests']:,}"
    assert f"{said} responses: the framework's context (" in run.output, run.explain()
    assert '"mode": "gunicorn-gthread"' in run.output  # evidence names the mode
    # One message for a leak wherever locust names it (docs/locust.md, "Failures"): it read
    # "'context leak'" in a distributed run's error report, "CatchResponseError('context
    # leak')" in the --csv failures file.
    tables = run.output[run.output.index("ctxbench summary") :]
    assert LEAK_ROW.search(tables), run.explain()
    rows = (tmp_path / "run_failures.csv").read_text().splitlines()
    assert [row.split(",")[2] for row in rows[1:]] == ["context leak"], rows


def test_the_forked_workers_die_with_the_master(correct_server: Any) -> None:
    # A kill -9 of `locust --processes 2` left both workers loading the server for 60 s, until
    # they gave up on the master's heartbeat.
    argv = _locust_cmd("--headless", "-u", "2", "-r", "2", "-t", "60s", "-H", correct_server.url,
                       "--processes", "2")  # fmt: skip
    with _Locust(argv) as locust:
        deadline = time.monotonic() + 30
        while not any("All users spawned" in line for line in locust.lines):
            assert locust.proc.poll() is None and time.monotonic() < deadline, locust.lines
            time.sleep(0.05)
        workers = _children(locust.proc.pid)
        assert len(workers) == 2, workers
        os.kill(locust.proc.pid, signal.SIGKILL)  # the master only
        deadline = time.monotonic() + 10
        while (alive := [w for w in workers if _runs(w)]) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert alive == [], "the workers outlived their master"


def test_a_worker_stopped_by_ctrl_c_reports_its_last_counts(
    mutant_server: Any, tmp_path: Path
) -> None:
    # A Ctrl-C reaches every process of the terminal: a worker stopped by its own told the
    # master it quit without the report of its last seconds (locust sends that one only when
    # the master says quit), so up to 3 s of counts, leaks included, never reached the verdict.
    # Here a worker reports only as it starts and as it stops: all its counts are in the last.
    wrapper = tmp_path / "locustfile.py"
    wrapper.write_text(
        "import locust.runners\n"
        "locust.runners.WORKER_REPORT_INTERVAL = 3600.0\n"
        "from harness.locustfiles.isolation import *  # noqa: F403\n"
    )
    argv = [sys.executable, "-m", "locust", "-f", str(wrapper), "--headless", "-u", "4", "-r", "4",
            "-t", "60s", "-H", mutant_server.url, "--processes", "1", "--only-summary"]  # fmt: skip

    def interrupted() -> LocustRun:
        started = time.monotonic()
        with _Locust(argv) as locust:
            deadline = time.monotonic() + 30
            while not any("context leak in the response" in line for line in locust.lines):
                if locust.proc.poll() is not None or time.monotonic() > deadline:
                    break  # a lost master port (retried), or no leak seen: the asserts say
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(locust.proc.pid, signal.SIGINT)  # as a Ctrl-C in a terminal
            return locust.finish(45, started)

    run = _on_free_master_port(interrupted)
    assert run.returncode == LEAK_EXIT_CODE, run.explain()
    assert run.summary["role"] == "master" and run.summary["leaks"] > 0, run.explain()


def _children(pid: int) -> list[int]:
    rv = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                rv.append(int(entry.name))
    return rv


def _runs(pid: int) -> bool:
    """``pid`` runs (a zombie, dead and not yet reaped by its new parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _listening(pid: int) -> set[tuple[str, int]]:
    """The addresses process ``pid`` listens on (TCP)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        return {
            (c.laddr.ip, c.laddr.port)
            for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
    return set()


def assert_master_on_loopback(run: LocustRun) -> None:
    """The README's commands: locust's master listens on every interface, port 5557, unless
    told otherwise; the locustfile makes it 127.0.0.1, and a free port under --processes.
    Checked on the runs of the correct core with ``--processes 2`` and with a separate master;
    skipped, after every other check of the test, without psutil."""
    if not HAVE_PSUTIL:
        pytest.skip("where the master listens needs psutil (ctxbench[soak])")
    assert run.bound and {ip for ip, _ in run.bound} == {"127.0.0.1"}, (run.bound, run.explain())
    assert 5557 not in {port for _, port in run.bound}, (run.bound, run.explain())


def test_the_web_ui_listens_on_loopback_only() -> None:
    # locust without --headless serves its web UI, which starts a swarm against any host for
    # anyone who reaches it, on every interface: "Starting web interface at
    # http://0.0.0.0:8089", where the locustfile kept the master on 127.0.0.1 alone.
    port = free_port()
    argv = _locust_cmd("-H", "http://127.0.0.1:9", "--web-port", str(port))
    with _Locust(argv) as locust:
        deadline = time.monotonic() + 30
        while not any("Starting web interface" in line for line in locust.lines):
            assert locust.proc.poll() is None and time.monotonic() < deadline, locust.lines
            time.sleep(0.05)
        said = next(line for line in locust.lines if "Starting web interface" in line)
        assert f"at http://127.0.0.1:{port}," in said, said
        if HAVE_PSUTIL:
            bound = locust.bound()
            assert bound and {ip for ip, _ in bound} == {"127.0.0.1"}, (bound, locust.lines)


@pytest.mark.parametrize("value", ["-1", "nan", "70000"])
def test_a_bad_sleep_ms_is_one_line_and_exit_2(value: str) -> None:
    """As locust's own bad options: before any user starts (every request would get the
    probe's 400 otherwise)."""
    proc = subprocess.run(
        _headless("http://127.0.0.1:9", f"--sleep-ms={value}"),
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == "", proc.stdout
    assert proc.stderr.endswith(
        f": error: argument --sleep-ms: use milliseconds in [0, 60000], got {value}\n"
    ), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr


@pytest.mark.parametrize("installed", [False, True], ids=["checkout", "installed"])
def test_a_locust_without_ctxbench_is_one_line_and_exit_2(tmp_path: Path, installed: bool) -> None:
    """A locust of another Python (pipx, a system package) loads the locustfile: it stopped
    with locust's traceback of "No module named 'harness'". Here: this venv's packages without
    its site hooks (-S), so ctxbench's editable install is not there, run from elsewhere. The
    locustfile of a checkout names the checkout to install from; an installed copy (in a
    venv's site-packages) has no checkout to name, and named site-packages as one."""
    import sysconfig

    packages = sysconfig.get_paths()["purelib"]
    env = {**_env(), "PYTHONPATH": packages}
    locustfile = LOCUSTFILE
    if installed:
        locustfile = tmp_path / "site-packages" / "harness" / "locustfiles" / LOCUSTFILE.name
        locustfile.parent.mkdir(parents=True)
        locustfile.write_bytes(LOCUSTFILE.read_bytes())
    proc = subprocess.run(
        [sys.executable, "-S", "-m", "locust", "-f", str(locustfile), "--headless", "-u", "1",
         "-t", "1s", "-H", "http://127.0.0.1:9"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if "No module named 'locust'" in proc.stderr:
        pytest.skip(f"locust is not in {packages}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    install = f", or install ctxbench into this one ({sys.executable} -m pip install '{ROOT}')"
    assert proc.stderr == (
        f"locust: error: isolation.py needs ctxbench, which the Python this locust runs on does"
        f" not have ({sys.executable}): run the locust of the venv that has ctxbench"
        f"{'' if installed else install}\n"
    ), proc.stderr


@contextlib.contextmanager
def server_with_a_secret(secret: str, log_dir: Path) -> Iterator[str]:
    """The bundled core app under gunicorn with ``CTXBENCH_PROBE_SECRET`` set, as a deployment
    that keeps the probe installed runs it (the harness's own servers never get the secret)."""
    from harness.probe import SECRET_ENV, SECRET_HEADER
    from harness.servers._process import free_port, spawn, stop_group

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = spawn(
        [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", "1", "-k", "gthread",
         "--threads", "4", "--no-control-socket", "harness.apps.core_app:app"],
        env={SECRET_ENV: secret}, log_path=log_dir / "gunicorn.log",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        ready = urllib.request.Request(
            f"{url}/_ctxbench/probe?token=ready", headers={SECRET_HEADER: secret}
        )
        while True:
            try:
                with urllib.request.urlopen(ready, timeout=2) as resp:
                    if json.load(resp)["token"] == "ready":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((log_dir / "gunicorn.log").read_text(errors="replace"))
            time.sleep(0.1)
        yield url
    finally:
        stop_group(proc, grace=5)


def test_a_probe_behind_a_secret_is_reached_with_the_secret(tmp_path: Path) -> None:
    """As ``ctxbench run --target``: CTXBENCH_PROBE_SECRET in locust's environment is sent with
    every request; without it the probe answers 404 to every request, nothing is checked, and
    that is no verdict (exit 2, saying what to check), even where ``--exit-code-on-error 0``
    tolerates failures: it exited 0 there, as if every response had been checked clean."""
    from harness.probe import SECRET_ENV

    with server_with_a_secret("change-me", tmp_path) as url:
        run = run_locust(url, env={**_env(), SECRET_ENV: "change-me"})
        assert run.returncode == 0, run.explain()
        assert run.summary["checked"] > 100 and run.summary["errors"] == 0, run.explain()
        without = {k: v for k, v in _env().items() if k != SECRET_ENV}
        run = run_locust(url, "--exit-code-on-error", "0", env=without)
        assert run.returncode == 2, run.explain()
        assert run.summary["checked"] == 0, run.explain()
        assert set(run.summary["error_kinds"]) == {"http error 404"}, run.explain()
        sent = run.summary["errors"]
        assert (
            f"ctxbench: no verdict: 0 of {sent:,} probe requests were checked (the others failed:"
            f" {sent:,} http error 404), fewer than 50%"
        ) in run.output, run.explain()
        assert f"check that {url} is up and serves the probe" in run.output, run.explain()
        # Where the server keeps its secret in its own configuration (gunicorn raw_env), the
        # line said "CTXBENCH_PROBE_SECRET set here too if it has one" with none set here.
        assert f"{SECRET_ENV} is not set here, and a probe with one answers 404" in run.output


@pytest.mark.parametrize("extra", [(), ("--processes", "2")], ids=["local", "processes"])
def test_a_run_that_sent_nothing_is_no_verdict_without_blaming_the_server(
    extra: tuple[str, ...],
) -> None:
    """Nothing answered and nothing failed: the run ended before any request did (here no
    users; a Ctrl-C under --processes stops the workers before their last report). It said
    "0 of 0 probe requests were checked ... check that <url> is up and serves the probe" of a
    server that was up; nothing listens here, and no request ever tries it."""
    run = run_locust("http://127.0.0.1:9", "-u", "0", *extra)
    assert run.returncode == 2, run.explain()
    assert run.summary["checked"] == 0 and run.summary["errors"] == 0, run.explain()
    said = (
        "no worker reported a probe request's answer or error"
        if extra
        else "no probe request got an answer or an error"
    )
    expected = f"ctxbench: no verdict: {said}, so nothing was checked: the run ended"
    assert expected in run.output, run.explain()
    assert "is up and serves the probe" not in run.output, run.explain()


def test_mutant_leaks_are_counted_on_a_separate_master(mutant_server: Any) -> None:
    run = run_locust_distributed(mutant_server.url, 2)
    assert run.returncode == LEAK_EXIT_CODE, run.explain()
    assert run.summary["role"] == "master"
    assert run.summary["leaks"] > 0, run.explain()
    assert run.summary["leaky_requests"] == run.summary["leak_failures"], run.explain()


def test_two_workers_report_their_counts_to_a_separate_master(correct_server: Any) -> None:
    """Master/worker mode, the way past one machine: both workers check responses and every
    count reaches the master, which rates each worker over the measured window."""
    run = run_locust_distributed(
        correct_server.url, 2, "--ctx-mode", "gunicorn-gthread", listen=HAVE_PSUTIL
    )
    assert run.returncode == 0, run.explain()
    assert run.summary["role"] == "master"
    per_worker = run.summary["checked_per_worker"]
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker), run.explain()
    assert sum(per_worker) == run.summary["checked"], run.explain()
    assert run.summary["errors"] == 0 and run.summary["leaks"] == 0, run.explain()
    # The window is first request to last, inside the master's lifetime. How close it comes to
    # RUN_SECONDS depends on how fast a busy machine stops the workers: not a test's business.
    assert 0 < run.summary["elapsed_s"] <= run.wall_s, run.explain()
    assert_master_on_loopback(run)


def test_a_master_that_lost_its_port_is_recognised_and_stopped() -> None:
    """The retries depend on recognising a lost port in locust's output. A master with
    --processes that lost it waits about 50 s for its forked workers (they retry a master that
    is not there), unless its group is stopped on that line as here (``finish`` fails the test
    on a hang)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        run = _run_headless(
            "http://127.0.0.1:9", *_master_bind(port), "--master-port", str(port),
            "--processes", "2",
        )  # fmt: skip
    assert _master_port_lost(run) and run.returncode != 0, run.explain()


def test_a_master_port_in_use_is_one_line_and_exit_2() -> None:
    """``--master`` on a port another program holds (a master left running, locust's 5557 taken):
    locust itself stopped with an RPCError traceback and exit 1; the locustfile checks the port
    as it reads the options and says what to do, as for its other bad options."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = subprocess.run(
            _headless("http://127.0.0.1:9", "--master", "--expect-workers", "1",
                      *_master_bind(port)),
            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    assert (
        f"argument --master-bind-port: port {port} on 127.0.0.1 is in use (another locust master,"
        " or another program): stop it, or give this master --master-bind-port N and each worker"
        " --master-port N"
    ) in proc.stderr.splitlines()[-1], proc.stderr


def test_a_leak_under_a_path_prefix_is_caught_through_the_hosts_path(tmp_path: Path) -> None:
    """``-H http://127.0.0.1:PORT/api/``: the probe is requested under the prefix (the trailing
    slash dropped), where a dispatcher mounts the leaking app; a bad prefix is a bad option."""
    from harness.servers import live_server

    proc = subprocess.run(
        _headless("http://127.0.0.1:9/a b"), cwd=ROOT, env=_env(), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "argument -H/--host: a mount's path" in proc.stderr, proc
    with live_server(
        "gunicorn-gthread", app="scenarios.apps.mounted:dispatcher", mount="/api", workers=1,
        threads=8, log_dir=tmp_path,
    ) as srv:  # fmt: skip
        run = run_locust(f"{srv.url}/api/", "--ctx-mode", "gunicorn-gthread")
    assert run.returncode == LEAK_EXIT_CODE, run.explain()
    assert run.summary["leaks"] > 0 and run.summary["errors"] == 0, run.explain()
    assert '"name": "current_user"' in run.output, run.explain()
    # The app's own dict leaked, not Flask's context, and the verdict says so as `ctxbench run`
    # does; it said "N context leaks in M responses: request state crossed between requests".
    said = (
        f"ctxbench: {run.summary['leaks']:,} leaks in {run.summary['leaky_requests']:,} responses:"
        " the app's own state (observe(): current_user) crossed between requests, not the"
        " framework's context; exiting with 3"
    )
    assert said in run.output, run.explain()


#: A request count in locust's final tables: the ``Aggregated`` row's, and the error report's
#: row of ``context leak`` failures.
AGGREGATED = re.compile(r"^\s+Aggregated\s+(\d+)\s", re.MULTILINE)
LEAK_ROW = re.compile(r"^(\d+)\s+GET \S+: context leak\s*$", re.MULTILINE)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_run_stopped_by_a_signal_judges_every_request_locust_counts(
    mutant_server: Any, sig: signal.Signals
) -> None:
    # locust fires its quitting event, where the verdict is decided, before it stops a local
    # run's users (a master stops its workers first, in a listener of its own): the requests
    # in flight then finished after the verdict. Seen under a Ctrl-C: "ctxbench summary
    # {"checked": 3510, ... "leaks": 2858}", then locust's error report of 2870 context leaks;
    # a leak among those would have been in the report and not in the exit status.
    argv = _locust_cmd("--headless", "-u", str(USERS), "-r", str(USERS), "-t", "60s",
                       "-H", mutant_server.url, "--only-summary", "--sleep-ms", "2")  # fmt: skip
    started = time.monotonic()
    with _Locust(argv) as locust:
        deadline = time.monotonic() + 30
        while not any("context leak in the response" in line for line in locust.lines):
            assert locust.proc.poll() is None and time.monotonic() < deadline, locust.lines
            time.sleep(0.05)
        time.sleep(0.5)  # every user busy
        os.killpg(locust.proc.pid, sig)  # a Ctrl-C reaches the whole group, as in a terminal
        run = locust.finish(45, started)
    assert run.returncode == LEAK_EXIT_CODE, run.explain()
    tables = run.output[run.output.index("ctxbench summary") :]
    requests = [int(n) for n in AGGREGATED.findall(tables)]
    leaks = [int(n) for n in LEAK_ROW.findall(tables)]
    assert requests and leaks, run.explain()
    summary = run.summary
    # A SIGINT raises KeyboardInterrupt in whichever greenlet runs: the one request it cuts
    # short may be counted by locust and not checked, or checked and not logged as a failure.
    slack = 1 if sig == signal.SIGINT else 0
    assert abs(summary["checked"] + summary["errors"] - requests[0]) <= slack, run.explain()
    assert abs(summary["leaky_requests"] - leaks[0]) <= slack, run.explain()
    assert summary["leak_failures"] == leaks[0], run.explain()
