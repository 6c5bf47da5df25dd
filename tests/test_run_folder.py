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
    with run_folder.new_run_dir(tmp_path) as first, run_folder.new_run_dir(tmp_path) as second:
        assert first.name.endswith("-aaaaaa") and second.name.endswith("-bbbbbb")
    assert sorted(tmp_path.iterdir()) == [first, second]


def test_a_new_run_folder_left_empty_by_a_failure_is_removed(tmp_path: Path) -> None:
    out = tmp_path / "results" / "nightly"
    with pytest.raises(KeyboardInterrupt), run_folder.new_run_dir(out, "corpus-") as run_dir:
        assert run_dir.parent == out and run_dir.name.startswith("corpus-")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []  # out and results/ too: this run made them
    with pytest.raises(RuntimeError), run_folder.new_run_dir(out) as run_dir:
        (run_dir / "logs").mkdir()
        (run_dir / "logs" / "server.log").write_text("what the error points to")
        raise RuntimeError
    assert [p.name for p in out.iterdir()] == [run_dir.name]
