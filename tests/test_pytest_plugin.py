"""The pytest plugin, tested as pytest plugins are: with pytester, in separate pytest processes.

Each test writes a small user project (an app module and a test file) into pytester's folder and
runs pytest on it in a subprocess, as a user's CI would, with the plugin loaded through its
``pytest11`` entry point. The live ones start real servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.load.spec import MAX_CONCURRENCY, MAX_REQUESTS
from harness.servers import get_mode

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _no_hypothesis_in_the_user_sessions(request: pytest.FixtureRequest) -> Iterator[None]:
    """Keep hypothesis' pytest plugin out of the user's pytest processes: installed here for
    tests/test_fuzz.py, it imports all of hypothesis at the end of every session (its terminal
    summary imports ``hypothesis.internal.observability``, hypothesis 6.170), half a second of
    each of the ~40 pytest processes this file starts, and the user's project uses none of it.
    Every other plugin still loads through its entry point, ctxbench's included. Set once
    pytester is set up (it removes PYTEST_ADDOPTS), and undone before it restores the
    environment."""
    if "pytester" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("pytester")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest")
        yield


#: A Flask-style app whose module-level dict is per-request state shared by every thread: the
#: bug the user's test must catch under a threaded server.
LEAKY_APP = """
    import time

    from core import App
    from harness.probe import current_token, install_probe, observe

    app = App("leaky_user_app")
    _current = {}  # one dict for the whole process: a leak under any threaded server

    @app.before_request
    def remember():
        _current["user"] = current_token()

    @app.after_request
    def check(response):
        observe("current_user", _current.get("user"))
        return response

    install_probe(app)
"""

#: An app factory, as most Flask projects have: each server process calls it, and the probe is
#: mounted on what it returns.
CLEAN_APP = """
    from contextvars import ContextVar

    from core import App
    from harness.probe import current_token, observe

    _user = ContextVar("user", default=None)

    def create_app(name):
        app = App(name)

        @app.before_request
        def remember():
            _user.set(current_token())

        @app.after_request
        def check(response):
            observe("current_user", _user.get())
            return response

        return app
"""

USER_TEST = """
    def test_my_app_is_isolated(ctxbench):
        ctxbench.assert_isolated({app!r}, modes=["gunicorn-gthread"], requests=200)
"""


def _project(pytester: pytest.Pytester, module: str, app: str, name: str = "app") -> None:
    pytester.makepyfile(**{module: textwrap.dedent(app)})
    pytester.makepyfile(test_user=textwrap.dedent(USER_TEST.format(app=f"{module}:{name}")))


@pytest.mark.live
def test_a_leaking_app_fails_with_the_evidence(pytester: pytest.Pytester) -> None:
    _project(pytester, "leaky_app", LEAKY_APP)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "CtxbenchLeak" in out
    assert (
        "ctxbench: leaky_app:app leaked its own state (observe(): current_user), not the"
        " framework's context, in" in out
    )
    assert "gunicorn-gthread keepalive:" in out
    assert "phase=after_request name=current_user expected=" in out
    assert "unit=pid " in out
    assert "report: " in out and "report.md" in out


@pytest.mark.live
def test_a_clean_app_passes_and_writes_its_results_where_asked(
    pytester: pytest.Pytester,
) -> None:
    _project(pytester, "clean_app", CLEAN_APP, name="create_app('clean_user_app')")
    results = pytester.path / "ctxbench-results"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:locust", f"--ctxbench-results={results}"
    )
    result.assert_outcomes(passed=1)
    folder = results / "test_user.py_test_my_app_is_isolated"
    run = json.loads((folder / "results.json").read_text())
    assert {c["app"] for c in run["cells"]} == {"clean_app:create_app('clean_user_app')"}
    assert (folder / "report.md").is_file()


def test_a_suite_that_does_not_use_the_plugin_is_unchanged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_nothing_heavy_was_imported():
            for name in ("gevent", "locust", "harness.runner", "harness.servers", "core"):
                assert name not in sys.modules, name
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust")
    result.assert_outcomes(passed=1)
    # The plugin's fixtures are the two prefixed ones, nothing with a common name.
    listing = pytester.runpytest_subprocess("--fixtures", "-p", "no:locust").stdout.str()
    section = listing.split("fixtures defined from pytest_ctxbench", 1)[1]
    section = section.split("\n", 1)[1].split("\n---", 1)[0]
    names = {line.split()[0] for line in section.splitlines() if line and not line[0].isspace()}
    assert names == {"ctxbench", "ctxbench_server"}, section


def test_a_session_beside_a_gunicorn_conf_py_says_under_its_header_that_no_check_reads_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ctxbench.check(app, modes=["gunicorn-gevent"]) passed where the project's gunicorn.conf.py
    # (preload_app = True, a threading.local made at import) makes its deployment leak, and the
    # session said nothing. Said as a line of the header, not a warning: -W error still passes.
    # Saying it imports none of the servers (it imported them all, even under pytest --co).
    monkeypatch.delenv("GUNICORN_CMD_ARGS", raising=False)
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_the_servers_were_not_imported():
            assert "harness.servers" not in sys.modules
        """
    )
    args = ("-p", "no:cacheprovider", "-p", "no:locust", "-W", "error")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1)
    assert "not read" not in result.stdout.str()
    (pytester.path / "gunicorn.conf.py").write_text("preload_app = True\n")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1)
    said = [line for line in result.stdout.lines if "not read" in line]
    assert said == [
        "ctxbench: not read: gunicorn.conf.py: ctxbench runs gunicorn with a config of its own"
        " (-c python:harness.servers._gunicorn_conf) and none of yours, so your settings"
        " (preload_app, worker_class, max_requests, ...) do not apply; give those that matter as"
        " server arguments (server_args=['--preload']), or start gunicorn with yours and check it"
        " with ctxbench run --target (README, 'Checking a running deployment')"
    ], result.stdout.str()


def test_collecting_a_suite_that_uses_the_plugin_starts_nothing(
    pytester: pytest.Pytester,
) -> None:
    # pytest --co (an IDE's test discovery, xdist's collection): no check runs, and nothing
    # that could start a server is even imported.
    pytester.makeconftest(
        """
        import sys

        def pytest_collection_finish(session):
            heavy = [m for m in ("harness", "harness.runner", "harness.servers", "gevent", "core")
                     if m in sys.modules]
            (session.config.rootpath / "imported.txt").write_text(" ".join(heavy))
        """
    )
    pytester.makepyfile(test_user=textwrap.dedent(USER_TEST.format(app="nowhere:app")))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:locust", "--co", "-q", "--strict-markers", "-W", "error"
    )
    assert result.ret == 0
    result.stdout.fnmatch_lines(["test_user.py::test_my_app_is_isolated", "1 test collected*"])
    assert (pytester.path / "imported.txt").read_text() == ""


