"""harness.exercised: what a run exercised, from the units the probe reported."""

from __future__ import annotations

from harness.exercised import exercised


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
    assert note.startswith("requests did not overlap in a server process (0.75 in flight")


def test_no_reuse_and_greenlet_notes() -> None:
    fresh_threads = [(1, t, 7) for t in range(50)]
    seen = exercised(fresh_threads, answered=50, rps=9000.0, sleep_ms=1.0, connections="fresh")
    assert seen.overlap and not seen.unit_reused
    assert any("no execution unit served two requests (50 units" in n for n in seen.notes())
    greenlets = [(1, 10, g) for g in range(8)]
    seen = exercised(greenlets, answered=800, rps=5000.0, sleep_ms=1.0, connections="fresh")
    assert seen.greenlets and seen.unit_reused
    assert any("address reuse" in n for n in seen.notes())


def test_nothing_answered() -> None:
    seen = exercised([], answered=0, rps=0.0, sleep_ms=1.0, connections="fresh")
    assert seen.notes() == ["no request was answered, so nothing was checked"]
