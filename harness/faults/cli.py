"""``ctxbench chaos`` (faults during load) and ``ctxbench soak``: their options and handlers.

:func:`harness.cli.build_parser` registers both; heavy imports (the servers, the load driver,
psutil) happen in the handlers, when the command runs.
"""

from __future__ import annotations

import argparse
import sys
import time
import typing as t
from pathlib import Path

from harness.cli import (
    _add_connections_option,
    _add_defaulted,
    _add_matrix_options,
    _add_mount_option,
    _add_run_folder_options,
    _add_sleep_option,
    _csv,
    _run_folder,
    _server_args,
)
from harness.errors import UsageError
from harness.preflight import check_backend, checked, server_config
from harness.protocol import DEFAULT_BACKEND
from harness.servers._supervised import DEFAULT_WORKERS
from harness.settings import ChaosSettings, RunSettings, check_unique

if t.TYPE_CHECKING:
    from harness.report.tree import Table
    from harness.results import FaultCell

__all__ = ["cmd_chaos", "cmd_soak", "configure_chaos", "configure_soak"]


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app",
        metavar="MODULE:NAME",
        help="the app under test, 'pkg.wsgi:app' or an app factory 'pkg:create_app()'"
        " (default core)",
    )
    _add_mount_option(parser)
    parser.add_argument("--workers", type=int, help=f"server processes (default {DEFAULT_WORKERS})")
    parser.add_argument("--threads", type=int, help="threads per server process")
    _add_defaulted(parser, "--concurrency", int, RunSettings.concurrency, "virtual users")
    _add_sleep_option(parser)
    _add_run_folder_options(parser)


def configure_chaos(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--faults", default="all", help="comma-separated faults (default all; see --list)"
    )
    _add_matrix_options(parser, connections="keepalive")
    parser.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        help="comma-separated context storages; a negative control (no-reset, shared-global,"
        " ...) must still be caught under each fault",
    )
    parser.add_argument("--compare-flask", action="store_true", help="also run the Flask probe app")
    _add_common(parser)
    knobs = ChaosSettings()
    parser.add_argument(
        "--interval", type=float, help=f"kill-worker, reload: seconds apart ({knobs.interval_s:g})"
    )
    parser.add_argument(
        "--injections", type=int, help=f"kill-worker, reload: how many ({knobs.injections})"
    )
    parser.add_argument(
        "--worker-timeout",
        type=int,
        help=f"timeout: the worker timeout, s ({knobs.worker_timeout_s})",
    )
    parser.add_argument(
        "--round-requests",
        type=int,
        help=f"requests per load round ({knobs.round_requests}); a round also ends at"
        " --max-seconds",
    )
    parser.add_argument(
        "--after-requests",
        type=int,
        help=f"clean requests after a fault ({knobs.after_requests}); each clean load also ends"
        " after --max-seconds",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        help="time bound of the faulted load, and of each clean load after it, s"
        f" ({knobs.max_seconds:g})",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the faults and where each applies, and exit"
    )


def _finish(
    run_dir: Path,
    reports: t.Sequence[Path],
    table: Table,
    summary: str,
    details: t.Iterable[str] = (),
) -> None:
    """Print ``table``, the ``details`` lines, and ``summary`` with where the results are, then
    where the run's ``reports`` are."""
    from harness.report.tree import text_table

    print("\n".join(text_table(table)))
    for line in details:
        print(line)
    print(f"{summary}; results: {run_dir / 'results.json'}")
    print("report: " + ", ".join(str(p) for p in reports))


def _list_faults() -> int:
    from harness.faults import FAULTS
    from harness.servers import MODES

    for fault in FAULTS.values():
        print(f"{fault.name}: {fault.summary}")
        for name, mode in MODES.items():
            why = fault.not_applicable(mode)
            print(f"    {name}: {'applies' if why is None else 'n/a: ' + why}")
    return 0