def test_not_ctxbench_deselects_every_test_that_uses_a_fixture(pytester: pytest.Pytester) -> None:
    # The README's way to leave the checks out of a job: a test that starts a server with
    # ctxbench_server is left out as one that runs a check is (it was not, and ran anyway).
    pytester.makepyfile(
        test_user="""
        def test_check(ctxbench):
            pass

        def test_own_live_test(ctxbench_server):
            pass

        def test_plain():
            pass
        """
    )
    args = ("-p", "no:cacheprovider", "-p", "no:locust", "--co", "-q", "--strict-markers")
    left = pytester.runpytest_subprocess(*args, "-m", "not ctxbench")
    assert left.ret == 0
    left.stdout.fnmatch_lines(["test_user.py::test_plain", "1/3 tests collected (2 deselected)*"])
    chosen = pytester.runpytest_subprocess(*args, "-m", "ctxbench")
    chosen.stdout.fnmatch_lines(
        ["test_user.py::test_check", "test_user.py::test_own_live_test", "2/3 tests collected*"]
    )


def test_the_readme_turns_off_locusts_plugin_that_clashes_with_a_users_suite(
    pytester: pytest.Pytester,
) -> None:
    # locust (the locust extra) brings pytest_locust into every suite of its venv: a `session`
    # fixture for every test and the options --host and -H. A conftest.py adding its own --host
    # stopped the session with "ValueError: option names {'--host'} already added", and a test
    # asking for a `session` nobody defined got locust's HTTP session (gevent-patching the
    # process) instead of "fixture 'session' not found"; the README said nothing. The
    # configuration it now gives (README, "Locust in the same venv") ends both.
    pytest.importorskip("pytest_locust", reason="locust is not installed: no plugin to clash")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Locust in the same venv\n", 1)[1].split("\n#", 1)[0]
    config = section.split("```toml\n", 1)[1].split("```", 1)[0]
    pytester.makeconftest(
        """
        def pytest_addoption(parser):
            parser.addoption("--host", default="http://127.0.0.1:5000")
        """
    )
    pytester.makepyfile(
        test_user="""
        def test_own_option(request):
            assert request.config.getoption("--host") == "http://127.0.0.1:5000"

        def test_undefined_session(session):
            pass
        """
    )
    clash = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert clash.ret != pytest.ExitCode.OK
    clash.stderr.fnmatch_lines(["*ValueError: option names {'--host'} already added*"])
    (pytester.path / "pyproject.toml").write_text(config)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'session' not found*"])


def test_a_project_with_its_own_harness_package_keeps_it_until_a_fixture_is_used(
    pytester: pytest.Pytester,
) -> None:
    # ctxbench's modules are a package named harness, and a process holds one package of a name.
    # The plugin imports none of it until a test asks for a fixture, so a project's own harness
    # package is the one its tests import (with the plugin inside harness, it was ctxbench's and
    # their collection failed); a test that uses a fixture there fails in one line saying why.
    pytester.mkpydir("harness").joinpath("__init__.py").write_text("GREETING = 'hello'\n")
    pytester.makepyfile(
        test_own="""
        from harness import GREETING

        def test_own_package():
            assert GREETING == "hello"

        def test_isolated(ctxbench):
            ctxbench.check("app:app")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust")
    result.assert_outcomes(passed=1, errors=1)  # the fixture fails at its setup
    result.stdout.fnmatch_lines(
        ["*ctxbench: 'harness' in this session is *harness*__init__.py, not ctxbench's own*"
         "rename it"]
    )  # fmt: skip
    assert "Traceback" not in result.stdout.str()


def test_the_options_and_the_marker_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    out = result.stdout.str()
    for text in ("--ctxbench-modes", "--ctxbench-requests", "--ctxbench-results",
                 "ctxbench_modes", "ctxbench_connections"):  # fmt: skip
        assert text in out
    markers = pytester.runpytest_subprocess("--markers").stdout.str()
    assert "@pytest.mark.ctxbench(" in markers


#: A test that needs the fixture and nothing else of the plugin (it starts no server).
FIXTURE_TEST = """
    def test_fixture(ctxbench, ctxbench_server):
        assert type(ctxbench).__name__ == "Ctxbench"
"""


@pytest.mark.parametrize(
    ("how", "autoload"),
    [
        pytest.param("-p pytest_ctxbench", True, id="p-module"),
        pytest.param("-p pytest_ctxbench", False, id="p-module-no-autoload"),
        pytest.param("-p ctxbench", True, id="p-entry-point"),
        pytest.param("-p ctxbench", False, id="p-entry-point-no-autoload"),
        pytest.param("pytest_plugins = pytest_ctxbench", True, id="conftest-module"),
        pytest.param("pytest_plugins = ctxbench", False, id="conftest-entry-point-no-autoload"),
    ],
)
def test_the_plugin_loads_once_however_it_is_named(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str, autoload: bool
) -> None:
    # ctxbench is installed here (its pytest11 entry point "ctxbench"): naming the module as
    # well used to register it twice, and pytest stopped with "Plugin already registered under
    # a different name" and a traceback.
    if not autoload:
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    else:
        monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    args = ["-p", "no:cacheprovider", "-p", "no:locust", "-W", "error"]
    kind, _, name = how.partition(" = " if "=" in how else " ")
    if kind == "-p":
        args += ["-p", name]
    else:
        pytester.makeconftest(f"pytest_plugins = [{name!r}]\n")
    pytester.makepyfile(test_user=textwrap.dedent(FIXTURE_TEST))
    result = pytester.runpytest_subprocess(*args)
    assert "already registered" not in result.stderr.str() + result.stdout.str()
    result.assert_outcomes(passed=1)


def test_an_unknown_mode_fails_the_test_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        def test_bad_mode(ctxbench):
            ctxbench.check("harness.apps.core_app:app", modes=["no-such-mode"])
        """
    )
    # -rN: no short summary, which repeats the message (in full where CI is set, else cut to
    # the terminal's width); the count below is of the failure report itself.
    args = ("-p", "no:cacheprovider", "-p", "no:locust", "-rN")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ctxbench: unknown server mode 'no-such-mode'*"])
    out = result.stdout.str()
    assert "Traceback" not in out
    assert "During handling of the above exception" not in out
    assert out.count("unknown server mode 'no-such-mode'") == 1, out


