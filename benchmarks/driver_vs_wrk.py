"""Calibrate the load driver against wrk: is the driver measuring the server, or itself?

Two kinds of target, each server pinned to core 0 (``taskset -c 0``) and the load generator to
core 1: wrk (``taskset -c 1 wrk -t1 -c16``) and the driver (this process, pinned with
``os.sched_setaffinity``, same concurrency) take turns against the same server, alternating
which goes first, for several rounds.

- Each gunicorn worker class with ONE worker (started by ``harness.servers``, as the runner
  starts it), keepalive pattern: a Python server is slower than the driver, so the driver should
  reach 0.9 of wrk.
- The echo probe (:mod:`harness.load.echo`: one nginx worker answering valid probe responses
  from C), keepalive and fresh: the fastest server there is, so this is the driver's own ceiling.
  Targets: 0.5 of wrk on keepalive, 0.8 on fresh (wrk sends ``Connection: close`` there).

The report is the median throughput of each, their ratio driver/wrk per target, the spread of
the runs, the driver's CPU share (its loop's CPU time over wall time) and its checked responses
per second per core (median rps over median CPU share), wrk's CPU share and rps per core (from
``getrusage`` of the child), the ratio of the two per-core figures (which survives a busy
machine: both clients share core 1 with whatever else runs there, the raw ratio moves with the
neighbours), and the server's CPU share (its process group, from ``/proc``). wrk sends a fixed
token (the probe echoes it back); the driver sends a unique token per request and checks every
response, so its numbers include that work.

Run: ``python -m benchmarks.driver_vs_wrk --out results/bench/driver_vs_wrk.json``.
Needs wrk and taskset on PATH and at least two CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.apps import CORE_APP
from harness.benchdata import DEFAULT_TARGET_RATIO, calibration
from harness.load import LoadSpec, run_load
from harness.load.cpu import ThreadCpu, group_cpu
from harness.load.echo import echo_probe
from harness.protocol import PROBE_PATH
from harness.report.bench import calibration_table
from harness.report.tree import text_table
from harness.results import SPREAD_WARNING, median, package_versions, spread, write_atomic
from harness.servers import ServerConfig, live_server
from harness.servers.nginx import find_nginx

SCHEMA = "ctxbench.bench.driver_vs_wrk/1"
HOST = "127.0.0.1"
SERVER_CORE = 0
CLIENT_CORE = 1
ECHO = "echo-probe"
#: driver/wrk the driver should reach against the echo probe, per connection pattern.
ECHO_TARGETS = {"keepalive": 0.5, "fresh": 0.8}

#: mode name -> its server options (always one worker, pinned to the server core).
_PINNED = ("taskset", "-c", str(SERVER_CORE))
_ONE_WORKER = ServerConfig(workers=1, prefix=_PINNED)
MODES: dict[str, ServerConfig] = {
    "gunicorn-sync": _ONE_WORKER,
    "gunicorn-gthread": _ONE_WORKER.replace(threads=8),
    "gunicorn-gevent": _ONE_WORKER.replace(worker_connections=1000),
}
TARGETS = (*MODES, ECHO)


@dataclass(frozen=True)
class Server:
    """A pinned server under calibration: its port, the command that ran, its process group."""

    port: int
    command: list[str]
    pgid: int


@contextlib.contextmanager
def pinned_server(target: str, app: str, log_dir: Path) -> Iterator[Server]:
    """Start ``target`` (a gunicorn mode with one worker, or the echo probe) on the server core."""
    if target == ECHO:
        with echo_probe(prefix=_PINNED) as echo:
            yield Server(echo.port, list(echo.argv), echo.pid)
        return
    with live_server(target, MODES[target].replace(app=app), log_dir=log_dir) as server:
        yield Server(server.port, list(server.effective["argv"]), server.pid)


_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: (.*)")


def run_wrk(
    server: Server, duration: float, concurrency: int, connections: str = "keepalive"
) -> dict[str, t.Any]:
    url = f"http://{HOST}:{server.port}{PROBE_PATH}?token=wrk&sleep_ms=0"
    close = ["-H", "Connection: close"] if connections == "fresh" else []
    command = [
        "taskset", "-c", str(CLIENT_CORE), "wrk", "-t1", f"-c{concurrency}",
        f"-d{duration:g}s", *close, url,
    ]  # fmt: skip
    server_cpu = group_cpu(server.pgid)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 60)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - children.ru_utime + after.ru_stime - children.ru_stime) / wall
    match = _RPS.search(out.stdout)
    if match is None:
        raise RuntimeError(f"Could not read Requests/sec from wrk's output:\n{out.stdout}")
    non_2xx = _NON_2XX.search(out.stdout)
    socket_errors = _SOCKET_ERRORS.search(out.stdout)
    return {
        "rps": float(match.group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else None,
        "wrk_cpu": round(wrk_cpu, 3),
        **_server_shares(server_cpu, group_cpu(server.pgid), wall),
    }


def run_driver(
    server: Server, duration: float, concurrency: int, mode: str, connections: str = "keepalive"
) -> dict[str, t.Any]:
    server_cpu = group_cpu(server.pgid)
    started = time.perf_counter()
    result = run_load(
        LoadSpec(
            host=HOST,
            port=server.port,
            concurrency=concurrency,
            duration=duration,
            connections=connections,
            sleep_ms=0.0,
            mode=mode,
        )
    )
    wall = time.perf_counter() - started
    return {
        "rps": result.rps,
        "requests": result.requests,
        "errors": result.errors,
        "error_kinds": result.error_kinds,
        "leaks": result.leaks,
        "reconnects": result.reconnects,
        "driver_cpu": result.driver_cpu[0],
        "driver_cpu_wait": result.driver_cpu_wait[0] if result.driver_cpu_wait else None,
        "driver_bound": result.driver_bound,
        **_server_shares(server_cpu, group_cpu(server.pgid), wall),
    }


def _server_shares(
    before: ThreadCpu | None, after: ThreadCpu | None, wall: float
) -> dict[str, float | None]:
    """The server's CPU share and its share waiting for a CPU over one client run."""
    if before is None or after is None or wall <= 0:
        return {"server_cpu": None, "server_cpu_wait": None}
    used = after - before
    return {
        "server_cpu": round(used.on_cpu / wall, 3),
        "server_cpu_wait": round(used.waiting / wall, 3) if used.known_wait else None,
    }


