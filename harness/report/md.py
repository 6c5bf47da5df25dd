"""report.md: the whole report as GitHub-flavoured Markdown, readable in a terminal or a PR."""

from __future__ import annotations

from harness.report.bench import (
    Benchmarks,
    calibration_meta,
    calibration_table,
    micro_meta,
    micro_table,
    micro_targets,
    targets_table,
)
from harness.report.model import Run
from harness.report.summary import JITTER_ADVICE, SPREAD_WARN, Summary, fmt_pct
from harness.report.tables import (
    Table,
    error_table,
    evidence_note,
    evidence_table,
    flask_table,
    mapping_table,
    measurement_table,
    server_tables,
    summary_table,
)

__all__ = ["render_markdown"]

PATTERN_TITLES = {
    "keepalive": "Keep-alive connections",
    "fresh": "A fresh connection per request",
}


SUMMARY_NOTE = (
    "The main app on the correct contextvar storage, one row per server mode and connection"
    " pattern; *errors* and *leaks* count every app that ran there on that storage."
)
MICRO_TITLE = "Micro benchmarks: core vs Flask vs werkzeug"
MICRO_ADVICE = (
    "Close other programs, pin the process to one core (taskset -c 1 ...) or raise"
    " --benchmark-min-time, and rerun."
)
CALIBRATION_TITLE = "Load driver against wrk"
CALIBRATION_NOTE = (
    "*spread* is wrk's / the driver's (max - min) / median over the rounds. Below the target the"
    " driver, not the server, may limit that mode's figures in this report: compare such modes"
    " with care."
)


def render_markdown(run: Run, summary: Summary, bench: Benchmarks | None = None) -> str:
    """Render the report; the same run (and benchmark files) gives the same text."""
    out: list[str] = [
        f"# ctxbench report: {run.run_id or 'unnamed run'}",
        "",
        f"Generated from `results.json` (run created {run.created or 'at an unknown time'})."
        " Do not edit: regenerate with `ctxbench report RUN_DIR`.",
        "",
        f"**Verdict: {summary.verdict}.** {summary.headline}",
        "",
        f"**Recommendation:** {summary.recommendation}",
        "",
    ]
    if run.status != "complete":
        out += [
            f"> **⚠ This run is {run.status}, not complete:** entries may be missing;"
            " do not compare it with a complete run.",
            "",
        ]
    if summary.noisy:
        out += _spread_warning(
            ", too large to trust small differences",
            [(f"{e.label} {e.connections}", e.rps_spread) for e in summary.noisy],
            JITTER_ADVICE,
        )
    out += [
        "Each figure is the median of the repeated measurements; *spread* is (max - min) / median"
        " over the repeats, and *runs* lists every repeat's requests/s.",
        "",
    ]
    overview = summary_table(run)
    if overview.rows:
        out += ["## Summary", "", SUMMARY_NOTE, ""]
        out += _table(overview)
        out.append("")
    for pattern in run.patterns:
        out += [f"## {PATTERN_TITLES.get(pattern, pattern)} (`{pattern}`)", ""]
        out += _table(measurement_table(run.entries_for(pattern)))
        out.append("")
    if summary.flask_pairs:
        out += [
            "## Core against Flask",
            "",
            "Same server mode, backend and connection pattern. Above 1.0x in *core / flask rps*"
            " the core serves more requests per second; below 1.0x in *core / flask p99* it"
            " answers faster.",
            "",
        ]
        out += _table(flask_table(summary.flask_pairs))
        out.append("")
    out += _benchmarks(bench or Benchmarks())
    if summary.silent_mutants:
        out += ["## Broken backends that showed no leak", ""]
        out += [
            f"- {e.mode} with `{e.backend}`, {e.connections}: {e.requests:,} requests, no leak."
            " Either this server and connection pattern cannot expose that bug, or the harness"
            " missed it."
            for e in summary.silent_mutants
        ]
        out.append("")
    out += ["## Leaks", ""]
    if not summary.leaked:
        out += ["None: every probe observation matched its request's own token.", ""]
    for e in summary.leaked:
        out += [
            f"### {e.mode} · {e.app_label} · {e.backend} · {e.connections}:"
            f" {e.leaks:,} leaks in {e.requests:,} requests",
            "",
        ]
        if e.evidence:
            out += _table(evidence_table(e))
            out += ["", evidence_note(e)]
        else:
            out.append("No evidence was recorded for this entry.")
        out.append("")
    if summary.errored:
        out += ["## Errors", ""]
        out += _table(error_table(summary.errored))
        out.append("")
    out += ["## Environment", ""]
    if run.command:
        out += ["Command: `" + " ".join(run.command) + "`", ""]
    out += [f"Python: {run.python or 'unknown'}", ""]
    for title, mapping, key in (
        ("Machine", run.machine, "property"),
        ("Packages", run.packages, "package"),
        ("Settings", run.settings, "setting"),
    ):
        if mapping:
            out += [f"### {title}", ""]
            out += _table(mapping_table(mapping, key))
            out.append("")
    configs = server_tables(run)
    if configs:
        out += ["## Effective server configuration", ""]
        for title, table in configs:
            out += [f"### {title}", ""]
            out += _table(table)
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def _benchmarks(bench: Benchmarks) -> list[str]:
    out: list[str] = []
    if bench.micro is not None:
        micro = bench.micro
        out += [f"## {MICRO_TITLE}", "", micro_meta(micro), ""]
        if micro.noisy:
            out += _spread_warning(
                ", too large to trust the median",
                [(f"{r.group} {r.framework}", r.spread) for r in micro.noisy],
                MICRO_ADVICE,
            )
        out += _table(micro_table(micro))
        out.append("")
        targets = micro_targets(micro)
        if targets:
            out += _table(targets_table(targets))
            out.append("")
    if bench.calibration is not None:
        cal = bench.calibration
        out += [f"## {CALIBRATION_TITLE}", "", calibration_meta(cal), ""]
        if cal.noisy:
            out += _spread_warning(
                " between rounds", [(r.mode, r.spread) for r in cal.noisy], JITTER_ADVICE
            )
        out += _table(calibration_table(cal))
        out += ["", CALIBRATION_NOTE, ""]
    return out


def _spread_warning(claim: str, noisy: list[tuple[str, float]], advice: str) -> list[str]:
    """A quoted warning naming each too-noisy figure with its spread, then the advice."""
    names = ", ".join(f"{label} ({fmt_pct(spread)})" for label, spread in noisy)
    return [f"> **⚠ Spread above {fmt_pct(SPREAD_WARN)}{claim}:** {names}.", f"> {advice}", ""]


def _table(table: Table) -> list[str]:
    sep = ["---:" if a == "r" else "---" for a in table.align]
    lines = [_row(table.headers), _row(tuple(sep))]
    for i, row in enumerate(table.rows):
        if i in table.bad_rows:
            row = tuple(f"**{c}**" if c else c for c in row)
        lines.append(_row(row))
    return lines


def _row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