def test_an_unknown_mode_on_the_command_line_fails_where_the_call_names_its_modes(
    pytester: pytest.Pytester,
) -> None:
    # The call's modes win over --ctxbench-modes, so a typo there was never looked at: the test
    # passed on the call's modes, and the job never ran the mode it was meant to.
    pytester.makepyfile(
        test_named="""
        def test_named_modes(ctxbench):
            ctxbench.check("harness.apps.core_app:app", modes=["werkzeug-threaded"])
        """
    )
    args = ("-p", "no:cacheprovider", "-p", "no:locust", "-rN")
    result = pytester.runpytest_subprocess(*args, "--ctxbench-modes", "gunicorn-gthred")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*ctxbench: --ctxbench-modes: unknown server mode 'gunicorn-gthred'*"]
    )
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize(
    ("ini", "marker", "said"),
    [
        pytest.param(
            'ctxbench_modes = "gunicorn-gthred"', "", "ctxbench: ctxbench_modes (ini): unknown"
            " server mode 'gunicorn-gthred'", id="ini-modes",
        ),
        pytest.param(
            'ctxbench_connections = "keeplive"', "", "ctxbench: ctxbench_connections (ini):"
            " unknown connection pattern 'keeplive': choose from keepalive, fresh, both",
            id="ini-connections",
        ),
        pytest.param(
            "", "@pytest.mark.ctxbench(modes=['gunicorn-gthred'])", "ctxbench:"
            " @pytest.mark.ctxbench(modes=...): unknown server mode 'gunicorn-gthred'",
            id="marker-modes",
        ),
        pytest.param(
            "", "@pytest.mark.ctxbench(connections='keeplive')", "ctxbench:"
            " @pytest.mark.ctxbench(connections=...): unknown connection pattern 'keeplive'",
            id="marker-connections",
        ),
    ],
)  # fmt: skip
def test_an_unknown_mode_or_pattern_is_named_with_where_it_was_set(
    pytester: pytest.Pytester, ini: str, marker: str, said: str
) -> None:
    # The failure is the message alone, with no line of the test: a typo in the ini or a marker
    # said "unknown server mode 'gunicorn-gthred'" and nothing of where to fix it, where a bad
    # --ctxbench-modes or ctxbench_requests was named.
    pytester.makepyprojecttoml(f"[tool.pytest.ini_options]\n{ini}\n")
    pytester.makepyfile(
        test_typo=f"""
        import pytest

        {marker}
        def test_typo(ctxbench):
            ctxbench.check("harness.apps.core_app:app")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust", "-rN")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"{said}*"])
    assert "Traceback" not in result.stdout.str()


def test_the_server_factory_fails_like_check_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        def test_bad_server(ctxbench_server):
            ctxbench_server("no-such-mode")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["ctxbench: unknown server mode 'no-such-mode'*"])
    out = result.stdout.str()
    assert "harness/servers" not in out and "UsageError" not in out, out


#: A user's conftest.py on a machine without gunicorn; the run itself is stubbed (no server).
WITHOUT_GUNICORN = """
    import importlib.util

    import harness.runner
    from harness.errors import UsageError

    _find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a: None if name == "gunicorn" else _find_spec(name)

    def run_matrix(settings, run_dir, **kw):
        raise UsageError("stub run: " + ",".join(settings.modes))

    harness.runner.run_matrix = run_matrix
"""


def test_default_modes_that_cannot_run_are_named_with_their_install_step(
    pytester: pytest.Pytester,
) -> None:
    from harness.servers.base import pip_install

    pytester.makeconftest(textwrap.dedent(WITHOUT_GUNICORN))
    pytester.makepyfile(
        test_default="""
        def test_default_modes(ctxbench):
            ctxbench.check("harness.apps.core_app:app")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust")
    result.assert_outcomes(failed=1, warnings=1)
    out = result.stdout.str()
    assert "ctxbench: stub run: werkzeug-threaded\n" in out
    assert (
        "CtxbenchWarning: ctxbench: checked under werkzeug-threaded only; gunicorn-sync,"
        " gunicorn-gthread, gunicorn-gevent cannot run here: gunicorn is not installed"
        f" ({pip_install('servers')}). Install them, or name the modes to check (modes=...,"
        " --ctxbench-modes or the ctxbench_modes ini key) to check only those without this"
        " warning\n"
    ) in out, out


def test_the_warning_made_an_error_fails_the_check_in_its_own_words(
    pytester: pytest.Pytester,
) -> None:
    # -W error (CI's habit): the warning is the failure, without a traceback through pytest's
    # Node.warn, and a test that does not use ctxbench is not touched.
    pytester.makeconftest(textwrap.dedent(WITHOUT_GUNICORN))
    pytester.makepyfile(
        test_default="""
        def test_default_modes(ctxbench):
            ctxbench.check("harness.apps.core_app:app")

        def test_unrelated():
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:locust", "-W", "error"
    )
    result.assert_outcomes(failed=1, passed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "ctxbench: checked under werkzeug-threaded only; gunicorn-sync, gunicorn-gthread,"
        " gunicorn-gevent cannot run here: gunicorn is not installed (*). Install them, or name"
        " the modes to check (modes=..., --ctxbench-modes or the ctxbench_modes ini key) to"
        " check only those without this warning",
        "(a CtxbenchWarning, made an error by -W error or a filterwarnings 'error' entry)",
    ])  # fmt: skip
    assert "warn_explicit" not in out and "stub run" not in out, out


#: A stubbed run (no server) that fails with the modes and the requests it was given.
STUB_RUN = """
    import harness.runner
    from harness.errors import UsageError

    def run_matrix(settings, run_dir, **kw):
        raise UsageError(f"stub run: {','.join(settings.modes)} x {settings.requests}")

    harness.runner.run_matrix = run_matrix
"""


@pytest.mark.parametrize(
    ("ini", "seen"),
    [
        # pyproject.toml's [tool.pytest.ini_options], where testpaths and addopts are lists too:
        # a list was a PytestRemovedIn10Warning (a traceback under filterwarnings = error).
        pytest.param(
            'ctxbench_modes = ["gunicorn-sync", "werkzeug-threaded"]\nctxbench_requests = 50',
            "gunicorn-sync,werkzeug-threaded x 50", id="toml-list",
        ),
        pytest.param('ctxbench_modes = "gunicorn-sync, werkzeug-threaded"',
                     "gunicorn-sync,werkzeug-threaded x 400", id="toml-commas"),
        pytest.param('ctxbench_modes = "gunicorn-sync werkzeug-threaded"',
                     "gunicorn-sync,werkzeug-threaded x 400", id="toml-spaces"),
        # pytest 9's native [tool.pytest] table checks TOML types: a value of another type is a
        # one-line failure in pytest's words, not a traceback through the plugin.
        pytest.param(
            '[tool.pytest]\nctxbench_modes = ["gunicorn-sync"]\nctxbench_requests = 50',
            "*pyproject.toml: config option 'ctxbench_requests' expects a string, got int: 50",
            id="native-toml-int", marks=pytest.mark.skipif(
                int(pytest.__version__.split(".")[0]) < 9, reason="[tool.pytest] is pytest 9's"
            ),
        ),
    ],
)  # fmt: skip
def test_ini_modes_are_a_list_or_names_in_one_string(
    pytester: pytest.Pytester, ini: str, seen: str
) -> None:
    pytester.makeconftest(textwrap.dedent(STUB_RUN))
    table = "" if ini.startswith("[") else "[tool.pytest.ini_options]\n"
    pytester.makefile(".toml", pyproject=f"{table}{ini}\n")
    pytester.makepyfile(test_ini="def test_ini(ctxbench):\n    ctxbench.check('a:app')\n")
    args = ("-p", "no:cacheprovider", "-p", "no:locust", "-W", "error")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"ctxbench: {'stub run: ' if ' x ' in seen else ''}{seen}"])
    assert "Traceback" not in result.stdout.str() and "Warning" not in result.stdout.str()


#: Two test modules with a test of the same name, each recording where its check ran; the run
#: itself is stubbed (no server).
SAME_NAMES = """
    import harness.runner
    from harness.errors import UsageError

    def run_matrix(settings, run_dir, command, **kw):
        run_dir.mkdir(parents=True, exist_ok=True)  # as the runner does
        (run_dir / "ran.txt").write_text(command[-1])
        raise UsageError("stub run")

    harness.runner.run_matrix = run_matrix
"""


def test_each_check_gets_a_results_folder_of_its_own(pytester: pytest.Pytester) -> None:
    # Tests of the same name in two modules, two checks in one test, and a second session into
    # the same folder: nothing is written into a folder that is already there.
    pytester.makeconftest(textwrap.dedent(SAME_NAMES))
    test = "def test_same(ctxbench):\n    ctxbench.check('a:app', modes=['werkzeug-threaded'])\n"
    (pytester.path / "sub").mkdir()
    (pytester.path / "sub" / "test_other.py").write_text(test)
    pytester.makepyfile(
        test_same=test,
        test_twice="""
        import pytest

        def test_twice(ctxbench):
            for _ in range(2):
                with pytest.raises(pytest.fail.Exception):
                    ctxbench.check("a:app", modes=["werkzeug-threaded"])
        """,
    )
    results = pytester.path / "results"
    args = ("-p", "no:cacheprovider", "-p", "no:locust", f"--ctxbench-results={results}")
    pytester.runpytest_subprocess(*args).assert_outcomes(failed=2, passed=1)
    pytester.runpytest_subprocess(*args, "test_same.py").assert_outcomes(failed=1)
    ran = {p.parent.name: p.read_text() for p in results.glob("*/ran.txt")}
    assert ran == {
        "sub_test_other.py_test_same": "sub/test_other.py::test_same",
        "test_same.py_test_same": "test_same.py::test_same",
        "test_same.py_test_same-2": "test_same.py::test_same",
        "test_twice.py_test_twice": "test_twice.py::test_twice",
        "test_twice.py_test_twice-2": "test_twice.py::test_twice",
    }, ran


def test_a_relative_results_folder_is_where_pytest_started_not_where_a_test_went(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(textwrap.dedent(SAME_NAMES))
    pytester.makeini("[pytest]\nctxbench_results = from-ini\n")
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_moves.py").write_text(
        "def test_moves(ctxbench, tmp_path, monkeypatch):\n"
        "    monkeypatch.chdir(tmp_path)\n"
        "    ctxbench.check('a:app', modes=['werkzeug-threaded'])\n"
    )
    args = ("-p", "no:cacheprovider", "-p", "no:locust")
    pytester.runpytest_subprocess(*args, "--ctxbench-results=rel").assert_outcomes(failed=1)
    monkeypatch.chdir(pytester.path / "tests")
    pytester.runpytest_subprocess(*args).assert_outcomes(failed=1)
    assert sorted(str(p.relative_to(pytester.path)) for p in pytester.path.rglob("ran.txt")) == [
        "from-ini/tests_test_moves.py_test_moves/ran.txt",
        "rel/tests_test_moves.py_test_moves/ran.txt",
    ]


def test_folders_are_claimed_once_by_concurrent_claims(tmp_path: Path) -> None:
    # xdist workers claim at the same moment: every claim gets a folder no other claim got.
    from concurrent.futures import ThreadPoolExecutor

    from pytest_ctxbench import _claim_folder, _folder_name

    name = _folder_name("tests/test_app.py::TestApp::test_isolated[gunicorn sync]")
    assert name == "tests_test_app.py_TestApp_test_isolated[gunicorn_sync]"
    with ThreadPoolExecutor(8) as pool:
        claimed = list(pool.map(lambda _: _claim_folder(tmp_path / "r", name), range(16)))
    assert len(set(claimed)) == 16
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(
        [name, *(f"{name}-{n}" for n in range(2, 17))]
    )


def test_a_results_folder_that_cannot_be_made_fails_in_one_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_folder="""
        def test_folder(ctxbench):
            ctxbench.check("a:app", modes=["werkzeug-threaded"])
        """
    )
    (pytester.path / "a-file").write_text("")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:locust", f"--ctxbench-results={pytester.path}/a-file/r"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "ctxbench: cannot make a results folder under --ctxbench-results '*/a-file/r': Not a"
        " directory; name a folder this user can write"
    ])  # fmt: skip
    assert "OSError" not in result.stdout.str()


#: A user's test of an app that lives in the project, not in the tests' folder: the servers must
#: find it as the session does, wherever pytest is run from.
PROJECT_TESTS = """
    import json
    import urllib.request

    def test_check(ctxbench):
        rv = ctxbench.check("myproject.wsgi:app", modes=["gunicorn-sync"], connections="fresh",
                            requests=30)
        assert rv.ok and rv.requests == 30

    def test_server(ctxbench_server):
        srv = ctxbench_server("werkzeug-threaded", app="myproject.wsgi:app")
        with urllib.request.urlopen(srv.url + "/_ctxbench/probe?token=t1") as resp:
            assert json.load(resp)["app"] == "my_project"
"""


@pytest.mark.live
@pytest.mark.parametrize(
    ("layout", "where", "args"),
    [
        # pytest run from a subfolder: the ini at the project's root makes it the rootdir.
        pytest.param("flat", "tests", (), id="from-a-subfolder"),
        # --rootdir from another folder, with no ini: a conftest.py at the root.
        pytest.param("conftest", "elsewhere", ("--rootdir={root}", "{root}/tests"),
                     id="rootdir-option"),
        # the app under src/, found through the pythonpath ini option, pytest run from the root.
        pytest.param("src", ".", (), id="pythonpath-ini"),
    ],
)  # fmt: skip
def test_the_servers_import_the_app_as_the_session_does(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    layout: str,
    where: str,
    args: tuple[str, ...],
) -> None:
    root = pytester.path
    package = root / ("src" if layout == "src" else ".") / "myproject"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "wsgi.py").write_text('from core import App\n\napp = App("my_project")\n')
    if layout == "conftest":
        (root / "conftest.py").write_text("")
    else:
        pythonpath = "pythonpath = src\n" if layout == "src" else ""
        (root / "pytest.ini").write_text(f"[pytest]\n{pythonpath}")
    (root / "tests").mkdir()
    (root / "tests" / "test_project.py").write_text(textwrap.dedent(PROJECT_TESTS))
    (root / where).mkdir(exist_ok=True)
    monkeypatch.chdir(root / where)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:locust", *(a.format(root=root) for a in args)
    )
    result.assert_outcomes(passed=2)


@pytest.mark.live
def test_the_marker_and_the_command_line_choose_the_modes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_marked="""
        import pytest

        @pytest.mark.ctxbench(modes=["no-such-mode"], connections="fresh", requests=50)
        def test_marked(ctxbench):
            rv = ctxbench.check("harness.apps.core_app:app")
            assert [(c.mode, c.connections, c.requests) for c in rv.cells] == [
                ("gunicorn-sync", "fresh", 50)
            ]
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:locust", "--ctxbench-modes=gunicorn-sync"
    )
    result.assert_outcomes(passed=1)


@pytest.mark.live
def test_ctxbench_server_starts_and_stops_a_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_server="""
        import json
        import os
        import urllib.request

        PIDS = []

        def test_live(ctxbench_server):
            srv = ctxbench_server("gunicorn-sync")
            with urllib.request.urlopen(srv.url + "/_ctxbench/probe?token=abc") as resp:
                assert json.load(resp)["token"] == "abc"
            # A second server of the mode logs to a file of its own, not over the first's.
            # server_args, as check() names them, reach the server's command line.
            other = ctxbench_server(
                "gunicorn-sync", app="harness.apps.flask_app:app", server_args=["--preload"]
            )
            assert other.effective["preload_app"] is True
            assert other.log_path != srv.log_path
            assert f"127.0.0.1:{srv.port}" in srv.log_path.read_text()  # not truncated
            PIDS.extend([srv.pid, other.pid])

        def test_stopped():
            assert len(PIDS) == 2
            for pid in PIDS:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    continue
                raise AssertionError(f"server {pid} still running")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("ini", "marker", "message"),
    [
        pytest.param("ctxbench_requests = lots", "",
                     f"bad ctxbench_requests (ini) 'lots': use a whole number in 1..{MAX_REQUESTS}",
                     id="ini-not-a-number"),
        pytest.param("ctxbench_concurrency = 0", "",
                     f"bad ctxbench_concurrency (ini) 0: use a whole number in"
                     f" 1..{MAX_CONCURRENCY}",
                     id="ini-zero"),
        pytest.param("", "@pytest.mark.ctxbench(requests=-5)",
                     "bad @pytest.mark.ctxbench(requests=...) -5: use a whole number in 1..",
                     id="marker"),
        # Without a duration the requests bound the run: a typo must not run for days.
        pytest.param("ctxbench_requests = 10000000000", "",
                     f"bad ctxbench_requests (ini) 10000000000: use a whole number in"
                     f" 1..{MAX_REQUESTS}", id="ini-requests-over-limit"),
        pytest.param("", "@pytest.mark.ctxbench(concurrency=5000)",
                     f"bad @pytest.mark.ctxbench(concurrency=...) 5000: use a whole number in"
                     f" 1..{MAX_CONCURRENCY}", id="marker-concurrency-over-limit"),
    ],
)  # fmt: skip
def test_a_bad_number_in_the_settings_fails_in_one_line_naming_where(
    pytester: pytest.Pytester, ini: str, marker: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\nctxbench_modes = gunicorn-sync\n{ini}\n")
    pytester.makepyfile(
        test_bad=f"""
        import pytest

        {marker}
        def test_bad_number(ctxbench):
            ctxbench.check("harness.apps.core_app:app")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert f"ctxbench: {message}" in out, out
    assert "Error" not in out.replace("CtxbenchError", ""), out


@pytest.mark.parametrize(
    ("marker", "given"),
    [
        pytest.param("@pytest.mark.ctxbench(mode=['gunicorn-gevent'])", "mode=", id="typo"),
        pytest.param("@pytest.mark.ctxbench('gunicorn-gevent')",
                     "positional argument ('gunicorn-gevent')", id="positional"),
    ],
)  # fmt: skip
def test_a_marker_keyword_the_plugin_does_not_read_fails_in_one_line(
    pytester: pytest.Pytester, marker: str, given: str
) -> None:
    # @pytest.mark.ctxbench(mode=[...]) was ignored: the check ran the ini's modes, and passed.
    pytester.makeini("[pytest]\nctxbench_modes = no-such-mode\n")
    pytester.makepyfile(
        test_marker=f"""
        import pytest

        {marker}
        def test_marked(ctxbench):
            ctxbench.check("harness.apps.core_app:app", modes=["gunicorn-sync"])
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert (
        f"ctxbench: @pytest.mark.ctxbench takes no {given}: it takes modes=, connections=,"
        " requests=, concurrency=, results="
    ) in out, out
    assert "Traceback" not in out and "no-such-mode" not in out, out


def test_a_bad_keyword_is_named_as_the_test_gave_it_not_as_a_cli_flag(
    pytester: pytest.Pytester,
) -> None:
    # "bad --sleep-ms -1" sent a test's author looking for a flag they never typed.
    pytester.makepyfile(
        test_kw="""
        import pytest

        @pytest.mark.parametrize("kw", [
            dict(sleep_ms=-1),
            dict(mount="api"),
            dict(modes="werkzeug-threaded,werkzeug-threaded"),
            dict(requests=0),
        ])
        def test_bad(ctxbench, kw):
            ctxbench.check("harness.apps.core_app:app", **kw)

        def test_bad_server(ctxbench_server):
            ctxbench_server("werkzeug-threaded", app="harness.apps.core_app:app", mount="api")

        def test_bad_workers(ctxbench_server):
            ctxbench_server("gunicorn-sync", workers=0)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust")
    result.assert_outcomes(failed=6)
    out = result.stdout.str()
    for message in (
        "ctxbench: bad sleep_ms=-1: use a number in [0, ",
        "ctxbench: bad mount='api': a mount is a path that starts with '/', e.g. /api",
        "ctxbench: modes lists 'werkzeug-threaded' twice: give each value once",
        f"ctxbench: bad requests=0: use a whole number in 1..{MAX_REQUESTS}",
        "ctxbench: bad workers=0: use a whole number in 1..",
    ):
        assert message in out, out
    assert out.count("bad mount='api'") >= 2, out
    assert "--sleep-ms" not in out and "--mount" not in out and "--workers" not in out, out
    assert "Traceback" not in out, out


def test_ctxbench_server_takes_server_args_as_check_does_and_names_what_it_takes() -> None:
    # server_args=[...] was a TypeError from ServerConfig (a traceback through the harness), and
    # only extra_args, a name check() does not use, reached the server.
    from harness.errors import UsageError
    from pytest_ctxbench import _server_options

    options: dict[str, object] = {"app": "myproj:create_app()", "server_args": ["--preload"]}
    _server_options(options)
    assert options == {"app": "myproj:create_app()", "extra_args": ("--preload",)}
    with pytest.raises(UsageError) as caught:
        _server_options({"server_arg": ["--preload"]})
    assert caught.value.message == (
        "ctxbench_server() takes no server_arg=: it takes the mode and app=, backend=, port=,"
        " workers=, threads=, worker_connections=, prefix=, mount=, server_args=, log_dir=,"
        " ready_timeout="
    )
    with pytest.raises(UsageError, match=r"bad server_args='--preload': give a list"):
        _server_options({"server_args": "--preload"})


@pytest.mark.parametrize(
    ("prefix", "why"),
    [
        pytest.param("/api", "give a list, one argument per item", id="str"),
        pytest.param(["/api"], "'/api' is no command here", id="path"),
        pytest.param(["no-such-command-here", "-c", "0"], "'no-such-command-here' is no"
                     " command here", id="missing"),
    ],
)  # fmt: skip
def test_a_server_prefix_that_is_no_command_is_one_line(prefix: object, why: str) -> None:
    # prefix= (a command the server runs under, listed beside mount= in what ctxbench_server
    # takes) given a path: "bad server prefix '/api': give strings" of a string, and
    # prefix=['/api'] a FileNotFoundError traceback from subprocess as the server started.
    from harness.errors import UsageError
    from pytest_ctxbench import _server_options

    with pytest.raises(UsageError) as caught:
        _server_options({"app": "myproj:app", "prefix": prefix})
    assert caught.value.message == (
        f"bad prefix={prefix!r}: {why}; prefix= is a command the server runs under"
        " (prefix=['taskset', '-c', '0']), and the path prefix an app is served under is mount="
        " (mount='/api')"
    )
    _server_options({"app": "myproj:app", "prefix": [sys.executable, "-c", "0"], "mount": "/a"})


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ("bad --sleep-ms nan: use a number", "bad sleep_ms=nan: use a number"),
        ("use --backend contextvar with it", "use backend='contextvar' with it"),
        ("name it with --mount (--mount /api), or --mount / for its root app",
         "name it with mount (mount='/api'), or mount='/' for its root app"),
        ("bad requests= 0: use a whole number", "bad requests=0: use a whole number"),
        ("bad --workers 0: use a whole number", "bad workers=0: use a whole number"),
        # A value the test gave is quoted as it was, flags in it included.
        ("bad server_args='--threads 4': give a list (server_args=['--threads', '4'])",
         "bad server_args='--threads 4': give a list (server_args=['--threads', '4'])"),
        ("bad --mount '--workers 2': a path", "bad mount='--workers 2': a path"),
        # Flags and ini keys a test's author did type stay as they are.
        ("bad --ctxbench-requests 0: use", "bad --ctxbench-requests 0: use"),
        ("bad ctxbench_modes (ini) 'x': use", "bad ctxbench_modes (ini) 'x': use"),
        ("give --duration (seconds)", "give --duration (seconds)"),
        # Another program's flags are that program's, not keywords of check().
        ("name its call (flask --app would call it without arguments)",
         "name its call (flask --app would call it without arguments)"),
        ("as uWSGI's --mount /api does, or --mount /api",
         "as uWSGI's --mount /api does, or mount='/api'"),
    ],
)  # fmt: skip
def test_messages_name_the_keywords_of_check(said: str, shown: str) -> None:
    from harness.errors import UsageError
    from pytest_ctxbench import _message

    assert _message(UsageError(said)) == f"ctxbench: {shown}"


