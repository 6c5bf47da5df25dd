"""nginx in front of a mode: started from a generated config in the run folder, and never left.

Where leaks show behind nginx is covered by the matrix, the Flask scenarios and the mutants
(``test_matrix.py``, ``test_flask.py``, ``test_mutants.py`` run nginx and nginx-keepalive in front
of gunicorn-gevent). This module runs both in front of gunicorn's gthread pool with the correct
core, and checks the stack itself: the configuration nginx ran (pid file and every temp path inside
its folder, the upstream keep-alive settings), what the effective configuration records, and that
no nginx or server process outlives a stop, Ctrl-C, or ``kill -9`` of the process that started
them (nginx's workers outlive a killed master: the guard must take them down).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import typing as t
from pathlib import Path

import pytest

from harness.apps import CORE_APP
from harness.load import LoadSpec, run_load
from harness.servers import group_members

STACKS = [
    pytest.param("nginx+gunicorn-gthread", 0, "1.0", id="nginx"),
    pytest.param("nginx-keepalive+gunicorn-gthread", 16, "1.1", id="nginx-keepalive"),
]


def assert_gone(pgids: t.Iterable[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    left = {pgid: group_members(pgid) for pgid in pgids}
    while any(left.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {pgid: group_members(pgid) for pgid in left}
    assert not any(left.values()), f"processes survived: {left}"


@pytest.mark.live
@pytest.mark.parametrize(("mode", "keepalive", "http_version"), STACKS)
def test_stack_runs_from_its_folder_and_records_the_proxy(
    mode: str, keepalive: int, http_version: str, live_server: t.Any
) -> None:
    server = live_server(mode, app=CORE_APP, workers=1)
    eff = server.effective
    proxy = eff["proxy"]
    assert eff["mode"] == mode
    assert eff["worker_class"] == "gthread" and eff["storage"] == "contextvar", eff
    assert proxy["proxy"] == mode.split("+")[0]
    assert proxy["server"] == "nginx" and re.fullmatch(r"\d+\.\d+\.\d+", proxy["server_version"])
    assert proxy["upstream_keepalive"] == keepalive
    assert proxy["proxy_http_version"] == http_version
    assert proxy["worker_processes"] == len(proxy["worker_pids"]) == 1
    if os.geteuid() == 0:
        assert proxy["worker_user"] == "nobody", proxy
    upstream_port = int(proxy["upstream"].rsplit(":", 1)[1])
    assert upstream_port == eff["port"] != server.port

    # The generated configuration: foreground, pid and every temp path inside the folder.
    config = Path(proxy["config"])
    prefix = config.parent
    assert prefix.parent.name == mode  # <log_dir>/<mode>/nginx/nginx.conf
    text = config.read_text()
    assert "daemon off;" in text
    paths = re.findall(r'^\s*(?:pid|\w+_temp_path)\s+"([^"]+)";', text, re.MULTILINE)
    assert len(paths) == 6, text
    assert all(Path(p).parent == prefix for p in paths), paths
    assert (prefix / "nginx.pid").read_text().strip() == str(proxy["nginx_master_pid"])
    assert prefix.stat().st_mode & 0o005 == 0o005  # nobody can read and search it
    assert (f"keepalive {keepalive};" in text) == bool(keepalive)

    # Requests pass through nginx: the worker pids that answer are the upstream's.
    result = run_load(
        LoadSpec(host=server.host, port=server.port, concurrency=4, requests=40, duration=10,
                 connections="fresh", sleep_ms=0, mode=mode)
    )  # fmt: skip
    assert result.requests == 40 and result.errors == 0 and result.leaks == 0
    assert {pid for pid, _, _ in result.units} <= set(eff["worker_pids"])

    groups = server.process_groups()
    assert len(groups) == 2 and all(group_members(g) for g in groups)
    server.stop()
    assert_gone(groups)
    assert not (prefix / "nginx.pid").exists()  # a graceful SIGQUIT exit removes it


@pytest.mark.live
def test_stack_dies_with_the_harness(tmp_path: Path, require_mode: t.Any) -> None:
    """SIGKILL the process that started nginx and its upstream: both process groups die."""
    mode = "nginx-keepalive+gunicorn-sync"
    require_mode(mode)
    script = textwrap.dedent(
        f"""
        import time
        from harness.servers import start_server
        srv = start_server({mode!r}, app={CORE_APP!r}, workers=1, log_dir={str(tmp_path)!r})
        print(*srv.process_groups(), *srv.effective["proxy"]["worker_pids"], flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        proxy_group, upstream_group, nginx_worker = map(int, parent.stdout.readline().split())
        assert nginx_worker in group_members(proxy_group)
        assert group_members(upstream_group)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    assert_gone([proxy_group, upstream_group])


@pytest.mark.live
def test_serve_behind_nginx_stops_on_ctrl_c(require_mode: t.Any) -> None:
    mode = "nginx+gunicorn-sync"
    require_mode(mode)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "serve", "--mode", "gunicorn-sync",
         "--proxy", "nginx", "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"{mode} serving" in first, first + (proc.stderr.read() if proc.stderr else "")
        details = proc.stdout.readline()
        proxy_group = int(details.split("pid=")[1].split()[0])
        upstream_group = os.getpgid(int(details.split("pids=[")[1].split("]")[0]))
        assert group_members(proxy_group) and group_members(upstream_group)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err  # as gunicorn's: a signal is how a server is stopped
    assert "Traceback" not in err
    assert_gone([proxy_group, upstream_group, proc.pid])