def _median_of(runs: list[dict[str, t.Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return median(values) if values else None


def _versions() -> dict[str, str | None]:
    rv = package_versions(("werkzeug", "gunicorn", "gevent", "greenlet", "flask"))
    for tool, flag in (("wrk", "-v"), ("nginx", "-v")):
        path = find_nginx() if tool == "nginx" else tool
        try:
            out = subprocess.run([path or tool, flag], capture_output=True, text=True, timeout=10)
            rv[tool] = (out.stdout + out.stderr).split("\n", 1)[0].strip() or None
        except OSError:
            rv[tool] = None
    return rv


def _machine() -> dict[str, t.Any]:
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
    }


def _check_prerequisites(targets: list[str]) -> None:
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if ECHO in targets and find_nginx() is None:
        missing.append("nginx")
    if missing:
        raise SystemExit(
            f"driver_vs_wrk needs {', '.join(missing)} on PATH.\n\n"
            "Install them (Debian/Ubuntu: apt-get install -y wrk util-linux nginx-light) and run"
            f" again, or leave {ECHO} out of --modes."
        )
    cores = os.sched_getaffinity(0)
    if not {SERVER_CORE, CLIENT_CORE} <= cores:
        raise SystemExit(
            f"driver_vs_wrk pins the server to core {SERVER_CORE} and the client to core"
            f" {CLIENT_CORE}, but this process may only use cores {sorted(cores)}."
        )


def measure(
    target: str, connections: str, server: Server, args: argparse.Namespace
) -> dict[str, t.Any]:
    """Alternate wrk and the driver against ``server`` for ``args.rounds`` rounds."""
    wrk_runs: list[dict[str, t.Any]] = []
    driver_runs: list[dict[str, t.Any]] = []
    # Warm up both clients (imports, caches, the server's first requests).
    run_wrk(server, 1.0, args.concurrency, connections)
    run_driver(server, 1.0, args.concurrency, target, connections)
    for round_no in range(args.rounds):
        order = ("wrk", "driver") if round_no % 2 == 0 else ("driver", "wrk")
        for client in order:
            if client == "wrk":
                wrk_runs.append(run_wrk(server, args.duration, args.concurrency, connections))
                run = wrk_runs[-1]
            else:
                driver_runs.append(
                    run_driver(server, args.duration, args.concurrency, target, connections)
                )
                run = driver_runs[-1]
            cpu = (
                f", driver CPU {run['driver_cpu']:.2f} (+{run['driver_cpu_wait'] or 0:.2f} waiting)"
                if "driver_cpu" in run
                else f", wrk CPU {run['wrk_cpu']:.2f}"
            )
            print(
                f"  {target} {connections} round {round_no + 1} {client}:"
                f" {run['rps']:.0f} rps{cpu}, server CPU {run['server_cpu']}",
                file=sys.stderr,
            )
    wrk_rps = [r["rps"] for r in wrk_runs]
    driver_rps = [r["rps"] for r in driver_runs]
    wrk_median = median(wrk_rps)
    driver_median = median(driver_rps)
    ratio = driver_median / wrk_median if wrk_median else 0.0
    target_ratio = ECHO_TARGETS[connections] if target == ECHO else DEFAULT_TARGET_RATIO
    driver_cpu = _median_of(driver_runs, "driver_cpu")
    wrk_cpu = _median_of(wrk_runs, "wrk_cpu")
    per_core = driver_median / driver_cpu if driver_cpu else None
    wrk_per_core = wrk_median / wrk_cpu if wrk_cpu else None
    worst = max(spread(wrk_rps), spread(driver_rps))
    return {
        "mode": target if connections == "keepalive" else f"{target} ({connections})",
        "target": target,
        "connections": connections,
        "server_command": server.command,
        "wrk_rps": wrk_median,
        "driver_rps": driver_median,
        "ratio": ratio,
        "target_ratio": target_ratio,
        "meets_target": ratio >= target_ratio,
        "driver_cpu": driver_cpu,
        "driver_rps_per_core": per_core,
        "wrk_cpu": wrk_cpu,
        "wrk_rps_per_core": wrk_per_core,
        "ratio_per_core": per_core / wrk_per_core if per_core and wrk_per_core else None,
        "driver_bound_runs": sum(bool(r["driver_bound"]) for r in driver_runs),
        "server_cpu_wrk": _median_of(wrk_runs, "server_cpu"),
        "server_cpu_driver": _median_of(driver_runs, "server_cpu"),
        "wrk_runs": wrk_runs,
        "driver_runs": driver_runs,
        "wrk_spread": spread(wrk_rps),
        "driver_spread": spread(driver_rps),
        "spread_warning": worst > SPREAD_WARNING,
        "driver_errors": sum(r["errors"] for r in driver_runs),
        "driver_leaks": sum(r["leaks"] for r in driver_runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.driver_vs_wrk", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--app", default=CORE_APP)
    parser.add_argument("--modes", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument(
        "--echo-connections",
        nargs="+",
        default=list(ECHO_TARGETS),
        choices=list(ECHO_TARGETS),
        help=f"connection patterns measured against {ECHO} (default: both)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.concurrency < 1:
        parser.error("--rounds, --duration and --concurrency must be positive")
    if args.duration != int(args.duration):
        parser.error(f"--duration {args.duration:g}: wrk takes whole seconds; use 1, 2, ...")
    _check_prerequisites(args.modes)
    os.sched_setaffinity(0, {CLIENT_CORE})

    machine = _machine()
    entries = []
    with tempfile.TemporaryDirectory(prefix="ctxbench-bench-") as tmp:
        for target in args.modes:
            patterns = args.echo_connections if target == ECHO else ["keepalive"]
            with pinned_server(target, args.app, Path(tmp)) as server:
                for connections in patterns:
                    print(
                        f"{target} {connections}: {args.rounds} rounds of {args.duration:g} s",
                        file=sys.stderr,
                    )
                    entries.append(measure(target, connections, server, args))
    doc = {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": [sys.executable, "-m", "benchmarks.driver_vs_wrk", *sys.argv[1:]],
        "machine": machine,
        "python": platform.python_version(),
        "packages": _versions(),
        "settings": {
            "app": args.app,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "workers": 1,
            "server_core": SERVER_CORE,
            "client_core": CLIENT_CORE,
            "driver_connections": "keepalive",
            "target_ratio": DEFAULT_TARGET_RATIO,
            "echo_target_ratios": ECHO_TARGETS,
        },
        "entries": entries,
    }
    write_atomic(args.out, doc)
    print("\n".join(text_table(calibration_table(calibration(doc).rows))))
    print(f"\nwritten to {args.out}")
    if any(e["spread_warning"] for e in entries):
        print(
            f"\nwarning: runs spread by more than {SPREAD_WARNING:.0%}; the machine is busy."
            " Stop other load, use more --rounds or a longer --duration.",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
