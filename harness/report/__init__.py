"""Reports from the results model: report.md, report.html and the charts, and ``compare``.

The report reads a :class:`harness.results.Run` and nothing else, the server registry included
(it describes the ctxbench that renders, not the run): a cell whose server starved users names
the likely cause from what the run recorded of its server
(:attr:`~harness.results.ServerInfo.connections`). What the model computes (the medians, the
spread and its threshold) it shows, never recomputes. :func:`summarize` decides
once what the run means (the verdict, who leaked, the ranking); every section in
:data:`~harness.report.sections.SECTIONS` turns that into a list of document-tree nodes
(:mod:`harness.report.tree`); :mod:`harness.report.render` writes the tree as Markdown and as
one self-contained HTML page. The same run always renders to the same bytes, so the committed
reference report changes only when its data does. A run folder may also hold the benchmarks'
JSON (``micro.json``, ``driver_vs_wrk.json``): the report then has a section for each
(:mod:`harness.benchdata` reads them, :mod:`harness.report.bench` shows them). Every chart (a
:class:`~harness.report.tree.Figure`) is also written next to the reports as an SVG file, so a
README can embed one. To add a section, see :mod:`harness.report.sections`.

Used by the CLI: ``ctxbench report RUN_DIR`` calls :func:`write_reports`; ``ctxbench run``
prints :func:`format_summary`; ``ctxbench compare`` prints :func:`compare_runs`'s text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness import results
from harness.benchdata import Benchmarks, read_benchmarks
from harness.report.compare import Change, compare_runs, parse_threshold
from harness.report.render import to_html, to_markdown
from harness.report.sections import build
from harness.report.summary import Context, format_summary, summarize
from harness.report.tree import Figure, Group, Node

__all__ = [
    "REPORT_FILES",
    "Change",
    "compare_runs",
    "format_summary",
    "parse_threshold",
    "render_reports",
    "render_run_dir",
    "write_reports",
]


#: The reports :func:`write_reports` writes; beside them, one SVG file per chart.
REPORT_FILES = ("report.md", "report.html")


def render_reports(run: results.Run, bench: Benchmarks | None = None) -> dict[str, str]:
    """Every file of a run's report by name: report.md, report.html, then each chart's SVG."""
    nodes = build(Context(run, summarize(run), bench or Benchmarks()))
    markdown, html = REPORT_FILES
    return {
        markdown: to_markdown(nodes),
        html: to_html(nodes),
        **{f.name: f.svg for f in _figures(nodes)},
    }


def render_run_dir(run_dir: Path, run: results.Run | None = None) -> dict[str, str]:
    """What :func:`write_reports` writes for ``run_dir`` (``run`` defaults to its results)."""
    run_dir = Path(run_dir)
    return render_reports(run or results.load(run_dir), read_benchmarks(run_dir))


def write_reports(run_dir: Path, run: results.Run | None = None) -> list[Path]:
    """Write the reports and charts into ``run_dir``, each atomically; return their paths.

    SVG files an earlier rendering left that this one does not make (a connection pattern that
    no longer ran) are removed.
    """
    run_dir = Path(run_dir)
    rendered = render_run_dir(run_dir, run)
    for stale in sorted(run_dir.glob("*.svg")):
        if stale.name not in rendered:
            stale.unlink()
    return [results.write_atomic(run_dir / name, text) for name, text in rendered.items()]


def _figures(nodes: Sequence[Node]) -> list[Figure]:
    groups = (_figures(n.body) if isinstance(n, Group) else [n] for n in nodes)
    return [f for group in groups for f in group if isinstance(f, Figure)]
