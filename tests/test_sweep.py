"""A concurrency sweep and the driver-bound flag through settings, runner, results and reports.

The runner runs against a fake server and a fake load function (the live versions are in
tests/test_driver_bound.py and the live CLI test at the bottom, short enough for CI).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import results
from harness.cli import _settings_from_args as settings_from_args
from harness.cli import build_parser
from harness.errors import UsageError
from harness.load import LoadResult
from harness.load.cpu import DRIVER_BOUND_ADVICE
from harness.report import format_summary, write_reports
from harness.results import Cell, Measurement, Run
from harness.runner import StatusLine, run_matrix
from harness.servers import ServerConfig
from harness.settings import RunSettings
from tests.test_runner import FakeServer


class SweepWorld:
    """Fake servers; the load answers at 1,000 rps per user, saturating its driver at 32 users,
    and the 8-user level of gunicorn-gthread leaks (leaks are checked at every level)."""

    def __init__(self) -> None:
        self.specs: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def server(self, mode: str, cfg: ServerConfig, *, log_dir: Path) -> Iterator[FakeServer]:
        yield FakeServer.of(mode, log_dir)

    def spec(self, settings: RunSettings, srv: Any, connections: str, *, warmup: bool) -> Any:
        processes = settings.processes_at(settings.concurrency)
        return {"mode": srv.mode, "users": settings.concurrency, "processes": processes}

    def load(self, spec: dict[str, Any], progress: Any) -> LoadResult:
        self.specs.append(spec)
        users, processes = spec["users"], spec["processes"]
        leaks = 2 if (spec["mode"], users) == ("gunicorn-gthread", 8) else 0
        return LoadResult(
            requests=10 * users,
            leaks=leaks,
            leaky_requests=min(leaks, 1),
            latencies_ms=[1.0 * users] * (10 * users),
            elapsed_s=1.0,
            rps=1000.0 * users,
            units=[(1, 2, None)],
            driver_cpu=[0.97 if users >= 32 else 0.1] * processes,
            driver_cpu_wait=[0.0] * processes,
        )


def sweep_run(tmp_path: Path, **kw: Any) -> tuple[Run, SweepWorld]:
    world = SweepWorld()
    settings = RunSettings(
        modes=("gunicorn-sync", "gunicorn-gthread"),
        connections=("keepalive",),
        concurrency=1,
        concurrency_levels=(1, 8, 32),
        repeats=1,
        warmup=0,
        duration=0.1,
        **kw,
    )
    run = run_matrix(settings, tmp_path / "run", load=world.load, spec=world.spec,
                     server=world.server, status=StatusLine(enabled=False))  # fmt: skip
    return run, world


def test_every_mode_is_measured_and_checked_at_every_level(tmp_path: Path) -> None:
    run, world = sweep_run(tmp_path)
    assert [(c.mode, c.concurrency) for c in run.cells] == [
        ("gunicorn-sync", 1), ("gunicorn-sync", 8), ("gunicorn-sync", 32),
        ("gunicorn-gthread", 1), ("gunicorn-gthread", 8), ("gunicorn-gthread", 32),
    ]  # fmt: skip
    assert [s["users"] for s in world.specs] == [1, 8, 32] * 2
    assert [c.leaks for c in run.cells] == [0, 0, 0, 0, 2, 0]
    assert [c.driver_bound for c in run.cells] == [False, False, True] * 2
    assert run.settings.concurrency_levels == (1, 8, 32)
    assert results.load(tmp_path / "run") == run  # the new fields survive the JSON


def test_driver_processes_are_capped_by_the_users_and_recorded(tmp_path: Path) -> None:
    run, world = sweep_run(tmp_path, driver_processes=4)
    assert [s["processes"] for s in world.specs[:3]] == [1, 4, 4]
    assert [c.driver_processes for c in run.cells[:3]] == [1, 4, 4]
    assert [len(c.runs[0].driver_cpu) for c in run.cells[:3]] == [1, 4, 4]


def test_terminal_summary_marks_driver_bound_cells(tmp_path: Path) -> None:
    run, _ = sweep_run(tmp_path)
    text = format_summary(run)
    header = text.splitlines()[0].split()
    assert "users" in header
    bound = [line for line in text.splitlines() if "32,000*" in line]
    assert len(bound) == 2 and all(" 32 " in line for line in bound)
    assert f"* driver-bound: {DRIVER_BOUND_ADVICE}" in text
    # Text columns left, figures right: the server column started where its header does, and the
    # users column ended where its header does (a sweep shifted the alignment by one column).
    lines = text.splitlines()
    server, users = lines[0].index("server"), lines[0].index("users") + len("users")
    assert all(
        line[server:].startswith(cell.server.summary)
        for line, cell in zip(lines[2:], run.cells, strict=False)
    ), text
    assert all(
        line[:users].endswith(f" {cell.concurrency}")
        for line, cell in zip(lines[2:], run.cells, strict=False)
    ), text


def test_report_draws_the_sweep_and_marks_driver_bound_cells(tmp_path: Path) -> None:
    run, _ = sweep_run(tmp_path)
    write_reports(tmp_path / "run", run)
    md = (tmp_path / "run" / "report.md").read_text()
    assert "## Concurrency sweep" in md
    assert (
        "![Throughput vs concurrency, requests/s (keepalive)](sweep-throughput-keepalive.svg)" in md
    )
    assert "| gunicorn-gthread | 1,000 rps / 1.00 ms | 8,000 rps / 8.00 ms LEAK | 32,000 rps" in md
    assert "**Driver-bound:** gunicorn-gthread keepalive @32, gunicorn-sync keepalive @32" in md
    row = "| gunicorn-sync | keepalive | 32 | 1 | 32,000 | 0.97 | 0.97 | - | - | DRIVER-BOUND |"
    assert row in md
    svg = (tmp_path / "run" / "sweep-throughput-keepalive.svg").read_text()
    assert svg.count("<polyline") == 2  # one line per mode
    assert svg.count('fill="#fff" stroke=') == 2  # the driver-bound points are hollow
    assert "#c0392b" in svg  # the leaky point is red
    again = tmp_path / "again"
    again.mkdir()
    (again / "results.json").write_text((tmp_path / "run" / "results.json").read_text())
    write_reports(again, results.load(again))
    assert (again / "sweep-throughput-keepalive.svg").read_text() == svg  # deterministic


def test_the_sweep_table_says_where_users_were_starved(tmp_path: Path) -> None:
    import dataclasses

    run, _ = sweep_run(tmp_path)
    cells = list(run.cells)
    last = cells[-1]  # gunicorn-sync at 32 users
    cells[-1] = dataclasses.replace(
        last, runs=tuple(dataclasses.replace(r, starved=30) for r in last.runs)
    )
    write_reports(tmp_path / "run", run.replace(cells=tuple(cells)))
    md = (tmp_path / "run" / "report.md").read_text()
    assert "32,000 rps / 32.0 ms \\* 30 starved |" in md  # the * marks the starved level
    assert md.count(" starved |") == 1


def test_the_sweep_table_marks_a_level_that_waited_on_delayed_acks(tmp_path: Path) -> None:
    import dataclasses

    from harness.load.acks import AckCounts

    run, _ = sweep_run(tmp_path)
    cells = list(run.cells)
    acked = AckCounts(first=32, first_stalled=0, reused=900, stalled=880)
    last = cells[-1]
    cells[-1] = dataclasses.replace(
        last, runs=tuple(dataclasses.replace(r, acks=acked) for r in last.runs)
    )
    write_reports(tmp_path / "run", run.replace(cells=tuple(cells)))
    md = (tmp_path / "run" / "report.md").read_text()
    assert "32,000 rps / 32.0 ms \\* \\~ |" in md, md
    assert md.count(" \\~ |") == 1


def test_a_run_without_a_sweep_has_no_sweep_section(tmp_path: Path) -> None:
    run, _ = sweep_run(tmp_path)
    one = run.replace(cells=tuple(c for c in run.cells if c.concurrency == 1))
    write_reports(tmp_path / "run", one)
    md = (tmp_path / "run" / "report.md").read_text()
    assert "Concurrency sweep" not in md and "Driver-bound" not in md
    assert "| users |" not in format_summary(one)


def test_a_sweep_of_broken_backends_alone_has_no_empty_sweep_section(tmp_path: Path) -> None:
    # --backend no-reset,thread-ident --concurrency 2,8: the report had a "Concurrency sweep"
    # heading and its note ("Each mode measured at 2, 8 virtual users (the main app, `core`, on
    # the correct contextvar storage)"), which did not run, and no chart or table under them.
    import dataclasses

    run, _ = sweep_run(tmp_path)
    broken = run.replace(cells=tuple(dataclasses.replace(c, backend="no-reset") for c in run.cells))
    write_reports(tmp_path / "run", broken)
    md = (tmp_path / "run" / "report.md").read_text()
    assert "Concurrency sweep" not in md and "sweep-" not in md
    assert not list((tmp_path / "run").glob("sweep-*.svg"))
    # beside the correct storage, the sweep charts that storage's cells, as before
    both = run.replace(cells=(*run.cells, *broken.cells))
    write_reports(tmp_path / "run", both)
    md = (tmp_path / "run" / "report.md").read_text()
    assert "| gunicorn-gthread | 1,000 rps / 1.00 ms | 8,000 rps / 8.00 ms LEAK | 32,000 rps" in md


def test_documents_without_a_cell_concurrency_read_it_from_the_settings(tmp_path: Path) -> None:
    run, _ = sweep_run(tmp_path)
    doc = run.to_json()
    doc["settings"]["concurrency"] = 24
    for cell in doc["cells"]:
        del cell["concurrency"]
        del cell["driver_processes"]
        for m in cell["runs"]:
            for key in ("driver_cpu", "driver_cpu_wait", "server_cpu", "server_cpu_wait"):
                del m[key]
    old = Run.from_json(doc)
    assert {c.concurrency for c in old.cells} == {24}
    assert not any(c.driver_bound for c in old.cells)
    assert {c.driver_load for c in old.cells} == {None}


def test_measurement_driver_load_takes_the_busiest_process() -> None:
    m = Measurement(rps=1.0, driver_cpu=(0.5, 0.8), driver_cpu_wait=(0.3, 0.15))
    assert m.driver_load == pytest.approx(0.95) and m.driver_bound
    assert Measurement(rps=1.0, driver_cpu=(0.85,)).driver_load == 0.85  # no wait recorded
    cell = Cell("a", "b", "m", "keepalive", 1, 0, 0, runs=(m, Measurement(rps=2.0)))
    assert cell.driver_bound and cell.driver_load == pytest.approx(0.95)


@pytest.mark.parametrize(
    ("argv", "levels", "concurrency", "processes"),
    [
        ([], (), 16, 1),
        (["--concurrency", "64"], (), 64, 1),
        (["--concurrency", "1,8,32,128,512"], (1, 8, 32, 128, 512), 1, 1),
        (["--driver-processes", "auto"], (), 16, None),
        (["--driver-processes", "3"], (), 16, 3),
    ],
)
def test_cli_options(argv: list[str], levels: tuple[int, ...], concurrency: int,
                     processes: int | None) -> None:  # fmt: skip
    args = build_parser().parse_args(["run", "--modes", "gunicorn-sync", *argv])
    settings = settings_from_args(args)
    assert settings.concurrency_levels == levels
    assert settings.concurrency == concurrency
    assert settings.driver_processes == processes
    assert settings.levels == (levels or (concurrency,))


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--concurrency", "8,x"], "bad --concurrency '8,x'"),
        (["--concurrency", "8,8"], "lists a level twice"),
        (["--concurrency", "0,8"], "bad --concurrency 0"),
        (["--concurrency", "1,99999"], "bad --concurrency 99999"),
        (["--driver-processes", "many"], "bad --driver-processes 'many'"),
        (["--driver-processes", "0"], "bad --driver-processes 0"),
    ],
)
def test_bad_cli_options_are_refused(argv: list[str], match: str) -> None:
    args = build_parser().parse_args(["run", "--modes", "gunicorn-sync", *argv])
    with pytest.raises(UsageError, match=match):
        settings_from_args(args)


@pytest.mark.live
def test_cli_sweep_with_two_driver_processes(tmp_path: Path) -> None:
    """The README's command, short: a sweep, two driver processes, a real gunicorn."""
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--modes", "gunicorn-gthread",
         "--connections", "keepalive", "--concurrency", "2,8", "--driver-processes", "2",
         "--duration", "0.3", "--repeats", "1", "--warmup", "0", "--run-dir", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "r" / "results.json").read_text())
    cells = doc["cells"]
    assert [(c["concurrency"], c["driver_processes"]) for c in cells] == [(2, 2), (8, 2)]
    assert all(len(c["runs"][0]["driver_cpu"]) == 2 for c in cells)
    assert all(c["runs"][0]["server_cpu"] is not None for c in cells)
    assert all(c["runs"][0]["others_cpu"] is not None for c in cells)
    assert all(c["leaks"] == 0 and c["errors"] == 0 for c in cells)
    assert (tmp_path / "r" / "sweep-throughput-keepalive.svg").exists()
    assert "users" in proc.stdout
