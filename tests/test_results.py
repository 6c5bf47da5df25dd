"""The results document: schema, atomic writes, validation errors that say what is wrong."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from harness import results
from harness.errors import ResultsError


def entry(**overrides: Any) -> dict[str, Any]:
    rv: dict[str, Any] = {
        "mode": "gunicorn-gevent",
        "app": "harness.apps.core_app:app",
        "app_label": "core",
        "backend": "contextvar",
        "connections": "keepalive",
        "requests": 100,
        "leaks": 0,
        "errors": 0,
        "error_kinds": {},
        "rps": 1000.0,
        "rps_runs": [990.0, 1000.0, 1010.0],
        "rps_spread": 0.02,
        "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 4.0},
        "latency_runs": [],
        "evidence": [],
        "server": {"effective": {"worker_class": "gevent"}},
    }
    rv.update(overrides)
    return rv


@pytest.fixture
def doc() -> dict[str, Any]:
    rv = results.new_document("run-1", ["ctxbench", "run"], {"duration": 2.0})
    rv["entries"].append(entry())
    return rv


def test_new_document_is_self_describing(doc: dict[str, Any]) -> None:
    assert doc["schema"] == "ctxbench.results/1"
    assert doc["machine"]["cpu_count"] >= 1
    assert doc["python"].count(".") == 2
    assert doc["packages"]["werkzeug"]
    assert "gunicorn" in doc["packages"]
    assert doc["created"].endswith("+00:00")
    results.validate(doc)


def test_run_ids_sort_by_time_and_differ() -> None:
    a, b = results.new_run_id(), results.new_run_id()
    assert a != b
    assert len(a.split("-")) == 3


def test_write_and_load_round_trip(tmp_path: Path, doc: dict[str, Any]) -> None:
    path = results.write_results(tmp_path / "run-1", doc)
    assert path == tmp_path / "run-1" / "results.json"
    assert results.load_results(tmp_path / "run-1") == doc
    assert results.load_results(path) == doc
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_failed_write_keeps_the_old_file(
    tmp_path: Path, doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = results.write_results(tmp_path, doc)
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise KeyboardInterrupt  # e.g. Ctrl-C between write and rename

    monkeypatch.setattr(os, "replace", broken_replace)
    doc["entries"].append(entry(mode="gunicorn-sync"))
    with pytest.raises(KeyboardInterrupt):
        results.write_results(tmp_path, doc)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_unserialisable_data_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        results.write_atomic(tmp_path / "x.json", {"rps": float("nan")})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(lambda d: d.update(schema="ctxbench.results/2"), "another vers", id="newer"),
        pytest.param(lambda d: d.update(schema="other"), "not a ctxbench results", id="foreign"),
        pytest.param(lambda d: d.pop("machine"), "missing key 'machine'", id="missing-top"),
        pytest.param(lambda d: d.update(entries={}), "entries: expected a list", id="entries-type"),
        pytest.param(
            lambda d: d["entries"][0].pop("leaks"), "entries[0]: missing key 'leak", id="entry-key"
        ),
        pytest.param(
            lambda d: d["entries"][0].update(rps="fast"),
            "entries[0].rps: expected a number, got 'fast'",
            id="entry-type",
        ),
        pytest.param(
            lambda d: d["entries"][0].update(leaks=True), "expected an integer", id="bool-count"
        ),
        pytest.param(
            lambda d: d["entries"][0]["latency_ms"].pop("p99"), "missing key 'p99'", id="latency"
        ),
    ],
)
def test_validate_says_what_is_wrong(doc: dict[str, Any], mutate: Any, message: str) -> None:
    mutate(doc)
    with pytest.raises(ResultsError, match=re.escape(message)):
        results.validate(doc)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=r"no results at .*run 'ctxbench run' first"):
        results.load_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ResultsError, match="is not valid JSON"):
        results.load_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ResultsError, match="expected a JSON object"):
        results.load_results(tmp_path)