def test_server_args_need_the_modes_they_are_for(pytester: pytest.Pytester) -> None:
    # The README's preload case without modes: --preload went to the werkzeug dev server too,
    # which failed to start ("unrecognized arguments: --preload") after a server was spawned.
    pytester.makeconftest(textwrap.dedent(STUB_RUN))
    pytester.makepyfile(
        test_args="""
        def test_default_modes(ctxbench):
            ctxbench.check("a:app", server_args=["--preload"])

        def test_named_modes(ctxbench):
            ctxbench.check("a:app", server_args=["--preload"], modes=["gunicorn-gevent"])
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust", "-rN")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "ctxbench: server_args=['--preload'] go to every mode's server command line, and the"
        " default modes are servers of several kinds (werkzeug-threaded, gunicorn-sync,"
        " gunicorn-gthread, gunicorn-gevent): name the modes they are for"
        " (modes=['gunicorn-gevent'] with server_args=['--preload'])",
        "ctxbench: stub run: gunicorn-gevent x 400",
    ])  # fmt: skip
    assert "Traceback" not in result.stdout.str()


def test_server_args_a_modes_server_refuses_fail_before_any_server_starts(
    pytester: pytest.Pytester,
) -> None:
    # As `ctxbench run`: gunicorn's --preload reached uwsgi-threads' server, which refused it as
    # it started, after the gunicorn cells had run.
    if not get_mode("uwsgi-threads").available().ok:
        pytest.skip("uwsgi-threads cannot run here")
    pytester.makeconftest(
        textwrap.dedent(
            """
            import harness.runner
            from harness.errors import UsageError
            from harness.preflight import checked

            def run_matrix(settings, run_dir, **kw):
                checked(settings)  # what the runner does first
                raise UsageError("stub run")

            harness.runner.run_matrix = run_matrix
            """
        )
    )
    pytester.makepyfile(
        test_args="""
        def test_check(ctxbench):
            ctxbench.check("a:app", modes=["gunicorn-gevent", "uwsgi-threads"],
                           server_args=["--preload"])

        def test_server(ctxbench_server):
            ctxbench_server("uwsgi-threads", app="a:app", server_args=["--preload"])
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust", "-rN")
    result.assert_outcomes(failed=2)
    said = (
        "ctxbench: uwsgi-threads: uWSGI refuses the server argument --preload (unrecognized option"
        " '--preload'): server arguments go to every mode of a run; name only the modes of the"
        " server they are for, and run the others without them"
    )
    assert result.stdout.lines.count(said) == 2, result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_server_args_given_as_one_string_fail_in_one_line_with_the_list_meant(
    pytester: pytest.Pytester,
) -> None:
    # tuple("--preload") is its letters: the server failed to boot on "-", "-", "p", ...
    pytester.makepyfile(
        test_args="""
        def test_args(ctxbench):
            ctxbench.check("a:app", modes=["gunicorn-sync"], server_args="--threads 4")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "ctxbench: bad server_args='--threads 4': give a list with one argument per item, as on"
        " a command line (server_args=['--threads', '4'])"
    ])  # fmt: skip
    assert "Traceback" not in result.stdout.str()


#: The settings of a run of an app at the root (no ``mount=``), for a unit test's ``CheckResult``.
_AT_ROOT = SimpleNamespace(mount=None)


@pytest.mark.parametrize(
    ("status", "who"),
    [
        ("429", "the app answered them itself (an auth hook, a login redirect, a rate limiter?)"),
        ("502", "a proxy in front of the app answered them"),
    ],
)
def test_failed_requests_name_the_statuses_and_who_answered_them(
    tmp_path: Path, status: str, who: str
) -> None:
    # A rate limiter's 429s: the message says who answered them, not only "non-2xx"; and a
    # proxy's 502s are the proxy's, not the app's hooks', as `ctxbench run` says.
    from harness.results import Cell
    from pytest_ctxbench import CheckResult

    cell = Cell(
        app="myapp:app", backend="contextvar", mode="gunicorn-gthread", connections="fresh",
        requests=400, leaks=0, errors=395, runs=(), error_kinds={"non-2xx": 395},
        error_statuses={status: 395},
    )  # fmt: skip
    run = SimpleNamespace(
        cells=(cell,), requests=400, checked=5, leaks=0, errors=395, settings=_AT_ROOT
    )
    text = CheckResult("myapp:app", tmp_path, run).explain()  # type: ignore[arg-type]
    assert f"395 errors (395 x non-2xx); statuses 395 x {status}: {who}" in text, text
    assert "395 errors, 5 requests checked)" in text, text


def test_a_failed_assert_on_ok_shows_the_counts(tmp_path: Path) -> None:
    # `assert rv.ok` on ctxbench.check's result (the README's .ok) failed with "where False =
    # CheckResult(app='myproject.leaky:app', run_dir=PosixPath('...')).ok": nothing of what
    # failed, and print(rv) said the same.
    from pytest_ctxbench import CheckResult

    run = SimpleNamespace(cells=(), requests=200, checked=200, leaks=174, errors=3)
    rv = CheckResult("myproject.leaky:app", tmp_path, run)  # type: ignore[arg-type]
    assert repr(rv) == (
        f"CheckResult(app='myproject.leaky:app', ok=False, leaks=174, errors=3,"
        f" run_dir={tmp_path!r})"
    )


#: The leaky app deployed under /api by a dispatcher whose root is another app (what used to be
#: checked in its place, with no leak found).
MOUNTED_APP = """
    from core import App
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from leaky import app as api

    dispatcher = DispatcherMiddleware(App("root_app"), {"/api": api})
"""


@pytest.mark.live
def test_an_app_under_a_path_prefix_is_checked_there(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(leaky=textwrap.dedent(LEAKY_APP), mounted=textwrap.dedent(MOUNTED_APP))
    pytester.makepyfile(
        test_user="""
        import json
        import urllib.request

        import pytest

        def test_the_app_under_api_leaks(ctxbench):
            ctxbench.assert_isolated(
                "mounted:dispatcher", mount="/api", modes=["gunicorn-gthread"],
                connections="keepalive", requests=200,
            )

        def test_the_dispatcher_needs_a_mount(ctxbench):
            ctxbench.assert_isolated(
                "mounted:dispatcher", modes=["gunicorn-gthread"], connections="keepalive",
                requests=200,
            )

        def test_the_server_factory_serves_under_the_mount(ctxbench_server):
            srv = ctxbench_server("gunicorn-gthread", app="mounted:dispatcher", mount="/api")
            with urllib.request.urlopen(srv.url + "/api/_ctxbench/probe?token=t1") as resp:
                assert json.load(resp)["app"] == "leaky_user_app"
            assert srv.mount == "/api"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*CtxbenchLeak: ctxbench: mounted:dispatcher at /api leaked * in 1 of 1 cells*",
            "*phase=after_request name=current_user*",
            "*is a DispatcherMiddleware that serves apps under /api*mount (mount='/api')*",
        ]
    )


