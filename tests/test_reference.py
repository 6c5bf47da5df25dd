"""results/reference/: the committed reference run is valid, complete, leak-free and regenerated.

The reports and charts in that folder must be exactly what the renderer makes today from the
committed JSON: nobody edits them by hand, and a renderer change fails here until the reference
is regenerated (``make reference``, or ``ctxbench report results/reference`` when only the
rendering changed). Also the ``ctxbench run --run-dir`` option that writes it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness import results
from harness.benchdata import read_benchmarks
from harness.cli import main
from harness.report import render_run_dir
from harness.results import Run

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "results" / "reference"
README = ROOT / "README.md"
SUMMARY_START = "<!-- reference-summary:start -->"
SUMMARY_END = "<!-- reference-summary:end -->"


@pytest.fixture(scope="module")
def doc() -> Run:
    return results.load(REFERENCE)  # checks it against its schema


def test_reference_round_trips_through_the_model(doc: Run) -> None:
    assert Run.from_json(doc.to_json()) == doc


def test_reference_is_a_complete_run_of_core_and_flask(doc: Run) -> None:
    assert doc.status == "complete"
    assert doc.run_id == "reference"
    assert {c.app_label for c in doc.cells} == {"core", "flask"}
    assert {c.connections for c in doc.cells} == {"keepalive", "fresh"}
    modes = set(doc.settings.modes)
    assert {"gunicorn-sync", "gunicorn-gthread", "gunicorn-gevent"} <= modes
    # every mode on both patterns, but for a pattern a mode cannot serve (recorded, not a cell)
    skipped = {(n.mode, n.connections) for n in doc.not_measured}
    pairs = {(m, p) for m in modes for p in ("keepalive", "fresh")} - skipped
    assert {(c.mode, c.connections) for c in doc.cells} == pairs
    assert len(doc.cells) == 2 * len(pairs)
    # each mode's cells (core and Flask, each pattern it serves) were measured back to back
    order = [c.mode for c in doc.cells]
    runs = [m for i, m in enumerate(order) if i == 0 or order[i - 1] != m]
    assert len(runs) == len(set(runs)), order
    assert all(order.count(m) == 2 * sum(p[0] == m for p in pairs) for m in modes)
    assert doc.settings.repeats >= 5, "the reference repeats more than the default run"
    assert doc.machine.cpu_count == 2


def test_reference_shows_no_leak_for_the_correct_backend(doc: Run) -> None:
    correct = [c for c in doc.cells if c.backend == "contextvar"]
    assert correct
    leaking = [(c.mode, c.app_label, c.connections, c.leaks) for c in correct]
    assert [x for x in leaking if x[3]] == []
    assert all(c.errors == 0 for c in correct)
    assert all(c.requests > 0 for c in correct)


def test_reports_are_exactly_what_the_renderer_makes(doc: Run) -> None:
    rendered = render_run_dir(REFERENCE, doc)
    stale = []
    for name, text in rendered.items():
        path = REFERENCE / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    assert stale == [], (
        f"results/reference/{stale} differ from what the report renders from the committed JSON;"
        " never edit them by hand: run `ctxbench report results/reference` (a rendering change)"
        " or `make reference` (new data), and commit the result"
    )
    charts = sorted(p.name for p in REFERENCE.glob("*.svg"))
    assert charts == sorted(n for n in rendered if n.endswith(".svg"))
    assert "throughput-keepalive.svg" in charts


def test_benchmark_files_are_present_and_small() -> None:
    bench = read_benchmarks(REFERENCE)
    assert bench.micro is not None and bench.calibration is not None
    assert {r.framework for r in bench.micro.rows} == {"core", "flask", "werkzeug"}
    assert len({r.group for r in bench.micro.rows}) == 3
    calibrated = {r.mode for r in bench.calibration.rows}
    assert {"gunicorn-sync", "gunicorn-gthread", "gunicorn-gevent"} <= calibrated
    assert {"echo-probe", "echo-probe (fresh)"} <= calibrated  # the driver's own ceiling
    assert all(r.driver_leaks == 0 and r.driver_errors == 0 for r in bench.calibration.rows)
    micro = json.loads((REFERENCE / "micro.json").read_text(encoding="utf-8"))
    # pytest-benchmark's raw per-round timings are dropped (benchmarks/conftest.py).
    assert all("data" not in b["stats"] for b in micro["benchmarks"])
    assert "ctxbench" in micro
    # results.json: about 5 kB per cell, 50 cells (13 stacks, core and Flask, both patterns)
    for name in ("micro.json", "driver_vs_wrk.json", "results.json"):
        assert (REFERENCE / name).stat().st_size < 400_000, name


def test_committed_json_holds_no_environment_or_secrets() -> None:
    text = "\n".join(
        (REFERENCE / name).read_text(encoding="utf-8")
        for name in ("micro.json", "driver_vs_wrk.json", "results.json")
    )
    for marker in ("HOME=", "PATH=", "TOKEN", "SECRET", "PASSWORD", "API_KEY", "Authorization"):
        assert marker.lower() not in text.lower(), marker


def test_readme_summary_matches_the_reference() -> None:
    readme = README.read_text(encoding="utf-8")
    if SUMMARY_START not in readme:
        pytest.fail(f"README.md has no {SUMMARY_START} block to keep in step with the reference")
    block = readme.split(SUMMARY_START, 1)[1].split(SUMMARY_END, 1)[0]
    pasted = [line for line in block.splitlines() if line.startswith("|")]
    if not pasted:
        pytest.skip("README.md's reference summary block is still empty")
    report = (REFERENCE / "report.md").read_text(encoding="utf-8")
    summary = report.split("## Summary\n", 1)[1].split("\n## ", 1)[0]
    table = [line for line in summary.splitlines() if line.startswith("|")]
    assert pasted == table, (
        "README.md's reference summary differs from results/reference/report.md: paste the"
        " report's Summary table between the markers"
    )


# -- ctxbench run --run-dir --------------------------------------------------------------------


def test_run_dir_and_out_together_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["run", "--run-dir", str(tmp_path / "ref"), "--out", str(tmp_path)])
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "--run-dir" in err
    assert not (tmp_path / "ref").exists()


def test_run_dir_writes_into_that_folder_with_its_name_as_run_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import harness.runner

    calls: list[tuple[Path, str | None]] = []

    def fake_run_matrix(
        settings: Any, run_dir: Path, *, command: Any = (), run_id: str | None = None, **_: Any
    ) -> Run:
        calls.append((Path(run_dir), run_id))
        rv = Run.start(run_id or "", command, settings).replace(status="complete")
        results.write(run_dir, rv)
        return rv

    monkeypatch.setattr(harness.runner, "run_matrix", fake_run_matrix)
    target = tmp_path / "reference"
    status = main(["run", "--modes", "gunicorn-sync", "--run-dir", str(target)])
    assert status == 0
    assert calls == [(target, "reference")]
    assert sorted(p.name for p in target.iterdir()) == ["report.html", "report.md", "results.json"]
    assert re.search(r"results: .*reference/results\.json", capsys.readouterr().out)


def test_run_without_run_dir_makes_a_new_folder_under_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.runner

    seen: list[Path] = []

    def fake_run_matrix(settings: Any, run_dir: Path, **kwargs: Any) -> Run:
        seen.append(Path(run_dir))
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.runner, "run_matrix", fake_run_matrix)
    assert main(["run", "--modes", "gunicorn-sync", "--out", str(tmp_path)]) == 130
    [run_dir] = seen
    assert run_dir.parent == tmp_path
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", run_dir.name)