def _nothing_to_run(
    names: t.Sequence[str],
    modes: t.Sequence[str],
    why_not: t.Sequence[str | None],
    args: argparse.Namespace,
) -> str:
    """Why no cell of ``names`` x ``modes`` can run, ``why_not`` giving each cell's reason as
    the modes are configured. ``ctxbench chaos --list`` shows each mode with its default
    settings: where a fault applies there, the settings given here (``--threads 4`` turns
    gunicorn-sync into gunicorn's gthread worker) rule it out, and the message says so rather
    than send the user to a list that says it applies."""
    from harness.faults import get_fault
    from harness.servers import get_mode

    default = [get_fault(f).not_applicable(get_mode(m)) for f in names for m in modes]
    unruled = [i for i, why in enumerate(default) if why is None]
    head = f"nothing to run: {', '.join(names)} cannot happen under {', '.join(modes)}"
    if not unruled:  # the list agrees: it shows what each mode takes
        return f"{head} ({why_not[0]}); see 'ctxbench chaos --list'"
    given = [f"--{k} {v}" for k, v in (("workers", args.workers), ("threads", args.threads))
             if v is not None]  # fmt: skip
    i = unruled[0]
    fault, mode = names[i // len(modes)], modes[i % len(modes)]
    fix = f": leave out {' '.join(given)} to run it" if given else ""
    return (
        f"{head} with {' '.join(given) or 'these settings'} ({why_not[i]}); {mode} takes {fault}"
        f" with its default settings, as 'ctxbench chaos --list' shows{fix}"
    )


def cmd_chaos(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from harness.app_string import parse_import_string
    from harness.apps import CORE_APP, FLASK_APP, mounted
    from harness.faults import FAULTS, get_fault
    from harness.faults.runner import LOAD_TIMEOUT_S, run_chaos
    from harness.load.spec import connection_patterns
    from harness.report import write_reports
    from harness.report.faults import faults_table
    from harness.report.text import plural
    from harness.runner import StatusLine
    from harness.servers import available_modes, get_mode
    from harness.servers._gunicorn import unread_settings

    if args.list:
        return _list_faults()
    names = list(FAULTS) if args.faults.strip() == "all" else _csv(args.faults)
    check_unique("--faults", tuple(names), allow_empty=False)  # twice would run its cells twice
    faults = [get_fault(name) for name in names]
    app = args.app or CORE_APP
    parse_import_string(app)
    backends = tuple(_csv(args.backend))
    for backend in backends:
        check_backend(backend, app)
    apps = (app, FLASK_APP) if args.compare_flask else (app,)
    knobs = {
        "interval_s": args.interval, "injections": args.injections,
        "worker_timeout_s": args.worker_timeout, "round_requests": args.round_requests,
        "after_requests": args.after_requests, "max_seconds": args.max_seconds,
    }  # fmt: skip
    chaos = replace(ChaosSettings(), **{k: v for k, v in knobs.items() if v is not None})
    # Every direct mode by default; a proxied one (nginx+MODE) when named: the faults then act on
    # the server behind the proxy, as they do on it alone, so the default leaves them out.
    all_modes = available_modes()
    settings = RunSettings(
        apps=apps,
        backends=backends,
        modes=all_modes if args.modes.strip() == "all" else tuple(_csv(args.modes)),
        connections=connection_patterns(args.connections),
        duration=None,
        requests=chaos.round_requests,
        concurrency=args.concurrency,
        sleep_ms=args.sleep_ms,
        timeout=LOAD_TIMEOUT_S,
        workers=args.workers,
        threads=args.threads,
        mount=args.mount,
        repeats=1,
        warmup=0.0,
    )
    settings = checked(settings)  # unknown or unavailable modes fail before anything starts
    cfg = server_config(settings, app, backends[0])  # the modes as they will run
    why_not = [
        f.not_applicable(get_mode(m).configured(cfg)) for f in faults for m in settings.modes
    ]
    if all(why_not):  # every cell would be n/a: nothing would run, and the exit status says 0
        raise UsageError(_nothing_to_run(names, settings.modes, why_not, args))
    started = time.monotonic()
    # A live line on a terminal; elsewhere (CI, a log) a line per finished cell, as `run` does:
    # piped, a chaos run of minutes printed nothing until its table.
    status = StatusLine()
    try:
        with _run_folder(args) as (run_dir, run_id):
            run = run_chaos(faults, settings, chaos, run_dir, command=["ctxbench", *args.argv],
                            run_id=run_id, progress=status.show,
                            finished=status.finished)  # fmt: skip
            reports = write_reports(run_dir, run)  # with the folder held, as its results
    finally:
        status.done()
    failed = [c for c in run.faults if not c.passed]
    answered = [(f"{c.fault} {c.mode} {c.connections}", _answered_by_app(c)) for c in run.faults]
    _finish(
        run_dir,
        reports,
        faults_table(run.faults),
        f"\n{plural(len(run.faults), 'fault cell')}, {len(failed):,} failing,"
        f" {sum(c.requests for c in run.faults):,} requests accounted for,"
        f" {time.monotonic() - started:.0f} s",
        details=[
            *(f"{c.fault} {c.mode} {mounted(c.app_label, c.server.mount)} {c.backend}"
              f" {c.connections}: {c.verdict}: {c.reason}" for c in failed),
            # The table's n/a rows said no why; the report alone did (one line per fault, mode).
            *dict.fromkeys(f"{c.fault} {c.mode}: n/a: {c.reason}" for c in run.faults
                           if c.verdict == "n/a"),
            # chaos takes no server arguments: the faults set those they need.
            *filter(None, [unread_settings(settings.modes, given=None)]),
        ],
    )  # fmt: skip
    # As `ctxbench run`: requests the app answered itself were never checked, so no verdict
    # (exit 2), unless a leak was found where none can happen.
    unchecked = _app_answered_line(answered)
    if unchecked and not any(c.verdict == "LEAK" for c in run.faults):
        print(f"ctxbench: error: {unchecked}", file=sys.stderr)
        return 2
    return 1 if failed else 0


#: The error kind of a status that is neither 2xx nor 5xx (``harness.faults.verdict``).
_OTHER_STATUS = "other-status"


def _answered_by_app(cell: FaultCell) -> int:
    """Requests of a fault cell, the clean load after the fault included, that the app answered
    itself with a status neither 2xx nor 5xx (an auth hook's 401, a rate limiter's 429)."""
    after = cell.after.errors.get(_OTHER_STATUS, 0) if cell.after is not None else 0
    return cell.errors.get(_OTHER_STATUS, 0) + after


def _app_answered_line(answered: t.Iterable[tuple[str, int]]) -> str | None:
    """Why ``chaos`` or ``soak`` gives no verdict when the app answered probe requests in the
    probe's place, given ``(where, how many)`` pairs; ``None`` when it never did. The words
    are those of ``ctxbench run``'s exit 2 (:func:`harness.cli._not_probe_answers`)."""
    from harness.report.text import plural

    where = [(name, n) for name, n in answered if n]
    if not where:
        return None
    return (
        f"{plural(sum(n for _, n in where), 'request')} got a status that is neither 2xx nor"
        f" 5xx, in {'; '.join(f'{name} ({n:,})' for name, n in where)}: the app answered them"
        " itself, in the probe's place (an auth hook, a rate limiter?), so they were never"
        " checked and no verdict is given; let probe requests through the app's hooks and"
        " middleware (README, 'Auth hooks and middleware')"
    )


def configure_soak(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", required=True, help="the server mode (see 'ctxbench list')")
    parser.add_argument(
        "--minutes", type=float, required=True, help="how long the steady load runs"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        help="seconds sampled but not judged (default a third of the soak, 10 to 180 s and at"
        " most half of it)",
    )
    parser.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        help="context storage (never-release: the memory-leak negative control)",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra server argument, repeatable; write --server-arg=--max-requests=1000",
    )
    _add_connections_option(parser, "fresh", both=False)  # a soak runs one pattern
    _add_common(parser)


#: Seconds between two progress lines of a soak off a terminal (a CI job, a log): a soak runs
#: for minutes, and CI services end a step that prints nothing for ten.
SOAK_BEAT_S = 30.0


def cmd_soak(args: argparse.Namespace) -> int:
    from harness import results
    from harness.app_string import parse_import_string
    from harness.apps import CORE_APP, mounted
    from harness.report import write_reports
    from harness.report.faults import soak_errors, soak_table
    from harness.runner import StatusLine
    from harness.servers._gunicorn import unread_settings
    from harness.settings import RunSettings
    from harness.soak import SoakInterrupted, default_warmup, run_soak
    from harness.soak.sampler import import_psutil
    from harness.soak.saves import SoakWriter

    import_psutil()  # a missing psutil is a usage error before anything starts
    app = args.app or CORE_APP
    parse_import_string(app)
    check_backend(args.backend, app)
    seconds = args.minutes * 60.0
    if not 0 < seconds <= 24 * 3600:
        raise UsageError(f"bad --minutes {args.minutes!r}: use a number in (0, 1440]")
    if args.warmup is not None and not 0 <= args.warmup < seconds:
        raise UsageError(f"bad --warmup {args.warmup!r}: use seconds in [0, the soak's length)")
    extra_args = _server_args(args.server_arg)
    # The seconds sampled but not judged, recorded as the run's warm-up: the report's settings
    # said 0.0 beside a soak that said "15 s warm-up, not judged".
    warmup = default_warmup(seconds) if args.warmup is None else args.warmup
    settings = RunSettings(
        apps=(app,), backends=(args.backend,), modes=(args.mode,),
        connections=(args.connections,), duration=seconds, concurrency=args.concurrency,
        sleep_ms=args.sleep_ms, workers=args.workers, threads=args.threads, repeats=1,
        warmup=warmup, extra_args=extra_args, mount=args.mount,
    )  # fmt: skip
    settings = checked(settings)  # --mount as normalised: "/api/" is "/api"
    status = StatusLine()  # a live line on a terminal only
    try:
        with _run_folder(args) as (run_dir, run_id):
            run = results.Run.start(run_id, ["ctxbench", *args.argv], settings)
            try:
                soak = run_soak(
                    args.mode, seconds=seconds, app=app, backend=args.backend,
                    connections=args.connections, warmup_s=warmup,
                    concurrency=args.concurrency, sleep_ms=args.sleep_ms, workers=args.workers,
                    threads=args.threads, extra_args=extra_args, mount=settings.mount,
                    log_dir=run_dir / results.LOGS,
                    progress=lambda text: status.beat(text, every=SOAK_BEAT_S),
                    save=SoakWriter(run_dir, run),
                )  # fmt: skip
            except SoakInterrupted as e:  # keep what was sampled, as an interrupted run does
                elapsed = max((s.t for s in e.soak.load), default=0.0)
                results.write_ended(run_dir, run.replace(soaks=(e.soak,)), elapsed, e)
                raise
            try:
                run = results.write_ended(run_dir, run.replace(soaks=(soak,)), seconds, None)
            except KeyboardInterrupt as e:  # during that write: the whole soak, interrupted
                results.write_ended(run_dir, run.replace(soaks=(soak,)), seconds, e)
                raise
            reports = write_reports(run_dir, run)  # with the folder held, as its results
    finally:
        status.done()
    _finish(
        run_dir,
        reports,
        soak_table(soak),
        f"\nsoak {soak.mode} {mounted(soak.app_label, soak.server.mount)} {soak.backend}"
        f" {soak.connections}: {soak.verdict}: {soak.reason}"
        f"\n{soak.requests:,} requests, {soak_errors(soak)}, {soak.leaks:,} leaks,"
        f" median {soak.rps:,.0f} rps after the warm-up",
        details=filter(None, [unread_settings(settings.modes)]),
    )
    where = f"soak {soak.mode} {soak.connections}"
    unchecked = _app_answered_line([(where, soak.error_kinds.get(_OTHER_STATUS, 0))])
    if unchecked and soak.verdict != "LEAK":  # as `ctxbench run` and `chaos`
        print(f"ctxbench: error: {unchecked}", file=sys.stderr)
        return 2
    return 0 if soak.passed else 1
