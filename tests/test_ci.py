""".ci/run: system packages first, then the README's test command, and no failure passes green."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

CI_RUN = Path(__file__).resolve().parent.parent / ".ci" / "run"


def test_packages_are_installed_before_make_test() -> None:
    lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    install = next(i for i, line in enumerate(lines) if line.startswith("apt-get install -y"))
    checks = [
        i for i, line in enumerate(lines) if line.endswith(("missing+=(nginx)", "missing+=(wrk)"))
    ]
    assert len(checks) == 2 and max(checks) < install, "nginx and wrk are checked, then installed"
    assert 'export CI="${CI:-true}"' in lines
    assert lines.index("make test") > install
    assert lines[-1] == "make test"  # the last command: its status is the script's
    assert "set -euo pipefail" in lines


@pytest.mark.parametrize(("make_status", "expected"), [(0, 0), (2, 2)])
def test_exit_status_is_make_tests(tmp_path: Path, make_status: int, expected: int) -> None:
    """A failing ``make test`` (pytest's status 5, no tests collected, included: make turns
    every failing step into its own non-zero status) fails CI; only a passing one passes."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, body in (("make", f"exit {make_status}"), ("nginx", "exit 0"), ("wrk", "exit 0")):
        (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:/usr/bin:/bin"}
    proc = subprocess.run(["bash", str(CI_RUN)], env=env, capture_output=True, text=True)
    assert proc.returncode == expected, proc.stderr
    assert ("make test failed" in proc.stderr) == bool(make_status)
