"""The results model: its JSON form, schema versions, statistics, and the atomic writer."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from harness import results
from harness.errors import ResultsError
from harness.results import (
    Cell,
    Latency,
    LeakExpectation,
    Measurement,
    Run,
    ServerConnections,
    ServerInfo,
    Warmup,
)
from harness.settings import RunSettings
from harness.verdict import Evidence, Unit

#: The reference run as it was committed before the schema's version 2 (16 cells, 4 modes).
V1_DOCUMENT = Path(__file__).resolve().parent / "data" / "results-v1.json"


def cell(**overrides: Any) -> Cell:
    return dataclasses.replace(
        Cell(
            app="harness.apps.core_app:app",
            backend="contextvar",
            mode="gunicorn-gevent",
            connections="keepalive",
            requests=100,
            leaks=1,
            leaky_requests=1,
            errors=0,
            runs=tuple(
                Measurement(rps, 1.0, Latency(1.0, 2.0, 3.0, 4.0)) for rps in (990, 1000, 1010)
            ),
            latency_ms=Latency(1.0, 2.0, 3.0, 4.0),
            warmup=Warmup(10, 0, 0),
            units_seen=4,
            evidence=(Evidence("gunicorn-gevent", "view", "g", "a", "b", Unit(1, 2, 3)),),
            observed=("g", "request", "user"),
            server=ServerInfo({"worker_class": "gevent", "workers": 2}, "logs/x.log"),
        ),
        **overrides,
    )


@pytest.fixture
def run() -> Run:
    return Run.start("run-1", ["ctxbench", "run"], RunSettings(duration=2.0)).replace(
        cells=(cell(),)
    )


def test_a_new_run_is_self_describing(run: Run) -> None:
    assert run.machine.cpu_count and run.machine.cpu_count >= 1
    assert run.python.count(".") == 2
    assert run.packages["werkzeug"]
    assert "gunicorn" in run.packages
    assert run.created.endswith("+00:00")
    doc = run.to_json()
    assert next(iter(doc)) == "schema" and doc["schema"] == "ctxbench.results/2"
    assert doc["cells"][0]["evidence"][0]["unit"] == {"pid": 1, "thread": 2, "greenlet": 3}


def test_a_run_is_written_as_it_ended(tmp_path: Path, run: Run) -> None:
    done = results.write_ended(tmp_path, run, 1.234, None)
    assert (done.status, done.elapsed_s) == ("complete", 1.23)
    assert results.load(tmp_path) == done
    for stopped_by, status in ((KeyboardInterrupt(), "interrupted"), (OSError(), "failed")):
        ended = results.write_ended(tmp_path, run, 2.0, stopped_by)
        assert ended.status == status and results.load(tmp_path).status == status
    # stopped before it measured anything: nothing to keep, nothing written
    empty = run.replace(cells=())
    assert results.write_ended(tmp_path / "none", empty, 2.0, KeyboardInterrupt()) == empty
    assert not (tmp_path / "none").exists()


def test_statistics_are_derived_once() -> None:
    c = cell()
    assert c.rps == 1000.0
    assert c.rps_spread == pytest.approx(0.02)  # (max - min) / median
    assert not c.noisy
    assert cell(runs=(Measurement(900.0), Measurement(1100.0))).noisy
    assert results.spread([5.0]) == 0.0 and results.spread([]) == 0.0
    assert c.app_label == "core"
    assert c.key == ("core", "contextvar", "gunicorn-gevent", "keepalive", None, "/")


def test_evidence_is_kept_up_to_the_cap() -> None:
    kept: list[int] = []
    results.keep_evidence(kept, range(results.EVIDENCE_CAP - 2))
    results.keep_evidence(kept, [100, 101, 102, 103])
    assert kept[-2:] == [100, 101] and len(kept) == results.EVIDENCE_CAP
    results.keep_evidence(kept, [200])
    assert len(kept) == results.EVIDENCE_CAP
    over = list(range(results.EVIDENCE_CAP + 5))  # a list already past the cap never grows
    results.keep_evidence(over, [1, 2, 3])
    assert len(over) == results.EVIDENCE_CAP + 5


def test_percentiles_interpolate() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert Latency.of(values) == Latency(50.5, 90.1, 99.01, 100.0)
    assert Latency.of([7.0]) == Latency(7.0, 7.0, 7.0, 7.0)
    assert Latency.of([]) == Latency(None, None, None, None)


def test_write_and_load_round_trip(tmp_path: Path, run: Run) -> None:
    path = results.write(tmp_path / "run-1", run)
    assert path == tmp_path / "run-1" / "results.json"
    assert results.load(tmp_path / "run-1") == run
    assert results.load(path) == run
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_results_follow_the_umask(tmp_path: Path, run: Run) -> None:
    old = os.umask(0o022)
    try:
        path = results.write(tmp_path, run)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_failed_write_keeps_the_old_file(
    tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = results.write(tmp_path, run)
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise KeyboardInterrupt  # e.g. Ctrl-C between write and rename

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        results.write(tmp_path, run.replace(cells=(*run.cells, cell(mode="gunicorn-sync"))))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_unserialisable_data_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        results.write_atomic(tmp_path / "x.json", {"rps": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_reference_v1_document_reads_and_round_trips() -> None:
    doc = json.loads(V1_DOCUMENT.read_text(encoding="utf-8"))
    assert doc["schema"] == "ctxbench.results/1"
    run = Run.from_json(doc)
    assert Run.from_json(run.to_json()) == run
    for entry, c in zip(doc["entries"], run.cells, strict=True):
        assert round(c.rps, 1) == entry["rps"]
        assert round(c.rps_spread, 4) == entry["rps_spread"]
        assert c.units_seen == entry["workers_seen"]
        assert c.leaky_requests is None  # /1 did not record it


def test_starved_users_are_a_cell_figure_older_documents_lack(run: Run) -> None:
    measured = cell(runs=(Measurement(990, 1.0, starved=0), Measurement(1000, 1.0, starved=14)))
    assert measured.starved == 14  # the worst repeat
    again = Run.from_json(run.replace(cells=(measured,)).to_json())
    assert again.cells[0] == measured
    # a document written before it was measured: no "starved" key, and read as not recorded
    doc = _v2(run)
    for measurement in doc["cells"][0]["runs"]:
        del measurement["starved"]
    old = Run.from_json(doc)
    assert old.cells[0].starved is None
    assert Run.from_json(old.to_json()) == old


def test_delayed_ack_counts_are_pooled_over_runs_and_older_documents_lack_them(run: Run) -> None:
    from harness.load.acks import AckCounts

    # no run alone has MIN_REUSED kept-alive responses; the cell's runs together do
    stalled = AckCounts(first=4, first_stalled=0, reused=12, stalled=12)
    measured = cell(runs=(Measurement(90, 1.0, acks=stalled), Measurement(91, 1.0, acks=stalled)))
    assert measured.acks == AckCounts(8, 0, 24, 24) and measured.delayed_acks
    again = Run.from_json(run.replace(cells=(measured,)).to_json())
    assert again.cells[0] == measured
    # a document written before they were counted: no "acks" key, read as not recorded
    doc = _v2(run)
    for measurement in doc["cells"][0]["runs"]:
        del measurement["acks"]
    old = Run.from_json(doc)
    assert old.cells[0].acks is None and not old.cells[0].delayed_acks
    assert Run.from_json(old.to_json()) == old


def test_what_a_server_did_with_its_connections_is_recorded_and_older_documents_lack_it(
    run: Run,
) -> None:
    held = ServerConnections(pattern="keepalive", kept_alive_holds_unit=True, proxy="nginx")
    measured = cell(server=ServerInfo({"workers": 2}, "logs/x.log", connections=held))
    doc = run.replace(cells=(measured,)).to_json()
    assert doc["cells"][0]["server"]["connections"] == {
        "pattern": "keepalive", "kept_alive_holds_unit": True, "proxy": "nginx",
        "connection_limit": None,
    }  # fmt: skip
    assert Run.from_json(doc).cells[0] == measured
    # one written before the connection limit was recorded: read as not known
    del doc["cells"][0]["server"]["connections"]["connection_limit"]
    assert Run.from_json(doc).cells[0] == measured
    # a document written before it was recorded: no "connections" key, read as not known
    doc = _v2(run)
    del doc["cells"][0]["server"]["connections"]
    old = Run.from_json(doc)
    assert old.cells[0].server.connections is None
    assert Run.from_json(old.to_json()) == old


def test_what_the_model_says_of_a_broken_backend_is_recorded_and_older_documents_lack_it(
    run: Run,
) -> None:
    said = LeakExpectation(True, "Requests overlap", chance="only by chance")
    measured = cell(backend="before-first-request-race", expectation=said)
    doc = run.replace(cells=(measured,)).to_json()
    assert doc["cells"][0]["expectation"] == {
        "can_leak": True, "reason": "Requests overlap", "chance": "only by chance",
    }  # fmt: skip
    assert Run.from_json(doc).cells[0] == measured
    # the default backend records none
    assert run.to_json()["cells"][0]["expectation"] is None
    # a document written before it was recorded: no "expectation" key, read as not known
    doc = _v2(run.replace(cells=(measured,)))
    del doc["cells"][0]["expectation"]
    old = Run.from_json(doc)
    assert old.cells[0].expectation is None
    assert Run.from_json(old.to_json()) == old


def test_v1_evidence_worker_becomes_unit() -> None:
    doc = json.loads(V1_DOCUMENT.read_text(encoding="utf-8"))
    doc["entries"][0]["evidence"] = [
        {"mode": "m", "phase": "view", "name": "g", "expected": "a", "seen": None,
         "worker": {"pid": 1, "thread": 2, "greenlet": None}}
    ]  # fmt: skip
    [ev] = Run.from_json(doc).cells[0].evidence
    assert ev.unit == Unit(1, 2, None)


def _v2(run: Run) -> dict[str, Any]:
    return copy.deepcopy(run.to_json())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(lambda d: d.update(schema="ctxbench.results/9"), "another vers", id="newer"),
        pytest.param(lambda d: d.update(schema="other"), "not a ctxbench results", id="foreign"),
        pytest.param(lambda d: d.pop("machine"), "missing key 'machine'", id="missing-top"),
        pytest.param(lambda d: d.update(cells={}), "cells: expected a list", id="cells-type"),
        pytest.param(lambda d: d["cells"][0].pop("leaks"), "cells[0]: missing key 'leak", id="key"),
        pytest.param(
            lambda d: d["cells"][0]["runs"][0].update(rps="fast"),
            "cells[0].runs[0].rps: expected a number, got 'fast'",
            id="cell-type",
        ),
        pytest.param(lambda d: d["cells"][0].update(leaks=True), "expected an integer", id="bool"),
        pytest.param(lambda d: d["cells"][0].update(lekas=1), "unknown key 'lekas'", id="typo"),
        pytest.param(  # a field a newer ctxbench added, under the same schema name
            lambda d: d["cells"][0].update(new_field={"x": 1}),
            "cells[0]: unknown key 'new_field', a field this version of ctxbench does not have:"
            " the document was written by a newer ctxbench (read it with that one) or edited",
            id="newer",
        ),
        pytest.param(
            lambda d: d["settings"].update(concurrency="16"), "settings.concurrency", id="settings"
        ),
    ],
)
def test_reading_says_what_is_wrong(run: Run, mutate: Any, message: str) -> None:
    doc = _v2(run)
    mutate(doc)
    with pytest.raises(ResultsError, match=re.escape(message)):
        Run.from_json(doc)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=r"no results at .*run 'ctxbench run' first"):
        results.load(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ResultsError, match="is not valid JSON"):
        results.load(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ResultsError, match="expected a JSON object"):
        results.load(tmp_path)


def test_loading_a_run_folder_that_holds_only_logs_says_the_run_wrote_no_results(
    tmp_path: Path,
) -> None:
    # A run killed (kill -9, a CI job's hard kill) before its first cell leaves its server logs
    # alone: `ctxbench report` of that folder said "run 'ctxbench run' first".
    (tmp_path / "logs" / "core-contextvar").mkdir(parents=True)
    with pytest.raises(ResultsError) as info:
        results.load(tmp_path)
    assert str(info.value) == (
        f"no results at {str(tmp_path / 'results.json')!r}: the run in {str(tmp_path)!r} ended"
        " before it wrote any (killed outright, or its first server did not start); only its"
        f" server logs are there, in {str(tmp_path / 'logs')!r}"
    )


def test_loading_the_folder_of_the_runs_names_a_run_in_it(tmp_path: Path) -> None:
    # `ctxbench report results` (the --out folder) said "run 'ctxbench run' first" after a run.
    for n, name in enumerate(["20261202-101500-aaaaaa", "nightly", "20261202-090000-bbbbbb"]):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text("{}")
        os.utime(tmp_path / name / "results.json", (1_000_000 + n, 1_000_000 + n))
    (tmp_path / "logs").mkdir()  # a folder without results is no run
    with pytest.raises(ResultsError) as info:
        results.load(tmp_path)
    assert str(info.value) == (
        f"no results at {str(tmp_path / 'results.json')!r}: {str(tmp_path)!r} holds 3 run"
        f" folders, not a run; name one, such as the newest,"
        f" {str(tmp_path / '20261202-090000-bbbbbb')!r}"
    )
    # one run folder: "holds 1 run folders, not a run; name one, such as the newest, ..."
    for name in ("20261202-101500-aaaaaa", "nightly"):
        (tmp_path / name / "results.json").unlink()
    with pytest.raises(ResultsError) as info:
        results.load(tmp_path)
    assert str(info.value) == (
        f"no results at {str(tmp_path / 'results.json')!r}: {str(tmp_path)!r} holds a run"
        f" folder, not a run; name it, {str(tmp_path / '20261202-090000-bbbbbb')!r}"
    )
