"""harness.exercised: what a run exercised, from the units the probe reported."""

from __future__ import annotations

from harness.exercised import Note, exercised


def test_a_threaded_pool_overlaps_and_reuses() -> None:
    units = [(1, 10, 100), (1, 11, 101), (2, 20, 200), (2, 21, 201)]
    seen = exercised(units, answered=1000, rps=4000.0, sleep_ms=1.0, connections="fresh")
    assert (seen.processes, seen.units, seen.in_flight) == (2, 4, 2.0)
    assert seen.overlap and seen.unit_reused and seen.reused_across_connections
    assert not seen.greenlets
    assert seen.notes() == []


def test_one_request_at_a_time_is_no_overlap() -> None:
    units = [(1, 10, 100), (2, 20, 200)]
    seen = exercised(units, answered=500, rps=1500.0, sleep_ms=1.0, connections="keepalive")
    assert not seen.overlap and seen.unit_reused and not seen.reused_across_connections
    [note] = seen.notes()
    # 0.75 is a lower bound (Little's law on the sleep alone): the note cannot say that the
    # requests did not overlap, only that the run did not show it, and what would.
    assert note.sentence.startswith(
        "requests were not shown to overlap in a server process (the requests in flight per"
        " process on average, from the throughput and the time each request sleeps, must pass 1"
        " to show it)"
    )
    assert note.figure == "at least 0.75 requests in flight per process"
    assert "a longer --sleep-ms (10)" in note.sentence


def test_no_reuse_and_greenlet_notes() -> None:
    fresh_threads = [(1, t, 7) for t in range(50)]
    seen = exercised(fresh_threads, answered=50, rps=9000.0, sleep_ms=1.0, connections="fresh")
    assert seen.overlap and not seen.unit_reused
    assert "50 units for 50 answered requests" in [n.figure for n in seen.notes()]
    greenlets = [(1, 10, g) for g in range(8)]
    seen = exercised(greenlets, answered=800, rps=5000.0, sleep_ms=1.0, connections="fresh")
    assert seen.greenlets and seen.unit_reused
    assert any("address reuse" in n.sentence for n in seen.notes())


def test_nothing_answered() -> None:
    seen = exercised([], answered=0, rps=0.0, sleep_ms=1.0, connections="fresh")
    assert seen.notes() == [("no request was answered, so nothing was checked", "")]


def test_a_keepalive_cell_whose_server_closed_every_connection_says_so() -> None:
    """uWSGI's --http-socket (or gunicorn's sync worker, or keepalive = 0) closes after every
    response: under --target the keepalive cell said nothing of it, and read as a keep-alive
    check that had exercised what fresh does."""
    units = [(1, 10, None), (1, 11, None), (2, 20, None), (2, 21, None)]
    kw = {"answered": 3000, "rps": 3000.0, "sleep_ms": 1.0}
    closed = exercised(units, **kw, connections="keepalive", reconnects=2984)
    [note] = closed.notes()
    assert note.sentence.startswith(
        "the server closed the connection after nearly every response, so hardly any request"
        " came on a kept-alive connection"
    )
    assert note.figure == "2,984 times in 3,000 answered requests"
    # Kept alive (a few closes: an idle timeout, a recycled worker), or another pattern: no note.
    assert exercised(units, **kw, connections="keepalive", reconnects=40).notes() == []
    assert exercised(units, **kw, connections="fresh", reconnects=2984).reconnects is None
    assert exercised(units, **kw, connections="keepalive").notes() == []  # not recorded


def test_a_process_per_request_keeps_the_first_pids_and_a_count() -> None:
    """A target that forks a process per request (werkzeug's processes=16) reported a new pid per
    answer, and every one went into results.json and the report: 5,000 requests made 86 KB of
    results.json and a 32 KB line of pids in report.md, growing with the requests."""
    import dataclasses
    import json

    from harness.exercised import PIDS_KEPT
    from harness.report import render_reports
    from harness.results import Run
    from tests.test_report import load_run, make_doc, make_entry

    forked = [(pid, 1, None) for pid in range(1000, 6000)]
    seen = exercised(forked, answered=5000, rps=50.0, sleep_ms=1.0, connections="fresh")
    assert seen.pids == tuple(range(1000, 1000 + PIDS_KEPT))
    assert (seen.processes, seen.more_pids, seen.units) == (5000, 5000 - PIDS_KEPT, 5000)
    run = load_run(make_doc([make_entry("gunicorn-sync")]))
    server = dataclasses.replace(run.cells[0].server, effective={"target": "http://127.0.0.1:8"})
    cell = dataclasses.replace(run.cells[0], server=server, exercised=seen)
    doc = run.replace(cells=(cell,)).to_json()
    assert len(json.dumps(doc)) < 10_000
    back = Run.from_json(json.loads(json.dumps(doc)))
    assert back.cells[0].exercised == seen
    md = render_reports(back)["report.md"]
    assert f"pids {', '.join(map(str, seen.pids))} and 4,980 more)" in md
    assert (
        "| gunicorn-sync | keepalive | 5,000 | 5,000 | 5,000 |" in md
    )  # processes, threads, units
    # Results written before the count read as they did: every pid they kept is counted.
    del doc["cells"][0]["exercised"]["more_pids"]
    assert Run.from_json(doc).cells[0].exercised.processes == PIDS_KEPT  # type: ignore[union-attr]


def test_a_process_per_request_whose_pids_wrapped_may_not_have_reused_a_unit() -> None:
    """werkzeug's processes=16 forks a process per request: past 100,000 requests the pids
    wrapped (pid_max 32768), the units read as reused, and the "no unit served two requests"
    note went, though no process served two."""
    wrapped = [(300 + n % 32000, n % 32000, None) for n in range(32000)]
    seen = exercised(wrapped, answered=100_000, rps=50.0, sleep_ms=1.0, connections="fresh")
    assert seen.unit_reused and seen.processes == 32000
    note = Note(
        "the server started a process for nearly every request, and a new process can take a"
        " dead one's pid: the reuse may be pid reuse, not one process serving several requests",
        "32,000 processes for 100,000 answered requests",
    )
    assert note in seen.notes()
    pool = [(pid, thread, None) for pid in range(1000) for thread in range(4)]
    seen = exercised(pool, answered=100_000, rps=5000.0, sleep_ms=1.0, connections="fresh")
    assert seen.unit_reused  # a pool of 1,000 processes reuses its units for real
    assert not any("pid reuse" in note.sentence for note in seen.notes())


def test_a_server_that_never_overlaps_requests_gets_no_note_about_overlap() -> None:
    # gunicorn-sync, tornado, asgiref, a pool of one thread: no sleep and no number of users
    # makes two requests of one process overlap, so neither note would help.
    units = [(1, 10, 100), (2, 20, 200)]
    seen = exercised(units, answered=500, rps=1500.0, sleep_ms=1.0, connections="fresh",
                     can_overlap=False)  # fmt: skip
    assert not seen.overlap and not seen.can_overlap
    assert seen.notes() == [] and seen.notes(users=1) == []
