"""harness.report: report.md and report.html rendered from hand-made results documents."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shlex
from html import escape
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ResultsError
from harness.report import format_summary, render_reports, sections, write_reports
from harness.report.charts import SVG_NS, _nice_limit
from harness.report.summary import headline, summarize
from harness.results import Cell, Run, ServerConnections
from harness.results import spread as relative_spread

MODES = ("werkzeug-threaded", "gunicorn-sync", "gunicorn-gthread", "gunicorn-gevent")
BASE_RPS = {
    "werkzeug-threaded": 1500.0,
    "gunicorn-sync": 3400.0,
    "gunicorn-gthread": 6900.0,
    "gunicorn-gevent": 7800.0,
}


def make_entry(
    mode: str,
    *,
    app_label: str = "core",
    backend: str = "contextvar",
    connections: str = "keepalive",
    rps: float | None = None,
    spread: float = 0.04,
    leaks: int = 0,
    errors: int = 0,
) -> dict[str, Any]:
    """An entry as the runner writes it: three repeats around ``rps`` with ``spread`` range."""
    rps = rps if rps is not None else BASE_RPS[mode] * (0.5 if app_label == "flask" else 1.0)
    runs = [rps * (1 - spread / 2), rps, rps * (1 + spread / 2)]
    base = 1000.0 / rps * 16
    latency = {"p50": base, "p90": base * 1.6, "p99": base * 3.0, "max": base * 9.0}
    evidence = [
        {
            "mode": mode,
            "phase": "view",
            "name": "request",
            "expected": f"tok{i}",
            "seen": f"tok{i + 1}",
            "worker": {"pid": 4242, "thread": 1400 + i, "greenlet": None},
        }
        for i in range(min(leaks, 3))
    ]
    return {
        "mode": mode,
        "app": f"harness.apps.{app_label}_app:app" if app_label in ("core", "flask") else app_label,
        "app_label": app_label,
        "backend": backend,
        "connections": connections,
        "requests": int(rps * 6),
        "leaks": leaks,
        "errors": errors,
        "error_kinds": {"reset": errors} if errors else {},
        "rps": rps,
        "rps_runs": runs,
        "rps_spread": relative_spread(runs),
        "latency_ms": latency,
        "latency_runs": [{k: v * f for k, v in latency.items()} for f in (0.97, 1.0, 1.04)],
        "evidence": evidence,
        "server": {"effective": {"mode": mode, "workers": 2, "threads": 8, "bind": "127.0.0.1:0"}},
    }


def make_doc(entries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    if entries is None:
        entries = [make_entry(m, connections=c) for m in MODES for c in ("keepalive", "fresh")]
    return {
        "schema": "ctxbench.results/1",
        "run_id": "20260101-120000",
        "created": "2026-01-01T12:00:00+00:00",
        "command": ["ctxbench", "run"],
        "machine": {"cpu_count": 2, "platform": "Linux-6.1-x86_64", "machine": "x86_64"},
        "python": "3.11.9",
        "packages": {"werkzeug": "3.1.9", "flask": "3.1.3", "gunicorn": "27.0.1"},
        "settings": {"duration": 2.0, "concurrency": 16, "repeats": 3, "sleep_ms": 1.0},
        "entries": entries,
    }


def section(md: str, heading: str) -> str:
    """The text of one ``## `` section of a Markdown report, heading included."""
    start = md.index(heading + "\n")
    end = md.find("\n## ", start + len(heading))
    return md[start:] if end < 0 else md[start:end]


def load_run(doc: dict[str, Any]) -> Run:
    return Run.from_json(copy.deepcopy(doc))


def render(doc: dict[str, Any]) -> tuple[str, str]:
    out = render_reports(load_run(doc))
    return out["report.md"], out["report.html"]


def test_clean_run_verdict_and_fastest() -> None:
    md, html = render(make_doc())
    assert "**Verdict: OK.** 8 cells ran: app core; modes " in md
    assert "backend contextvar; keepalive and fresh connections; 235,200 requests checked" in md
    assert "No leak with the correct contextvar storage" in md
    assert "For keepalive connections use gunicorn-gevent" in md
    assert "Verdict: OK." in html
    assert "## Leaks" in md and "None: every probe observation" in md
    assert "Spread above" not in md and "Spread above" not in html


def test_leaks_are_shown_with_their_evidence() -> None:
    entries = [make_entry(m) for m in MODES]
    entries.append(make_entry("gunicorn-gthread", backend="shared-global", leaks=37))
    md, html = render(make_doc(entries))
    assert "**Verdict: OK (only the deliberately broken backends leaked).** 5 cells ran" in md
    assert "No leak with the correct contextvar storage" in md
    assert (
        "Deliberately broken backends leaked: gunicorn-gthread (core, shared-global, keepalive):"
        " 37 (request)." in md
    )
    assert "### gunicorn-gthread · core · shared-global · keepalive: 37 leaks" in md
    # Every field of the evidence: mode, phase, name, expected, seen, worker.
    assert '| gunicorn-gthread | view | request | "tok0" | "tok1" | 4242 | 1400 | null |' in md
    assert "&quot;tok0&quot;" in html and "4242" in html


def test_a_leak_of_the_correct_backend_is_a_leak_verdict() -> None:
    md, html = render(make_doc([make_entry("gunicorn-gevent", leaks=2)]))
    assert "**Verdict: LEAK.** 1 cell ran: app core; mode gunicorn-gevent;" in md
    assert (
        "The framework's context leaked with the correct contextvar storage in 1 of 1 cell:"
        " gunicorn-gevent (core, contextvar, keepalive): 2 (request)." in md
    )
    assert "isolation bug of the stack under gunicorn-gevent" in md
    assert 'class="verdict leak"' in html


def test_leaking_entries_are_never_fastest() -> None:
    entries = [
        make_entry("gunicorn-gevent", rps=99_000.0, backend="shared-global", leaks=5),
        make_entry("gunicorn-gthread"),
        make_entry("gunicorn-sync"),
    ]
    summary = summarize(load_run(make_doc(entries)))
    [ranking] = summary.rankings
    assert (ranking.pattern, ranking.best.mode) == ("keepalive", "gunicorn-gthread")
    assert [e.mode for e in ranking.others] == ["gunicorn-sync"]


def test_close_medians_are_reported_as_tied() -> None:
    entries = [
        make_entry("gunicorn-gevent", rps=7000.0),
        make_entry("gunicorn-gthread", rps=6900.0),
    ]
    md, _ = render(make_doc(entries))
    assert "gunicorn-gevent, gunicorn-gthread are within the spread of their repeats" in md
    assert "use gunicorn" not in md


def test_evidence_is_escaped_in_html() -> None:
    entry = make_entry("gunicorn-gthread", backend="shared-global", leaks=1)
    entry["evidence"][0]["seen"] = "<script>alert(1)</script>|x"
    md, html = render(make_doc([entry]))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "\\|x" in md  # a pipe must not split the Markdown table cell


def test_spread_warning_appears_only_above_threshold() -> None:
    quiet = make_doc([make_entry(m, spread=0.08) for m in MODES])
    md, html = render(quiet)
    assert "Spread above" not in md and "Spread above" not in html
    assert "⚠" not in md and "⚠" not in html

    noisy = make_doc(
        [make_entry(m, spread=0.08) for m in MODES[:3]]
        + [make_entry("gunicorn-gevent", spread=0.25)]
    )
    md, html = render(noisy)
    assert "Spread above 10%" in md and "Spread above 10%" in html
    assert "> - gunicorn-gevent, keepalive: spread 25%" in md
    assert "<li>gunicorn-gevent, keepalive: spread 25%</li>" in html
    assert "taskset" in md and "taskset" in html
    assert md.count("⚠") == 3  # the warning, and the cell in the summary and the mode's table
    assert 'class="warn"' in html


def test_a_spread_that_rounds_to_the_threshold_shows_its_side() -> None:
    # The reference listed "gunicorn-tornado, keepalive: spread 10%" under "Spread above 10%"
    # (10.02%), and a 9.7% spread read "10%" unflagged beside it.
    doc = make_doc(
        [make_entry("gunicorn-gthread", spread=0.1002), make_entry("gunicorn-sync", spread=0.097)]
    )
    md, _ = render(doc)
    assert "> - gunicorn-gthread, keepalive: spread 10.02%" in md
    assert "| gunicorn-gthread | keepalive | 6,900 | 10.02% ⚠ |" in md
    assert "| gunicorn-sync | keepalive | 3,400 | 9.7% |" in md
    assert "spread 10%" not in md and "| 10% |" not in md


def test_flask_columns_only_when_both_apps_ran() -> None:
    core_only = make_doc([make_entry(m) for m in MODES])
    md, html = render(core_only)
    assert "flask" not in section(md, "## Summary") and "flask rps" not in html

    both = make_doc([make_entry(m, app_label=a) for m in MODES for a in ("core", "flask")])
    summary = section(render(both)[0], "## Summary")
    assert (
        "| core p99 ms | flask rps | core / flask rps | flask p99 ms | core / flask p99 |"
        in summary
    )
    # flask cells run at half the core's rps, with twice its latency
    assert summary.count("| 2.00x |") == summary.count("| 0.50x |") == len(MODES)
    assert "below 1.00x in *core / flask p99* it answers faster" in summary
    # Flask alone (no core twin) gives no ratio either.
    flask_only = make_doc([make_entry(m, app_label="flask") for m in MODES])
    assert "/ flask" not in render(flask_only)[0]


