"""The corpus, live: a representative cell of each deterministic entry, buggy and fixed.

Each case runs the entry's buggy app and its fixed twin under one mode and connection pattern
(the load the entry needs included: failing requests, abandoned streams) and checks the cell
against the entry's derived expectation: caught within the first 100 requests where it can
leak, through the observation names the entry says, clean where it cannot, and the fixed twin
clean. CI runs these cells; ``ctxbench corpus`` runs every entry under every mode and pattern,
and ``benchmarks/corpus_catch.py`` measures the requests-until-caught distribution and the
chance entries' catch rates.
"""

from __future__ import annotations

import typing as t

import pytest

from harness.corpus import ENTRIES, expectation
from harness.corpus.run import LOAD, CorpusSettings, judge, load_cell, mode_traits, server_args

pytest.importorskip("flask", reason="the corpus apps need flask (pip install 'ctxbench[corpus]')")
pytest.importorskip("structlog", reason="entry 3 needs structlog (pip install 'ctxbench[corpus]')")

#: (entry, mode, connections): one cell per deterministic entry, plus a cell where one cannot
#: leak. The chance entries (id-keyed-cache, before-first-request-race) are measured, not here.
CI_CELLS = [
    ("thread-local-before-patch", "gunicorn-gevent", "keepalive"),
    ("app-context-at-import", "gunicorn-sync", "fresh"),
    # Clean: uvicorn --reset-contextvars starts each request without what the import set.
    ("app-context-at-import", "uvicorn-asgiref", "fresh"),
    # Caught: hypercorn's request contexts descend from the one the app was imported in.
    ("app-context-at-import", "hypercorn-asgiref", "fresh"),
    ("structlog-contextvars", "gunicorn-gthread", "keepalive"),
    ("structlog-contextvars", "gunicorn-gevent", "fresh"),
    ("copy-context-pool", "gunicorn-gthread", "fresh"),
    ("abandoned-stream", "gunicorn-gthread", "keepalive"),
    ("pop-skipped-on-session-error", "gunicorn-sync", "keepalive"),
    ("teardown-skips-pop", "gunicorn-gevent", "keepalive"),
    ("asyncio-loop-gevent", "gunicorn-gevent", "fresh"),
]
REQUESTS = 200
CATCH_WITHIN = 100

CASES = [
    pytest.param(key, variant, mode, connections, id=f"{key}-{variant}-{mode}-{connections}")
    for key, mode, connections in CI_CELLS
    for variant in ("buggy", "fixed")
]


@pytest.mark.live
@pytest.mark.parametrize(("key", "variant", "mode", "connections"), CASES)
def test_corpus_cell(
    key: str,
    variant: str,
    mode: str,
    connections: t.Any,
    shared_server: t.Any,
    describe_run: t.Any,
) -> None:
    entry = ENTRIES[key]
    chosen = entry.variant(variant)
    cell = expectation(entry, mode, mode_traits(entry, mode), connections)
    # Every cell has a server of its own; shared_server stops it while the next cell's starts.
    server = shared_server(
        mode, app=chosen.app, backend=chosen.backend, extra_args=server_args(entry, mode)
    )
    settings = CorpusSettings(entries=(key,), load=LOAD.replace(requests=REQUESTS))

    result = load_cell(entry, server, connections, settings.cell_load(entry, variant))

    check = judge(entry, variant, cell, result.leaks, result.first_leak_at)
    summary = describe_run(result, server)
    assert result.requests == REQUESTS, summary
    assert check.matches, (
        f"{key} {variant} under {mode}/{connections}: {check.verdict} ({check.reason}).\n{summary}"
    )
    if check.verdict == "caught":
        assert result.first_leak_at <= CATCH_WITHIN, summary
        names = {e.name for e in result.evidence}
        assert names <= entry.shows_through, f"showed through {names - entry.shows_through}"
    else:
        assert result.leaks == 0, summary
        assert result.errors == 0, summary
