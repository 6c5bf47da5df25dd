"""report.html: one self-contained page (inline CSS and SVG, no script, no network).

Every string from the results document goes through :func:`html.escape`: evidence holds
whatever a misbehaving server sent back, and the page must show it, not run it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html import escape

from harness.report.bench import (
    Benchmarks,
    calibration_meta,
    calibration_table,
    micro_meta,
    micro_table,
    micro_targets,
    targets_table,
)
from harness.report.charts import chart_files, chart_name
from harness.report.md import (
    CALIBRATION_NOTE,
    CALIBRATION_TITLE,
    MICRO_ADVICE,
    MICRO_TITLE,
    PATTERN_TITLES,
    SUMMARY_NOTE,
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

__all__ = ["render_html"]

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232b;
       background: #f6f7f9; margin: 0; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #e1e4e8; }
h3 { font-size: 15px; margin: 20px 0 8px; }
.meta { color: #5a6472; margin: 0 0 16px; }
.verdict { border-radius: 6px; padding: 12px 16px; margin: 12px 0; border-left: 6px solid; }
.verdict p { margin: 4px 0; }
.verdict.ok { background: #eaf6ec; border-color: #2e8540; }
.verdict.leak { background: #fdecea; border-color: #c0392b; }
.verdict.mutant { background: #eef3fb; border-color: #3569b5; }
.verdict .word { font-weight: 700; font-size: 16px; }
.warning { background: #fff6e0; border-left: 6px solid #d68910; border-radius: 6px;
           padding: 10px 16px; margin: 12px 0; }
.note { color: #5a6472; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 12.5px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e6e8eb; vertical-align: top;
         white-space: nowrap; }
td.wrap { white-space: normal; min-width: 9em; }
th { background: #f1f3f5; text-align: left; font-weight: 600; white-space: nowrap; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td { background: #fdecea; color: #8e1f14; font-weight: 600; }
tr.warn td { background: #fff6e0; }
td code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
                 font-size: 12px; }
.charts { display: flex; flex-direction: column; gap: 18px; margin: 10px 0 6px; }
.scroll { overflow-x: auto; }
.cards { display: flex; flex-wrap: wrap; gap: 4px 36px; align-items: flex-start; }
.cards h3 { margin-top: 12px; }
.cards > div { max-width: 540px; }
.cards td:last-child { white-space: normal; overflow-wrap: anywhere; min-width: 12em; }
footer { margin-top: 36px; color: #7a8491; font-size: 12px; }
"""


def render_html(
    run: Run,
    summary: Summary,
    bench: Benchmarks | None = None,
    charts: Mapping[str, str] | None = None,
) -> str:
    """Render the report page; the same run (and benchmark files) gives the same bytes.

    ``charts`` are the run's charts as :func:`~harness.report.charts.chart_files` returns them
    (computed here when omitted): the page inlines exactly the SVG written next to it.
    """
    title = f"ctxbench report: {run.run_id or 'unnamed run'}"
    kind = "ok" if summary.verdict == "OK" else "leak" if not summary.ok else "mutant"
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Run created {escape(run.created or "at an unknown time")}.'
        " Generated from results.json; do not edit, regenerate with"
        " <code>ctxbench report RUN_DIR</code>.</p>",
        f'<section class="verdict {kind}">'
        f'<p><span class="word">Verdict: {escape(summary.verdict)}.</span>'
        f" {escape(summary.headline)}</p>"
        f"<p><strong>Recommendation:</strong> {escape(summary.recommendation)}</p></section>",
    ]
    if run.status != "complete":
        out.append(
            f'<section class="warning"><p><strong>⚠ This run is {escape(run.status)}, not'
            " complete:</strong> entries may be missing; do not compare it with a complete"
            " run.</p></section>"
        )
    if summary.noisy:
        out.append(
            _spread_warning(
                ": these figures are too noisy to trust small differences.",
                [(f"{e.label}, {e.connections}", e.rps_spread) for e in summary.noisy],
                JITTER_ADVICE,
            )
        )
    out.append(
        '<p class="note">Each figure is the median of the repeated measurements; whiskers and'
        " <em>spread</em> show the range over the repeats ((max - min) / median), and"
        " <em>runs</em> lists every repeat. Red marks an entry that leaked, amber one with"
        " errors, grey a deliberately broken backend, light blue Flask next to the core.</p>"
    )
    overview = summary_table(run)
    if overview.rows:
        out.append("<h2>Summary</h2>")
        out.append(f'<p class="note">{_md_inline(SUMMARY_NOTE)}</p>')
        out.append(_table(overview))
    charts = charts if charts is not None else chart_files(run)
    for pattern in run.patterns:
        entries = run.entries_for(pattern)
        name = PATTERN_TITLES.get(pattern, pattern)
        out.append(f"<h2>{escape(name)} (<code>{escape(pattern)}</code>)</h2>")
        out.append('<div class="charts">')
        out.append(charts[chart_name("throughput", pattern)])
        out.append(charts[chart_name("latency", pattern)])
        out.append("</div>")
        out.append(_table(measurement_table(entries)))
    if summary.flask_pairs:
        out.append("<h2>Core against Flask</h2>")
        out.append(
            '<p class="note">Same server mode, backend and connection pattern. Above 1.0x in'
            " <em>core / flask rps</em> the core serves more requests per second; below 1.0x in"
            " <em>core / flask p99</em> it answers faster.</p>"
        )
        out.append(_table(flask_table(summary.flask_pairs)))
    out += _benchmarks(bench or Benchmarks())
    if summary.silent_mutants:
        out.append("<h2>Broken backends that showed no leak</h2><ul>")
        out += [
            f"<li>{escape(e.mode)} with <code>{escape(e.backend)}</code>,"
            f" {escape(e.connections)}: {e.requests:,} requests, no leak. Either this server and"
            " connection pattern cannot expose that bug, or the harness missed it.</li>"
            for e in summary.silent_mutants
        ]
        out.append("</ul>")
    out.append("<h2>Leaks</h2>")
    if not summary.leaked:
        out.append("<p>None: every probe observation matched its request's own token.</p>")
    for e in summary.leaked:
        out.append(
            f"<h3>{escape(e.mode)} · {escape(e.app_label)} · {escape(e.backend)} ·"
            f" {escape(e.connections)}: {e.leaks:,} leaks in {e.requests:,} requests</h3>"
        )
        if e.evidence:
            out.append(_table(evidence_table(e), mono=True))
            out.append(f'<p class="note">{escape(evidence_note(e))}</p>')
        else:
            out.append("<p>No evidence was recorded for this entry.</p>")
    if summary.errored:
        out.append("<h2>Errors</h2>")
        out.append(_table(error_table(summary.errored)))
    out.append("<h2>Environment</h2>")
    if run.command:
        out.append(f"<p>Command: <code>{escape(' '.join(run.command))}</code></p>")
    out.append(f"<p>Python: {escape(run.python or 'unknown')}</p>")
    out.append('<div class="cards">')
    for heading, mapping, key in (
        ("Machine", run.machine, "property"),
        ("Packages", run.packages, "package"),
        ("Settings", run.settings, "setting"),
    ):
        if mapping:
            out.append(f"<div><h3>{heading}</h3>{_table(mapping_table(mapping, key))}</div>")
    out.append("</div>")
    configs = server_tables(run)
    if configs:
        out.append('<h2>Effective server configuration</h2><div class="cards">')
        for heading, table in configs:
            out.append(f"<div><h3>{escape(heading)}</h3>{_table(table, mono=True)}</div>")
        out.append("</div>")
    out.append(
        "<footer>Rendered by ctxbench from results.json (schema ctxbench.results/1)."
        "</footer></main></body></html>"
    )
    return "\n".join(out) + "\n"