def test_html_is_self_contained() -> None:
    entries = [
        make_entry(m, app_label=a, connections=c)
        for m in MODES
        for a in ("core", "flask")
        for c in ("keepalive", "fresh")
    ]
    entries.append(make_entry("gunicorn-gevent", backend="thread-ident", leaks=3, spread=0.3))
    _, html = render(make_doc(entries))
    # The SVG namespace is an identifier, never fetched; nothing else may name a URL.
    html = html.replace(f'xmlns="{SVG_NS}"', "")
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(src|href)\s*=""", html, re.IGNORECASE)
    assert "<script" not in html.lower()
    assert "@import" not in html and "url(" not in html
    assert html.count("<svg") == 4  # throughput and latency for each connection pattern


def test_environment_and_server_config_are_in_the_report() -> None:
    md, html = render(make_doc())
    for text in ("3.11.9", "werkzeug", "3.1.9", "gunicorn", "27.0.1", "cpu_count", "sleep_ms"):
        assert text in md and text in html
    assert "## Effective server configuration" in md
    assert "127.0.0.1:0" in md and "127.0.0.1:0" in html
    assert "Command: `ctxbench run`" in md


def test_rendering_is_deterministic_and_order_independent() -> None:
    doc = make_doc()
    first = render(doc)
    assert render(copy.deepcopy(doc)) == first
    shuffled = copy.deepcopy(doc)
    shuffled["entries"].reverse()
    assert render(shuffled) == first


def test_write_reports_next_to_results_json(tmp_path: Path) -> None:
    doc = make_doc()
    (tmp_path / "results.json").write_text(json.dumps(doc), encoding="utf-8")
    paths = write_reports(tmp_path)
    charts = [
        "throughput-keepalive.svg",
        "latency-keepalive.svg",
        "throughput-fresh.svg",
        "latency-fresh.svg",
    ]
    assert [p.name for p in paths] == ["report.md", "report.html", *charts]
    first = [p.read_bytes() for p in paths]
    write_reports(tmp_path, load_run(doc))
    assert [p.read_bytes() for p in paths] == first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["report.html", "report.md", "results.json", *charts]
    )


def test_single_repeat_has_no_spread() -> None:
    entry = make_entry("gunicorn-sync")
    entry["rps_runs"] = [entry["rps"]]
    entry["rps_spread"] = 0.0
    entry["latency_runs"] = [entry["latency_ms"]]
    run = load_run(make_doc([entry]))
    assert run.cells[0].rps_spread == 0.0
    assert "| 0.0% | 7,800 |" not in render(make_doc([entry]))[0]


def test_rejects_other_schemas_and_bad_entries() -> None:
    with pytest.raises(ResultsError, match=r"schema is 'ctxbench\.results/9'.*another version"):
        load_run({**make_doc(), "schema": "ctxbench.results/9"})
    bad = make_entry("gunicorn-sync")
    bad["rps_runs"] = ["fast", 1.0, 2.0]
    with pytest.raises(ResultsError, match=r"cells\[0\]\.runs\[0\]\.rps: expected a number"):
        load_run(make_doc([bad]))
    with pytest.raises(ResultsError, match="no results at"):
        write_reports(Path("/nonexistent/run"))


@pytest.mark.parametrize(
    ("peak", "limit"),
    [(0.0, 1.0), (7.3, 8.0), (1900.0, 2000.0), (2400.0, 2500.0), (7800, 8000), (49.2, 60.0)],
)
def test_chart_axis_limit_is_a_round_number(peak: float, limit: float) -> None:
    assert _nice_limit(peak) == limit


def test_sample_documents_follow_the_results_schema() -> None:
    assert len(load_run(make_doc()).cells) == 8
    load_run(make_doc([make_entry("gunicorn-gthread", backend="shared-global", leaks=3)]))


def test_entry_without_successful_requests_renders_dashes() -> None:
    entry = make_entry("gunicorn-sync", errors=50)
    entry["latency_ms"] = {"p50": None, "p90": None, "p99": None, "max": None}
    entry["latency_runs"] = [entry["latency_ms"]] * 3
    md, html = render(make_doc([entry, make_entry("gunicorn-gthread")]))
    assert "| **-** | **-** | **-** | **-** |" in md  # bold: the entry had errors
    assert (
        "## Errors" in md and "| gunicorn-sync | core | contextvar | keepalive | reset | 50 |" in md
    )
    assert not re.search(r"\bnan\b", html, re.IGNORECASE)


def test_incomplete_run_is_flagged() -> None:
    md, html = render({**make_doc(), "status": "interrupted"})
    assert "This run is interrupted, not complete" in md
    assert "This run is interrupted, not complete" in html
    assert "not complete" not in render({**make_doc(), "status": "complete"})[0]


def test_an_interrupted_run_is_ok_so_far_not_ok() -> None:
    # Ctrl-C after the first mode of --modes gunicorn-gthread,waitress,gunicorn-sync: the report
    # said "Verdict: OK." in the green box, and "Only one mode ran: there is no choice between
    # modes to make", of a run that measured 2 of its 6 cells.
    entries = [make_entry("gunicorn-gthread", connections=c) for c in ("keepalive", "fresh")]
    md, html = render({**make_doc(entries), "status": "interrupted"})
    assert "> **Verdict: OK so far.** 2 cells ran" in md
    assert '<section class="verdict warning"><p><strong>Verdict: OK so far.</strong>' in html
    assert "Only one mode ran before the run stopped: there is no choice" in md
    mutant = make_entry("gunicorn-gthread", backend="no-reset", leaks=3)
    md, _ = render({**make_doc([*entries, mutant]), "status": "interrupted"})
    assert "**Verdict: OK so far (only the deliberately broken backends leaked).**" in md
    md, html = render(make_doc(entries))  # complete: as it was
    assert "> **Verdict: OK.** 2 cells ran" in md and '<section class="verdict ok">' in html
    assert "Only one mode ran: there is no choice" in md


# -- the summary table, the chart files and the benchmarks' sections --------------------------


def test_summary_table_counts_every_app_on_the_correct_storage() -> None:
    entries = [make_entry(m, app_label=a) for m in MODES for a in ("core", "flask")]
    entries.append(make_entry("gunicorn-sync", backend="no-reset", leaks=9))
    entries[1]["errors"] = 4  # flask on werkzeug-threaded
    entries[1]["error_kinds"] = {"reset": 4}
    md, html = render(make_doc(entries))
    summary = section(md, "## Summary")
    assert (
        "| mode | connections | core rps | spread | core p99 ms | flask rps | core / flask rps"
        " | flask p99 ms | core / flask p99 | errors | leaks |" in summary
    )
    row = (
        "| gunicorn-gevent | keepalive | 7,800 | 4.0% | 6.15 | 3,900 | 2.00x | 12.3 | 0.50x"
        " | 0 | 0 |"
    )
    assert row in summary
    # the flask entry's errors show on the core's row, in bold; the mutant's leaks do not
    assert "| **werkzeug-threaded** | **keepalive** |" in summary and "| **4** | **0** |" in summary
    assert "LEAK" not in summary
    assert summary.count("\n| ") == 2 + len(MODES)
    assert '<h2 id="summary">Summary</h2>' in html


def test_chart_files_are_the_inlined_svg_and_valid_xml(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    doc = make_doc()
    files = render_reports(load_run(doc))
    svgs = {name: text for name, text in files.items() if name.endswith(".svg")}
    assert sorted(svgs) == [
        "latency-fresh.svg",
        "latency-keepalive.svg",
        "throughput-fresh.svg",
        "throughput-keepalive.svg",
    ]
    for text in svgs.values():
        assert text in files["report.html"]
        root = ET.fromstring(text)
        assert root.tag == f"{{{SVG_NS}}}svg"
    # a chart of a connection pattern that no longer ran is not left behind
    (tmp_path / "results.json").write_text(json.dumps(doc), encoding="utf-8")
    write_reports(tmp_path)
    keepalive_only = make_doc([make_entry(m) for m in MODES])
    write_reports(tmp_path, load_run(keepalive_only))
    assert sorted(p.name for p in tmp_path.glob("*.svg")) == [
        "latency-keepalive.svg",
        "throughput-keepalive.svg",
    ]


def micro_doc(medians_us: dict[tuple[str, str], float], iqr: float = 0.02) -> dict[str, Any]:
    """pytest-benchmark JSON as --benchmark-json writes it (minus the raw timings)."""
    return {
        "machine_info": {"node": "vm", "python_version": "3.11.7"},
        "commit_info": {"id": "96458e4728fa75e0a57e66d119e5c14d9533ec47", "dirty": False},
        "benchmarks": [
            {
                "group": group,
                "name": f"test_{group}[{fw}]",
                "params": {"framework": fw},
                "param": fw,
                "stats": {"median": us * 1e-6, "iqr": us * 1e-6 * iqr, "rounds": 1000},
            }
            for (group, fw), us in medians_us.items()
        ],
        "datetime": "2026-01-01T12:00:00.000000+00:00",
        "version": "5.3.1",
    }


MICRO_MEDIANS = {
    ("full-wsgi-call", "core"): 19.87,
    ("full-wsgi-call", "flask"): 46.95,
    ("full-wsgi-call", "werkzeug"): 15.16,
    ("request-context", "core"): 3.85,
    ("request-context", "flask"): 17.11,
    ("request-context", "werkzeug"): 1.97,
    ("app-context", "core"): 0.71,
    ("app-context", "flask"): 2.36,
    ("app-context", "werkzeug"): 0.21,
}


def calibration_doc(ratios: dict[str, float], spread: float = 0.04) -> dict[str, Any]:
    entries = []
    for mode, ratio in ratios.items():
        wrk = [3000.0 * (1 - spread / 2), 3000.0, 3000.0 * (1 + spread / 2)]
        driver = [v * ratio for v in wrk]
        entries.append(
            {
                "mode": mode,
                "wrk_rps": 3000.0,
                "driver_rps": 3000.0 * ratio,
                "ratio": ratio,
                "wrk_runs": [{"rps": v, "non_2xx": 0, "socket_errors": None} for v in wrk],
                "driver_runs": [{"rps": v, "errors": 0, "leaks": 0} for v in driver],
                "wrk_spread": relative_spread(wrk),
                "driver_spread": relative_spread(driver),
                "driver_errors": 0,
                "driver_leaks": 0,
            }
        )
    return {
        "schema": "ctxbench.bench.driver_vs_wrk/1",
        "created": "2026-01-01T12:05:00+00:00",
        "machine": {"load_average_at_start": [0.4, 0.3, 0.2]},
        "settings": {
            "rounds": 3,
            "duration_s": 5.0,
            "concurrency": 16,
            "server_core": 0,
            "client_core": 1,
            "driver_connections": "keepalive",
            "target_ratio": 0.9,
        },
        "entries": entries,
    }


def write_run(tmp_path: Path, micro: Any = None, calibration: Any = None) -> tuple[str, str]:
    (tmp_path / "results.json").write_text(json.dumps(make_doc()), encoding="utf-8")
    if micro is not None:
        (tmp_path / "micro.json").write_text(json.dumps(micro), encoding="utf-8")
    if calibration is not None:
        (tmp_path / "driver_vs_wrk.json").write_text(json.dumps(calibration), encoding="utf-8")
    write_reports(tmp_path)
    return (
        (tmp_path / "report.md").read_text(encoding="utf-8"),
        (tmp_path / "report.html").read_text(encoding="utf-8"),
    )


def test_benchmark_sections_are_omitted_without_their_files(tmp_path: Path) -> None:
    md, html = write_run(tmp_path)
    assert "Micro benchmarks" not in md and "Micro benchmarks" not in html
    assert "Load driver against wrk" not in md and "Load driver against wrk" not in html
    assert (md, html) == render(make_doc())


def test_micro_section_side_by_side_with_ratios_and_targets(tmp_path: Path) -> None:
    md, html = write_run(tmp_path, micro=micro_doc(MICRO_MEDIANS))
    micro = section(md, "## Micro benchmarks: core vs Flask vs werkzeug")
    assert "pytest-benchmark 5.3.1" in micro and "commit 96458e4728fa" in micro
    assert "| full-wsgi-call | core | 19.9 | 2.0% | 1,000 | 50,327 | 2.36x |" in micro
    assert "| full-wsgi-call | flask | 47.0 | 2.0% | 1,000 | 21,299 | 1.00x |" in micro
    assert "| app-context | werkzeug | 0.21 |" in micro
    # groups in the suite's order, frameworks core, flask, werkzeug
    rows = [line.split(" | ")[:2] for line in micro.splitlines() if line.startswith("| ")][2:11]
    assert rows[0] == ["| full-wsgi-call", "core"] and rows[8] == ["| app-context", "werkzeug"]
    assert "| core full WSGI call >= 2x Flask throughput | 2.36x (19.9 µs vs 47.0 µs) | met |" in md
    assert "| core app-context push+pop < 1 µs (median) | 0.71 µs | met |" in md
    assert "⚠" not in micro
    assert (
        '<h2 id="micro-benchmarks-core-vs-flask-vs-werkzeug">Micro benchmarks: core vs Flask vs'
        " werkzeug</h2>" in html
    )
    assert "<code>micro.json</code>" in html and "<em>vs Flask</em>" in html


def test_micro_targets_missed_and_noisy_rows_are_flagged(tmp_path: Path) -> None:
    slow = {**MICRO_MEDIANS, ("full-wsgi-call", "core"): 30.0, ("app-context", "core"): 1.2}
    md, html = write_run(tmp_path, micro=micro_doc(slow, iqr=0.25))
    micro = section(md, "## Micro benchmarks: core vs Flask vs werkzeug")
    assert (
        "| **core full WSGI call >= 2x Flask throughput** | **1.57x (30.0 µs vs 47.0 µs)**"
        " | **MISSED** |" in micro
    )
    assert "| **core app-context push+pop < 1 µs (median)** | **1.20 µs** | **MISSED** |" in micro
    assert "Spread above 10%, too large to trust the median" in micro
    assert "> - full-wsgi-call core: spread 25%\n> - full-wsgi-call flask: spread 25%" in micro
    assert "taskset" in micro
    assert micro.count("25% ⚠") == len(MICRO_MEDIANS)
    assert 'class="warn"' in html and 'class="bad"' in html


def test_calibration_section_with_the_target(tmp_path: Path) -> None:
    cal = calibration_doc({"gunicorn-sync": 0.75, "gunicorn-gthread": 0.96})
    md, html = write_run(tmp_path, calibration=cal)
    part = section(md, "## Load driver against wrk")
    assert "pinned to core 0" in part and "3 rounds of 5.0 s each" in part
    assert "0.40 / 0.30 / 0.20" in part
    assert "| gunicorn-sync | 3,000 | 2,250 | 0.75 | 0.9 MISSED | - | - | - | 4.0% / 4.0% |" in part
    assert "| gunicorn-gthread | 3,000 | 2,880 | 0.96 | 0.9 met |" in part
    assert "2,940 / 3,000 / 3,060" in part  # every wrk run
    assert "⚠" not in part
    assert '<h2 id="load-driver-against-wrk">Load driver against wrk</h2>' in html

    noisy = calibration_doc({"gunicorn-gevent": 0.91}, spread=0.3)
    md, _ = write_run(tmp_path, calibration=noisy)
    assert "Spread above 10% between rounds:**\n>\n> - gunicorn-gevent: spread 30%" in md
    # The reference's echo probe: listed at "spread 10.1%", its row read "10% / 3.3% ⚠".
    edge = calibration_doc({"echo-probe": 0.64}, spread=0.101)
    md, _ = write_run(tmp_path, calibration=edge)
    assert "> - echo-probe: spread 10.1%" in md and "| 10.1% / 10.1% ⚠ |" in md


def test_bad_benchmark_files_name_the_file_and_field(tmp_path: Path) -> None:
    broken = micro_doc(MICRO_MEDIANS)
    broken["benchmarks"][0]["stats"]["median"] = None
    with pytest.raises(ResultsError, match=r"micro\.json: benchmarks\[0\]\.stats\.median"):
        write_run(tmp_path, micro=broken)
    (tmp_path / "micro.json").unlink()
    with pytest.raises(ResultsError, match=r"driver_vs_wrk\.json has schema 'other/1'"):
        write_run(tmp_path, calibration={"schema": "other/1"})
    (tmp_path / "driver_vs_wrk.json").write_text("{", encoding="utf-8")
    with pytest.raises(ResultsError, match="is not valid JSON"):
        write_reports(tmp_path)


def test_micro_json_plugin_drops_raw_timings_only() -> None:
    from benchmarks.conftest import pytest_benchmark_update_json

    doc = micro_doc(MICRO_MEDIANS)
    for bench in doc["benchmarks"]:
        bench["stats"]["data"] = [1e-6] * 5
    expected = copy.deepcopy(doc)
    for bench in expected["benchmarks"]:
        del bench["stats"]["data"]
    pytest_benchmark_update_json(config=None, benchmarks=[], output_json=doc)  # type: ignore[arg-type]
    assert doc.pop("ctxbench")["benchmarks_trimmed"] == len(MICRO_MEDIANS)
    assert doc == expected


def test_flask_bars_are_told_apart_and_long_run_lists_wrap() -> None:
    from harness.report.charts import COLOR_OK, COLOR_OTHER_APP

    entries = [make_entry("gunicorn-gevent", app_label=a) for a in ("core", "flask")]
    files = render_reports(load_run(make_doc(entries)))
    chart = files["throughput-keepalive.svg"]
    assert chart.count(f'fill="{COLOR_OK}"') == 1 and chart.count(f'fill="{COLOR_OTHER_APP}"') == 1
    assert files["report.html"].count('<td class="r wrap">') == 2  # the runs cell of each entry


# -- who leaked, what ran, and when not to recommend -----------------------------------------


def test_a_broken_backend_alone_does_not_vouch_for_the_correct_storage() -> None:
    entries = [
        make_entry(m, backend="no-reset", leaks=5) for m in ("gunicorn-sync", "gunicorn-gevent")
    ]
    md, html = render(make_doc(entries))
    assert "**Verdict: no verdict on the correct storage (only broken backends ran).**" in md
    assert "backend no-reset" in md and "The correct contextvar storage did not run." in md
    assert "held" not in md and "No leak" not in md
    assert "run with the default --backend contextvar" in md
    assert 'class="verdict mutant"' in html


# An app's own residue check, as the README shows it (observe("residue.my_local", ...) first
# thing in before_request), was blamed on the framework: "The framework's context leaked".
@pytest.mark.parametrize("name", ["cart", "residue.cart"])
def test_an_apps_own_state_is_blamed_on_the_app_not_the_storage(name: str) -> None:
    entry = make_entry("gunicorn-gevent", app_label="myproject.wsgi:app", leaks=4)
    for ev in entry["evidence"]:
        ev["name"] = name
    md, html = render(
        make_doc([entry, make_entry("gunicorn-sync", app_label="myproject.wsgi:app")])
    )
    assert "**Verdict: LEAK in the app's own state.**" in md
    assert "The app's own state, reported through `observe()`, leaked in 1 cell:" in md
    assert f"gunicorn-gevent (`myproject.wsgi:app`, contextvar, keepalive): 4 (`{name}`)" in md
    assert "framework's context leaked" not in md and "isolation bug" not in md
    assert "Fix the app" in md
    assert "<code>observe()</code>" in html and 'class="verdict leak"' in html


def test_the_framework_names_said_to_hold_are_the_ones_checked() -> None:
    # An app without a SECRET_KEY has no session to check: "the framework's request, g,
    # session and current_app held there" claimed a check that never ran.
    entry = make_entry("gunicorn-gthread", app_label="shop:app", leaks=4)
    for ev in entry["evidence"]:
        ev["name"] = "current_user"
    entry["observed"] = ["current_app", "current_user", "g", "request"]
    md, _ = render(make_doc([entry]))
    assert "the framework's request, g and current_app held there" in md
    assert "checked for request, g and current_app, and the app's own" in md
    assert "session" not in md


def test_the_app_s_own_state_is_blamed_only_where_the_framework_s_never_leaked() -> None:
    # The verdict read the evidence kept (the first 20) only: the app's own state leaking on
    # every request and the framework's on one in a hundred read "LEAK in the app's own state".
    entry = make_entry("gunicorn-gevent", app_label="myproject.wsgi:app", leaks=4)
    for ev in entry["evidence"]:
        ev["name"] = "cart"
    entry["framework_leaks"] = 1
    md, _ = render(make_doc([entry]))
    assert "**Verdict: LEAK.**" in md and "app's own state" not in md
    entry["framework_leaks"] = 0
    assert "**Verdict: LEAK in the app's own state.**" in render(make_doc([entry]))[0]


def test_a_users_app_name_shows_as_it_is_not_as_markdown() -> None:
    # Markdown read "pkg.__main__:make(*a, *b)" as "pkg.<b>main</b>:make(<em>a, </em>b)".
    app = "pkg.__main__:make(*a, *b)"
    entry = make_entry("gunicorn-gevent", app_label=app, leaks=4, errors=2)
    md, html = render(make_doc([entry, make_entry("gunicorn-sync", app_label=app, spread=0.3)]))
    assert f"gunicorn-gevent (`{app}`, contextvar, keepalive): 4" in md  # the verdict
    assert f"### gunicorn-gevent · `{app}` · contextvar · keepalive" in md  # the leak's heading
    assert f"gunicorn-sync · `{app}`, keepalive" in md  # the spread warning
    assert "<strong>main</strong>" not in html and "<em>a, </em>" not in html
    assert f"<code>{escape(app)}</code>" in html


def test_no_recommendation_with_one_mode_or_swamping_spreads() -> None:
    md, _ = render(make_doc([make_entry("gunicorn-gevent")]))
    assert "Only one mode ran: there is no choice between modes to make." in md
    assert " use gunicorn" not in md
    noisy = [make_entry("gunicorn-gevent", spread=0.3), make_entry("gunicorn-gthread", spread=0.3)]
    md, _ = render(make_doc(noisy))  # 7,800 vs 6,900 rps: 13% apart, each spread 30%
    assert "are within the spread of their repeats" in md and " use gunicorn" not in md
    assert "2 cells vary by more than 10%" in md


def test_plurals_say_one_cell() -> None:
    md, _ = render(make_doc([make_entry("gunicorn-gevent", spread=0.3)]))
    assert "1 cell ran" in md and "1 cell varies by more than 10%" in md
    assert "1 cells" not in md and "1 entries" not in md


def test_html_legend_and_long_app_names_wrap() -> None:
    long_app = "myproject.deeply.nested.package.with.a.long.name.wsgi:application"
    _, html = render(make_doc([make_entry("gunicorn-gevent", app_label=long_app)]))
    assert "amber a spread above 10%" in html and "with errors" not in html
    assert f'<td class="l wrap">{long_app}</td>' in html
    assert '<th class="r">app rps</th>' in html and f"main app (<code>{long_app}</code>)" in html
    assert "td.wrap { white-space: normal; overflow-wrap: anywhere;" in html


def test_a_section_is_one_function_in_one_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.report.tree import Figure, Heading, Paragraph

    def soak(ctx: sections.Context) -> list[sections.Node]:
        svg = f'<svg xmlns="{SVG_NS}"><title>rss</title></svg>'
        return [
            Heading("Soak"),
            Paragraph(f"{len(ctx.run.cells)} cells, *rss* over time"),
            Figure("soak-rss.svg", "RSS over time", svg),
        ]

    monkeypatch.setattr(sections, "SECTIONS", [*sections.SECTIONS, soak])
    files = render_reports(load_run(make_doc()))
    assert (
        "## Soak\n\n8 cells, *rss* over time\n\n![RSS over time](soak-rss.svg)"
        in files["report.md"]
    )
    assert '<h2 id="soak">Soak</h2>\n<p>8 cells, <em>rss</em> over time</p>' in files["report.html"]
    assert files["soak-rss.svg"] in files["report.html"]


def test_terminal_summary_shows_evidence_and_what_leaks_count() -> None:
    from harness.report import format_summary

    entries = [
        make_entry("gunicorn-gevent", backend="no-reset", leaks=5),
        make_entry("gunicorn-sync"),
    ]
    text = format_summary(load_run(make_doc(entries)))
    lines = text.splitlines()
    assert lines[0].split() == [
        "app", "backend", "mode", "connections", "server", "requests", "rps", "spread",
        "p50", "ms", "p99", "ms", "errors", "leaks", "verdict",
    ]  # fmt: skip
    assert set(lines[1]) == {"-", " "}
    assert "one request can hold several" in text
    assert text.count('"tok') == 6  # three pieces of evidence: expected and seen
    assert lines[-5].split() == [
        "cell", "phase", "name", "expected", "seen", "pid", "thread", "greenlet",
    ]  # fmt: skip
    assert lines[-3].split() == [
        "gunicorn-gevent", "·", "no-reset", "keepalive", "view", "request", '"tok0"', '"tok1"',
        "4242", "1400", "null",
    ]  # fmt: skip


def test_terminal_summary_names_a_broken_backend_that_ran_alone() -> None:
    # `run --backend no-reset` alone printed a row of mode, connections, ..., LEAK: nothing on
    # it said that the leak was the deliberately broken backend's, not the app's.
    from harness.report import format_summary

    text = format_summary(load_run(make_doc([make_entry("gunicorn-gthread", backend="no-reset",
                                                         leaks=5)])))  # fmt: skip
    header, _, row = text.splitlines()[:3]
    assert header.split()[:3] == ["app", "backend", "mode"]
    assert row.split()[:3] == ["core", "no-reset", "gunicorn-gthread"]
    clean = format_summary(load_run(make_doc([make_entry("gunicorn-gthread")])))
    assert clean.splitlines()[0].split()[0] == "mode"  # the default backend alone: no column


def test_terminal_summary_names_the_options_a_mode_ran_without() -> None:
    # `run --modes waitress,gunicorn-gevent --workers 2 --threads 3`: waitress ran one process,
    # gunicorn's gevent worker no thread pool, and only the table's "w1" hinted at either.
    from harness.report import format_summary

    waitress, gevent, sync = (
        make_entry(m, rps=1000.0) for m in ("waitress", "gunicorn-gevent", "gunicorn-sync")
    )
    waitress["server"]["effective"]["ignored_options"] = ["--workers"]
    gevent["server"]["effective"]["ignored_options"] = ["--threads"]
    sync["server"]["effective"]["ignored_options"] = ["--workers"]  # one line names both modes
    text = format_summary(load_run(make_doc([waitress, gevent, sync])))
    assert (
        "options some modes ran without, having no use for them: --workers by waitress,"
        " gunicorn-sync; --threads by gunicorn-gevent ('ctxbench list' says what each mode runs)"
    ) in text.splitlines()
    assert "ran without" not in format_summary(load_run(make_doc([make_entry("gunicorn-sync")])))


def test_the_apps_own_observe_names_checked_are_listed() -> None:
    import dataclasses

    from harness.results import NotMeasured

    run = load_run(make_doc([make_entry("gunicorn-gevent"), make_entry("gunicorn-sync")]))
    observed = ("cart", "current_app", "g", "request", "user")
    run = run.replace(
        cells=tuple(dataclasses.replace(c, observed=observed) for c in run.cells),
        not_measured=(NotMeasured("gunicorn-sync", "fresh", "sync has no keep-alive"),),
    )
    md = render_reports(run)["report.md"]
    assert (
        "67,200 requests checked for request, g and current_app, and the app's own"
        " `observe()` state `cart` and `user`. No leak" in md
    )
    assert "**Not measured** (these cannot run as asked): gunicorn-sync (fresh): sync has" in md


def test_bar_chart_draws_any_rows_for_a_new_section() -> None:
    import xml.etree.ElementTree as ET

    from harness.report.charts import Bar, Row, bar_chart

    rows = [
        Row(
            f"c={n}",
            "",
            (
                Bar(rps, "#3569b5", "rps", f"{rps} rps", (rps * 0.9, rps)),
                Bar(p99, "#1f4e96", "p99", ""),
            ),
            f"{rps:,.0f} rps",
            alarm=n == 64,
        )
        for n, rps, p99 in ((1, 900.0, 2.0), (16, 4200.0, 6.5), (64, 4300.0, 30.0))
    ]
    svg = bar_chart("Throughput and p99 against concurrency", rows, legend="rps; p99 ms")
    root = ET.fromstring(svg)
    assert root.tag == f"{{{SVG_NS}}}svg"
    assert svg.count("<rect ") == 1 + 2 + 2 * 3  # background, the key, the bars
    assert ">c=64<" in svg and 'fill="#c0392b" font-weight="600">c=64' in svg
    assert bar_chart("Throughput and p99 against concurrency", rows, legend="rps; p99 ms") == svg


def test_bar_chart_labels_fit_left_of_the_bars() -> None:
    # In DejaVu Sans 12px (Debian's sans-serif) "nginx-keepalive+gunicorn-gevent" is 202 px wide,
    # 227 px bold: a fixed 200 px margin cut its first letters off ("ginx-keepalive+...").
    import xml.etree.ElementTree as ET

    from harness.report.charts import Bar, Row, bar_chart

    app = "myproject.wsgi:create_app('staging', workers=8, feature_flags=['a', 'b', 'c'])"
    corpus = "harness.corpus.entries.e2_app_context_at_import:buggy · LEAK"
    rows = [
        Row("nginx-keepalive+gunicorn-gevent", "", (Bar(4731.0, "#c0392b", "rps", ""),), "", True),
        Row("eventlet", app, (Bar(3462.0, "#3569b5", "rps", app),), ""),
        Row("waitress", corpus, (Bar(3462.0, "#c0392b", "rps", ""),), "", True),
    ]
    svg = bar_chart("Throughput", rows)
    texts = ET.fromstring(svg).findall(f"{{{SVG_NS}}}text")
    label = next(e for e in texts if (e.text or "").startswith("nginx"))
    assert label.text == "nginx-keepalive+gunicorn-gevent"
    assert float(label.get("x", 0)) >= 227  # right-aligned there: its left end is in the chart
    bars = ET.fromstring(svg).findall(f"{{{SVG_NS}}}rect")[1:]
    assert {float(b.get("x", 0)) for b in bars} == {float(label.get("x", 0)) + 8}
    # An app string too long for any margin loses its middle, whole in the bar's tooltip; its
    # end says the most: the corpus entry's variant, the cell's LEAK.
    sub = next(e for e in texts if e.text == "eventlet")[0].text or ""
    head, tail = sub.split("…")
    assert app.startswith(head) and app.endswith(tail) and len(sub) * 6.5 < 360
    assert f"<title>{escape(app)}</title>" in svg
    sub = next(e for e in texts if e.text == "waitress")[0].text or ""
    assert "…" in sub and sub.endswith("_at_import:buggy · LEAK")


def test_line_chart_key_fits_a_long_mode_name() -> None:
    # The key began 178 px from the right edge: a sweep behind nginx-keepalive lost the end of
    # its name ("nginx-keepalive+gunicorn-gev") off the chart.
    import xml.etree.ElementTree as ET

    from harness.report.charts import WIDTH, Line, Point, line_chart

    name = "nginx-keepalive+gunicorn-gevent"
    fig = line_chart("Throughput", ("sweep",), [Line(name, (Point(0, 1.0), Point(1, 2.0)))], [])
    key = next(e for e in ET.fromstring(fig.svg).iter(f"{{{SVG_NS}}}text") if e.text == name)
    assert float(key.get("x", 0)) + 202 <= WIDTH  # 202 px in DejaVu Sans 12px


def test_a_sweep_names_the_level_of_every_cell() -> None:
    # --concurrency 1,8: every table and chart had two identical "gunicorn-gthread keepalive"
    # rows, and the recommendation compared a mode with itself: "use gunicorn-gthread: 1,777
    # rps, ..., beyond the noise of the next (gunicorn-gthread, 1,070 rps)".
    entries = []
    for mode, n, rps, spread in (
        ("gunicorn-gthread", 1, 300.0, 0.38),
        ("gunicorn-gthread", 8, 1800.0, 0.02),
        ("gunicorn-gevent", 1, 320.0, 0.02),
        ("gunicorn-gevent", 8, 900.0, 0.02),
    ):
        entries.append({**make_entry(mode, rps=rps, spread=spread), "concurrency": n})
    md, html = render(make_doc(entries))
    summary = section(md, "## Summary")
    assert "| mode | connections | users | core rps |" in summary
    assert "| gunicorn-gthread | keepalive | 1 | 300 |" in summary
    assert "| gunicorn-gthread | keepalive | 8 | 1,800 |" in summary
    assert "| mode | app | backend | users | leaks |" in md
    # It said "For keepalive connections use gunicorn-gthread @8: ...", which reads as a setting
    # of the mode: the level is said in words, once, in the lead.
    assert (
        "For keepalive connections at 8 virtual users, use gunicorn-gthread: 1,800 rps, p99"
    ) in md
    assert "the next (gunicorn-gevent, 900 rps)" in md
    assert " @8:" not in md and " @8," not in md
    assert "- gunicorn-gthread, keepalive @1: spread 38%" in md
    assert "| mode | 1 user | 8 users |" in md
    assert ">gunicorn-gthread<tspan" in html and ">1 user</tspan>" in html
    assert ">8 users</tspan>" in html


def test_a_sweep_ranks_modes_level_by_level_never_a_mode_against_itself() -> None:
    # Ranked across levels, a sweep recommended "use gunicorn-gthread @8 ..., beyond the noise
    # of the next (gunicorn-gthread @1, ...)", and a real --concurrency 4,32 run whose other
    # mode starved said "gunicorn-gthread @32, gunicorn-gthread @4 are within the spread of
    # their repeats: no mode to recommend": the load differs, not the mode.
    entries = [
        {**make_entry(mode, rps=rps, spread=0.02), "concurrency": n}
        for mode, n, rps in (
            ("gunicorn-gthread", 1, 1000.0),
            ("gunicorn-gthread", 8, 1800.0),
            ("gunicorn-gevent", 1, 500.0),
        )
    ]
    md, _ = render(make_doc(entries))
    assert "For keepalive connections at 1 virtual user, use gunicorn-gthread: 1,000 rps" in md
    assert "the next (gunicorn-gevent, 500 rps)" in md
    assert "at 8 virtual users" not in md and "next (gunicorn-gthread" not in md
    # one mode at two levels: nothing to choose between
    md, _ = render(make_doc(entries[:2]))
    assert "Only one mode ran: there is no choice between modes to make." in md


def test_a_sweeps_summary_row_counts_the_leaks_and_errors_of_its_own_level() -> None:
    # --concurrency 1,8 with a leak and errors at 8 users only: the Summary table's row at 1
    # user read "5 LEAK" too, in red, as it summed every level of the mode and pattern.
    entries = [
        {**make_entry("gunicorn-sync", leaks=5 * (n == 8), errors=3 * (n == 8)), "concurrency": n}
        for n in (1, 8)
    ]
    summary = section(render(make_doc(entries))[0], "## Summary")
    assert "| gunicorn-sync | keepalive | 1 | 3,400 | 4.0% | 14.1 | 0 | 0 |" in summary
    assert "| **gunicorn-sync** | **keepalive** | **8** |" in summary
    assert summary.endswith("| **3** | **5 LEAK** |\n")


def test_a_sweeps_leaks_and_exercised_units_name_their_level() -> None:
    import dataclasses

    from harness.exercised import Exercised

    entries = [
        {**make_entry("gunicorn-sync", backend="shared-global", leaks=2), "concurrency": n}
        for n in (1, 8)
    ]
    run = load_run(make_doc(entries))
    seen = Exercised((7,), 1, 1, 1, 0.5, False, True, False, False)
    run = run.replace(cells=tuple(dataclasses.replace(c, exercised=seen) for c in run.cells))
    md = render_reports(run)["report.md"]
    assert "### gunicorn-sync · core · shared-global · keepalive · 1 user: 2 leaks" in md
    assert "### gunicorn-sync · core · shared-global · keepalive · 8 users: 2 leaks" in md
    part = section(md, "## What the runs exercised")
    assert "| cell | connections | users | processes |" in part
    assert "| gunicorn-sync · shared-global | keepalive | 8 | 1 |" in part


def test_requests_made_to_fail_are_said_under_the_verdict() -> None:
    # `ctxbench run --fail-phase teardown_request`: the terminal said "(361 more failed or were
    # made to fail)", the report only listed fail_phase among the settings at its end, and its
    # verdict and recommendation read as those of a plain run.
    doc = make_doc(
        [{**make_entry("gunicorn-gthread"), "injected": 243}, make_entry("gunicorn-sync")]
    )
    doc["settings"].update(fail_phase="teardown_request", fail_fraction=0.1)
    md, html = render(doc)
    said = (
        "**Made to fail on purpose:** 243 requests raised at teardown_request (`--fail-phase`, a"
        " fraction of 0.1 of them): expected errors, in no *errors* column and not checked; the"
        " requests after them are judged."
    )
    assert said in section(md, "# ctxbench report: 20260101-120000")
    assert "<strong>Made to fail on purpose:</strong> 243 requests" in html
    assert "Made to fail" not in render(make_doc())[0]


def test_html_headings_have_the_anchors_github_gives_report_md() -> None:
    # report.html's headings had no id: a link to a section (#leaks) worked in report.md on
    # GitHub only. The ids are GitHub's: lower case, punctuation dropped, spaces as hyphens.
    doc = make_doc([make_entry(m, backend="shared-global", leaks=1) for m in MODES[:2]])
    _, html = render(doc)
    assert '<h2 id="leaks">Leaks</h2>' in html
    assert '<h2 id="keep-alive-connections-keepalive">Keep-alive connections (' in html
    leak = "werkzeug-threaded--core--shared-global--keepalive-1-leak-in-9000-requests"
    assert f'<h3 id="{leak}">werkzeug-threaded · core · shared-global' in html
    ids = re.findall(r' id="([^"]*)"', html)
    assert len(ids) == len(set(ids))
    # A heading met again gets -1, as on GitHub.
    from harness.report.render import _anchor

    taken: dict[str, int] = {}
    assert [_anchor("Soak: <code>a_b</code>", taken) for _ in "ab"] == ["soak-a_b", "soak-a_b-1"]


def test_html_charts_scroll_on_a_phone_rather_than_shrink() -> None:
    # At 420 px a 1,000 px chart shrank to a third: 12 px labels drawn 4 px high. Each chart
    # keeps a legible width in a box that scrolls sideways, as the tables do.
    from harness.report.render import CSS

    _, html = render(make_doc())
    assert html.count('<div class="figure"><svg xmlns=') == html.count("<svg ") == 4
    assert ".figure { overflow-x: auto; }" in CSS and ".figure > svg { min-width: 760px; }" in CSS


def test_a_corpus_report_has_no_summary_of_its_first_entry() -> None:
    # `ctxbench corpus`: "The main app (`...e1_thread_local_before_patch:buggy`)" headed a table
    # of its rates beside every entry's leaks, a red LEAK row for a mode it cannot leak under.
    import dataclasses

    from harness.corpus import ENTRIES
    from harness.results import CorpusCheck

    run = load_run(make_doc([make_entry("gunicorn-sync"), make_entry("gunicorn-sync", leaks=9)]))
    first, leaky = ENTRIES["thread-local-before-patch"], ENTRIES["app-context-at-import"]
    cells = tuple(
        dataclasses.replace(
            c,
            app=entry.variant("buggy").app,
            corpus=CorpusCheck(entry.key, "buggy", bool(c.leaks), "r", verdict, True, 4),
        )
        for c, entry, verdict in zip(run.cells, (first, leaky), ("clean", "caught"), strict=True)
    )
    md = render_reports(run.replace(cells=cells))["report.md"]
    assert "## Corpus: real leak classes, buggy and fixed" in md
    assert "## Summary" not in md and "The main app" not in md


def test_a_users_app_alone_is_drawn_in_the_main_colour() -> None:
    # The light blue is "Flask next to the core" (the note under the verdict says so); a run of
    # one app of the user's drew all its clean bars light blue, as if it were Flask beside one.
    from harness.report.charts import COLOR_OK, COLOR_OTHER_APP

    app = "myproject.wsgi:app"
    _, html = render(make_doc([make_entry(m, app_label=app, rps=1000.0) for m in MODES[:2]]))
    assert html.count(f'fill="{COLOR_OK}"') == 2
    assert COLOR_OTHER_APP not in html
    both = [make_entry("gunicorn-sync"), make_entry("gunicorn-sync", app_label="flask")]
    _, html = render(make_doc(both))
    assert html.count(f'fill="{COLOR_OTHER_APP}"') == 1


def test_a_cell_whose_server_died_is_failed_everywhere() -> None:
    from harness.report import format_summary

    died = make_entry("gunicorn-sync", errors=3)
    died["error_kinds"] = {"cut short by the server's death": 3}
    died["error"] = (
        "gunicorn-sync: the server's main process (pid 9) was killed by SIGKILL during the run"
        " 1/3 of the keepalive cell, after 120 requests checked"
    )
    doc = make_doc([died, make_entry("gunicorn-sync", connections="fresh"),
                    make_entry("gunicorn-gthread"), make_entry("gunicorn-gevent")])  # fmt: skip
    run = load_run(doc)
    assert run.cells[0].failed and not run.cells[0].clean
    md, html = render(doc)
    assert "**Verdict: FAILED: a server died, 1 cell not measured to the end.**" in md
    assert "The server died on its own, and 1 cell was not measured to the end" in md
    assert "Errors in 1 cell." in md
    # A cell that failed at its start has no errors: it was counted as one "with errors".
    unstarted = {**died, "errors": 0, "error_kinds": {}, "requests": 0}
    assert "Errors in" not in render(make_doc([unstarted, make_entry("gunicorn-gthread")]))[0]
    errors = section(md, "## Errors")
    assert "**gunicorn-sync (core, contextvar, keepalive) ended early:** " + died["error"] in errors
    assert 'class="callout verdict failed"' in html or "verdict failed" in html
    # Never ranked: the fastest keepalive mode is chosen among the others.
    assert "For keepalive connections use gunicorn-sync" not in md
    text = format_summary(run)
    assert "FAILED" in text and "failed cells (the server died" in text
    assert died["error"] in text
    # the charts say so under its mode, as the terminal's verdict column does (not "errors")
    chart = render_reports(run)["throughput-keepalive.svg"]
    assert 'font-size="10.5">FAILED</tspan>' in chart and ">errors</tspan>" not in chart


def test_a_server_death_is_counted_once_however_many_cells_it_failed() -> None:
    """A target killed during its keepalive cell fails that cell and, at its start, the fresh
    one: 'the server died on its own in 2 cells' of one death. A server ctxbench started is
    replaced after it dies, so each failed cell there is a death of its own."""
    run = load_run(make_doc([make_entry("gunicorn-sync", errors=3)]))
    first = run.cells[0]
    url = "http://127.0.0.1:8080"
    server = dataclasses.replace(first.server, effective={"target": url})
    target = dataclasses.replace(
        first, mode="target:127.0.0.1:8080", server=server, error=f"nothing listens on {url}"
    )
    died = (target, dataclasses.replace(target, connections="fresh"))
    md = render_reports(run.replace(cells=died))["report.md"]
    assert "**Verdict: FAILED: a server died, 2 cells not measured to the end.**" in md
    assert "The server died on its own, and 2 cells were not measured to the end (a target" in md
    assert "died on its own in 2 cells" not in md
    assert "failed cells (the server died; a target is not restarted" in format_summary(
        run.replace(cells=died)
    )
    # The target came back, and died again in a later cell: two deaths.
    ok = dataclasses.replace(target, connections="fresh", error=None)
    again = (target, ok, dataclasses.replace(target, concurrency=32))
    md = render_reports(run.replace(cells=again))["report.md"]
    assert "**Verdict: FAILED: 2 server deaths, 2 cells not measured to the end.**" in md
    assert "Servers died on their own 2 times, and 2 cells were not measured to the end" in md
    # Two targets, each gone once: two deaths.
    at_8081 = dataclasses.replace(server, effective={"target": "http://127.0.0.1:8081"})
    other = dataclasses.replace(target, mode="target:127.0.0.1:8081", server=at_8081)
    md = render_reports(run.replace(cells=(target, other)))["report.md"]
    assert "**Verdict: FAILED: 2 server deaths, 2 cells not measured to the end.**" in md
    # A server ctxbench started died in two cells: the second ran on a new server, which died.
    started = dataclasses.replace(first, error="gunicorn-sync: the server's main process died")
    cells = (started, dataclasses.replace(started, connections="fresh"))
    md = render_reports(run.replace(cells=cells))["report.md"]
    assert "**Verdict: FAILED: 2 server deaths, 2 cells not measured to the end.**" in md
    assert (
        "Servers died on their own 2 times, and 2 cells were not measured to the end (a new" in md
    )
    text = format_summary(run.replace(cells=cells))
    assert "failed cells (servers died 2 times; a new server ran the cells after):" in text


def test_a_cell_whose_server_starved_users_is_said_and_never_ranked() -> None:
    import dataclasses

    from harness.report import format_summary

    def starving(c: Any, n: int | None) -> Any:
        runs = tuple(dataclasses.replace(r, starved=n) for r in c.runs)
        return dataclasses.replace(c, runs=runs, concurrency=16)

    # uwsgi-processes would be the fastest keep-alive mode, but 14 of its 16 users were starved
    entries = [make_entry("uwsgi-processes", rps=9000.0), *(make_entry(m) for m in MODES)]
    run = load_run(make_doc(entries))
    fair = tuple(starving(c, 0) for c in run.cells[1:])
    run = run.replace(cells=(starving(run.cells[0], 14), *fair))
    summary = summarize(run)
    assert summary.verdict == ("OK", "ok") and not summary.errored  # not a leak, not an error
    assert [r.best.mode for r in summary.rankings] == ["gunicorn-gevent"]
    text = format_summary(run)
    assert text.splitlines()[2].split()[9] == "5.33^"  # the starved cell's p99
    assert text.count("^") == 2
    assert "^ starved users (uwsgi-processes, keepalive: 14 of 16 users): some virtual" in text
    assert "--proxy nginx" in text
    md = render_reports(run)["report.md"]
    assert "are not ranked (uwsgi-processes, keepalive: 14 of 16 users)" in md
    table = section(md, "## Keep-alive connections (`keepalive`)")
    assert "| p99 ms | max ms | starved users |" in table
    assert "| 14 of 16 |\n" in table and table.count("| 0 |\n") == 4
    assert "> **Starved users** (uwsgi-processes, keepalive: 14 of 16 users, in the worst" in table
    # the summary at the top says it too: its rps is not every user's
    overview = section(md, "## Summary")
    assert "| errors | leaks | starved users |" in overview and "| 14 of 16 |\n" in overview
    assert "*starved users* counts the core's virtual users" in overview
    # measured and none starved, or not recorded (an older document): nothing is said
    for n in (0, None):
        quiet = run.replace(cells=tuple(starving(c, n) for c in run.cells))
        assert "starved" not in format_summary(quiet)
        assert "tarved" not in render_reports(quiet)["report.md"]


def test_starved_cells_of_a_sweep_name_their_level() -> None:
    # "uwsgi-processes, keepalive: 2 of 4 users; uwsgi-processes, keepalive: 30 of 32 users"
    # named one cell twice in a sweep (--concurrency 4,32); every other list of cells says @4.
    from harness.report import format_summary

    run = load_run(make_doc([make_entry("uwsgi-processes", rps=900.0)]))
    c = run.cells[0]
    cells = tuple(
        dataclasses.replace(
            c, concurrency=n, runs=tuple(dataclasses.replace(r, starved=n - 2) for r in c.runs)
        )
        for n in (4, 32)
    )
    run = run.replace(cells=cells)
    who = "uwsgi-processes, keepalive @4: 2 of 4 users; uwsgi-processes, keepalive @32: 30 of 32"
    assert f"^ starved users ({who} users): some virtual" in format_summary(run)
    assert f"> **Starved users** ({who} users, in the worst" in render_reports(run)["report.md"]
    # one level: the level is in the count already
    single = run.replace(cells=cells[1:])
    assert "(uwsgi-processes, keepalive: 30 of 32 users)" in format_summary(single)
    # A sweep where one level starved: its cell names its level all the same, or the list
    # reads as if the run had one level (seen: --concurrency 2,16, uwsgi-processes starved @16
    # only, said 'uwsgi-processes, keepalive: 14 of 16 users' on the terminal and the report).
    fair = dataclasses.replace(
        cells[0], runs=tuple(dataclasses.replace(r, starved=0) for r in cells[0].runs)
    )
    one = run.replace(cells=(fair, cells[1]))
    who = "uwsgi-processes, keepalive @32: 30 of 32 users"
    assert f"^ starved users ({who}): some virtual" in format_summary(one)
    md = render_reports(one)["report.md"]
    assert f"> **Starved users** ({who}, in the worst" in md
    assert f"Cells whose server starved some users are not ranked ({who}):" in md
    assert "keepalive: 30 of 32" not in md


def starved_cell(
    mode: str, connections: str, held: ServerConnections | None, *, doc: bool = False
) -> Run:
    """A run of one cell of ``mode`` whose server starved 3 of 16 users, its server recorded as
    doing ``held`` with its connections (``None``: not recorded); through its JSON document
    when ``doc``."""
    entry = make_entry("gunicorn-gevent", connections=connections, rps=1000.0)
    run = load_run(make_doc([{**entry, "mode": mode}]))
    c = run.cells[0]
    runs = tuple(dataclasses.replace(r, starved=3) for r in c.runs)
    server = dataclasses.replace(c.server, connections=held)
    run = run.replace(cells=(dataclasses.replace(c, runs=runs, concurrency=16, server=server),))
    return Run.from_json(run.to_json()) if doc else run


def causes_said(run: Run) -> list[list[str]]:
    """The keys of STARVED_CAUSES whose advice the terminal summary and report.md give."""
    from harness.load.fairness import STARVED_CAUSES

    texts = (format_summary(run), render_reports(run)["report.md"])
    return [[name for name, advice in STARVED_CAUSES.items() if advice in text] for text in texts]


@pytest.mark.parametrize(
    ("mode", "connections", "cause"),
    [
        pytest.param("uwsgi-processes", "keepalive", "keepalive", id="holds-kept-alive"),
        pytest.param("uwsgi-processes", "fresh", "fresh", id="backlog"),
        pytest.param("gunicorn-gevent", "keepalive", "turns", id="gives-turns"),
        pytest.param("gunicorn-sync", "keepalive", "fresh", id="closes-every-connection"),
        pytest.param("nginx+uwsgi-processes", "keepalive", "fresh", id="proxy-fresh"),
        pytest.param("nginx-keepalive+uwsgi-processes", "fresh", "proxy-keepalive",
                     id="proxy-keepalive"),
        pytest.param("target:127.0.0.1:8080/", "keepalive", "keepalive", id="target"),
    ],
)  # fmt: skip
def test_the_starved_advice_fits_the_mode_that_starved(
    mode: str, connections: str, cause: str
) -> None:
    # A gunicorn-gevent cell starved by a busy machine was told of uWSGI's --http11-socket, and
    # to use fresh connections: the advice followed the connection pattern alone. The runner
    # records what the mode's server does with the connections; a target's is not known.
    from harness.runner import server_connections_for
    from harness.servers import get_mode

    target = mode.startswith("target:")
    held = None if target else server_connections_for(mode, get_mode(mode).traits, connections)
    assert causes_said(starved_cell(mode, connections, held, doc=True)) == [[cause], [cause]]


@pytest.mark.parametrize(
    ("mode", "connections", "worker_connections", "cause"),
    [
        # 2 workers x 4 greenlets hold 8 connections: 8 of 16 users waited the run out.
        pytest.param("gunicorn-gevent", "keepalive", 4, "limit", id="gunicorn-gevent"),
        pytest.param("gunicorn-gevent", "keepalive", 8, "turns", id="gunicorn-gevent-room"),
        pytest.param("eventlet", "keepalive", 4, "limit", id="eventlet"),
        # waitress's limit counts its listening socket and wake-up pipe: 6 holds 4 connections.
        pytest.param("waitress", "keepalive", 6, "limit", id="waitress"),
        pytest.param("waitress", "keepalive", 18, "turns", id="waitress-room"),
        pytest.param("waitress", "fresh", 6, "fresh", id="waitress-fresh"),
        pytest.param("nginx-keepalive+gunicorn-gevent", "fresh", 6, "limit", id="proxy-keepalive"),
    ],
)  # fmt: skip
def test_the_starved_advice_names_a_connection_limit_the_users_outnumbered(
    mode: str, connections: str, worker_connections: int, cause: str
) -> None:
    # run --modes gunicorn-gevent,eventlet,waitress --worker-connections 4: 8, 12 and 12 of 16
    # keep-alive users starved, exactly those the servers had no room for, and the advice was
    # to rerun on a quieter machine (a server that gives every connection its turn).
    from harness.runner import server_connections_for
    from harness.servers import get_mode
    from harness.servers.base import ServerConfig

    traits = get_mode(mode).traits_for(ServerConfig(worker_connections=worker_connections))
    held = server_connections_for(mode, traits, connections)
    assert causes_said(starved_cell(mode, connections, held, doc=True)) == [[cause], [cause]]


@pytest.mark.parametrize("connections", ["keepalive", "fresh"])
def test_a_document_that_did_not_record_its_server_s_connections_gets_the_pattern_s_advice(
    connections: str,
) -> None:
    # Written before the runner recorded them: gunicorn-gevent gives every kept-alive connection
    # its turn, but the run does not say so, and the report reads the run alone.
    run = starved_cell("gunicorn-gevent", connections, None, doc=True)
    assert run.cells[0].server.connections is None
    assert causes_said(run) == [[connections], [connections]]


def test_the_starved_advice_follows_the_run_not_the_registry_of_the_reader() -> None:
    # A mode renamed or removed since the run, or changed (the run's gunicorn-gevent held its
    # kept-alive connections): what the run recorded decides, whatever this ctxbench registers.
    holds = ServerConnections(pattern="keepalive", kept_alive_holds_unit=True)
    turns = ServerConnections(pattern="keepalive", kept_alive_holds_unit=False)
    assert causes_said(starved_cell("gunicorn-gevent", "keepalive", holds)) == [["keepalive"]] * 2
    assert causes_said(starved_cell("uwsgi-http11", "keepalive", turns)) == [["turns"]] * 2
    behind = dataclasses.replace(holds, proxy="some-proxy")
    said = causes_said(starved_cell("some-proxy+uwsgi-http11", "fresh", behind))
    assert said == [["proxy-keepalive"]] * 2


#: What describes the ctxbench that runs, not the run: the server registry, what it derives (the
#: expectations model) and the command line. Reading a run loads none of them.
NOT_READ_BY_THE_REPORT = (["harness", "servers"], ["harness", "expectations"], ["harness", "cli"])


def test_no_report_module_imports_the_server_registry() -> None:
    # The report reads the run and nothing else: the server registry (harness.servers), what it
    # derives (harness.expectations) and the CLI describe the ctxbench that renders, not the run.
    # Every import counts, one inside a function too (the next test sees only module level).
    import ast

    import harness.report

    def imported(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom):  # from harness import servers: harness.servers
            return [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
        return []

    for module in sorted(Path(harness.report.__file__).parent.glob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        names = [name for node in ast.walk(tree) for name in imported(node)]
        wrong = [name for name in names if name.split(".")[:2] in NOT_READ_BY_THE_REPORT]
        assert not wrong, f"{module.name} imports {wrong}"


@pytest.mark.parametrize("module", ["harness.report", "harness.results", "harness.settings"])
def test_reading_a_run_loads_no_server(module: str) -> None:
    # What the report imports imports none of it either: the results model imported
    # harness.settings, which imported the registry to check the settings, and package_version
    # from harness.servers.base, so rendering a report loaded every server mode's module.
    import subprocess
    import sys

    code = f"import sys, {module}; print(' '.join(sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = run.stdout.split()
    assert module in loaded
    wrong = [name for name in loaded if name.split(".")[:2] in NOT_READ_BY_THE_REPORT]
    # Nor the load driver: harness/load/__init__.py re-exported run_load, so reading the
    # results' counts (harness.load.acks, .cpu) imported the driver that makes them.
    wrong += [name for name in loaded if name == "harness.load.driver"]
    assert not wrong, f"import {module} loads {sorted(wrong)}"


def test_a_cell_that_waited_on_delayed_acks_is_said_and_never_ranked() -> None:
    import dataclasses

    from harness.load.acks import AckCounts
    from harness.report import format_summary

    def acked(c: Any, counts: AckCounts | None) -> Any:
        return dataclasses.replace(
            c, runs=tuple(dataclasses.replace(r, acks=counts) for r in c.runs)
        )

    # uvicorn-asgiref would be the fastest keep-alive mode, but its kept-alive responses
    # stalled on the client's delayed ACK: 3 runs of 16 first responses and 400 kept-alive ones
    entries = [make_entry("uvicorn-asgiref", rps=9000.0), *(make_entry(m) for m in MODES)]
    run = load_run(make_doc(entries))
    fast = tuple(acked(c, AckCounts(16, 0, 400, 0)) for c in run.cells[1:])
    run = run.replace(cells=(acked(run.cells[0], AckCounts(16, 0, 400, 390)), *fast))
    summary = summarize(run)
    assert summary.verdict == ("OK", "ok") and not summary.errored  # not a leak, not an error
    assert [r.best.mode for r in summary.rankings] == ["gunicorn-gevent"]
    said = (
        "uvicorn-asgiref, keepalive: 1,170 of 1,200 kept-alive responses came in two parts"
        " 30-80 ms apart, 0 of 48 first responses on a connection"
    )
    text = format_summary(run)
    assert "9,000~" in text.splitlines()[2].split()  # the cell's rps
    assert text.count("~") == 2
    assert f"~ waited on delayed ACKs ({said}): most responses" in text
    assert "Set TCP_NODELAY on the server's accepted sockets" in text and "#3149" in text
    md = render_reports(run)["report.md"]
    assert f"waited on the client's delayed ACKs are not ranked ({said})" in md
    table = section(md, "## Keep-alive connections (`keepalive`)")
    assert f"> **Waited on delayed ACKs** ({said}, the measured runs together" in table
    overview = section(md, "## Summary")
    assert "The rps of uvicorn-asgiref (keepalive) is the client's delayed-ACK timer's" in overview
    # a fast server, or not recorded (an older document): nothing is said
    for counts in (AckCounts(16, 0, 400, 0), None):
        quiet = run.replace(cells=tuple(acked(c, counts) for c in run.cells))
        assert "delayed ACK" not in format_summary(quiet)
        assert "delayed ACK" not in render_reports(quiet)["report.md"]


def test_a_driver_bound_cell_is_never_beaten_on_speed() -> None:
    import dataclasses

    def bound(c: Any) -> Any:
        return dataclasses.replace(
            c, runs=tuple(dataclasses.replace(r, driver_cpu=(0.99,)) for r in c.runs)
        )

    entries = [make_entry("gunicorn-gevent", rps=7000.0)]
    entries += [make_entry(m, rps=3000.0) for m in ("gunicorn-gthread", "gunicorn-sync")]
    run = load_run(make_doc(entries))
    [ranking] = summarize(run).rankings
    assert [c.mode for c in ranking.others] == ["gunicorn-gthread", "gunicorn-sync"]
    # gthread's 3,000 rps was the driver's: its server may be faster than gevent's 7,000
    run = run.replace(
        cells=tuple(bound(c) if c.mode == "gunicorn-gthread" else c for c in run.cells)
    )
    [ranking] = summarize(run).rankings
    assert ranking.best.mode == "gunicorn-gevent"
    assert [c.mode for c in ranking.tied] == ["gunicorn-gthread"]
    assert [c.mode for c in ranking.others] == ["gunicorn-sync"]
    md = render_reports(run)["report.md"]
    assert (
        "For keepalive connections gunicorn-gevent has the best median (7,000 rps), but"
        " gunicorn-gthread was driver-bound (the rate is the driver's, a lower bound of the"
        " server's): no mode to recommend on speed." in md
    )


def test_an_app_string_with_backticks_is_shown_as_given() -> None:
    from harness.report.render import _inline
    from harness.report.text import code

    app = "shop:create_app('a`b', note='``x``')"
    doc = make_doc([make_entry(m, app_label=app) for m in MODES[:2]])
    doc["command"] = ["ctxbench", "run", "--app", app]
    md, html = render(doc)
    assert code(app) == f"```{app}```"
    assert f"The main app ({code(app)}) on the correct" in md
    assert f"Command: ```ctxbench run --app {shlex.quote(app)}```" in md  # to copy and paste
    shown = app.replace("'", "&#x27;")
    assert f"The main app (<code>{shown}</code>) on the correct" in html
    # any text round-trips through a code span
    for text in ("`", "``x", "x`", " a ", "a ` b", "**", "\0", "<b>"):
        assert _inline(code(text)) == f"<code>{escape(text.replace(chr(0), chr(0xFFFD)))}</code>"
    assert _inline("`a` and **b `c`**") == "<code>a</code> and <strong>b <code>c</code></strong>"


def test_requests_the_app_answered_itself_are_no_verdict() -> None:
    # A rate limiter answered most requests with a 429: "OK, every request saw only its own
    # values" would be a verdict on requests that never reached the probe.
    import dataclasses

    run = load_run(make_doc([make_entry(m) for m in MODES]))
    gated = dataclasses.replace(
        run.cells[0], errors=900, error_kinds={"non-2xx": 900}, error_statuses={"429": 900}
    )
    run = run.replace(cells=(gated, *run.cells[1:]))
    summary = summarize(run)
    words, kind = summary.verdict
    assert kind == "failed" and words.startswith("NONE"), words
    verdict = render_reports(run)["report.md"].split("**Recommendation:**")[0]
    assert "(900 x 429): the app answered them itself" in verdict, verdict
    assert "every request saw only its own values" not in verdict, verdict


def test_only_judged_responses_count_as_checked() -> None:
    from pathlib import Path

    from harness.cli import format_totals

    entry = make_entry("gunicorn-gthread", errors=40, rps=2000.0)  # 12,000 requests
    entry["injected"] = 60  # made to fail on purpose (--fail-phase): never judged
    run = load_run(make_doc([entry, make_entry("gunicorn-sync", rps=1000.0)]))
    assert [c.checked for c in run.cells] == [11_900, 6_000] and run.checked == 17_900
    md, _ = render(make_doc([entry]))
    assert "; 11,900 requests checked for request" in md
    [totals] = format_totals(run, 3.0, Path("results/x/results.json"))[:1]
    assert totals.startswith("2 cells, 17,900 requests checked (100 more failed or were made to")


def test_totals_say_one_virtual_user_never_overlaps_requests() -> None:
    # --concurrency 1 sends one request at a time: "0 leaks" there says nothing of requests
    # served at the same time, and the terminal says so (the report's notes are not read).
    from pathlib import Path

    from harness.cli import format_totals

    def totals(concurrency: int, leaks: int = 0) -> str:
        doc = make_doc([make_entry("gunicorn-gthread", leaks=leaks)])
        doc["settings"]["concurrency"] = concurrency
        return "\n".join(format_totals(load_run(doc), 1.0, Path("results/x/results.json")))

    assert "Requests never overlapped: one virtual user (--concurrency 1)" in totals(1)
    assert "never overlapped" not in totals(16)
    assert "never overlapped" not in totals(1, leaks=3)  # the leak says more


def test_the_notes_of_a_cell_at_one_virtual_user_say_more_users_not_a_longer_sleep() -> None:
    # The report's note said that a longer --sleep-ms (10) would make the requests overlap: one
    # user sends one request at a time, however long each sleeps.
    import dataclasses

    from harness.exercised import ONE_USER, exercised
    from harness.report.summary import weak_zeros

    seen = exercised(
        [(1, 10, None)], answered=300, rps=300.0, sleep_ms=1.0, connections="keepalive"
    )
    doc = make_doc([make_entry("gunicorn-gthread")])
    doc["settings"]["concurrency"] = 1
    cell = dataclasses.replace(load_run(doc).cells[0], exercised=seen)
    assert weak_zeros([cell]) == [
        f"gunicorn-gthread keepalive: requests never overlapped: {ONE_USER}; run more users"
        " (--concurrency)."
    ]
    assert "--sleep-ms" in weak_zeros([dataclasses.replace(cell, concurrency=2)])[0]


def test_a_cell_whose_requests_mostly_failed_at_the_transport_is_no_verdict() -> None:
    # Every request of a cell was reset before an answer came: "OK, every request saw only its
    # own values" would be a verdict on requests that were never checked.
    import dataclasses

    from harness.cli import _unchecked
    from harness.report.summary import too_few_checked

    run = load_run(make_doc([make_entry(m) for m in MODES]))
    first = run.cells[0]
    reset = dataclasses.replace(first, errors=first.requests, error_kinds={"reset": first.requests})
    run = run.replace(cells=(reset, *run.cells[1:]))
    words, kind = summarize(run).verdict
    assert (words, kind) == ("NONE: most requests got no answer that could be checked", "failed")
    verdict = render_reports(run)["report.md"].split("**Recommendation:**")[0]
    assert f"0 of {first.requests:,} requests checked ({first.requests:,} x reset)" in verdict
    assert "every request saw only its own values" not in verdict, verdict
    said = _unchecked(summarize(run).unchecked, None, False)
    assert said is not None and "too few requests were checked" in said, said
    # A server ctxbench did not start has no log of ctxbench's: the user's own is meant.
    server = dataclasses.replace(reset.server, effective={"target": "http://127.0.0.1:8080"})
    target = dataclasses.replace(reset, server=server)
    said = _unchecked(summarize(run.replace(cells=(target, *run.cells[1:]))).unchecked, None, False)
    assert said is not None and said.endswith(
        "the others failed before an answer came, so no verdict is given; read the server logs"
        " of the targets (ctxbench did not start them) for why"
    ), said
    # The line: half the requests checked still has a verdict, one fewer has none.
    half = first.requests // 2
    for errors, few in ((half, False), (half + 1, True), (0, False)):
        cell = dataclasses.replace(first, errors=errors, error_kinds={"timeout": errors})
        assert too_few_checked(cell) is few, errors
    # No request sent at all is no verdict either.
    assert too_few_checked(dataclasses.replace(first, requests=0))
    # Requests made to fail on purpose (--fail-phase, even --fail-fraction 1) are not failures
    # at the transport: the cell is judged as before.
    made_to_fail = dataclasses.replace(first, injected=first.requests)
    assert not too_few_checked(made_to_fail)
    assert not too_few_checked(dataclasses.replace(first, injected=half, errors=half // 2))
    # A broken backend's cell that leaked was put to the test, however few were checked; one
    # that checked too few and showed no leak is a negative control that tested nothing: no
    # verdict (`ctxbench run --backend no-reset` with every request reset exited 0).
    caught = dataclasses.replace(reset, backend="no-reset", leaks=3)
    with_caught = summarize(run.replace(cells=(caught, *run.cells[1:])))
    assert with_caught.unchecked == () and _unchecked(with_caught.unchecked, None, False) is None
    silent = dataclasses.replace(reset, backend="no-reset")
    with_silent = summarize(run.replace(cells=(silent, *run.cells[1:])))
    assert with_silent.unchecked == (silent,) and with_silent.verdict[0].startswith("NONE")
    # ... while the correct storage, checked in full beside it, is still said to have held.
    assert "No leak with the correct contextvar storage" in headline(with_silent)
    alone = summarize(run.replace(cells=(silent,)))
    assert alone.unchecked == (silent,) and alone.verdict[0].startswith("NONE")
    md = render_reports(run.replace(cells=(silent,)))["report.md"]
    assert f"0 of {first.requests:,} requests checked, no leak" in md, md


def test_a_target_s_verdict_names_its_own_stack_not_ctxbench_s_storage() -> None:
    """ctxbench cannot know the context storage of a server it did not start (--target): the
    verdict said 'No leak with the correct contextvar storage' of it all the same, and blamed
    a leak there on 'the correct contextvar storage'."""
    import dataclasses

    run = load_run(make_doc([make_entry("gunicorn-sync")]))
    first = run.cells[0]
    server = dataclasses.replace(first.server, effective={"target": "http://127.0.0.1:8080"})
    target = dataclasses.replace(first, mode="target:127.0.0.1:8080", server=server)
    clean = headline(summarize(run.replace(cells=(target,))))
    assert "; mode target:127.0.0.1:8080; the target's own stack; keepalive connections" in clean
    assert "No leak on the target's own stack: every request saw only its own values." in clean
    assert "contextvar" not in clean, clean
    leaked = dataclasses.replace(target, leaks=3)
    md = render_reports(run.replace(cells=(leaked,)))["report.md"]
    verdict = md.split("**Recommendation:**")[0]
    assert "The framework's context leaked on the target's own stack in 1 of 1 cell:" in verdict
    assert "contextvar" not in verdict, verdict
    assert "The main app (`core`) on the target's own stack, one row per server mode" in md
    # ... and no table or heading names ctxbench's storage for it, nor the settings, which
    # listed the --app, --backend and --modes defaults a target run was given and never used.
    targets = dataclasses.replace(run.settings, targets=("http://127.0.0.1:8080",))
    md = render_reports(run.replace(cells=(leaked,), settings=targets))["report.md"]
    assert "contextvar" not in md and "core_app" not in md, md
    for setting in ("apps", "backends", "modes"):
        assert f"| {setting} | target's own |" in md
    assert "### target:127.0.0.1:8080 · core · target's own · keepalive: 3 leaks" in md
    assert "### target:127.0.0.1:8080 (core, target's own)" in md  # its configuration
    # The terminal's backend column, shown when two targets serve different apps.
    other = dataclasses.replace(target, app="myapp:app", mode="target:127.0.0.1:8081")
    table = format_summary(run.replace(cells=(target, other)))
    assert "contextvar" not in table and "target's own" in table, table
    # ctxbench's own servers keep their words.
    assert "No leak with the correct contextvar storage" in headline(summarize(run))
    assert '| backends | ["contextvar"] |' in render_reports(run)["report.md"]


def test_a_value_no_request_of_the_run_carried_is_said_to_be_one() -> None:
    """A target answering 'zzzz-0-0' to every request read as 440 leaks of the framework's
    context, as if another request's live state had shown: the verdict and the terminal say
    that no request of this run carried it, and that it is a leak all the same."""
    import dataclasses

    from harness.report import format_summary
    from harness.report.summary import UNKNOWN_VALUES
    from harness.verdict import Evidence, Unit

    run = load_run(make_doc([make_entry("gunicorn-sync")]))
    first = run.cells[0]

    def leaked(*seen: str) -> Run:
        evidence = tuple(
            Evidence("gunicorn-sync", "view", "request", "a1b2c3d4_77x1-0-1", v, Unit(1, 2, None))
            for v in seen
        )
        return run.replace(cells=(dataclasses.replace(first, leaks=3, evidence=evidence),))

    forged = leaked("zzzz-0-0", "zzzz-0-0", "a1b2c3d4_77x0-5-6")
    said = headline(summarize(forged))
    assert f'{UNKNOWN_VALUES[0].upper()}{UNKNOWN_VALUES[1:]}: `"zzzz-0-0"`.' in said, said
    assert f'{UNKNOWN_VALUES}: "zzzz-0-0"' in format_summary(forged).splitlines()
    # Another request's token of the same run (an earlier load, a shard): nothing more said.
    ours = leaked("a1b2c3d4_77x0-5-6", "a1b2c3d4_77x1p1-2-3")
    assert "no request of this run" not in headline(summarize(ours))
    assert "no request of this run" not in format_summary(ours)


def test_a_token_mismatch_alone_is_not_called_a_context_leak() -> None:
    """A target behind a cache that ignores the query string (each request got the first
    answer) and one answering 'zzzz-0-0' everywhere each read 'The framework's context leaked
    on the target's own stack', the second followed by 'no request of this run carried' its
    value: an answer that echoed another token everywhere may be another request's response
    (a response mix-up), which a token mismatch cannot tell from a context leak."""
    import dataclasses

    from harness.report.summary import only_mixed_up
    from harness.verdict import Evidence, Unit

    run = load_run(make_doc([make_entry("gunicorn-sync")]))
    server = dataclasses.replace(run.cells[0].server, effective={"target": "http://127.0.0.1:8080"})
    target = dataclasses.replace(run.cells[0], mode="target:127.0.0.1:8080", server=server)

    def answered(*pieces: tuple[str, str | None, str]) -> Cell:
        evidence = tuple(
            Evidence("target:127.0.0.1:8080", "view", name, expected, seen, Unit(1, 2, None))
            for name, expected, seen in pieces
        )
        return dataclasses.replace(target, leaks=len(evidence), evidence=evidence)

    mixed_up = answered(  # two requests, each answered with the first one's response
        ("token", "s_1x0-1-1", "s_1x0-0-1"),
        ("request", "s_1x0-1-1", "s_1x0-0-1"),
        ("token", "s_1x0-2-1", "s_1x0-0-1"),
        ("g", "s_1x0-2-1", "s_1x0-0-1"),
    )
    forged = answered(("token", "s_1x0-1-1", "zzzz-0-0"), ("request", "s_1x0-1-1", "zzzz-0-0"))
    for cell in (mixed_up, forged):
        said = headline(summarize(run.replace(cells=(cell,))))
        assert only_mixed_up(cell) and "context leaked" not in said, said
        assert (
            "Requests saw values not their own on the target's own stack in 1 of 1 cell:"
            " target:127.0.0.1:8080 (core, keepalive): "
        ) in said, said
        assert (
            "; every answer kept as evidence echoed a token not its request's, which a context"
            " leak and a response mix-up (a proxy, the server or a cache answering one request"
            " with another's response) both do, so the evidence cannot tell which."
        ) in said, said
    # A value that differs in an answer that echoed its own token, a residue check's or
    # current_app's: the context leaked inside the request that made the answer.
    for shown in (
        ("g", "s_1x0-3-1", "s_1x0-0-1"),
        ("residue.g", None, "s_1x0-0-1"),
        ("current_app", "core", "other"),
    ):
        cell = answered(("token", "s_1x0-1-1", "s_1x0-0-1"), shown)
        said = headline(summarize(run.replace(cells=(cell,))))
        assert not only_mixed_up(cell), shown
        assert "The framework's context leaked on the target's own stack in 1 of 1 cell" in said
        assert "Requests saw values" not in said, said


def test_who_answered_in_the_probe_s_place_is_read_from_what_came_back() -> None:
    """Against --target, an answer that is not HTTP/1.x (a garbage head, a body over 1 MiB) and
    a proxy's 502 each ended in 'the app answered them itself ... let probe requests through
    the app's hooks': broken HTTP is the server's doing or a proxy's, a 502 the proxy's."""
    import dataclasses

    from harness.cli import _not_probe_answers, _unchecked

    run = load_run(make_doc([make_entry("gunicorn-sync")]))
    first = run.cells[0]

    def failing(kinds: dict[str, int], statuses: dict[str, int]) -> tuple[Run, Cell]:
        cell = dataclasses.replace(
            first, errors=first.requests, error_kinds=kinds, error_statuses=statuses
        )
        return run.replace(cells=(cell,)), cell

    broken_run, broken = failing({"http": first.requests}, {})
    assert broken.not_probe_answers == 0 and _not_probe_answers([broken], False) is None
    said = _unchecked(summarize(broken_run).unchecked, None, False)
    assert said is not None, broken
    assert (
        f"({first.requests:,} x http): the others got an answer that is not HTTP/1.x ctxbench"
        " can read (a head that is not one, a body over 1 MiB, bytes past its end), which is"
        " the server's doing or a proxy's in front of it, not the app's"
    ) in said, said
    verdict = render_reports(broken_run)["report.md"].split("**Recommendation:**")[0]
    assert "NONE: most requests got no answer that could be checked" in verdict
    assert "not HTTP/1.x" in verdict and "hooks" not in verdict, verdict

    gateway_run, gateway = failing({"non-2xx": 3}, {"502": 2, "504": 1})
    said = _not_probe_answers([gateway], False)
    assert said is not None and said.endswith(
        "(2 x 502, 1 x 504): a proxy in front of the app answered them, the server behind it"
        " having given it no valid answer (502) or none in time (504), so they were never"
        " checked and no verdict is given; the proxy's log and the app server's say why"
    ), said
    words = summarize(gateway_run).verdict[0]
    assert words == "NONE: a proxy answered requests in the probe's place"
    assert "hooks" not in render_reports(gateway_run)["report.md"].split("**Recommendation:**")[0]

    # A 503 is nginx's limit_req and limit_conn answer, a balancer's with no server, or an app's
    # in maintenance: not "the app failed on them (an exception ...?)", which a 500 is.
    busy_run, busy = failing({"non-2xx": 3}, {"503": 2, "502": 1})
    said = _not_probe_answers([busy], False)
    assert said is not None and "a proxy in front of the app or the app refused them" in said
    assert "exception" not in said, said
    assert summarize(busy_run).verdict[0] == (
        "NONE: a proxy or the app answered requests in the probe's place"
    )
    _, failed = failing({"non-2xx": 3}, {"500": 3})
    said = _not_probe_answers([failed], False)
    assert said is not None and "the app failed on them (an exception" in said, said
    # A 2xx that is not the probe's answer (``protocol``) is the app's, whatever else came.
    _, mixed = failing({"non-2xx": 2, "protocol": 1}, {"502": 2})
    assert "the app answered them itself" in (_not_probe_answers([mixed], False) or ""), mixed

    # A 401 is the app's own hooks; a 502 among them does not make it the proxy's.
    hooks_run, hooks = failing({"non-2xx": 3}, {"401": 2, "502": 1})
    said = _not_probe_answers([hooks], False)
    assert said is not None and "the app answered them itself" in said, said
    assert summarize(hooks_run).verdict[0] == "NONE: the app answered requests in the probe's place"