def test_the_report_path_comes_before_the_evidence(tmp_path: Path) -> None:
    # A JUnit XML failure message keeps the first ~500 characters: the summary, the report's
    # path and the first evidence, not the path after every cell's rows.
    from harness.results import Cell
    from harness.verdict import Evidence, Unit
    from pytest_ctxbench import SHOWN_EVIDENCE, CheckResult

    evidence = tuple(
        Evidence("gunicorn-gthread", "after_request", "current_user", f"t-{i}", f"t-{i + 1}",
                 Unit(pid=4242, thread=140000000000000 + i, greenlet=None))
        for i in range(8)
    )  # fmt: skip
    cells = tuple(
        Cell(
            app="myapp:app",
            backend="contextvar",
            mode="gunicorn-gthread",
            connections=c,
            requests=400,
            leaks=300,
            errors=0,
            runs=(),
            evidence=evidence,
        )
        for c in ("keepalive", "fresh")
    )
    run = SimpleNamespace(
        cells=cells, requests=800, checked=800, leaks=600, errors=0, settings=_AT_ROOT
    )
    lines = CheckResult("myapp:app", tmp_path, run).explain().splitlines()  # type: ignore[arg-type]
    assert lines[1] == f"  report: {tmp_path / 'report.md'}", lines
    assert lines[2] == "  gunicorn-gthread keepalive: 300 leaks, 0 errors", lines
    assert lines[3] == (
        "    phase=after_request name=current_user expected='t-0' seen='t-1'"
        " unit=pid 4242 thread 140000000000000"
    ), lines
    assert len(lines) == 2 + 2 * (1 + SHOWN_EVIDENCE)  # a line and the first rows per cell


