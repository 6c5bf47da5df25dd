"""harness.report.compare: two runs side by side, regressions beyond a threshold flagged."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import UsageError
from harness.load.fairness import STARVED_CAUSES
from harness.report import Change, parse_threshold
from harness.report import compare_runs as compare_runs_of
from harness.results import Run
from harness.runner import server_connections_for
from harness.servers import get_mode


def compare_runs(
    a: dict[str, Any], b: dict[str, Any], threshold: float, **options: bool
) -> tuple[str, list[Change]]:
    """compare_runs on two hand-made results documents."""
    return compare_runs_of(Run.from_json(a), Run.from_json(b), threshold, **options)


def entry(
    mode: str = "gunicorn-gthread",
    *,
    rps: float = 5000.0,
    p99: float = 4.0,
    leaks: int = 0,
    errors: int = 0,
    connections: str = "keepalive",
    app_label: str = "core",
    spread: float = 0.02,
) -> dict[str, Any]:
    latency = {"p50": p99 / 3, "p90": p99 / 2, "p99": p99, "max": p99 * 3}
    return {
        "mode": mode,
        "app": f"harness.apps.{app_label}_app:app",
        "app_label": app_label,
        "backend": "contextvar",
        "connections": connections,
        "requests": 10_000,
        "leaks": leaks,
        "errors": errors,
        "error_kinds": {},
        "rps": rps,
        "rps_runs": [rps * (1 - spread / 2), rps, rps * (1 + spread / 2)],
        "rps_spread": spread,
        "latency_ms": latency,
        "latency_runs": [latency, latency, latency],
        "evidence": [],
        "server": {"effective": {}},
    }


def doc(run_id: str, *entries: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """A results document of ``entries``, run with ``settings`` (``concurrency=4``) and these
    defaults otherwise."""
    return {
        "schema": "ctxbench.results/1",
        "run_id": run_id,
        "created": "2026-01-01T00:00:00+00:00",
        "command": ["ctxbench", "run"],
        "machine": {"cpu_count": 2},
        "python": "3.11.9",
        "packages": {"werkzeug": "3.1.9"},
        "settings": {"duration": 2.0, "concurrency": 16, "repeats": 3, "sleep_ms": 1.0} | settings,
        "entries": list(entries),
    }


def test_identical_runs_have_no_regression() -> None:
    a = doc("A", entry(), entry("gunicorn-gevent", rps=7000.0))
    text, regressions = compare_runs(a, {**copy.deepcopy(a), "run_id": "B"}, 0.10)
    assert regressions == []
    assert "No regression in 2 cells compared." in text
    assert "+0.0%" in text
    header, _, *rows = text.splitlines()[2:6]
    assert header.split()[-1] == "verdict" and all(r.split()[-1] == "ok" for r in rows), text


def test_small_change_is_listed_but_not_flagged() -> None:
    a = doc("A", entry(rps=5000.0, p99=4.0))
    b = doc("B", entry(rps=4800.0, p99=4.2))  # -4% rps, +5% p99
    text, regressions = compare_runs(a, b, 0.10)
    assert regressions == []
    assert "-4.0%" in text and "+5.0%" in text
    assert "REGRESSION" not in text


def test_throughput_drop_beyond_threshold_is_a_regression() -> None:
    a = doc("A", entry(rps=5000.0), entry("gunicorn-gevent", rps=7000.0))
    b = doc("B", entry(rps=4000.0), entry("gunicorn-gevent", rps=7100.0))  # -20%, +1.4%
    text, regressions = compare_runs(a, b, 0.10)
    assert [(r.key[2], r.metric) for r in regressions] == [("gunicorn-gthread", "rps")]
    assert regressions[0].relative == pytest.approx(-0.20)
    assert "REGRESSION: rps" in text
    assert "gunicorn-gthread (core, contextvar, keepalive): rps 5,000 -> 4,000" in text


def test_latency_rise_and_a_faster_run_are_told_apart() -> None:
    a = doc("A", entry(rps=5000.0, p99=4.0))
    slower = doc("B", entry(rps=5000.0, p99=6.0))
    _, regressions = compare_runs(a, slower, 0.10)
    assert [r.metric for r in regressions] == ["p99"]
    faster = doc("B", entry(rps=9000.0, p99=2.0))
    assert compare_runs(a, faster, 0.10)[1] == []


def test_new_leaks_and_new_errors_are_regressions() -> None:
    a = doc("A", entry())
    b = doc("B", entry(leaks=3, errors=1))
    text, regressions = compare_runs(a, b, 0.10)
    assert sorted(r.metric for r in regressions) == ["errors", "leaks"]
    assert "leaks 0 -> 3" in text


def test_leaks_in_both_runs_are_not_counted_but_said() -> None:
    # B leaked as its baseline did: the verdict column said "ok" and the last line "No
    # regression", as for a clean B.
    a = doc("A", entry(leaks=40), entry("gunicorn-gevent"))
    b = doc("B", entry(leaks=3), entry("gunicorn-gevent"))
    text, regressions = compare_runs(a, b, 0.10)
    assert regressions == []
    rows = text.splitlines()[4:6]
    assert rows[0].endswith("40/3  leaks, as in A") and rows[1].endswith("0/0  ok"), text
    assert text.endswith(
        "No regression in 2 cells compared.\nB leaked in 1 cell where A leaked too (not counted"
        " here: compare counts new leaks; ctxbench run exits 1 on any)\n"
    )
    assert "leaked" not in compare_runs(a, doc("B", entry(), entry("gunicorn-gevent")), 0.1)[0]


def test_errors_in_a_larger_share_of_the_requests_are_a_regression() -> None:
    # A baseline with one stray error hid any number of them in B: 1 -> 5,000 errors was "ok".
    a = doc("A", entry(errors=1))
    text, regressions = compare_runs(a, doc("B", entry(errors=5000)), 0.10)
    assert [r.metric for r in regressions] == ["errors"] and "REGRESSION: errors" in text
    assert (
        "gunicorn-gthread (core, contextvar, keepalive): errors 1 -> 5,000 (in 10,000 requests"
        " in A, 10,000 in B)"
    ) in text
    assert compare_runs(a, doc("B", entry(errors=1)), 0.10)[1] == []  # the same share
    fewer = doc("B", entry(errors=2))
    fewer["entries"][0]["requests"] = 40_000  # 2 in 40,000: half A's share
    assert compare_runs(a, fewer, 0.10)[1] == []
    # As many errors in half the requests (a slower B under --duration) read 'errors 1 -> 1',
    # a regression the line did not explain.
    slower = doc("B", entry(errors=1))
    slower["entries"][0]["requests"] = 5_000
    text, _ = compare_runs(a, slower, 0.10)
    assert "errors 1 -> 1 (in 10,000 requests in A, 5,000 in B)" in text


def test_threshold_decides() -> None:
    # repeats that agree: the threshold alone decides
    a, b = doc("A", entry(rps=5000.0, spread=0.0)), doc("B", entry(rps=4600.0, spread=0.0))  # -8%
    assert compare_runs(a, b, 0.10)[1] == []
    assert len(compare_runs(a, b, 0.05)[1]) == 1


def test_a_change_inside_the_runs_own_noise_is_not_a_regression() -> None:
    a = doc("A", entry(rps=5000.0, spread=0.30))
    b = doc("B", entry(rps=4000.0, spread=0.05))  # -20%: beyond 10%, inside A's 30% spread
    text, regressions = compare_runs(a, b, 0.10)
    assert regressions == []
    assert "within noise: rps" in text and "REGRESSION" not in text
    assert "so within the runs' noise and not counted" in text
    assert (
        "rps 5,000 -> 4,000 (-20.0%) (B's best repeat 4,100 against A's worst 4,250: -3.5%, not"
        " beyond 10% + the noisier run's spread of 30%)"
    ) in text
    assert "No regression in 1 cell compared." in text
    # every repeat of B worse than every one of A by more than 10% + 5%: a regression
    quiet = doc("A", entry(rps=5000.0, spread=0.02))
    text, regressions = compare_runs(quiet, b, 0.10)
    assert [r.metric for r in regressions] == ["rps"]
    assert "(B's best repeat 4,100 against A's worst 4,950: -17.2%, beyond 10% + the" in text


def measured(rps: list[float], p99: list[float], pooled_p99: float) -> dict[str, Any]:
    """An entry of these repeats' rates and p99s, and the p99 of their requests pooled."""
    rv = entry()
    rv["rps_runs"], rv["rps"] = rps, sorted(rps)[1]
    rv["latency_runs"] = [{"p50": p / 3, "p90": p / 2, "p99": p, "max": p * 3} for p in p99]
    rv["latency_ms"] = {"p50": pooled_p99 / 3, "p90": pooled_p99 / 2, "p99": pooled_p99,
                        "max": pooled_p99 * 3}  # fmt: skip
    return rv