def test_the_terminal_shows_where_a_zero_proves_little_as_the_report_does() -> None:
    """The report's "What the runs exercised" warnings (a keepalive cell whose server closed
    after nearly every response exercised what fresh does) were never on the terminal."""
    import dataclasses

    from harness.exercised import exercised
    from harness.report import format_summary
    from harness.report.summary import WEAK_ZEROS_HEAD, weak_zeros

    units = [(1, 10, None), (1, 11, None), (2, 20, None), (2, 21, None)]
    closed = exercised(units, answered=3000, rps=3000.0, sleep_ms=1.0, connections="keepalive",
                       reconnects=2984)  # fmt: skip
    kept = exercised(units, answered=3000, rps=3000.0, sleep_ms=1.0, connections="keepalive",
                     reconnects=3)  # fmt: skip
    entries = [make_entry("gunicorn-sync"), make_entry("gunicorn-gthread"),
               make_entry("gunicorn-gevent", leaks=2)]  # fmt: skip
    run = load_run(make_doc(entries))
    weak, ok, leaked = run.cells
    run = run.replace(cells=(dataclasses.replace(weak, exercised=closed),
                             dataclasses.replace(ok, exercised=kept),
                             dataclasses.replace(leaked, exercised=closed)))  # fmt: skip
    [note] = closed.notes()
    # A mode ctxbench started says it in the report only: the terminal of every `make run`
    # would list the greenlet and overlap caveats of a dozen modes.
    assert WEAK_ZEROS_HEAD not in format_summary(run)
    # A server ctxbench did not start (--target): the probe's view is all there is.
    target = {"target": "http://127.0.0.1:8080"}
    run = run.replace(
        cells=tuple(
            dataclasses.replace(c, server=dataclasses.replace(c.server, effective=target))
            for c in run.cells
        )
    )
    text = format_summary(run)
    lines = text.splitlines()
    # one line per note, only for the clean cell (the leaking one has said more), worded once
    assert f"{WEAK_ZEROS_HEAD}:" in lines
    said = f"gunicorn-sync keepalive ({note.figure}): {note.sentence}."
    assert [ln for ln in lines if note.sentence in ln] == [f"  {said}"]
    assert weak_zeros(run.cells) == [said]
    # In a concurrency sweep each level is a cell of its own: the note names its level.
    levels = [dataclasses.replace(run.cells[0], concurrency=n) for n in (1, 8)]
    assert weak_zeros(levels) == [
        f"gunicorn-sync keepalive @1 ({note.figure}), gunicorn-sync keepalive @8"
        f" ({note.figure}): {note.sentence}."
    ]
    md = render_reports(run)["report.md"]
    assert said in md and md.count(note.sentence) == 1
    # nothing exercised weakly: nothing said
    quiet = run.replace(cells=(dataclasses.replace(run.cells[0], exercised=kept),
                               *run.cells[1:]))  # fmt: skip
    assert WEAK_ZEROS_HEAD not in format_summary(quiet)