def _benchmarks(bench: Benchmarks) -> list[str]:
    out: list[str] = []
    if bench.micro is not None:
        micro = bench.micro
        out.append(f"<h2>{escape(MICRO_TITLE)}</h2>")
        out.append(f'<p class="note">{_md_inline(micro_meta(micro))}</p>')
        if micro.noisy:
            out.append(
                _spread_warning(
                    ": too large to trust the median.",
                    [(f"{r.group} {r.framework}", r.spread) for r in micro.noisy],
                    MICRO_ADVICE,
                )
            )
        out.append(_table(micro_table(micro)))
        targets = micro_targets(micro)
        if targets:
            out.append(_table(targets_table(targets)))
    if bench.calibration is not None:
        cal = bench.calibration
        out.append(f"<h2>{escape(CALIBRATION_TITLE)}</h2>")
        out.append(f'<p class="note">{_md_inline(calibration_meta(cal))}</p>')
        if cal.noisy:
            out.append(
                _spread_warning(
                    " between rounds.", [(r.mode, r.spread) for r in cal.noisy], JITTER_ADVICE
                )
            )
        out.append(_table(calibration_table(cal)))
        out.append(f'<p class="note">{_md_inline(CALIBRATION_NOTE)}</p>')
    return out


def _spread_warning(claim: str, noisy: list[tuple[str, float]], advice: str) -> str:
    """A warning box listing each too-noisy figure with its spread, then the advice."""
    items = "".join(
        f"<li>{escape(label)}: spread {escape(fmt_pct(spread))}</li>" for label, spread in noisy
    )
    return (
        f'<section class="warning"><p><strong>⚠ Spread above {fmt_pct(SPREAD_WARN)}{claim}'
        f"</strong></p><ul>{items}</ul><p>{escape(advice)}</p></section>"
    )


def _md_inline(text: str) -> str:
    """Escape ``text`` and turn its Markdown `code` and *emphasis* into HTML."""
    rv = re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", rv)


def _table(table: Table, *, mono: bool = False) -> str:
    cls = ' class="mono"' if mono else ""
    head = "".join(
        f'<th class="{a}">{escape(h)}</th>' for h, a in zip(table.headers, table.align, strict=True)
    )
    rows = []
    for i, row in enumerate(table.rows):
        tr = (
            ' class="bad"'
            if i in table.bad_rows
            else ' class="warn"'
            if i in table.warn_rows
            else ""
        )
        cells = "".join(
            f'<td class="{a}{" wrap" if j in table.wrap else ""}">{escape(c)}</td>'
            for j, (c, a) in enumerate(zip(row, table.align, strict=True))
        )
        rows.append(f"<tr{tr}>{cells}</tr>")
    return (
        f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
