"""harness.report: report.md and report.html rendered from hand-made results documents."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.report import ReportError, render_reports, write_reports
from harness.report.charts import _nice_limit
from harness.report.model import load_run, relative_spread
from harness.report.summary import summarize

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
        "app": f"harness.apps.{app_label}_app:app",
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


def render(doc: dict[str, Any]) -> tuple[str, str]:
    out = render_reports(doc)
    return out["report.md"], out["report.html"]


def test_clean_run_verdict_and_fastest() -> None:
    md, html = render(make_doc())
    assert "**Verdict: OK.** No leaks with the correct contextvar storage in 8 entries" in md
    assert "For keepalive connections use gunicorn-gevent" in md
    assert "Verdict: OK." in html
    assert "## Leaks" in md and "None: every probe observation" in md
    assert "Spread above" not in md and "Spread above" not in html


def test_leaks_are_shown_with_their_evidence() -> None:
    entries = [make_entry(m) for m in MODES]
    entries.append(make_entry("gunicorn-gthread", backend="shared-global", leaks=37))
    md, html = render(make_doc(entries))
    assert "**Verdict: OK (only the broken backends leaked).** No leaks with the correct" in md
    assert "Deliberately broken backends leaked: gunicorn-gthread (core, shared-global," in md
    assert "### gunicorn-gthread · core · shared-global · keepalive: 37 leaks" in md
    # Every field of the evidence: mode, phase, name, expected, seen, worker.
    assert '| gunicorn-gthread | view | request | "tok0" | "tok1" | 4242 | 1400 | null |' in md
    assert "&quot;tok0&quot;" in html and "4242" in html
    assert "Only the deliberately broken backends leaked (shared-global)" in md


def test_a_leak_of_the_correct_backend_is_a_leak_verdict() -> None:
    md, html = render(make_doc([make_entry("gunicorn-gevent", leaks=2)]))
    assert "**Verdict: LEAK.** LEAKS with the correct contextvar storage in 1 of 1 entries" in md
    assert "this is an isolation bug" in md
    assert 'class="verdict leak"' in html


def test_leaking_entries_are_never_fastest() -> None:
    entries = [
        make_entry("gunicorn-gevent", rps=99_000.0, backend="shared-global", leaks=5),
        make_entry("gunicorn-gthread"),
        make_entry("gunicorn-sync"),
    ]
    summary = summarize(load_run(make_doc(entries)))
    [(pattern, best, _tied)] = summary.fastest
    assert (pattern, best.mode, best.backend) == ("keepalive", "gunicorn-gthread", "contextvar")


def test_close_medians_are_reported_as_tied() -> None:
    entries = [
        make_entry("gunicorn-gevent", rps=7000.0),
        make_entry("gunicorn-gthread", rps=6900.0),
    ]
    md, _ = render(make_doc(entries))
    assert "gunicorn-gevent, gunicorn-gthread are within measurement noise" in md


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
    assert "gunicorn-gevent keepalive (25%)" in md
    assert "taskset" in md and "taskset" in html
    assert md.count("⚠") == 2  # the warning and the one table cell
    assert 'class="warn"' in html


def test_flask_ratio_table_only_when_both_apps_ran() -> None:
    core_only = make_doc([make_entry(m) for m in MODES])
    md, html = render(core_only)
    assert "Core against Flask" not in md and "Core against Flask" not in html

    both = make_doc([make_entry(m, app_label=a) for m in MODES for a in ("core", "flask")])
    md, html = render(both)
    assert "## Core against Flask" in md and "<h2>Core against Flask</h2>" in html
    assert md.count("| 2.00x |") == len(MODES)  # flask entries run at half the core's rps
    # Flask alone (no core twin) gives no ratio either.
    flask_only = make_doc([make_entry(m, app_label="flask") for m in MODES])
    assert "Core against Flask" not in render(flask_only)[0]


def test_html_is_self_contained() -> None:
    entries = [
        make_entry(m, app_label=a, connections=c)
        for m in MODES
        for a in ("core", "flask")
        for c in ("keepalive", "fresh")
    ]
    entries.append(make_entry("gunicorn-gevent", backend="thread-ident", leaks=3, spread=0.3))
    _, html = render(make_doc(entries))
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
    assert [p.name for p in paths] == ["report.md", "report.html"]
    first = [p.read_bytes() for p in paths]
    write_reports(tmp_path, doc)
    assert [p.read_bytes() for p in paths] == first
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report.html",
        "report.md",
        "results.json",
    ]


def test_single_repeat_has_no_spread() -> None:
    entry = make_entry("gunicorn-sync")
    entry["rps_runs"] = [entry["rps"]]
    del entry["rps_spread"]
    entry["latency_runs"] = []
    run = load_run(make_doc([entry]))
    assert run.entries[0].rps_spread == 0.0
    render(make_doc([entry]))


def test_rejects_other_schemas_and_bad_entries() -> None:
    with pytest.raises(ReportError, match=r"Unsupported results schema 'ctxbench\.results/2'"):
        load_run({**make_doc(), "schema": "ctxbench.results/2"})
    bad = make_entry("gunicorn-sync")
    bad["rps"] = "fast"
    with pytest.raises(ReportError, match=r"entries\[0\]\.rps should be a number, got 'fast'"):
        load_run(make_doc([bad]))
    with pytest.raises(ReportError, match="No results document"):
        write_reports(Path("/nonexistent/run"))


@pytest.mark.parametrize(
    ("peak", "limit"),
    [(0.0, 1.0), (7.3, 8.0), (1900.0, 2000.0), (2400.0, 2500.0), (7800, 8000), (49.2, 60.0)],
)
def test_chart_axis_limit_is_a_round_number(peak: float, limit: float) -> None:
    assert _nice_limit(peak) == limit


def test_sample_documents_follow_the_results_schema() -> None:
    from harness.results import validate

    validate(make_doc())
    validate(make_doc([make_entry("gunicorn-gthread", backend="shared-global", leaks=3)]))


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