def test_a_note_that_holds_for_many_cells_is_said_once() -> None:
    """The reference's "A zero below proves little" listed one 50-word sentence per cell (the
    greenlet note six times, the overlap note six more, its figure inside): a wall of text in
    a run of many cells. Each note is said once, after the cells it holds for."""
    import dataclasses

    from harness.exercised import exercised
    from harness.report.summary import weak_zeros

    greenlets = exercised([(1, 10, g) for g in range(8)], answered=800, rps=5000.0,
                          sleep_ms=1.0, connections="keepalive")  # fmt: skip
    modes = ("eventlet", "gunicorn-gevent", "nginx+gunicorn-gevent", "gunicorn-sync", "uwsgi")
    run = load_run(make_doc([make_entry(m, rps=1000.0) for m in modes]))
    cells = [dataclasses.replace(c, exercised=greenlets) for c in run.cells[:3]]
    slow = [exercised([(1, 10, None), (2, 20, None)], answered=500, rps=rps, sleep_ms=1.0,
                      connections="keepalive") for rps in (1500.0, 1200.0)]  # fmt: skip
    cells += [
        dataclasses.replace(c, exercised=e) for c, e in zip(run.cells[3:5], slow, strict=True)
    ]
    [greenlet_note] = greenlets.notes()
    overlap_note = slow[0].notes()[0]
    names = [f"{c.mode} keepalive" for c in cells]
    assert weak_zeros(cells) == [
        f"{', '.join(names[:3])}: {greenlet_note.sentence}.",
        f"{names[3]} (at least 0.75 requests in flight per process), {names[4]} (at least 0.60"
        f" requests in flight per process): {overlap_note.sentence}.",
    ]
    md = render_reports(run.replace(cells=tuple(cells)))["report.md"]
    assert md.count(greenlet_note.sentence) == md.count(overlap_note.sentence) == 1, md