def test_identical_runs_on_a_busy_machine_are_within_noise() -> None:
    # Measured: two runs of the same code and settings, the 2-core machine loaded by other work.
    # The medians moved beyond 10% and beyond each run's own spread (rps -41%: spreads 24% and
    # 21%; p99 +166%: 38% and 52%), and compare said "REGRESSION: rps, p99", exit 1. A's worst
    # repeat and B's best are 26% and 49% apart: not beyond 10% + the noisier run's spread.
    a = doc("A", measured([957.0, 1110.0, 1228.0], [45.4, 36.8, 30.5], 36.9))
    b = doc("B", measured([570.0, 708.0, 650.0], [109.0, 67.0, 81.0], 98.3))
    text, regressions = compare_runs(a, b, 0.10)
    assert regressions == [] and "REGRESSION" not in text, text
    assert "within noise: rps, p99" in text
    assert (
        "rps 1,110 -> 650 (-41.4%) (B's best repeat 708 against A's worst 957: -26.0%, not" in text
    )
    assert (
        "p99 36.9 ms -> 98.3 ms (+166.4%) (B's best repeat 67.0 ms against A's worst 45.4 ms:"
        in text
    )
    assert [r.metric for r in compare_runs(a, b, 0.10, strict=True)[1]] == ["rps", "p99"]


