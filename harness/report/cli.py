"""The report's part of the ``ctxbench`` command line, registered through harness.cli's hooks.

``harness.cli`` imports this module before it builds its parser (see its
``EXTENSION_MODULES``); importing it registers:

- ``ctxbench report RUN_DIR``: (re)write report.md and report.html next to results.json;
- ``ctxbench compare RUN_A RUN_B [--threshold 10%] [--strict]``: B against baseline A, exit 1
  on a regression, 2 when the runs have no cell in common;
- ``ctxbench run --compare-flask``: also run the bundled Flask probe app on every mode, so the
  report can set the core against Flask; and every ``ctxbench run`` writes its report.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from harness.cli import RunExtension, add_run_extension, command
from harness.errors import ResultsError, UsageError
from harness.report import ReportError, compare_runs, parse_threshold, write_reports

__all__ = ["FLASK_APP", "cmd_compare", "cmd_report"]

FLASK_APP = "harness.apps.flask_app:app"


def _configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="a run folder (results/<run-id>)"
    )


def cmd_report(args: argparse.Namespace) -> int:
    from harness.results import load_results

    run_dir: Path = args.run_dir
    if run_dir.is_file():
        run_dir = run_dir.parent
    doc = load_results(run_dir)
    for path in _write(run_dir, doc):
        print(path)
    return 0


def _configure_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", type=Path, metavar="RUN_A", help="the baseline run folder")
    parser.add_argument("run_b", type=Path, metavar="RUN_B", help="the run to check against it")
    parser.add_argument(
        "--threshold",
        default="10%",
        help="relative change in rps or p99 that counts as a regression (default 10%%)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="compare the medians only; by default a change must also be beyond the noise"
        " (the spread over the repeats) of both runs",
    )


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.results import load_results

    threshold = parse_threshold(args.threshold)
    a_doc, b_doc = load_results(args.run_a), load_results(args.run_b)
    try:
        text, regressions = compare_runs(a_doc, b_doc, threshold, strict=args.strict)
    except ReportError as exc:
        raise ResultsError(str(exc)) from None
    print(text, end="")
    return 1 if regressions else 0


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compare-flask",
        action="store_true",
        help="also run the Flask probe app on every mode; the report compares the two",
    )


def _adjust_run_settings(args: argparse.Namespace, settings: Any) -> Any:
    if not getattr(args, "compare_flask", False):
        return settings
    from harness.runner import app_label

    if set(settings.backends) != {"contextvar"}:
        raise UsageError(
            "--compare-flask compares the core and Flask on the correct contextvar storage;"
            f" drop --backend {','.join(settings.backends)} or run the mutants separately"
        )
    if [app_label(a) for a in settings.apps] != ["core"]:
        raise UsageError(
            f"--compare-flask sets the core probe app against Flask; it cannot be combined with"
            f" --app {','.join(settings.apps)}"
        )
    return dataclasses.replace(settings, apps=(*settings.apps, FLASK_APP))


def _after_run(args: argparse.Namespace, run_dir: Path, doc: dict[str, Any]) -> int | None:
    paths = _write(run_dir, doc)
    print("report: " + ", ".join(str(p) for p in paths))
    return None  # the leak verdict of `ctxbench run` stands


def _write(run_dir: Path, doc: dict[str, Any]) -> list[Path]:
    try:
        return write_reports(run_dir, doc)
    except ReportError as exc:
        raise ResultsError(f"cannot build a report from {str(run_dir)!r}: {exc}") from None


command("report", "write report.md and report.html for a run folder", _configure_report)(cmd_report)
command(
    "compare", "compare two runs; exit 1 on a regression beyond --threshold", _configure_compare
)(cmd_compare)
add_run_extension(
    RunExtension(
        "report",
        add_arguments=_add_run_arguments,
        adjust_settings=_adjust_run_settings,
        after_results=_after_run,
    )
)