def test_the_weak_zeros_note_points_at_no_place_and_names_its_figure() -> None:
    """``ctxbench run --target`` printed "A zero below proves little" after the table whose zeros
    it meant, and the report says it after its tables too; its figure read "at least 0.99 in
    flight", in flight of what unsaid."""
    from harness.exercised import exercised
    from harness.report.summary import WEAK_ZEROS_HEAD

    seen = exercised([(1, 10, None), (2, 20, None)], answered=500, rps=1500.0, sleep_ms=1.0,
                     connections="keepalive")  # fmt: skip
    [cell] = load_run(make_doc([make_entry("gunicorn-gthread")])).cells
    target = {"target": "http://127.0.0.1:8080"}
    cell = dataclasses.replace(
        cell, exercised=seen, server=dataclasses.replace(cell.server, effective=target)
    )
    run = load_run(make_doc([make_entry("gunicorn-gthread")])).replace(cells=(cell,))
    lines = format_summary(run).splitlines()
    head = lines.index(f"{WEAK_ZEROS_HEAD}:")
    assert head > next(i for i, ln in enumerate(lines) if ln.startswith("app "))
    assert not {"below", "above"} & set(WEAK_ZEROS_HEAD.split())
    assert "0 leaks" in WEAK_ZEROS_HEAD
    assert "(at least 0.75 requests in flight per process)" in lines[head + 1]
    md = render_reports(run)["report.md"]
    assert md.index(f"{WEAK_ZEROS_HEAD}:") > md.index("| leaks |")


