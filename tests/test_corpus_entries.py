"""harness.corpus: the entries' metadata, their derived cells, the verdict of a cell, the CLI."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from harness.corpus import ENTRIES, Entry, expectation, select
from harness.corpus.run import (
    LOAD,
    CorpusSettings,
    corpus_cells,
    judge,
    mode_traits,
    server_args,
)
from harness.errors import UsageError
from harness.expectations import Expectation
from harness.load.spec import CONNECTION_PATTERNS
from harness.report.corpus import corpus_table, corpus_verdict
from harness.results import CorpusCheck
from harness.servers import MODES

#: Where each deterministic entry's buggy app is caught, by mode family: pinned, so a change of
#: traits that moves a cell is a conscious decision (the README table shows the same).
CAUGHT = {
    "thread-local-before-patch": {("gunicorn-gevent", "keepalive"), ("gunicorn-gevent", "fresh")},
    "app-context-at-import": {("gunicorn-sync", "keepalive"), ("gunicorn-sync", "fresh")},
    "structlog-contextvars": {
        ("gunicorn-sync", "keepalive"), ("gunicorn-sync", "fresh"),
        ("gunicorn-gthread", "keepalive"), ("gunicorn-gthread", "fresh"),
        ("gunicorn-gevent", "keepalive"),
    },
    "abandoned-stream": set(),
    "pop-skipped-on-session-error": {
        ("gunicorn-sync", "keepalive"), ("gunicorn-sync", "fresh"),
        ("gunicorn-gthread", "keepalive"), ("gunicorn-gthread", "fresh"),
    },
    "teardown-skips-pop": {
        ("gunicorn-sync", "keepalive"), ("gunicorn-sync", "fresh"),
        ("gunicorn-gthread", "keepalive"), ("gunicorn-gthread", "fresh"),
        ("gunicorn-gevent", "keepalive"),
    },
    "asyncio-loop-gevent": {("gunicorn-gevent", "keepalive"), ("gunicorn-gevent", "fresh")},
}  # fmt: skip
BASE_MODES = ("werkzeug-threaded", "gunicorn-sync", "gunicorn-gthread", "gunicorn-gevent")


def test_every_entry_of_the_issue_is_there() -> None:
    numbers = [e.number for e in ENTRIES.values()]
    assert numbers == ["1", "2", "3", "4", "5", "6", "7a", "7b", "7c", "8"]
    for entry in ENTRIES.values():
        assert entry.title and entry.source and entry.fix and entry.shows_through
        assert entry.buggy != entry.fixed


def test_derived_cells_are_the_pinned_ones() -> None:
    for key, cells in CAUGHT.items():
        entry = ENTRIES[key]
        derived = {
            (mode, c)
            for mode in BASE_MODES
            for c in CONNECTION_PATTERNS
            if expectation(entry, mode, mode_traits(entry, mode), c).can_leak
        }
        assert derived == cells, key
        assert entry.traits.chance is None


def test_chance_entries_can_leak_by_chance_only() -> None:
    for key in ("id-keyed-cache", "before-first-request-race"):
        entry = ENTRIES[key]
        cells = [
            expectation(entry, m, mode_traits(entry, m), c) for m in BASE_MODES
            for c in CONNECTION_PATTERNS
        ]  # fmt: skip
        assert any(cell.can_leak for cell in cells)
        assert all(cell.chance for cell in cells if cell.can_leak)


def test_preload_changes_gevent_traits_only_for_preloaded_entries() -> None:
    entry = ENTRIES["thread-local-before-patch"]
    assert server_args(entry, "gunicorn-gevent") == ("--preload",)
    assert mode_traits(entry, "gunicorn-gevent").monkey_patch == "after-app"
    assert server_args(ENTRIES["structlog-contextvars"], "gunicorn-gevent") == ()
    assert server_args(entry, "werkzeug-threaded") == ()


def test_entry_modules_build_nothing_on_import() -> None:
    # The harness imports them for their metadata; a buggy app does its damage when built.
    code = (
        "import sys; from harness.corpus import ENTRIES; "
        "assert ENTRIES; assert 'flask' not in sys.modules, 'an entry built its app'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("variant", "can_leak", "chance", "leaks", "verdict", "matches"),
    [
        ("buggy", True, None, 3, "caught", True),
        ("buggy", True, None, 0, "missed", False),
        ("buggy", True, "address reuse", 0, "not caught", True),
        ("buggy", False, None, 0, "clean", True),
        ("buggy", False, None, 2, "false leak", False),
        ("fixed", True, None, 0, "clean", True),
        ("fixed", False, None, 1, "leaked", False),
    ],
)
def test_judge(
    variant: str, can_leak: bool, chance: str | None, leaks: int, verdict: str, matches: bool
) -> None:
    entry = ENTRIES["structlog-contextvars"]
    cell = Expectation(entry.key, "m", "keepalive", can_leak, "Because", chance=chance)
    check = judge(entry, variant, cell, leaks, 7 if leaks else None)
    assert (check.verdict, check.matches) == (verdict, matches)
    assert check.expected == (can_leak and variant == "buggy")


def test_settings_refuse_unknown_entries_and_bad_counts() -> None:
    with pytest.raises(UsageError, match="unknown corpus entry 'nope'"):
        CorpusSettings(entries=("nope",))
    with pytest.raises(UsageError, match="bad --fixed-requests 0"):
        CorpusSettings(fixed_requests=0)
    # The load is checked by the rules of `ctxbench run`, before a server starts.
    with pytest.raises(UsageError, match="bad --requests 0"):
        CorpusSettings(load=LOAD.replace(requests=0)).run_settings(("gunicorn-sync",))
    with pytest.raises(UsageError, match="bad --concurrency 5000"):
        CorpusSettings(load=LOAD.replace(concurrency=5000)).run_settings(("gunicorn-sync",))
    assert select(["app-context-at-import"]) == [ENTRIES["app-context-at-import"]]


def test_entries_are_named_by_key_or_by_the_number_the_list_shows() -> None:
    # `corpus --list` numbers the entries; a user picks them by those numbers, and by a number
    # without its letter for every entry of it (7a, 7b and 7c are three mutants of one bug).
    by_number = {e.number: e for e in ENTRIES.values()}
    assert select(["1", "7a"]) == [by_number["1"], by_number["7a"]]
    sevens = [e for e in ENTRIES.values() if e.number.startswith("7")]
    assert len(sevens) > 1 and select(["7"]) == sevens
    assert select(["1", "thread-local-before-patch", "1"]) == [by_number["1"]]  # once each
    with pytest.raises(ValueError, match=r"unknown corpus entry '99': .* or their numbers"):
        select(["99"])


def test_cells_skip_nothing_on_the_base_modes() -> None:
    entries = select()
    cells = list(corpus_cells(entries, BASE_MODES, CONNECTION_PATTERNS))
    assert len(cells) == len(entries) * 2 * len(BASE_MODES) * 2


def _cell(entry: Entry, variant: str, mode: str, verdict: str, leaks: int) -> t.Any:
    from harness.results import Cell

    return Cell(
        app=entry.variant(variant).app, backend="contextvar", mode=mode, connections="fresh",
        requests=100, leaks=leaks, errors=0, runs=(),
        corpus=CorpusCheck(entry.key, variant, True, "r", verdict, verdict != "missed",
                           first_leak_at=4 if leaks else None),
    )  # fmt: skip


def test_corpus_table_and_verdict() -> None:
    entry = ENTRIES["app-context-at-import"]
    cells = [
        _cell(entry, "buggy", "gunicorn-sync", "caught", 9),
        _cell(entry, "buggy", "gunicorn-gthread", "clean", 0),
        _cell(entry, "fixed", "gunicorn-sync", "clean", 0),
        _cell(entry, "fixed", "gunicorn-gthread", "clean", 0),
    ]
    table = corpus_table(cells)
    assert table.headers[2:4] == ("gunicorn-sync fresh", "gunicorn-gthread fresh")
    assert table.rows[0][2:] == ("caught after 4", "clean", "0 leaks / 200 requests", "yes")
    assert corpus_verdict(cells)[0]
    missed = [*cells[:1], _cell(entry, "buggy", "gunicorn-gthread", "missed", 0), *cells[2:]]
    ok, sentence = corpus_verdict(missed)
    assert not ok and "gunicorn-gthread fresh: missed" in sentence
    assert corpus_table(missed).bad_rows == frozenset({0})


def test_cli_lists_entries(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["corpus", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(key in out for key in ENTRIES)


def test_cli_refuses_an_unknown_entry(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["corpus", "--entries", "nope"]) == 2
    assert "unknown corpus entry 'nope'" in capsys.readouterr().err


def test_every_mode_has_preload_args_declared() -> None:
    for mode in MODES.values():
        assert isinstance(mode.preload_args, tuple)


def test_a_local_made_by_a_module_the_server_imports_before_patching_is_shared() -> None:
    # `import eventlet` imports asyncio before monkey_patch(): its loop holder stays native.
    entry = ENTRIES["asyncio-loop-gevent"]
    eventlet = MODES["eventlet"].traits
    assert "asyncio" in eventlet.imported_before_patch
    assert expectation(entry, "eventlet", eventlet, "fresh").can_leak
    # The app's own local is made after eventlet's patch: greenthread-local.
    own = ENTRIES["thread-local-before-patch"]
    assert not expectation(own, "eventlet", eventlet, "fresh").can_leak


def test_import_context_shows_where_the_importing_thread_serves() -> None:
    entry = ENTRIES["app-context-at-import"]
    assert expectation(entry, "uwsgi-threads", MODES["uwsgi-threads"].traits, "fresh").can_leak
    assert not expectation(entry, "waitress", MODES["waitress"].traits, "fresh").can_leak


def test_corpus_catch_writes_its_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``benchmarks/corpus_catch.py --out`` records its settings (it read them from fields
    ``CorpusSettings`` no longer has, and crashed after measuring every cell)."""
    from benchmarks import corpus_catch

    monkeypatch.setattr(corpus_catch, "catchable_cells", lambda entries, modes: iter(()))
    out = tmp_path / "corpus_catch.json"
    argv = ["--entries", "structlog-contextvars", "--modes", "gunicorn-sync", "--out", str(out)]
    assert corpus_catch.main(argv) == 0
    settings = json.loads(out.read_text())["settings"]
    assert (settings["concurrency"], settings["sleep_ms"]) == (LOAD.concurrency, LOAD.sleep_ms)


