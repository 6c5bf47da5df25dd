"""What a user who installs ctxbench gets: the sdist of a clean clone, and the wheel pip builds
from it, hold every file the installed commands, the pytest plugin and the locustfile need.

The build runs setuptools' PEP 517 hooks on a copy of the files git tracks (a checkout's own
``build/`` would let a file the sdist lacks into the wheel), with no package index: about two
seconds.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_BUILD = """
import sys
from setuptools import build_meta
print(getattr(build_meta, sys.argv[1])(sys.argv[2]))
"""


def _build(hook: str, source: Path, out: Path) -> Path:
    rv = subprocess.run(
        [sys.executable, "-c", _BUILD, hook, str(out)],
        cwd=source, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rv.returncode == 0, rv.stdout + rv.stderr
    return out / rv.stdout.splitlines()[-1]


def _tracked() -> list[str]:
    rv = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if rv.returncode != 0:
        pytest.skip("not a git checkout")
    return [p for p in rv.stdout.splitlines() if (ROOT / p).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The files of the wheel built from the sdist of the checkout's files, by name."""
    tmp = tmp_path_factory.mktemp("packaging")
    clone = tmp / "clone"
    for name in _tracked():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        (clone / name).write_bytes((ROOT / name).read_bytes())
    sdist = _build("build_sdist", clone, tmp / "sdist")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "unpacked", filter="data")
    [unpacked] = (tmp / "unpacked").iterdir()
    with zipfile.ZipFile(_build("build_wheel", unpacked, tmp / "wheel")) as whl:
        return {name: whl.read(name) for name in whl.namelist()}


def test_the_wheel_ships_every_file_of_the_packages(wheel: dict[str, bytes]) -> None:
    """Every file of ``core/`` and ``harness/`` but the READMEs: modules, ``py.typed``, and data
    such as the locustfile, whose path ``ctxbench locustfile`` prints for ``locust -f``."""
    from harness.cli import LOCUSTFILE

    shipped = [
        name
        for name in _tracked()
        if name.startswith(("core/", "harness/")) and not name.endswith(".md")
    ]
    assert LOCUSTFILE.relative_to(ROOT).as_posix() in shipped
    missing = sorted(set(shipped) - wheel.keys())
    assert not missing, f"the wheel lacks {missing}"


def test_the_wheel_ships_the_commands_and_the_pytest_plugin(wheel: dict[str, bytes]) -> None:
    assert "pytest_ctxbench.py" in wheel
    [entry_points] = [v for n, v in wheel.items() if n.endswith(".dist-info/entry_points.txt")]
    text = entry_points.decode()
    assert "[console_scripts]\nctxbench = harness.cli:console_script\n" in text, text
    assert "[pytest11]\nctxbench = pytest_ctxbench\n" in text, text


def test_the_wheel_ships_the_licence_its_metadata_names(wheel: dict[str, bytes]) -> None:
    """The MIT licence asks that its text go with every copy: the wheel's metadata names it
    (PEP 639) and holds the file, as the repository and the sdist do."""
    [metadata] = [v for n, v in wheel.items() if n.endswith(".dist-info/METADATA")]
    assert "License-Expression: MIT\n" in metadata.decode()
    assert "License-File: LICENSE\n" in metadata.decode()
    [licence] = [v for n, v in wheel.items() if n.endswith(".dist-info/licenses/LICENSE")]
    assert licence == (ROOT / "LICENSE").read_bytes()