def test_the_exercised_table_says_overlap_was_not_shown_rather_than_absent() -> None:
    """In flight per process is a lower bound (throughput x sleep): at or under 1 it does not
    show overlap, and does not rule it out; the table's "no" read as "did not overlap"."""
    import dataclasses

    from harness.exercised import exercised

    units = [(1, 10, None), (1, 11, None), (2, 20, None), (2, 21, None)]
    low = exercised(units, answered=3000, rps=1838.0, sleep_ms=1.0, connections="keepalive")
    assert not low.overlap
    run = load_run(make_doc([make_entry("gunicorn-gthread")]))
    [cell] = run.cells
    run = run.replace(cells=(dataclasses.replace(cell, exercised=low),))
    md = render_reports(run)["report.md"]
    [row] = [ln for ln in md.splitlines() if ln.startswith("| gunicorn-gthread | keepalive | 2 |")]
    assert "| 0.92 | not shown |" in row, row
    # A server that never overlaps requests (gunicorn-sync, --threads 1: 6491e32 took its notes
    # away) still read "not shown", as though a longer run could show it.
    serial = dataclasses.replace(low, can_overlap=False)
    run = run.replace(cells=(dataclasses.replace(cell, mode="gunicorn-sync", exercised=serial),))
    md = render_reports(run)["report.md"]
    [row] = [ln for ln in md.splitlines() if ln.startswith("| gunicorn-sync | keepalive | 2 |")]
    assert "| 0.92 | never: one at a time |" in row, row


