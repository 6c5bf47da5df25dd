"""Reports from results documents: report.md and report.html next to results.json, and compare.

Reports are generated from the JSON only and never edited by hand; the same document always
renders to the same bytes, so a committed reference report changes only when its data does.
A run folder may also hold the benchmarks' own JSON, ``micro.json`` (pytest-benchmark) and
``driver_vs_wrk.json``: the report then has a section for each (see :mod:`harness.report.bench`).
Next to the reports go the charts the HTML page inlines, as standalone SVG files
(``throughput-<pattern>.svg``, ``latency-<pattern>.svg``), so a README can embed one.

Used by the CLI::

    ctxbench report RUN_DIR              -> write_reports(run_dir, harness.results.load(run_dir))
    ctxbench compare RUN_A RUN_B [--threshold 10%]
                                         -> compare_runs(run_a, run_b, parse_threshold(t))
                                            exit 1 when the regressions list is not empty
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import results
from harness.errors import ResultsError
from harness.report.bench import Benchmarks, read_benchmarks
from harness.report.compare import Change, compare_runs, parse_threshold
from harness.report.model import ReportError, Run, load_run
from harness.report.render import to_html, to_markdown
from harness.report.sections import SECTIONS, Context, Section, build
from harness.report.summary import SPREAD_WARN, Summary, format_summary, summarize
from harness.report.tree import Callout, Figure, Group, Node

__all__ = [
    "SECTIONS",
    "SPREAD_WARN",
    "Benchmarks",
    "Change",
    "Context",
    "ReportError",
    "Run",
    "Section",
    "Summary",
    "compare_runs",
    "format_summary",
    "load_run",
    "parse_threshold",
    "read_benchmarks",
    "render_reports",
    "render_run_dir",
    "summarize",
    "write_reports",
]


def render_reports(
    doc: results.Run | Mapping[str, Any], bench: Benchmarks | None = None
) -> dict[str, str]:
    """Render a results document (and the benchmarks' JSON, when given) to its files.

    Returns ``{"report.md": text, "report.html": text, "throughput-keepalive.svg": svg, ...}``:
    the two reports, then every chart of the report in page order.
    """
    run = load_run(doc)
    nodes = build(Context(run, summarize(run), bench or Benchmarks()))
    return {
        "report.md": to_markdown(nodes),
        "report.html": to_html(nodes),
        **{f.name: f.svg for f in _figures(nodes)},
    }


def _figures(nodes: Sequence[Node]) -> list[Figure]:
    rv = []
    for node in nodes:
        if isinstance(node, Figure):
            rv.append(node)
        elif isinstance(node, Group | Callout):
            rv += _figures(node.body)
    return rv


def render_run_dir(
    run_dir: Path, doc: results.Run | Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Render what :func:`write_reports` writes for ``run_dir``, without writing it.

    ``doc`` defaults to ``run_dir/results.json``; ``micro.json`` and ``driver_vs_wrk.json`` are
    read from ``run_dir`` when they exist.
    """
    run_dir = Path(run_dir)
    if doc is None:
        try:
            doc = results.load(run_dir)
        except ResultsError as exc:
            raise ReportError(str(exc)) from None
    return render_reports(doc, read_benchmarks(run_dir))


def write_reports(
    run_dir: Path, doc: results.Run | Mapping[str, Any] | None = None
) -> list[Path]:
    """Write report.md, report.html and the chart SVGs into ``run_dir``; return their paths.

    ``doc`` is the results document; when omitted it is read from ``run_dir/results.json``.
    ``micro.json`` and ``driver_vs_wrk.json`` in ``run_dir`` are picked up when present. Each
    file is written atomically (temp file + ``os.replace``), so a reader never sees half a
    report; SVG files left from an earlier rendering that this one does not produce (a
    connection pattern that no longer ran) are removed.
    """
    run_dir = Path(run_dir)
    rendered = render_run_dir(run_dir, doc)
    for stale in sorted(run_dir.glob("*.svg")):
        if stale.name not in rendered:
            stale.unlink()
    written = []
    for name, text in rendered.items():
        path = run_dir / name
        results.write_atomic(path, text)
        written.append(path)
    return written

