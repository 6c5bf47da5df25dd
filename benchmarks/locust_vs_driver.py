"""Locust against the load driver: checked responses per second per load process.

Both check every response with the same verdict (``harness.verdict``); locust's FastHttpUser
runs its users as greenlets with locust's own bookkeeping, the driver one epoll loop. Against
the echo probe (``harness.load.echo``: nginx answering valid probe responses from C, pinned to
core 0, so the server is never the limit), this runs, in turn:

- locust in one process (``--headless``), then a master with N workers (``--processes N``);
- the driver with one process, then N (``LoadSpec(processes=N)``);

and reports each one's checked responses per second, per load process, and per second of CPU
the load processes used (``getrusage`` of the children for locust, the driver's own measure for
the driver). Locust in master/worker mode is the way past one machine (workers on other
machines, ``--master-host``); these figures say how many worker processes it takes to match one
driver process. Needs nginx.

Run: ``python -m benchmarks.locust_vs_driver --out results/bench/locust_vs_driver.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import subprocess
import sys
import time
import typing as t
from pathlib import Path

from harness.cli import LOCUSTFILE
from harness.load import LoadSpec, run_load
from harness.load.echo import echo_probe
from harness.report.text import fmt_rps, fmt_runs
from harness.report.tree import Table, text_table
from harness.results import median, write_atomic

SCHEMA = "ctxbench.bench.locust_vs_driver/1"
SUMMARY = re.compile(r"ctxbench summary (\{.*\})")


def run_locust(url: str, seconds: int, users: int, processes: int) -> dict[str, t.Any]:
    extra = ["--processes", str(processes)] if processes > 1 else []
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
        "-r", str(users), "-t", f"{seconds}s", "-H", url, "--only-summary", "--sleep-ms", "0",
        *extra,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 90, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = SUMMARY.findall(out.stdout + out.stderr)
    if out.returncode != 0 or not found:
        raise RuntimeError(f"locust exited {out.returncode}:\n{(out.stdout + out.stderr)[-3000:]}")
    summary = json.loads(found[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    elapsed = summary.get("elapsed_s") or seconds
    per_worker = summary.get("checked_per_worker") or [summary["checked"]]
    return {
        "client": "locust",
        "processes": processes,
        "checked": summary["checked"],
        "errors": summary["errors"],
        "leaks": summary["leaks"],
        "rps": summary["checked"] / elapsed,
        "rps_per_process": [n / elapsed for n in per_worker],
        # The master's CPU is included (with --processes it runs no users).
        "cpu_s": round(cpu, 3),
        "checked_per_cpu_s": summary["checked"] / cpu if cpu else None,
    }


def run_driver(port: int, seconds: int, users: int, processes: int) -> dict[str, t.Any]:
    started = time.perf_counter()
    result = run_load(
        LoadSpec(port=port, duration=seconds, concurrency=users, processes=processes, mode="echo")
    )
    wall = time.perf_counter() - started
    cpu = sum(result.driver_cpu) * result.elapsed_s
    return {
        "client": "driver",
        "processes": processes,
        "checked": result.requests - result.errors,
        "errors": result.errors,
        "leaks": result.leaks,
        "rps": result.rps,
        "rps_per_process": [result.rps / processes] * processes,
        "cpu_s": round(cpu, 3),
        "checked_per_cpu_s": (result.requests - result.errors) / cpu if cpu else None,
        "driver_cpu": result.driver_cpu,
        "driver_cpu_wait": result.driver_cpu_wait,
        "wall_s": round(wall, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.locust_vs_driver")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--processes", type=int, default=2, help="locust workers, driver shards")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error(f"--processes must be at least 1, got {args.processes}")
    levels = sorted({1, args.processes})  # --processes 1: one process each, measured once
    rows: list[dict[str, t.Any]] = []
    with echo_probe(prefix=("taskset", "-c", "0")) as echo:
        url = f"http://{echo.host}:{echo.port}"
        for round_no in range(args.rounds):
            for client in ("locust", "driver"):
                for procs in levels:
                    if client == "locust":
                        row = run_locust(url, args.seconds, args.users, procs)
                    else:
                        row = run_driver(echo.port, args.seconds, args.users, procs)
                    row["round"] = round_no
                    rows.append(row)
                    print(
                        f"round {round_no + 1} {client} x{procs}: {row['rps']:.0f} checked/s,"
                        f" {row['checked_per_cpu_s'] or 0:.0f} per CPU-s",
                        file=sys.stderr,
                    )
    table = []
    for client in ("locust", "driver"):
        for procs in levels:
            runs = [r for r in rows if r["client"] == client and r["processes"] == procs]
            per_cpu = [r["checked_per_cpu_s"] for r in runs if r["checked_per_cpu_s"]]
            table.append(
                {
                    "client": client,
                    "processes": procs,
                    "rps": median([r["rps"] for r in runs]),
                    "rps_per_process": median([median(r["rps_per_process"]) for r in runs]),
                    "checked_per_cpu_s": median(per_cpu) if per_cpu else None,
                    "rps_runs": [round(r["rps"]) for r in runs],
                }
            )
    doc = {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_at_end": list(os.getloadavg()),
        "settings": vars(args) | {"out": str(args.out)},
        "summary": table,
        "runs": rows,
    }
    write_atomic(args.out, doc)
    headers = ("client", "processes", "checked/s", "per process", "per CPU-s", "runs")
    cells = tuple(
        (
            *(r["client"], str(r["processes"]), fmt_rps(r["rps"]), fmt_rps(r["rps_per_process"])),
            fmt_rps(r["checked_per_cpu_s"]) if r["checked_per_cpu_s"] else "-",
            fmt_runs(r["rps_runs"]),
        )
        for r in table
    )
    print("\n".join(text_table(Table(headers, cells, "lrrrrl"))))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