def test_a_cell_of_one_measurement_shows_no_spread() -> None:
    # --repeats 1 (or a cell with one finished run) showed a spread of 0.0%, read as steady.
    from harness.report import format_summary

    one, three = make_entry("gunicorn-sync"), make_entry("gunicorn-gevent")
    one.update(rps_runs=one["rps_runs"][1:2], latency_runs=one["latency_runs"][1:2], rps_spread=0)
    run = load_run(make_doc([one, three]))
    assert len(run.cells[0].runs) == 1 and len(run.cells[1].runs) == 3
    rows = format_summary(run).splitlines()[2:4]
    spread = format_summary(run).splitlines()[0].index("spread")
    assert [row[spread : spread + 6].strip() for row in rows] == ["-", "4.0%"], rows
    out = render_reports(run)
    table = {  # the cell table's rows: mode, app, backend, leaks, errors, requests, rps, spread
        line.split(" | ")[0]: line.split(" | ")[7]
        for line in out["report.md"].splitlines()
        if " | core | contextvar | " in line
    }
    assert table == {"| gunicorn-sync": "-", "| gunicorn-gevent": "4.0%"}, table
    assert "spread -" in out["throughput-keepalive.svg"]
    assert "spread 0.0%" not in out["throughput-keepalive.svg"] + out["report.md"]


def test_a_spread_warning_says_when_the_machine_was_shared() -> None:
    """Repeats of one cell at 1,180, 770 and 2,155 rps beside other programs using 0.89, 1.25
    and 0.38 cores of 2: the warning told the user to close other busy programs without saying
    that there were any."""
    import dataclasses

    from harness.report import format_summary

    run = load_run(make_doc([make_entry("gunicorn-gthread", spread=0.8)]))
    cell = run.cells[0]

    def beside(*cores: float | None) -> Run:
        runs = tuple(
            dataclasses.replace(r, others_cpu=c) for r, c in zip(cell.runs, cores, strict=True)
        )
        return run.replace(cells=(dataclasses.replace(cell, runs=runs),))

    shared = "other programs used 0.89 cores meanwhile (median of the repeats): the machine was"
    said = format_summary(beside(0.89, 1.25, 0.38))
    assert f"compare these rates with care; {shared} shared; use a longer" in said, said
    md = render_reports(beside(0.89, 1.25, 0.38))["report.md"]
    assert f"> O{shared[1:]} shared. To reduce jitter:" in md, md
    # werkzeug-threaded alone on a quiet machine: up to 0.3 cores its ended threads took along
    for quiet in (beside(0.1, 0.2, 0.05), beside(0.3, 0.27, 0.19), beside(None, None, None), run):
        assert "other programs" not in format_summary(quiet).lower()
        assert "Other programs" not in render_reports(quiet)["report.md"]


def test_the_verdict_names_the_prefix_a_dispatchers_app_was_checked_under() -> None:
    # 'ctxbench run --app myproject.disp:dispatcher --mount /api' (LEAK) and '--mount /admin'
    # (OK) both said "1 cell ran: app `myproject.disp:dispatcher`": the verdict never said which
    # of the dispatcher's apps it was about, where compare and the chaos report say "at /api".
    for mount, said in (
        ("/api", "app `pkg.disp:dispatcher` at /api;"),
        ("/", "app `pkg.disp:dispatcher`;"),
    ):
        entry = make_entry("gunicorn-gthread", app_label="pkg.disp:dispatcher")
        entry["server"]["effective"]["mount"] = mount
        md, _ = render(make_doc([entry]))
        assert f"**Verdict: OK.** 1 cell ran: {said} mode gunicorn-gthread;" in md, md[:800]


