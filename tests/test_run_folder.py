"""The run folder: its name, a new one per run, and what a failed run leaves of it.

What a failed run leaves is tested through the runner (tests/test_runner.py), and the folder
held against a second run and an earlier run's folder reused, through the CLI
(tests/test_cli.py).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from harness import run_folder


def test_run_ids_sort_by_time() -> None:
    early, late = dt.datetime(2026, 12, 1, 9, 59, 59), dt.datetime(2026, 12, 1, 10, 0, 0)
    assert run_folder.new_run_id(early) < run_folder.new_run_id(late)
    assert re.fullmatch(r"20261201-100000-[0-9a-f]{6}", run_folder.new_run_id(late))


def test_a_run_drawing_a_taken_id_draws_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two runs started in the same second that drew the same random part (or a folder left
    # there by an earlier run): the exclusive mkdir fails, and the second run draws again.
    draws = iter(["aaaaaa", "aaaaaa", "bbbbbb"])
    monkeypatch.setattr(run_folder.secrets, "token_hex", lambda n: next(draws))
    first, second = run_folder.new_run_dir(tmp_path), run_folder.new_run_dir(tmp_path)
    assert first.name.endswith("-aaaaaa") and second.name.endswith("-bbbbbb")
    assert sorted(tmp_path.iterdir()) == [first, second]


def test_a_new_run_folder_of_a_failed_run_is_removed(tmp_path: Path) -> None:
    from harness.errors import ServerStartError

    out = tmp_path / "results" / "nightly"
    with pytest.raises(KeyboardInterrupt), run_folder.run_dir_for(None, out, "corpus-") as run_dir:
        assert run_dir.parent == out and run_dir.name.startswith("corpus-")
        (run_dir / "logs").mkdir()
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []  # out and results/ too: this run made them
    with pytest.raises(ServerStartError), run_folder.run_dir_for(None, out) as run_dir:
        (run_dir / "logs").mkdir()
        (run_dir / "logs" / "server.log").write_text("what the error points to")
        raise ServerStartError("see its log")
    assert [p.name for p in out.iterdir()] == [run_dir.name]
    assert [p.name for p in (run_dir / "logs").iterdir()] == ["server.log"]


def test_a_failed_run_leaves_a_folder_another_run_made_beside_it(tmp_path: Path) -> None:
    # Two jobs given one new --out: both made it, and the one that failed removes only its own.
    out = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt), run_folder.run_dir_for(None, out) as run_dir:
        (out / "other-run").mkdir()
        (out / "other-run" / "results.json").write_text("{}")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["results"]
    assert [p.name for p in out.iterdir()] == ["other-run"] and not run_dir.exists()
    # and so does a --run-dir in a new folder
    with pytest.raises(KeyboardInterrupt), run_folder.run_dir_for(out / "new" / "a", out):
        (out / "new" / "b").mkdir()
        raise KeyboardInterrupt
    assert [p.name for p in (out / "new").iterdir()] == ["b"]