def test_a_view_slower_by_20_ms_is_a_regression_that_says_which_repeats_decided() -> None:
    # Measured: the same app, every request 20 ms slower, on the same loaded machine.
    a = doc("A", measured([992.0, 1381.0, 1616.0], [42.9, 32.9, 23.7], 38.2))
    b = doc("B", measured([335.0, 294.0, 330.0], [66.4, 88.1, 76.9], 85.7))
    text, regressions = compare_runs(a, b, 0.10)
    assert [r.metric for r in regressions] == ["rps"], text
    assert "REGRESSION: rps; within noise: p99" in text
    assert (
        "rps 1,381 -> 330 (-76.1%) (B's best repeat 335 against A's worst 992: -66.2%, beyond 10%"
        " + the noisier run's spread of 45%)"
    ) in text


def test_cli_help_states_the_rule(capsys: pytest.CaptureFixture[str]) -> None:
    # --help said "beyond the noise (the spread over the repeats) of both runs", a rule that
    # compare no longer applies.
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "B must be worse in every repeat by more than the threshold plus the noisier" in out


def test_strict_compares_the_medians_only() -> None:
    a = doc("A", entry(rps=5000.0, spread=0.30))
    b = doc("B", entry(rps=4000.0, spread=0.30))
    text, regressions = compare_runs(a, b, 0.10, strict=True)
    assert [(r.metric, r.verdict) for r in regressions] == [("rps", "REGRESSION")]
    assert "REGRESSION: rps" in text and "within noise" not in text
    assert "1 regression:" in text and "the medians alone (--strict)" in text


def test_runs_with_no_cell_in_common_are_a_usage_error() -> None:
    a = doc("A", entry("gunicorn-sync"))
    b = doc("B", entry("gunicorn-gevent"))
    with pytest.raises(UsageError, match="runs 'A' and 'B' have no cell in common"):
        compare_runs(a, b, 0.10)


def test_a_run_without_cells_is_not_compared() -> None:
    chaos = doc("C")  # ctxbench chaos and soak write no cells: verdicts, not figures
    with pytest.raises(UsageError, match="run 'C' has no cells: compare reads"):
        compare_runs(doc("A", entry("gunicorn-sync")), chaos, 0.10)