@pytest.mark.parametrize(
    ("names", "framework_leaks", "culprit"),
    [
        (
            ["current_user"],
            0,
            "its own state (observe(): current_user), not the framework's context,",
        ),
        (["g", "request"], 600, "the framework's context (g, request)"),
        (
            ["g", "current_user"],
            300,
            "the framework's context (g) and its own state (observe(): current_user)",
        ),
    ],
)
def test_the_first_line_names_whose_state_leaked(
    tmp_path: Path, names: list[str], framework_leaks: int, culprit: str
) -> None:
    # It said "leaked per-request state" of a module-level dict of the app's as of the
    # framework's g, where the report's verdict tells them apart: the first line is what a
    # CI page shows.
    from harness.results import Cell
    from harness.verdict import Evidence, Unit
    from pytest_ctxbench import CheckResult

    evidence = tuple(
        Evidence("gunicorn-gthread", "after_request", name, "t-0", "t-1", Unit(4242, 1, None))
        for name in names
    )
    cell = Cell(
        app="myapp:app", backend="contextvar", mode="gunicorn-gthread", connections="keepalive",
        requests=800, leaks=600, errors=0, runs=(), evidence=evidence,
        framework_leaks=framework_leaks,
    )  # fmt: skip
    run = SimpleNamespace(
        cells=(cell,), requests=800, checked=800, leaks=600, errors=0, settings=_AT_ROOT
    )
    first = CheckResult("myapp:app", tmp_path, run).explain().splitlines()[0]  # type: ignore[arg-type]
    assert first == (
        f"ctxbench: myapp:app leaked {culprit} in 1 of 1 cells (600 leaking observations,"
        " 0 errors, 800 requests checked)"
    )