@pytest.mark.parametrize(
    ("errors", "status"),
    [pytest.param(0, 0, id="checked"), pytest.param(100, 2, id="every-request-reset")],
)
def test_a_clean_corpus_cell_on_unchecked_requests_has_no_verdict(
    errors: int,
    status: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A fixed twin whose every request was reset came out "clean": `corpus` exited 0 on
    # requests it never checked; it now exits 2, as `run` does.
    import dataclasses

    from harness import results
    from harness.cli import main
    from harness.corpus import run as corpus_run
    from harness.settings import RunSettings

    entry = ENTRIES["app-context-at-import"]
    cells = (
        _cell(entry, "buggy", "gunicorn-sync", "caught", 9),
        dataclasses.replace(
            _cell(entry, "fixed", "gunicorn-sync", "clean", 0),
            errors=errors, error_kinds={"reset": errors} if errors else {},
        ),
    )  # fmt: skip

    def fake(settings: t.Any, run_dir: Path, **kw: t.Any) -> t.Any:
        return results.Run.start("c", ["ctxbench"], RunSettings()).replace(cells=cells)

    monkeypatch.setattr(corpus_run, "run_corpus", fake)
    argv = ["corpus", "--entries", entry.key, "--modes", "gunicorn-sync", "--run-dir",
            str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == status
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("ctxbench: error: ")]
    if status:
        assert len(said) == 1 and "0 of 100 requests checked (100 x reset)" in said[0], err
    else:
        assert not said, err


def test_a_corpus_run_that_stopped_early_is_not_reported_as_a_pass() -> None:
    # Before: an interrupted corpus run's report opened with a green 'Corpus: as expected. All 4
    # corpus cells came out as the entries' traits say', above the warning that it stopped.
    from harness.report import render_reports
    from harness.results import Run
    from harness.settings import RunSettings

    entry = ENTRIES["app-context-at-import"]
    cells = (_cell(entry, "buggy", "gunicorn-sync", "caught", 9),
             _cell(entry, "fixed", "gunicorn-sync", "clean", 0))  # fmt: skip
    begun = Run.start("corpus-x", ["ctxbench", "corpus"], RunSettings())
    stopped = begun.replace(cells=cells, status="interrupted")
    md, html = (render_reports(stopped)[name] for name in ("report.md", "report.html"))
    assert "**Corpus: as expected so far.** All 2 corpus cells that ran came out as" in md
    assert '<section class="warning"><p><strong>Corpus: as expected so far' in html
    done = render_reports(stopped.replace(status="complete"))
    assert "**Corpus: as expected.** All 2 corpus cells came out as" in done["report.md"]


@pytest.mark.usefixtures("interrupt_the_complete_write")
def test_a_corpus_interrupted_while_it_writes_complete_keeps_every_cell_as_interrupted(
    tmp_path: Path,
) -> None:
    # The Ctrl-C came as the last write began: results.json kept the last cell's write, marked
    # running, which report and compare read as abandoned (killed outright).
    from types import SimpleNamespace

    from harness import results
    from harness.corpus.run import run_corpus
    from tests.test_runner import result

    @contextlib.contextmanager
    def server(mode: str, *, log_dir: Path, **kw: t.Any) -> t.Iterator[t.Any]:
        log_dir.mkdir(parents=True, exist_ok=True)
        yield SimpleNamespace(mode=mode, log_path=log_dir / "server.log", effective={})

    settings = CorpusSettings(entries=("structlog-contextvars",), load=LOAD.replace(
        modes=("gunicorn-sync",), connections=("fresh",)))  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        run_corpus(settings, tmp_path, server=server, load=lambda *a: result(100.0))
    run = results.load(tmp_path)
    assert run.status == "interrupted"
    assert len(run.cells) == 2  # the buggy app and its fixed twin


def test_a_corpus_cell_records_the_virtual_users_it_ran_with(tmp_path: Path) -> None:
    # The report's load table said "-" under *users* for every corpus cell, which ran 16.
    from types import SimpleNamespace

    from harness import results
    from harness.corpus.run import run_corpus
    from tests.test_runner import result

    @contextlib.contextmanager
    def server(mode: str, *, log_dir: Path, **kw: t.Any) -> t.Iterator[t.Any]:
        log_dir.mkdir(parents=True, exist_ok=True)
        yield SimpleNamespace(mode=mode, log_path=log_dir / "server.log", effective={})

    settings = CorpusSettings(entries=("structlog-contextvars",), load=LOAD.replace(
        modes=("gunicorn-sync",), connections=("fresh",), concurrency=7))  # fmt: skip
    run = run_corpus(settings, tmp_path, server=server, load=lambda *a: result(100.0))
    assert [c.concurrency for c in run.cells] == [7, 7]
    assert results.load(tmp_path) == run