def test_cli_compare_exit_status_follows_the_words(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from harness.cli import main

    def write(name: str, d: dict[str, Any]) -> str:
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(d), encoding="utf-8")
        return str(tmp_path / name)

    a = write("a", doc("A", entry(rps=5000.0, spread=0.30)))
    b = write("b", doc("B", entry(rps=4000.0, spread=0.30)))
    other = write("c", doc("C", entry("gunicorn-gevent")))
    assert main(["compare", a, b]) == 0
    assert "within noise" in capsys.readouterr().out
    assert main(["compare", a, b, "--strict"]) == 1
    assert "REGRESSION: rps" in capsys.readouterr().out
    assert main(["compare", a, other]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no cell in common" in err and "Traceback" not in err
    both = write("d", doc("D", entry(rps=5000.0, spread=0.30), entry("gunicorn-gevent")))
    assert main(["compare", both, b]) == 1
    assert "in A, not measured in B" in capsys.readouterr().out
    assert main(["compare", both, b, "--allow-missing"]) == 0
    assert "No regression in 1 cell compared." in capsys.readouterr().out


def test_a_run_compared_with_itself_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A CI baseline pointed at the new run's folder (or a folder and its own results.json, or a
    # copy of the run) passed every time: 'No regression in 4 cells compared.', exit 0, where
    # no figure could differ whatever the code did.
    run = doc("20261204-020201-79d521", entry(), entry("gunicorn-gevent", rps=7000.0))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(run), encoding="utf-8")
    (tmp_path / "copy.json").write_text(json.dumps(run), encoding="utf-8")
    folder = str(tmp_path / "run")
    for b in (folder, str(tmp_path / "run" / "results.json"), str(tmp_path / "copy.json")):
        assert main(["compare", folder, b]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1, err
        assert (
            "ctxbench: error: A and B are the same run, '20261204-020201-79d521' (created"
            " 2026-01-01T00:00:00+00:00): a run compared with itself shows no change" in err
        )


def test_cli_compare_reads_a_baseline_kept_under_another_name(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # A CI baseline is kept as baseline.json; compare read the results.json beside it instead
    # (or none at all), whatever the file said.
    import json

    from harness.cli import main

    (tmp_path / "baseline.json").write_text(json.dumps(doc("BASE", entry(rps=5000.0))))
    (tmp_path / "results.json").write_text(json.dumps(doc("OTHER", entry(rps=4000.0))))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.json").write_text(json.dumps(doc("B", entry(rps=5000.0))))
    assert main(["compare", str(tmp_path / "baseline.json"), str(tmp_path / "b")]) == 0
    assert "A = BASE (baseline), B = B;" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "missing.json"), str(tmp_path / "b")]) == 2
    assert "bad RUN_A" in capsys.readouterr().err
    # report writes next to results.json: another file is not a run folder.
    assert main(["report", str(tmp_path / "baseline.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give the run folder" in err, err


def test_entries_in_one_run_only_and_differing_settings_are_noted() -> None:
    a = doc("A", entry(), entry("gunicorn-sync"))
    b = doc("B", entry(), entry("gunicorn-gevent"))
    b["settings"]["duration"] = 5.0
    text, regressions = compare_runs(a, b, 0.10, allow_missing=True)
    assert regressions == []
    assert "2 cells not compared (in one run only):" in text
    assert "  in A only: gunicorn-sync (core, contextvar, keepalive)" in text
    assert "  in B only: gunicorn-gevent (core, contextvar, keepalive)" in text
    assert "setting 'duration' differs (A 2.0, B 5.0)" in text
    b["settings"]["driver_processes"] = None  # --driver-processes auto
    assert "setting 'driver_processes' differs (A 1, B auto)" in compare_runs(a, b, 0.10)[0]


def test_a_cell_whose_server_died_in_b_is_a_regression() -> None:
    # A PR that makes the server crash under load passed the gate: B's cell kept the figures of
    # the repeats before the death, as fast as A's, and compare said 'No regression', exit 0.
    import dataclasses

    def died(run: Run) -> Run:
        error = "gunicorn-gthread: the server died on its own (killed by SIGSEGV) in run 3 of 3"
        return run.replace(cells=(dataclasses.replace(run.cells[0], error=error), *run.cells[1:]))

    a = Run.from_json(doc("A", entry(), entry("gunicorn-gevent")))
    b = Run.from_json(doc("B", entry(), entry("gunicorn-gevent")))
    text, regressions = compare_runs_of(a, died(b), 0.10)
    assert [(r.key[2], r.metric) for r in regressions] == [("gunicorn-gthread", "failed")]
    assert "REGRESSION: failed" in text
    assert (
        "1 regression:\n  gunicorn-gthread (core, contextvar, keepalive): failed in B, not in A"
        " (gunicorn-gthread: the server died on its own (killed by SIGSEGV) in run 3 of 3)"
    ) in text
    assert compare_runs_of(died(a), died(b), 0.10)[1] == []  # A's died too: nothing new
    assert compare_runs_of(died(a), b, 0.10)[1] == []


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("sleep_ms", 5.0, "--sleep-ms A 1.0, B 5.0"),
        ("fail_phase", "view", "--fail-phase A None, B 'view'"),
    ],
)
def test_runs_that_sent_other_requests_are_not_compared(name: str, value: Any, said: str) -> None:
    # Before: a note that the setting differs, and B's requests sleeping 5 ms in the view made
    # every cell a REGRESSION (exit 1) of a server that did not change.
    a = doc("A", entry())
    b = doc("B", entry(rps=1500.0, p99=12.0))
    b["settings"][name] = value
    with pytest.raises(UsageError) as info:
        compare_runs(a, b, 0.10)
    message = str(info.value)
    assert f"runs 'A' and 'B' sent other requests ({said}):" in message
    assert "compare runs of the same --sleep-ms, --fail-phase, --fail-fraction" in message


def test_runs_at_one_and_the_same_level_of_users_leave_it_out() -> None:
    a = doc("A", entry(), entry("gunicorn-gevent"))
    b = doc("B", entry(rps=3000.0, p99=1.0), entry("gunicorn-gevent", rps=3000.0, p99=1.0))
    text, regressions = compare_runs(a, b, 0.10)
    assert [r.metric for r in regressions] == ["rps", "rps"]
    assert "users" not in text and "@16" not in text


def test_sweeps_are_matched_level_by_level() -> None:
    import dataclasses

    def levels(run_id: str, *users: int, rps: float = 5000.0) -> Run:
        run = Run.from_json(doc(run_id, entry(rps=rps)))
        cells = tuple(dataclasses.replace(run.cells[0], concurrency=n) for n in users)
        return run.replace(cells=cells)

    text, regressions = compare_runs_of(levels("A", 1, 8), levels("B", 8, 32, rps=4000.0), 0.10)
    assert [(r.key[4], r.metric) for r in regressions] == [(8, "rps"), (1, "cell")]
    assert "keepalive @8" in text and "setting" not in text
    assert "  in A only: gunicorn-gthread (core, contextvar, keepalive, 1 user)" in text
    assert "  in B only: gunicorn-gthread (core, contextvar, keepalive, 32 users)" in text
    with pytest.raises(UsageError, match=r"number of virtual users \(A 1, 8, B 16\)"):
        compare_runs_of(levels("A", 1, 8), levels("B", 16), 0.10)


def test_a_cell_of_the_baseline_that_b_did_not_measure_is_a_regression() -> None:
    # An interrupted B, or one that ran fewer modes, passed the gate on the cells it had.
    a = doc("A", entry(), entry("gunicorn-sync"), entry("gunicorn-gevent"))
    b = doc("B", entry(), entry("gunicorn-gevent"))
    b["status"] = "interrupted"
    text, regressions = compare_runs(a, b, 0.10)
    assert [(r.key[2], r.metric) for r in regressions] == [("gunicorn-sync", "cell")]
    assert (
        "1 regression:\n  gunicorn-sync (core, contextvar, keepalive): in A, not measured in B"
        in text
    )
    assert "--allow-missing compares only the cells both runs have" in text
    text, regressions = compare_runs(a, b, 0.10, allow_missing=True)
    assert regressions == [] and "No regression in 2 cells compared." in text
    assert "  in A only: gunicorn-sync (core, contextvar, keepalive)" in text
    assert compare_runs(b, a, 0.10)[1] == []  # a B with more cells than its baseline passes


def test_runs_of_one_id_are_named_by_their_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two CI jobs that each ran `--run-dir results/ci`: "A = ci (baseline), B = ci".
    for name, rps in (("baseline", 5000.0), ("new", 5100.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(doc("ci", entry(rps=rps))))
    assert main(["compare", str(tmp_path / "baseline"), str(tmp_path / "new")]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert f"A = ci ({tmp_path / 'baseline'}) (baseline), B = ci ({tmp_path / 'new'});" in header


def test_runs_from_different_machines_say_what_differs() -> None:
    # A baseline kept from another CI runner: the note said "different machines or machine
    # descriptions" and not which CPUs.
    a, b = doc("A", entry()), doc("B", entry())
    b["machine"] = {"cpu_count": 8, "system": "Linux"}
    text = compare_runs(a, b, 0.10)[0]
    assert (
        "note: the runs come from different machines (system A not recorded, B 'Linux';"
        " cpu_count A 2, B 8); the runs are not like for like." in text
    )
    assert "different machines" not in compare_runs(a, {**copy.deepcopy(a), "run_id": "B"}, 0.10)[0]


def test_output_is_deterministic() -> None:
    a = doc("A", entry(), entry("gunicorn-gevent", connections="fresh"))
    b = doc("B", entry(rps=3000.0), entry("gunicorn-gevent", connections="fresh"))
    assert compare_runs(a, b, 0.1) == compare_runs(copy.deepcopy(a), copy.deepcopy(b), 0.1)


@pytest.mark.parametrize(
    ("text", "value"), [("10%", 0.10), ("5", 0.05), ("0.1", 0.10), (" 2.5% ", 0.025)]
)
def test_parse_threshold(text: str, value: float) -> None:
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "ten", "0%", "-5%"])
def test_parse_threshold_rejects_nonsense(text: str) -> None:
    with pytest.raises(UsageError, match="threshold"):
        parse_threshold(text)


def test_a_slower_b_whose_driver_was_saturated_is_not_a_regression() -> None:
    import dataclasses

    def driver_bound(run: Run) -> Run:
        runs = tuple(dataclasses.replace(r, driver_cpu=(0.99,)) for r in run.cells[0].runs)
        return run.replace(cells=(dataclasses.replace(run.cells[0], runs=runs),))

    a = Run.from_json(doc("A", entry(rps=5000.0, p99=4.0)))
    b = Run.from_json(doc("B", entry(rps=4000.0, p99=6.0)))  # -20% rps, +50% p99
    assert [r.metric for r in compare_runs_of(a, b, 0.10)[1]] == ["rps", "p99"]
    text, regressions = compare_runs_of(a, driver_bound(b), 0.10)
    assert regressions == [] and "REGRESSION" not in text
    assert "driver-bound in B: rps, p99" in text
    assert "but B's load driver was saturated, so B's figures are the driver's" in text
    assert "  gunicorn-gthread (core, contextvar, keepalive): rps 5,000 -> 4,000" in text
    # a saturated driver in A only: A's rate was a lower bound, so a slower B is slower
    assert [r.metric for r in compare_runs_of(driver_bound(a), b, 0.10)[1]] == ["rps", "p99"]
    # --strict: the medians alone
    strict = compare_runs_of(a, driver_bound(b), 0.10, strict=True)[1]
    assert [r.metric for r in strict] == ["rps", "p99"]


def test_a_cell_whose_server_starved_users_is_not_counted() -> None:
    # uwsgi-processes with 16 keep-alive users and 2 processes serves 2 of them: its rate is two
    # connections' and its p99 the 14 others' wait, figures of the starvation, not the server.
    import dataclasses

    def starved(run: Run, users: int = 14) -> Run:
        runs = tuple(dataclasses.replace(r, starved=users) for r in run.cells[0].runs)
        cell = dataclasses.replace(run.cells[0], runs=runs, concurrency=16)
        return run.replace(cells=(cell,))

    def recorded(run: Run) -> Run:
        # what the runner records of its cells' servers (the report reads it, not the registry)
        c = run.cells[0]
        held = server_connections_for(c.mode, get_mode(c.mode).traits, c.connections)
        cell = dataclasses.replace(c, server=dataclasses.replace(c.server, connections=held))
        return run.replace(cells=(cell,))

    a = Run.from_json(doc("A", entry(rps=5000.0, p99=4.0)))
    b = Run.from_json(doc("B", entry(rps=4000.0, p99=6.0)))  # -20% rps, +50% p99
    assert [r.metric for r in compare_runs_of(a, b, 0.10)[1]] == ["rps", "p99"]
    for a_run, b_run, where in ((a, starved(b), "14 of 16 users in B"),
                                (starved(a, 3), b, "3 of 16 users in A")):  # fmt: skip
        text, regressions = compare_runs_of(a_run, b_run, 0.10)
        assert regressions == [] and "REGRESSION" not in text, text
        assert "starved users: rps, p99" in text, text
        assert "but a run's server starved some users" in text, text
        assert f"rps 5,000 -> 4,000 (-20.0%) (starved: {where})" in text, text
    # documents that did not record what their servers did with the connections: the pattern's
    assert f"  {STARVED_CAUSES['keepalive']}." in text, text
    # the likely cause follows, for the mode that starved, as its run recorded it:
    # gunicorn-gthread gives every kept-alive connection its turn, so not uWSGI's
    # --http11-socket and its remedies
    text = compare_runs_of(recorded(starved(a, 3)), recorded(b), 0.10)[0]
    assert f"  {STARVED_CAUSES['turns']}." in text, text
    assert "no more keep-alive users" not in text, text
    uwsgi = dataclasses.replace(starved(b).cells[0], mode="uwsgi-processes")
    a_uwsgi = a.replace(cells=(dataclasses.replace(a.cells[0], mode="uwsgi-processes"),))
    text = compare_runs_of(recorded(a_uwsgi), recorded(b.replace(cells=(uwsgi,))), 0.10)[0]
    assert f"  {STARVED_CAUSES['keepalive']}." in text, text
    assert STARVED_CAUSES["turns"] not in text, text
    # none starved (starved=0 recorded) is compared as before
    assert [r.metric for r in compare_runs_of(a, starved(b, 0), 0.10)[1]] == ["rps", "p99"]
    # --strict: the medians alone
    strict = compare_runs_of(a, starved(b), 0.10, strict=True)[1]
    assert [r.metric for r in strict] == ["rps", "p99"]


def test_a_b_that_waited_on_delayed_acks_is_a_regression_that_says_why() -> None:
    # Unlike a saturated driver or starved users, the ACK timer's figures are what every client
    # of B's server gets: still a regression, with its cause named.
    import dataclasses

    from harness.load.acks import AckCounts

    def acked(run: Run) -> Run:
        counts = AckCounts(first=16, first_stalled=0, reused=1000, stalled=990)
        runs = tuple(dataclasses.replace(r, acks=counts) for r in run.cells[0].runs)
        return run.replace(cells=(dataclasses.replace(run.cells[0], runs=runs),))

    a = Run.from_json(doc("A", entry(rps=5000.0, p99=4.0)))
    b = Run.from_json(doc("B", entry(rps=400.0, p99=48.0)))
    text, regressions = compare_runs_of(a, acked(b), 0.10)
    assert [r.metric for r in regressions] == ["rps", "p99"]
    assert text.count("(B waited on the client's delayed ACKs: TCP_NODELAY is off") == 2, text
    # Both runs waited so: the cause is not new in B, and is not named as B's.
    text, regressions = compare_runs_of(acked(a), acked(b), 0.10)
    assert len(regressions) == 2 and "delayed ACKs" not in text, text


def mounted(mount: str | None, **kwargs: Any) -> dict[str, Any]:
    """An entry of the dispatcher's app checked under ``mount`` (``--mount``; None: none)."""
    rv = entry(**kwargs)
    rv["app"] = rv["app_label"] = "myproject.wsgi:dispatcher"
    rv["server"] = {"effective": {"mount": mount}}
    return rv


@pytest.mark.parametrize(
    ("a", "b", "said"),
    [
        # Before: matched as one app, with a note that the setting 'mount' differs; a clean /api
        # baseline against a leaking /admin read as a regression of one app.
        pytest.param(
            doc("A", mounted("/api"), mount="/api"),
            doc("B", mounted("/admin", leaks=5, rps=2000.0), mount="/admin"),
            "the mount (A /api, B /admin), and an app under one prefix is not the app under",
            id="mount",
        ),
        # Before: matched, with a note that the setting 'concurrency' differs; a baseline at 16
        # users against a run at 4 was a REGRESSION in rps (exit 1), a figure of the load.
        pytest.param(
            doc("A", entry()),
            doc("B", entry(rps=3000.0, p99=1.0), concurrency=4),
            "the number of virtual users (A 16, B 4), and a rate at one number is not a rate at",
            id="users",
        ),
        # Before: 'no cell in common' and no word of why, for a run of a negative control.
        pytest.param(
            doc("A", entry()),
            doc("B", {**entry(leaks=9), "backend": "shared-global"}),
            "the backend (A contextvar, B shared-global);",
            id="backend",
        ),
    ],
)
def test_cells_that_differ_in_one_part_of_their_key_are_never_matched_and_say_which(
    a: dict[str, Any], b: dict[str, Any], said: str
) -> None:
    with pytest.raises(UsageError) as info:
        compare_runs(a, b, 0.10)
    assert str(info.value).startswith(
        f"runs 'A' and 'B' have no cell in common (1 cell against 1 cell): their cells differ"
        f" only in {said}"
    )
    assert str(info.value).endswith(
        " compare runs of the same apps, mounts, backends, modes, connection patterns and"
        " numbers of users"
    )


def test_runs_that_differ_in_more_than_one_part_are_not_said_to_differ_only_in_one() -> None:
    # A run of uwsgi-processes and gunicorn-gthread on contextvar against one of gunicorn-gthread
    # and waitress on no-reset said "their cells differ only in the backend (A contextvar, B
    # no-reset)": their modes differ too.
    a = doc("A", entry("uwsgi-processes"), entry())
    b = doc("B", *({**entry(mode, leaks=9), "backend": "no-reset"}
                   for mode in ("gunicorn-gthread", "waitress")))  # fmt: skip
    with pytest.raises(UsageError) as info:
        compare_runs(a, b, 0.10)
    assert (
        "(2 cells against 2 cells): the cells alike in all else differ in the backend (A"
        " contextvar, B no-reset); compare runs" in str(info.value)
    )
    assert "only" not in str(info.value)


def test_cells_are_matched_by_their_mount_and_the_others_listed_as_not_compared() -> None:
    a = doc("A", mounted("/api"), mounted("/admin", mode="gunicorn-gevent"), mount=None)
    b = doc("B", mounted("/api", rps=3000.0), mounted("/v2", mode="gunicorn-gevent"), mount=None)
    text, regressions = compare_runs(a, b, 0.10)
    assert [(r.key[5], r.metric) for r in regressions] == [("/api", "rps"), ("/admin", "cell")]
    assert "gunicorn-gthread (myproject.wsgi:dispatcher at /api, contextvar, keepalive)" in text
    assert "2 cells not compared (in one run only):" in text
    assert "  in A only: gunicorn-gevent (myproject.wsgi:dispatcher at /admin, contextvar," in text
    assert "  in B only: gunicorn-gevent (myproject.wsgi:dispatcher at /v2, contextvar," in text
    assert "myproject.wsgi:dispatcher at /api" in text.splitlines()[4]  # the table's app column


def test_the_root_is_one_mount_however_it_was_recorded() -> None:
    # A document older than --mount records none; "--mount /" and no --mount are the root.
    old = doc("A", entry())
    for mount in (None, "/"):
        new = doc("B", entry(), mount=mount)
        new["entries"][0]["server"] = {"effective": {"mount": mount}}
        text, regressions = compare_runs(old, new, 0.10)
        assert regressions == [] and "No regression in 1 cell compared." in text
        assert "setting 'mount' differs" not in text and " at /" not in text


def test_a_targets_mount_is_the_path_of_its_url() -> None:
    from harness.results import ServerInfo

    assert ServerInfo({"target": "http://127.0.0.1:8080/api"}).mount == "/api"
    assert ServerInfo({"target": "http://127.0.0.1:8080"}).mount == "/"
    assert ServerInfo({"mount": "/admin"}).mount == "/admin"
    assert ServerInfo().mount == "/"


def test_a_run_with_no_p99_shows_no_p99_change() -> None:
    # B answered no request (every one leaked or failed): its p99 is missing, and the p99 change
    # must say so, not show another metric's change in its column.
    b_entry = entry(leaks=4)
    b_entry["latency_ms"] = {"p50": None, "p90": None, "p99": None, "max": None}
    text, regressions = compare_runs(doc("A", entry(leaks=2)), doc("B", b_entry), 0.10)
    row = text.splitlines()[4].split()
    assert row[7:10] == ["4.00", "-", "-"] and row[10] == "2/4", text
    assert regressions == []  # leaks were there in A already; a missing p99 is no change


def test_runs_of_one_repeat_say_that_their_noise_is_unknown() -> None:
    # Before: two runs of one repeat each of the same server read 'p99 +102% REGRESSION', exit 1,
    # with nothing saying that a single measurement has no spread to tell noise by.
    def once(run_id: str, rps: float) -> dict[str, Any]:
        cell = entry(rps=rps)
        cell["rps_runs"], cell["latency_runs"], cell["rps_spread"] = [rps], [cell["latency_ms"]], 0
        return doc(run_id, cell, repeats=1)

    text, regressions = compare_runs(once("A", 5000.0), once("B", 4000.0), 0.10)
    assert [r.metric for r in regressions] == ["rps"]
    # The regression's line said "(B's best repeat 4,000 against A's worst 5,000: -20.0%, beyond
    # 10% + the noisier run's spread of 0.0%)": neither run had a best or worst, nor a spread.
    assert (
        "rps 5,000 -> 4,000 (-20.0%) (B's one repeat 4,000 against A's one repeat 5,000: -20.0%,"
        " beyond 10%: each run measured this cell once, so neither has a spread to tell noise by)"
    ) in text, text
    assert "spread of 0.0%" not in text
    assert (
        "note: A and B measured every cell once (--repeats 1), which says nothing of their"
        " noise: every change beyond 10% there counts; give both runs --repeats 3 or more"
    ) in text
    # Measured once in B only: A's spread is the noise, and a change within it does not count.
    # The note said "every change beyond 10% there counts" over a table that did not count it.
    text, regressions = compare_runs(doc("A", entry(spread=0.30)), once("B", 4000.0), 0.10)
    assert regressions == [] and "within noise: rps" in text, text
    assert (
        "(B's one repeat 4,000 against A's worst 4,250: -5.9%, not beyond 10% + A's spread of 30%"
        " (B measured this cell once))"
    ) in text, text
    assert (
        "note: B measured every cell once (--repeats 1), which says nothing of its noise: there"
        " A's spread alone is the noise; give both runs --repeats 3 or more"
    ) in text
    # It said "some cells" of runs that measured every cell once; "some" is for some of them.
    b = once("B", 4000.0)
    b["entries"].append(entry("gunicorn-sync"))
    text = compare_runs(doc("A", entry(), entry("gunicorn-sync")), b, 0.10)[0]
    assert "note: B measured some cells once (--repeats 1)" in text
    # A corpus run measures each cell once, and ctxbench corpus has no --repeats to give it.
    corpus = once("B", 5000.0)
    corpus["entries"][0]["corpus"] = {
        "entry": "e", "variant": "buggy", "expected": True, "reason": "r", "verdict": "caught",
        "matches": True,
    }  # fmt: skip
    text = compare_runs(once("A", 5000.0), corpus, 0.10)[0]
    assert text.splitlines()[1].endswith(
        "; ctxbench corpus measures each cell once: for speed, compare ctxbench run runs with"
        " --repeats 3 or more"
    ), text
    for strict, a in ((True, once("A", 5000.0)), (False, doc("A", entry()))):
        b = once("B", 5000.0) if strict else doc("B", entry())
        assert "--repeats 1" not in compare_runs(a, b, 0.10, strict=strict)[0]


def test_a_targets_backend_is_its_own_not_the_runs_backend_setting() -> None:
    # ctxbench chose no storage for a server it did not start: the run's --backend (its default,
    # contextvar, or another) names nothing of it, so compare neither shows it nor keys on it.
    def target_run(run_id: str, backend: str) -> dict[str, Any]:
        cell = entry("target:127.0.0.1:8080")
        cell["backend"] = backend
        cell["server"] = {"effective": {"target": "http://127.0.0.1:8080", "server": "gunicorn"}}
        return doc(run_id, cell, backends=[backend])

    text, regressions = compare_runs(
        target_run("A", "contextvar"), target_run("B", "no-reset"), 0.1
    )
    assert regressions == [] and "No regression in 1 cell compared." in text, text
    assert "target's own" in text and "contextvar" not in text and "no-reset" not in text, text