@pytest.mark.parametrize(
    ("mount", "named"),
    [(None, "myapp:dispatcher"), ("/", "myapp:dispatcher"), ("/api", "myapp:dispatcher at /api")],
)
def test_the_first_line_names_the_mount(tmp_path: Path, mount: str | None, named: str) -> None:
    # mount="/api" and mount="/admin" of one dispatcher both said "ctxbench: myapp:dispatcher
    # leaked ...": which of its apps leaked was in the report only. Named as the report's
    # verdict names it.
    from harness.results import Cell
    from pytest_ctxbench import CheckResult

    cell = Cell(
        app="myapp:dispatcher", backend="contextvar", mode="gunicorn-gthread",
        connections="keepalive", requests=800, leaks=600, errors=0, runs=(),
    )  # fmt: skip
    run = SimpleNamespace(
        cells=(cell,), requests=800, checked=800, leaks=600, errors=0,
        settings=SimpleNamespace(mount=mount),
    )  # fmt: skip
    first = CheckResult("myapp:dispatcher", tmp_path, run).explain().splitlines()[0]  # type: ignore[arg-type]
    assert first.startswith(f"ctxbench: {named} leaked per-request state in 1 of 1 cells"), first


#: A check per module, the same test name in both: one of a leaking app, one of a clean one.
XDIST_TEST = """
def test_isolated(ctxbench):
    ctxbench.assert_isolated({app!r}, modes=["gunicorn-gthread"], requests=100)
"""


