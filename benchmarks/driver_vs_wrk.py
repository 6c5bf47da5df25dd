"""Calibrate the load driver against wrk: is the driver measuring the server, or itself?

For each gunicorn worker class with ONE worker, the server (started by ``harness.servers``, as
the runner starts it) is pinned to core 0 (``taskset -c 0``) and the load generator to core 1:
wrk (``taskset -c 1 wrk -t1 -c16``) and the driver (this process, pinned with
``os.sched_setaffinity``, keepalive pattern, same concurrency) take turns against the same
server, alternating which goes first, for several rounds. The report is the median throughput
of each, their ratio driver/wrk per mode (the driver should reach 0.9), and the spread of the
runs. wrk sends a fixed token (the probe echoes it back); the driver sends a unique token per
request and checks every response, so its numbers include that work.

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
import shutil
import subprocess
import sys
import tempfile
import typing as t
from collections.abc import Iterator
from pathlib import Path

from harness.apps import CORE_APP
from harness.load import LoadSpec, run_load
from harness.protocol import PROBE_PATH
from harness.report.bench import calibration_rows, calibration_table
from harness.report.tree import text_table
from harness.results import SPREAD_WARNING, median, package_versions, spread, write_atomic
from harness.servers import ServerConfig, live_server

SCHEMA = "ctxbench.bench.driver_vs_wrk/1"
HOST = "127.0.0.1"
SERVER_CORE = 0
CLIENT_CORE = 1
TARGET_RATIO = 0.9

#: mode name -> its server options (always one worker, pinned to the server core).
_ONE_WORKER = ServerConfig(workers=1, prefix=("taskset", "-c", str(SERVER_CORE)))
MODES: dict[str, ServerConfig] = {
    "gunicorn-sync": _ONE_WORKER,
    "gunicorn-gthread": _ONE_WORKER.replace(threads=8),
    "gunicorn-gevent": _ONE_WORKER.replace(worker_connections=1000),
}


@contextlib.contextmanager
def gunicorn(mode: str, app: str, log_dir: Path) -> Iterator[tuple[int, list[str]]]:
    """Start one gunicorn worker pinned to the server core; yield ``(port, command)``."""
    with live_server(mode, MODES[mode].replace(app=app), log_dir=log_dir) as server:
        yield server.port, list(server.effective["argv"])


_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: (.*)")


def run_wrk(port: int, duration: float, concurrency: int) -> dict[str, t.Any]:
    url = f"http://{HOST}:{port}{PROBE_PATH}?token=wrk&sleep_ms=0"
    command = [
        "taskset", "-c", str(CLIENT_CORE), "wrk", "-t1", f"-c{concurrency}",
        f"-d{duration:g}s", url,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 60)
    match = _RPS.search(out.stdout)
    if match is None:
        raise RuntimeError(f"Could not read Requests/sec from wrk's output:\n{out.stdout}")
    non_2xx = _NON_2XX.search(out.stdout)
    socket_errors = _SOCKET_ERRORS.search(out.stdout)
    return {
        "rps": float(match.group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else None,
    }


def run_driver(port: int, duration: float, concurrency: int, mode: str) -> dict[str, t.Any]:
    result = run_load(
        LoadSpec(
            host=HOST,
            port=port,
            concurrency=concurrency,
            duration=duration,
            connections="keepalive",
            sleep_ms=0.0,
            mode=mode,
        )
    )
    return {
        "rps": result.rps,
        "requests": result.requests,
        "errors": result.errors,
        "error_kinds": result.error_kinds,
        "leaks": result.leaks,
        "reconnects": result.reconnects,
    }


def _versions() -> dict[str, str | None]:
    rv = package_versions(("werkzeug", "gunicorn", "gevent", "greenlet", "flask"))
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        rv["wrk"] = (out.stdout + out.stderr).split("\n", 1)[0].strip() or None
    except OSError:
        rv["wrk"] = None
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


def _check_prerequisites() -> None:
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"driver_vs_wrk needs {', '.join(missing)} on PATH.\n\n"
            "Install them (Debian/Ubuntu: apt-get install -y wrk util-linux) and run again."
        )
    cores = os.sched_getaffinity(0)
    if not {SERVER_CORE, CLIENT_CORE} <= cores:
        raise SystemExit(
            f"driver_vs_wrk pins the server to core {SERVER_CORE} and the client to core"
            f" {CLIENT_CORE}, but this process may only use cores {sorted(cores)}."
        )


def measure_mode(mode: str, args: argparse.Namespace, log_dir: Path) -> dict[str, t.Any]:
    wrk_runs: list[dict[str, t.Any]] = []
    driver_runs: list[dict[str, t.Any]] = []
    with gunicorn(mode, args.app, log_dir) as (port, command):
        # Warm up both clients (imports, caches, the server's first requests).
        run_wrk(port, 1.0, args.concurrency)
        run_driver(port, 1.0, args.concurrency, mode)
        for round_no in range(args.rounds):
            order = ("wrk", "driver") if round_no % 2 == 0 else ("driver", "wrk")
            for client in order:
                if client == "wrk":
                    wrk_runs.append(run_wrk(port, args.duration, args.concurrency))
                else:
                    driver_runs.append(run_driver(port, args.duration, args.concurrency, mode))
                print(
                    f"  {mode} round {round_no + 1} {client}:"
                    f" {(wrk_runs if client == 'wrk' else driver_runs)[-1]['rps']:.0f} rps",
                    file=sys.stderr,
                )
    wrk_rps = [r["rps"] for r in wrk_runs]
    driver_rps = [r["rps"] for r in driver_runs]
    wrk_median = median(wrk_rps)
    driver_median = median(driver_rps)
    ratio = driver_median / wrk_median if wrk_median else 0.0
    return {
        "mode": mode,
        "server_command": command,
        "wrk_rps": wrk_median,
        "driver_rps": driver_median,
        "ratio": ratio,
        "meets_target": ratio >= TARGET_RATIO,
        "wrk_runs": wrk_runs,
        "driver_runs": driver_runs,
        "wrk_spread": spread(wrk_rps),
        "driver_spread": spread(driver_rps),
        "spread_warning": max(spread(wrk_rps), spread(driver_rps)) > SPREAD_WARNING,
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
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.concurrency < 1:
        parser.error("--rounds, --duration and --concurrency must be positive")
    _check_prerequisites()
    os.sched_setaffinity(0, {CLIENT_CORE})

    machine = _machine()
    entries = []
    with tempfile.TemporaryDirectory(prefix="ctxbench-bench-") as tmp:
        for mode in args.modes:
            print(f"{mode}: {args.rounds} rounds of {args.duration:g} s each", file=sys.stderr)
            entries.append(measure_mode(mode, args, Path(tmp)))
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
            "target_ratio": TARGET_RATIO,
        },
        "entries": entries,
    }
    write_atomic(args.out, doc)
    print("\n".join(text_table(calibration_table(doc, calibration_rows(doc)))))
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
