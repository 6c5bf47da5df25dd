"""Reports from results documents: report.md and report.html next to results.json, and compare.

Reports are generated from the JSON only and never edited by hand; the same document always
renders to the same bytes, so a committed reference report changes only when its data does.

Used by the CLI::

    ctxbench report RUN_DIR              -> write_reports(run_dir, read_results(run_dir))
    ctxbench compare RUN_A RUN_B [--threshold 10%]
                                         -> compare_runs(a_doc, b_doc, parse_threshold(t))
                                            exit 1 when the regressions list is not empty
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.report.compare import Change, compare_runs, parse_threshold
from harness.report.html import render_html
from harness.report.md import render_markdown
from harness.report.model import ReportError, Run, load_run, read_results
from harness.report.summary import SPREAD_WARN, Summary, summarize

__all__ = [
    "SPREAD_WARN",
    "Change",
    "ReportError",
    "Run",
    "Summary",
    "compare_runs",
    "load_run",
    "parse_threshold",
    "read_results",
    "render_reports",
    "summarize",
    "write_reports",
]


def render_reports(doc: Mapping[str, Any]) -> dict[str, str]:
    """Render a results document to ``{"report.md": text, "report.html": text}``."""
    run = load_run(doc)
    summary = summarize(run)
    return {
        "report.md": render_markdown(run, summary),
        "report.html": render_html(run, summary),
    }


def write_reports(run_dir: Path, doc: Mapping[str, Any] | None = None) -> list[Path]:
    """Write report.md and report.html into ``run_dir`` and return their paths.

    ``doc`` is the results document; when omitted it is read from ``run_dir/results.json``.
    Each file is written atomically (temp file + ``os.replace``), so a reader never sees half a
    report.
    """
    run_dir = Path(run_dir)
    if doc is None:
        doc = read_results(run_dir)
    written = []
    for name, text in render_reports(doc).items():
        path = run_dir / name
        _write_atomic(path, text)
        written.append(path)
    return written


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        # mkstemp creates the file 0600; a report is for reading, like results.json.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