def test_every_list_of_cells_names_the_prefix_its_app_was_checked_under() -> None:
    # Beyond the verdict's first sentence, 'run --app pkg.disp:dispatcher --mount /api' named
    # its cells 'gunicorn-gthread (`pkg.disp:dispatcher`, contextvar, keepalive)' in the leaks,
    # 'The main app (`pkg.disp:dispatcher`)' over the summary table, and so on: the same words
    # as a run of its app at /admin.
    entries = []
    for mode, leaks in (("gunicorn-gthread", 5), ("gunicorn-sync", 0)):
        entry = make_entry(mode, app_label="pkg.disp:dispatcher", leaks=leaks)
        entry["server"]["effective"]["mount"] = "/api"
        entries.append(entry)
    md, _ = render(make_doc(entries))
    app = "`pkg.disp:dispatcher` at /api"
    assert f"in 1 of 2 cells: gunicorn-gthread ({app}, contextvar, keepalive): 5 (request)" in md
    assert f"The main app ({app}) on the correct contextvar storage" in md
    assert f"### gunicorn-gthread · {app} · contextvar · keepalive: 5 leaks" in md
    assert "| gunicorn-sync | pkg.disp:dispatcher at /api | contextvar |" in md
    assert "`pkg.disp:dispatcher`," not in md and "| pkg.disp:dispatcher |" not in md, md


def test_the_terminals_first_evidence_names_each_pieces_cell() -> None:
    # 'run --modes gunicorn-gthread --backend no-reset --concurrency 2,8' showed its first
    # evidence under 'mode' alone: 'gunicorn-gthread' on three rows, of two cells at two levels.
    entries = []
    for backend, level, leaks in (("no-reset", 2, 1), ("no-reset", 8, 2), ("contextvar", 8, 0)):
        entry = make_entry("gunicorn-gthread", backend=backend, leaks=leaks)
        entries.append({**entry, "concurrency": level})
    text = format_summary(load_run(make_doc(entries)))
    evidence = text[text.index("first evidence") :].splitlines()
    assert evidence[1].split()[:2] == ["cell", "phase"], text
    rows = [line.split("  ")[0] for line in evidence[3:6]]
    assert rows == [
        "gunicorn-gthread · no-reset keepalive @2",
        "gunicorn-gthread · no-reset keepalive @8",
        "gunicorn-gthread · no-reset keepalive @8",
    ], text
    # The report's evidence is under a heading naming its cell: its column is the mode.
    md, _ = render(make_doc(entries))
    assert "| mode | phase | name | expected | seen |" in md


# -- deliberately broken backends judged by the expectations model, as the run recorded it ----


def mutant_cell(
    mode: str,
    backend: str,
    connections: str,
    *,
    leaks: int = 0,
    concurrency: int = 16,
    recorded: bool = True,
) -> Cell:
    """A cell of ``backend`` under ``mode`` that exercised what the mode does, with what the
    expectations model says of it recorded as the runner records it (unless not ``recorded``:
    a document written before it was)."""
    from harness.exercised import Exercised
    from harness.runner import expectation_for
    from harness.servers import get_mode

    entry = make_entry("gunicorn-gevent", backend=backend, connections=connections, leaks=leaks)
    c = load_run(make_doc([{**entry, "mode": mode}])).cells[0]
    seen = Exercised(
        pids=(4242,), threads=1, units=40, answered=c.requests, in_flight=3.2,
        overlap=concurrency > 1,
        unit_reused=True, reused_across_connections=connections == "fresh", greenlets=False,
        reconnects=0 if connections == "keepalive" else None,
    )  # fmt: skip
    expected = expectation_for(backend, mode, get_mode(mode).traits, connections)
    return dataclasses.replace(
        c,
        concurrency=concurrency,
        exercised=seen,
        expectation=expected if recorded else None,
    )


def mutant_report(*cells: Cell) -> tuple[str, str, str]:
    """report.md, report.html and the terminal summary of a run of ``cells``, through JSON."""
    run = load_run(make_doc([make_entry("gunicorn-gthread")]))
    run = Run.from_json(run.replace(cells=(*run.cells, *cells)).to_json())
    out = render_reports(run)
    return out["report.md"], out["report.html"], format_summary(run)


SILENT = "## Broken backends that showed no leak"
HEDGE = (
    "Either this server and connection pattern cannot expose that bug, or the harness missed it."
)


def test_a_silent_broken_backend_that_cannot_leak_there_says_why_as_expected() -> None:
    # The lead's run: "waitress with `thread-ident`, keepalive: ... no leak. Either this server
    # and connection pattern cannot expose that bug, or the harness missed it." The model knows.
    md, html, terminal = mutant_report(mutant_cell("waitress", "thread-ident", "keepalive"))
    said = section(md, SILENT)
    assert (
        "waitress with `thread-ident`, keepalive: 46,800 of 46,800 requests checked, no leak. As"
        " expected: concurrent requests run on distinct OS threads; the slot is reset by token"
        " when a request ends." in said
    )
    assert HEDGE not in md and "MISSED" not in md
    assert "**Verdict: OK.**" in md and 'class="verdict ok"' in html
    assert "MISSED" not in terminal


def test_a_silent_broken_backend_that_must_leak_is_a_leak_the_harness_missed() -> None:
    # gunicorn-gevent keeps one greenlet per kept-alive connection: no-reset must leak there.
    md, html, terminal = mutant_report(
        mutant_cell("gunicorn-gevent", "no-reset", "keepalive"),
        mutant_cell("gunicorn-gevent", "no-reset", "fresh"),
    )
    said = section(md, SILENT)
    assert "**⚠ The harness MISSED leaks that must show:**" in said
    assert "This is a ctxbench bug: report it with this run's results.json." in said
    assert (
        "gunicorn-gevent with `no-reset`, keepalive: 46,800 of 46,800 requests checked, no leak."
        " **MISSED:** the model says it must leak here: one greenlet serves every request of its"
        " keep-alive connection in turn, and sees what the previous request left set. The"
        " harness saw none." in said
    )
    # fresh cannot leak: as expected, outside the warning
    assert (
        "gunicorn-gevent with `no-reset`, fresh: 46,800 of 46,800 requests checked, no leak. As"
        " expected: " in said
    )
    assert said.index("fresh: 46,800") > said.index("keepalive: 46,800")
    # no "OK" rests on a harness that is blind somewhere
    assert (
        "**Verdict: negative controls NOT as expected: the harness missed a leak a deliberately"
        " broken backend must show.**" in md
    )
    assert 'class="verdict failed"' in html and "Verdict: OK" not in md
    assert (
        "The harness MISSED leaks in 1 cell where the deliberately broken backend must leak:"
        " gunicorn-gevent (no-reset, keepalive): one greenlet serves every request" in md
    )
    assert HEDGE not in md
    row = next(line for line in terminal.splitlines() if "no-reset" in line and "keepalive" in line)
    assert row.rstrip().endswith("MISSED")
    assert "missed leaks (a deliberately broken backend must leak here; a ctxbench bug" in terminal
    assert "  gunicorn-gevent · no-reset keepalive: one greenlet serves" in terminal


def test_a_must_leak_cell_the_run_did_not_put_to_the_test_is_no_missed_leak() -> None:
    # One virtual user never overlaps requests: no claim of a harness bug rests on it.
    md, _, terminal = mutant_report(
        mutant_cell("gunicorn-gthread", "shared-global", "keepalive", concurrency=1)
    )
    said = section(md, SILENT)
    assert "MISSED" not in md and "MISSED" not in terminal
    assert (
        "The model says it can leak here (requests overlap in each worker, on the OS threads of"
        " its pool, sharing one process-wide slot), but the run did not put that to the test:"
        " requests never overlapped: one virtual user" in said
    )
    assert "**Verdict: OK.**" in md


def test_a_silent_broken_backend_that_leaks_only_by_chance_did_not_show_this_time() -> None:
    md, _, _ = mutant_report(
        mutant_cell("gunicorn-gthread", "before-first-request-race", "keepalive")
    )
    said = section(md, SILENT)
    assert (
        "It can leak here only by chance (only when a worker's first requests overlap while it"
        " initializes): " in said
    )
    assert "It did not show this time" in said and "MISSED" not in md


def test_a_document_that_did_not_record_the_expectation_keeps_the_hedge() -> None:
    md, _, terminal = mutant_report(
        mutant_cell("gunicorn-gevent", "no-reset", "keepalive", recorded=False)
    )
    assert HEDGE in section(md, SILENT)
    assert "MISSED" not in md and "MISSED" not in terminal
    assert "**Verdict: OK.**" in md


def test_a_broken_backend_that_leaked_where_it_cannot_is_said_to_be_a_ctxbench_bug() -> None:
    md, _, _ = mutant_report(mutant_cell("gunicorn-gevent", "no-reset", "fresh", leaks=4))
    leaks = section(md, "## Leaks")
    assert (
        "**⚠ A leak that cannot happen:** the model says `no-reset` cannot leak here: every OS"
        " thread, greenlet and asyncio task has its own contextvars.Context;" in leaks
    )
    assert "This is a ctxbench bug: report it with this run's results.json." in leaks
    assert (
        "**Verdict: negative controls NOT as expected: a deliberately broken backend leaked"
        " where it cannot.**" in md
    )
    assert "Deliberately broken backends leaked where they cannot, in 1 cell:" in md
    # a leak the model says can happen is only the control working
    md, _, _ = mutant_report(mutant_cell("gunicorn-gevent", "no-reset", "keepalive", leaks=4))
    assert "cannot happen" not in md and "**Verdict: OK (only the deliberately" in md


def test_every_list_of_cells_in_a_sweep_names_their_level() -> None:
    # --backend no-reset,thread-ident --concurrency 2,8 said "Deliberately broken backends
    # leaked: gunicorn-gthread (core, no-reset, keepalive): 1,106 (...); gunicorn-gthread (core,
    # no-reset, keepalive): 2,024 (...)", and listed "gunicorn-gthread with `thread-ident`,
    # keepalive" twice under the broken backends that showed no leak: one cell named twice.
    import dataclasses

    from harness.report import format_summary

    entries = [
        make_entry("gunicorn-gthread", backend="no-reset", leaks=37),
        make_entry("gunicorn-gthread", backend="thread-ident"),
        make_entry("gunicorn-gthread", errors=4),
    ]
    base = load_run(make_doc(entries)).cells
    cells = [dataclasses.replace(c, concurrency=n) for c in base for n in (2, 8)]
    cells[-1] = dataclasses.replace(cells[-1], error="the server died (exit status 9)")
    run = load_run(make_doc(entries)).replace(cells=tuple(cells))
    md = render_reports(run)["report.md"]
    assert (
        "Deliberately broken backends leaked: gunicorn-gthread (core, no-reset, keepalive @2): 37"
        " (request); gunicorn-gthread (core, no-reset, keepalive @8): 37 (request)." in md
    )
    assert "- gunicorn-gthread with `thread-ident`, keepalive @2: " in md
    assert "- gunicorn-gthread with `thread-ident`, keepalive @8: " in md
    assert "keepalive @8: the server died (exit status 9)" in md  # the verdict's failed cells
    errors = section(md, "## Errors")
    assert "| mode | app | backend | connections | users | kind | count |" in errors
    assert "| gunicorn-gthread | core | contextvar | keepalive | 2 | reset | 4 |" in errors
    assert "(core, contextvar, keepalive @8) ended early:**" in errors
    assert "  gunicorn-gthread keepalive @8: the server died (exit status 9)" in format_summary(run)
    # one level: no level named, as before
    one = run.replace(cells=tuple(c for c in cells if c.concurrency == 2))
    md = render_reports(one)["report.md"]
    assert "(core, no-reset, keepalive): 37 (request)." in md
    assert "| mode | app | backend | connections | kind | count |" in md


def test_cells_measured_once_are_not_recommended_beyond_the_noise() -> None:
    # --repeats 1: "use gunicorn-gthread: 1,499 rps, p99 45.6 ms, beyond the noise of the next
    # (waitress, 1,324 rps)", where one measurement has no spread and says nothing of the noise.
    def once(mode: str, rps: float) -> dict[str, Any]:
        entry = make_entry(mode, rps=rps)
        entry.update(rps_runs=[rps], latency_runs=entry["latency_runs"][1:2], rps_spread=0)
        return entry

    md, _ = render(make_doc([once("gunicorn-gthread", 1499.0), once("waitress", 1324.0)]))
    assert "beyond the noise" not in md
    assert (
        "**Recommendation:** For keepalive connections gunicorn-gthread has the best median"
        " (1,499 rps), but each mode was measured once (--repeats 1), which says nothing of the"
        " noise: no mode to recommend on speed; run --repeats 3 or more to choose." in md
    )
    # one of them measured three times: the other is named
    md, _ = render(make_doc([make_entry("gunicorn-gthread", rps=1499.0), once("waitress", 1324.0)]))
    assert "1,499 rps), but waitress was measured once (--repeats 1)" in md
    # three repeats each: as before
    both = [make_entry("gunicorn-gthread", rps=1499.0), make_entry("waitress", rps=1324.0)]
    md, _ = render(make_doc(both))
    assert "use gunicorn-gthread: 1,499 rps" in md and "beyond the noise of the next" in md


def test_the_report_says_the_requests_count_the_warm_up() -> None:
    # --requests 400 --repeats 2: the cell's *requests* read 1,216 (the warm-up's 416 checked
    # too), and nothing on the page said why it was not 800.
    md, _ = render(make_doc([make_entry("gunicorn-gthread")]))
    assert (
        "*requests* counts every response checked, the warm-up's (`--warmup`) included, so it"
        " is more than the repeats' own." in md
    )
    # A run with no warm-up (every corpus run, --warmup 0) has none to count: the corpus report
    # said "the warm-up's (`--warmup`) included, so it is more than the repeats' own" of cells
    # of 200 requests in 200 ('ctxbench corpus --entries 3,4 --requests 200'; corpus takes no
    # --warmup).
    doc = make_doc([make_entry("gunicorn-gthread")])
    doc["settings"]["warmup"] = 0.0
    md, _ = render(doc)
    assert "*requests* counts every response checked. Red (bold in Markdown)" in md, md
    assert "warm-up's" not in md