@pytest.mark.live
def test_under_xdist_each_check_has_its_folder_and_a_leak_fails_with_the_evidence(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (it is in the dev extra)")
    pytester.makepyfile(leaky_app=textwrap.dedent(LEAKY_APP), clean_app=textwrap.dedent(CLEAN_APP))
    pytester.makepyfile(test_leaky=XDIST_TEST.format(app="leaky_app:app"))
    (pytester.path / "clean").mkdir()
    (pytester.path / "clean" / "test_clean.py").write_text(
        XDIST_TEST.format(app="clean_app:create_app('clean')")
    )
    results, junit = pytester.path / "results", pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:locust", "-n", "2",
        f"--ctxbench-results={results}", f"--junitxml={junit}",
    )  # fmt: skip
    result.assert_outcomes(failed=1, passed=1)
    out = result.stdout.str()
    assert "[gw" in out and "ctxbench: leaky_app:app leaked its own state" in out, out
    assert "phase=after_request name=current_user expected=" in out, out
    apps = {
        p.parent.name: {c["app"] for c in json.loads(p.read_text())["cells"]}
        for p in results.glob("*/results.json")
    }
    assert apps == {
        "test_leaky.py_test_isolated": {"leaky_app:app"},
        "clean_test_clean.py_test_isolated": {"clean_app:create_app('clean')"},
    }, apps
    # CI shows the JUnit failure's message attribute (whole lines of its first ~500 characters):
    # the summary, the report and evidence are in it, however long the workspace's path (this
    # one's, under xdist, left the evidence out); the report is named from where pytest started.
    [failure] = ET.parse(junit).iter("failure")
    message = failure.get("message", "")
    assert "report: results/test_leaky.py_test_isolated/report.md\n" in message, message
    assert "phase=after_request name=current_user expected=" in message, message


#: An app that writes down every process that imports it: the server processes that served.
PID_APP = """
    import os

    from core import App

    with open(os.path.join(os.path.dirname(__file__), "pids.txt"), "a") as f:
        f.write(f"{os.getpid()}\\n")

    app = App("pid_app")
"""


def _processes_with_env(text: str) -> list[int]:
    """Live (non-zombie) processes with ``text`` in their environment."""
    rv = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z" and text.encode() in environ:
            rv.append(int(entry.name))
    return rv


@pytest.mark.live
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find server processes")
@pytest.mark.parametrize("method", ["signal", "thread"])
def test_a_timeout_during_a_check_leaves_no_server_process(
    pytester: pytest.Pytester, method: str
) -> None:
    # pytest-timeout's signal method fails the test mid-load (the servers are stopped as the
    # check unwinds); its thread method ends the whole pytest process with os._exit (the
    # servers die with their parent: PR_SET_PDEATHSIG).
    pytest.importorskip("pytest_timeout", reason="pytest-timeout is not installed (dev extra)")
    pytester.makepyfile(pid_app=textwrap.dedent(PID_APP))
    pytester.makepyfile(
        test_slow="""
        def test_slow(ctxbench):
            ctxbench.check("pid_app:app", modes=["gunicorn-gthread"], connections="keepalive",
                           requests=10_000_000)
        """
    )
    pids = pytester.path / "pids.txt"
    # 3 s reaches the load on a quiet machine; a busy one may take longer to start the server.
    for seconds in (3, 10):
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-p", "no:locust", f"--timeout={seconds}",
            f"--timeout-method={method}",
        )  # fmt: skip
        assert "Timeout" in result.stdout.str() + result.stderr.str()
        assert result.ret != 0
        if pids.exists():
            break
    served = [int(pid) for pid in pids.read_text().split()] if pids.exists() else []
    assert served, "no server process imported the app before the timeout"
    deadline = time.monotonic() + 10
    while (left := _processes_with_env(str(pytester.path))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"server processes left after the timeout: {left}"
