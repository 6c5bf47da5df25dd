"""The docs are a contract: every command, snippet, link and path they show works as written.

A new user copies commands and snippets from README.md, the READMEs beside the code and
docs/*.md. This file reads every one of them and checks it without starting anything:

- every ``ctxbench ...`` line in a shell block parses with the real parser (``harness.cli``),
  every mode, proxy, backend, fault and corpus entry it names is registered, and a ``run`` line
  passes ``harness.preflight.checked``; a ``ctxbench ...`` in a code span in the prose names a real
  subcommand and real options (its values too, unless it is a template: ``--mode M``);
- every ``locust -f ...`` line parses with locust's parser and the locustfile's own options (in
  a subprocess: ``import locust`` monkey-patches the process with gevent);
- every ``make TARGET`` exists in the Makefile, every ``python -m benchmarks.X ...`` parses
  with that module's parser, every ``pytest`` option shown is one pytest knows here;
- every Python block compiles; the "Testing your own app" snippets and the pytest plugin's run
  as written in a project made of them (a subprocess each);
- every relative link and anchor resolves, every repository path in a code span exists, and
  every "README, 'Section'" the code cites (and every ``see "Section"`` of the docs) names a
  heading that exists;
- the figures the prose states (limits, defaults, thresholds) and each ``--help`` "(default
  N)" are the code's; the layout in docs/architecture.md, core/README.md's map and README's
  "What is in the box" name what the repository holds; the extras the docs say to install
  install what the gunicorn worker classes import.

A block that is not meant to be typed (output, a tree, a diagram) is fenced as ```text; a block
of Python as ```python. The ``live`` tests run the own-app example as the README does: through
``ctxbench run`` (clean, and caught under ``--preload``) and through the pytest plugin
snippet, on one or two modes; and each error line the README quotes, from an app that makes
it: about 20 s in all on this shared 2-core machine (load average 4).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Fence languages whose lines are commands a user types.
SHELL = ("", "sh", "shell", "console", "bash")
#: What a shell block may run; a line starting with anything else needs a checker here first.
PROGRAMS = ("ctxbench", "locust", "make", "cd", "gunicorn", "python", "pytest")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
#: A template word in a command (``--mode M``, ``compare A B``, ``[--fail-fraction F]``).
TEMPLATE = re.compile(r"^[A-Z]+$|^\[|\]$|^\.\.\.$")


def _docs() -> list[Path]:
    rv = [ROOT / "README.md", *sorted(ROOT.glob("*/README.md")), *sorted(ROOT.glob("docs/*.md"))]
    return [p for p in rv if not p.relative_to(ROOT).parts[0].startswith(".")]


DOCS = _docs()


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the first line inside the fence
    lang: str
    text: str

    def where(self, offset: int = 0) -> str:
        return f"{_rel(self.doc)}:{self.line + offset}"


def _split(doc: Path) -> tuple[list[Block], list[str]]:
    """The fenced blocks of ``doc``, and its lines with every fenced line blanked (the prose)."""
    blocks: list[Block] = []
    prose: list[str] = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        fence, start = m.group(1), i + 1
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        blocks.append(Block(doc, start + 1, m.group(2), "\n".join(lines[start:i])))
        prose.extend([""] * (i + 1 - (start - 1)))
        i += 1
    return blocks, prose[: len(lines)]


def blocks(*langs: str, docs: list[Path] = DOCS) -> list[Block]:
    return [b for doc in docs for b in _split(doc)[0] if b.lang in langs]


def code_spans(doc: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every inline code span of the prose, a span broken over lines joined
    by one space, as Markdown renders it."""
    prose = "\n".join(_split(doc)[1])
    rv = []
    for m in re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", prose, re.S):
        rv.append((prose.count("\n", 0, m.start()) + 1, " ".join(m.group(2).split())))
    return rv


def shell_commands(docs: list[Path] = DOCS) -> list[tuple[str, list[str]]]:
    """``(where, argv)`` of every command line in the shell blocks: continuation lines joined,
    ``# comments``, environment assignments in front and a trailing ``&`` dropped."""
    rv = []
    for block in blocks(*SHELL, docs=docs):
        pending, first = "", 0
        for n, line in enumerate(block.text.splitlines()):
            if not pending:
                first = n
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            words = shlex.split(pending + line, comments=True)
            pending = ""
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                words.pop(0)
            if words and words[-1] == "&":
                words.pop()
            if words:
                rv.append((block.where(first), words))
    return rv


def _program(word: str) -> str:
    return Path(word).name if word.startswith(".venv/bin/") else word


def _commands_of(program: str, docs: list[Path] = DOCS) -> list[tuple[str, list[str]]]:
    return [(w, argv) for w, argv in shell_commands(docs) if _program(argv[0]) == program]


def test_the_docs_are_found() -> None:
    names = {_rel(p) for p in DOCS}
    assert {"README.md", "docs/architecture.md", "docs/locust.md"} <= names, names
    assert len(shell_commands()) > 60


def test_every_shell_line_runs_a_program_this_file_checks() -> None:
    unknown = [(w, argv) for w, argv in shell_commands() if _program(argv[0]) not in PROGRAMS]
    assert not unknown, (
        f"shell lines run programs tests/test_docs.py does not check: {unknown}; fence output"
        " as ```text, or add a checker for the program"
    )


# -- ctxbench ----------------------------------------------------------------------------------


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    from harness.cli import build_parser

    parser = build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _parse(argv: list[str], shown_as: str) -> argparse.Namespace:
    from harness.cli import build_parser

    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        raise AssertionError(f"{shown_as}, which does not parse") from None


def _check_names(args: argparse.Namespace) -> None:
    """Every registry name in ``args`` is registered (whether it can run here is not asked)."""
    from harness.app_string import parse_import_string
    from harness.apps import CORE_APP
    from harness.cli import _behind_proxies, _csv
    from harness.corpus import ENTRIES
    from harness.errors import UsageError
    from harness.faults import get_fault
    from harness.preflight import check_backend
    from harness.protocol import DEFAULT_BACKEND
    from harness.report import parse_threshold
    from harness.servers import get_mode

    modes = [m for m in _csv(getattr(args, "modes", "") or "") if m and m != "all"]
    if getattr(args, "mode", None):
        modes.append(args.mode)
    proxy = getattr(args, "proxy", "") or ""
    for mode in _behind_proxies(modes, proxy) if modes else modes:
        get_mode(mode)
    if proxy and not modes:
        _behind_proxies(["werkzeug-threaded"], proxy)
    app = getattr(args, "app", None) or CORE_APP
    parse_import_string(app)
    for backend in _csv(getattr(args, "backend", None) or DEFAULT_BACKEND):
        check_backend(backend, app)
    faults = getattr(args, "faults", "all")
    for fault in [] if faults.strip() == "all" else _csv(faults):
        get_fault(fault)
    for entry in _csv(getattr(args, "entries", "") or ""):
        if entry and entry not in ENTRIES:
            raise UsageError(f"unknown corpus entry {entry!r}")
    if getattr(args, "threshold", None):
        parse_threshold(args.threshold)


def _check_spelled_out(argv: list[str], shown_as: str) -> None:
    """Every option is written in full: argparse takes ``--mode`` for ``--modes``, until an
    option that also starts so is added."""
    actions = _subparsers()[argv[0]]._actions
    options = {o for a in actions for o in a.option_strings}
    for word in argv[1:]:
        if word.startswith("--"):
            name = word.split("=", 1)[0]
            assert name in options, f"{shown_as}: {name} is not an option of {argv[0]} (in full)"


def _check_ctxbench(argv: list[str], shown_as: str) -> None:
    from harness.cli import _settings_from_args
    from harness.errors import UsageError

    args = _parse(argv, shown_as)
    args.argv = argv
    _check_spelled_out(argv, shown_as)
    try:
        _check_names(args)
        if argv[0] == "run":
            _settings_from_args(args)
    except UsageError as e:
        if "cannot run here" not in e.message:  # (a mode this machine lacks: fine)
            raise AssertionError(f"{shown_as}: {e}") from None


def test_every_ctxbench_command_the_docs_show_parses_and_names_registered_things() -> None:
    shown = _commands_of("ctxbench")
    assert len(shown) > 30, shown
    for where, argv in shown:
        _check_ctxbench(argv[1:], f"{where} shows '{shlex.join(argv)}'")


def _inline_ctxbench() -> list[tuple[str, list[str]]]:
    rv = []
    for doc in DOCS:
        for line, span in code_spans(doc):
            if re.match(r"^ctxbench [a-z]", span):
                try:
                    rv.append((f"{_rel(doc)}:{line}", shlex.split(span)[1:]))
                except ValueError:
                    raise AssertionError(f"{_rel(doc)}:{line}: `{span}` is not shell") from None
    return rv


def test_every_ctxbench_command_in_the_prose_names_real_options() -> None:
    """A command in a code span is checked like a block's, unless it is a template (``--mode
    M``, ``[--fail-fraction F]``) or names only the subcommand: then its options must exist."""
    shown = _inline_ctxbench()
    assert len(shown) > 20, shown
    subparsers = _subparsers()
    for where, argv in shown:
        shown_as = f"{where} shows `ctxbench {shlex.join(argv)}`"
        assert argv[0] in subparsers, f"{shown_as}: no such subcommand"
        if len(argv) > 1 and not any(TEMPLATE.search(w) for w in argv):
            _check_ctxbench(argv, shown_as)
            continue
        options = {o for a in subparsers[argv[0]]._actions for o in a.option_strings}
        for word in argv[1:]:
            word = word.strip("[]")
            if word.startswith("-"):
                assert word.split("=", 1)[0] in options, f"{shown_as}: no option {word}"


def test_a_check_here_fires_on_a_renamed_option_or_unknown_name() -> None:
    """The checks above have teeth: a removed option, a wrong mode, backend or fault fails."""
    for argv in (
        ["run", "--mode", "gunicorn-gevent"],
        ["run", "--modes", "gunicorn-evented"],
        ["run", "--proxy", "haproxy"],
        ["serve", "--mode", "gunicorn-gevent", "--backend", "no-such"],
        ["chaos", "--faults", "kill-everything"],
        ["corpus", "--entries", "no-such-entry"],
        ["soak", "--mode", "nginx+nope"],
    ):
        with pytest.raises(AssertionError):
            _check_ctxbench(argv, shlex.join(argv))


# -- locust ------------------------------------------------------------------------------------

#: The locustfile as the docs pass it to ``locust -f``: the path ``ctxbench locustfile`` prints.
LOCUST_F = "$(ctxbench locustfile)"

_PARSE_LOCUST = textwrap.dedent(
    """
    import importlib.util, json, sys

    from locust import argument_parser

    failed = []
    for argv in json.loads(sys.argv[1]):
        path = argv[argv.index("-f") + 1]
        spec = importlib.util.spec_from_file_location("locustfile_under_test", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)  # registers the locustfile's own options
        parser = argument_parser.get_parser(default_config_files=[])
        try:
            parser.parse_args(argv)
        except SystemExit:
            failed.append(argv)
        from locust import events  # one locustfile's listeners at a time
        events.init_command_line_parser._handlers.clear()
    print(json.dumps(failed))
    """
)


def _parse_locust(argvs: list[list[str]]) -> list[list[str]]:
    """The argvs locust's parser (with each locustfile's options) refuses."""
    rv = subprocess.run(
        [sys.executable, "-c", _PARSE_LOCUST, json.dumps(argvs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rv.returncode == 0, rv.stderr
    return json.loads(rv.stdout.splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("locust") is None, reason="locust not installed"
)
def test_every_locust_command_the_docs_show_parses() -> None:
    from harness.cli import LOCUSTFILE

    shown = _commands_of("locust")
    assert len(shown) >= 7, shown
    for where, argv in shown:
        # The path `ctxbench locustfile` prints, which an installed ctxbench has too: a path in
        # the checkout is not there for a user who installed the wheel.
        path = argv[argv.index("-f") + 1]
        assert path == LOCUST_F, f"{where}: give locust -f {shlex.quote(LOCUST_F)}, not {path}"
    argvs = [[str(LOCUSTFILE) if a == LOCUST_F else a for a in argv[1:]] for _, argv in shown]
    bad = ["-f", str(LOCUSTFILE), "--headless", "--sleep-msec", "2"]
    refused = _parse_locust([*argvs, bad])
    assert refused == [bad], f"locust refuses these command lines the docs show: {refused[:-1]}"


# -- make, python -m, pytest, gunicorn, cd -----------------------------------------------------


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, re.M)}


def make_targets_named(docs: list[Path]) -> list[tuple[str, str]]:
    named = [(w, argv[1]) for w, argv in _commands_of("make", docs)]
    for doc in docs:
        for line, span in code_spans(doc):
            m = re.match(r"^make ([\w.-]+)", span)
            if m:
                named.append((f"{_rel(doc)}:{line}", m.group(1)))
    return named


def test_every_make_target_the_docs_name_exists() -> None:
    named = make_targets_named(DOCS)
    assert len(named) > 10, named
    targets = make_targets()
    assert {"run", "test", "bench", "reference"} <= targets, targets
    missing = [(w, target) for w, target in named if target not in targets]
    assert not missing, f"the docs name make targets the Makefile lacks: {missing}"


class _Parsed(Exception):
    pass


def _parse_module_args(module: str, argv: list[str]) -> None:
    """Run ``module``'s ``main(argv)`` until its parser has parsed ``argv``, and no further."""
    import importlib

    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[call-overload]
        raise _Parsed

    main: Callable[[list[str]], int] = importlib.import_module(module).main
    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop):
        try:
            main(argv)
        except _Parsed:
            return
        except SystemExit:
            raise AssertionError(f"python -m {module} {shlex.join(argv)} does not parse") from None
    raise AssertionError(f"python -m {module} never parsed its arguments")


def _python_modules() -> list[tuple[str, str, list[str]]]:
    rv = []
    for where, argv in _commands_of("python"):
        assert argv[1] == "-m", f"{where}: {shlex.join(argv)}: run a module with -m"
        rv.append((where, argv[2], argv[3:]))
    for doc in DOCS:
        for line, span in code_spans(doc):
            m = re.match(r"^(?:\.venv/bin/)?python -m ([\w.]+)(.*)$", span)
            if m:
                rv.append((f"{_rel(doc)}:{line}", m.group(1), shlex.split(m.group(2))))
    return rv


def test_every_python_module_the_docs_run_exists_and_parses_its_arguments() -> None:
    import importlib.util

    shown = _python_modules()
    assert len(shown) >= 4, shown
    for where, module, argv in shown:
        assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"
        if module.startswith("benchmarks.") and argv:
            try:
                _parse_module_args(module, argv)
            except AssertionError as e:
                raise AssertionError(f"{where}: {e}") from None


def test_every_pytest_option_the_docs_show_exists() -> None:
    shown = _commands_of("pytest")
    assert shown
    words = {w for _, argv in shown for w in argv[1:]}
    for doc in DOCS:
        for _, span in code_spans(doc):
            words.update(re.findall(r"(?<![\w-])--(?:benchmark|ctxbench|hypothesis)[\w-]*", span))
    options = {w.split("=", 1)[0] for w in words if w.startswith("--")}
    helped = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    known = set(re.findall(r"(?<![\w-])(--[\w-]+)", helped))
    assert "--ctxbench-modes" in known and "--benchmark-only" in known, helped[-2000:]
    assert not options - known, f"the docs show pytest options pytest lacks: {options - known}"
    for _, argv in shown:
        for word, before in zip(argv[1:], argv, strict=False):
            if not word.startswith("-") and not before.startswith("-") and "/" in word:
                assert (ROOT / word.split("::")[0]).exists(), f"{shlex.join(argv)}: no {word}"


def test_the_gunicorn_example_is_where_the_docs_say() -> None:
    """``cd examples/gunicorn-conf`` then ``gunicorn -c gunicorn.conf.py myapp:app``."""
    cwd = ROOT
    for where, argv in shell_commands():
        if argv[0] == "cd":
            cwd = ROOT / argv[1]
            assert cwd.is_dir(), f"{where}: no folder {argv[1]}"
        elif argv[0] == "gunicorn":
            conf = argv[argv.index("-c") + 1]
            assert (cwd / conf).is_file(), f"{where}: no {conf} in {_rel(cwd)}"
            module = argv[-1].split(":")[0]
            assert (cwd / f"{module}.py").is_file(), f"{where}: no {module}.py in {_rel(cwd)}"


def test_the_examples_run_folders_are_ignored_by_git() -> None:
    """The README runs ``ctxbench run --target`` from ``examples/gunicorn-conf``, which writes
    ``results/<run-id>/`` there: git must not offer it for a commit."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    examples = [p for p in (ROOT / "examples").iterdir() if p.is_dir()]
    assert examples
    for example in examples:
        path = example.relative_to(ROOT) / "results" / "20261202-101010-abcdef" / "results.json"
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", "--no-index", str(path)], cwd=ROOT, check=False
        )
        assert ignored.returncode == 0, f"git would offer {path} for a commit"


# -- Python snippets ---------------------------------------------------------------------------


def python_blocks_that_do_not_compile(docs: list[Path]) -> list[str]:
    rv = []
    for block in blocks("python", "py", docs=docs):
        try:
            compile(block.text, block.where(), "exec")
        except SyntaxError as e:
            rv.append(f"{block.where((e.lineno or 1) - 1)}: {e.msg}")
    return rv


def test_every_python_block_compiles() -> None:
    assert len(blocks("python", "py")) >= 5
    bad = python_blocks_that_do_not_compile(DOCS)
    assert not bad, (
        f"```python blocks that do not compile (fence them as ```text if not Python): {bad}"
    )


def readme_snippet(first_line: str) -> str:
    """The README's ```python block that starts with ``first_line`` (its file name)."""
    for block in blocks("python"):
        if block.doc == ROOT / "README.md" and block.text.splitlines()[0] == first_line:
            return block.text + "\n"
    raise AssertionError(f"README.md has no ```python block starting {first_line!r}")


def own_app_project(tmp_path: Path) -> Path:
    """A project made of README's "Testing your own app" snippets, as a user would lay it out."""
    package = tmp_path / "myproject"
    package.mkdir()
    (package / "wsgi.py").write_text(readme_snippet("# myproject/wsgi.py"), encoding="utf-8")
    (package / "__init__.py").write_text(
        readme_snippet("# myproject/__init__.py"), encoding="utf-8"
    )
    # What the factory snippet reads: a settings module and a variable in the environment.
    (package / "settings").mkdir()
    (package / "settings" / "__init__.py").write_text("", encoding="utf-8")
    (package / "settings" / "production.py").write_text("SECRET_KEY = 'x'\n", encoding="utf-8")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_isolation.py").write_text(
        readme_snippet("# tests/test_isolation.py"), encoding="utf-8"
    )
    return tmp_path


def _run_python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith("CTXBENCH_")}
    environ.update(env)
    environ.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=environ, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


_PROBE_ONCE = textwrap.dedent(
    """
    import json, sys
    from {module} import {name} as app
    {mount}
    rv = app.test_client().get("/_ctxbench/probe?token=tok-1&sleep_ms=0")
    assert rv.status_code == 200, (rv.status_code, rv.get_data(as_text=True))
    print(json.dumps(rv.get_json()["obs"]))
    """
)


def test_the_own_app_snippet_serves_the_probe_and_observes_its_state(tmp_path: Path) -> None:
    project = own_app_project(tmp_path)
    code = _PROBE_ONCE.format(module="myproject.wsgi", name="app", mount="")
    rv = _run_python(code, project, CTXBENCH_PROBE="1")
    assert rv.returncode == 0, rv.stderr
    obs = json.loads(rv.stdout.splitlines()[-1])
    assert ["after_request", "my_local", "tok-1"] in obs, obs
    # The app's other routes are unchanged: its hooks observe only in probe requests.
    other = "from myproject.wsgi import app; print(app.test_client().get('/').status_code)"
    rv = _run_python(other, project, CTXBENCH_PROBE="1")
    assert rv.returncode == 0 and rv.stdout.split() == ["404"], (rv.stdout, rv.stderr)


def test_the_factory_snippet_builds_an_app_the_probe_mounts_on(tmp_path: Path) -> None:
    project = own_app_project(tmp_path)
    mount = "from harness.probe import install_probe; app = app(); install_probe(app)"
    code = _PROBE_ONCE.format(module="myproject", name="create_app", mount=mount)
    rv = _run_python(code, project, CTXBENCH_PROBE="1", DATABASE_URL="sqlite://")
    assert rv.returncode == 0, rv.stderr
    obs = json.loads(rv.stdout.splitlines()[-1])
    assert ["after_request", "user", "tok-1"] in obs, obs
    # Without its variable the factory raises where README's quoted error says it does.
    rv = _run_python(code, project, CTXBENCH_PROBE="1")
    assert "KeyError: 'DATABASE_URL'" in rv.stderr, rv.stderr
    assert 'myproject/__init__.py", line 12' in rv.stderr, rv.stderr
    quoted = "raised KeyError: 'DATABASE_URL' (at myproject/__init__.py:12)"
    assert quoted in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_auth_hook_snippet_compiles_against_what_it_imports() -> None:
    text = next(b.text for b in blocks("python") if "def require_login" in b.text)
    assert "from harness.probe import current_token" in text
    from harness.probe import current_token

    assert current_token() is None  # outside a probe request, as the README says


def test_the_pytest_plugin_snippet_collects_with_the_fixture(tmp_path: Path) -> None:
    """The plugin's fixture resolves in a project's own pytest session (set up, not run: the
    run itself starts servers, see the live test at the end)."""
    project = own_app_project(tmp_path)
    rv = subprocess.run(
        [sys.executable, "-m", "pytest", "--setup-plan", "-q", "-p", "no:cacheprovider",
         "tests/test_isolation.py"],
        cwd=project, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rv.returncode == 0, rv.stdout + rv.stderr
    assert "SETUP    F ctxbench" in rv.stdout, rv.stdout
    import inspect

    from pytest_ctxbench import Ctxbench

    inspect.signature(Ctxbench.assert_isolated).bind(
        None, "myproject.wsgi:app", modes=["gunicorn-gthread", "gunicorn-gevent"]
    )


# -- links, anchors, paths, sections -----------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in ("L", "N"))
    return kept.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    rv: set[str] = set()
    seen: dict[str, int] = {}
    for line in _split(doc)[1]:
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            rv.add(base if n == 0 else f"{base}-{n}")
    return rv


def headings(doc: Path) -> list[str]:
    return [m.group(2) for line in _split(doc)[1] if (m := HEADING.match(line))]


def _links(doc: Path) -> Iterator[tuple[int, str]]:
    for n, line in enumerate(_split(doc)[1], 1):
        # (a link inside a code span is text)
        for m in LINK.finditer(re.sub(r"`[^`]*`", "", line)):
            yield n, m.group(1)


def broken_links(docs: list[Path]) -> tuple[int, list[str]]:
    """How many relative links ``docs`` hold, and the ones that do not resolve."""
    checked, broken = 0, []
    for doc in docs:
        for line, target in _links(doc):
            if re.match(r"^[a-z]+:", target):
                continue
            checked += 1
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            where = f"{_rel(doc)}:{line}: ({target})"
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
                broken.append(f"{where}: no heading #{anchor} in {_rel(dest)}")
    return checked, broken


def test_every_relative_link_and_anchor_resolves() -> None:
    checked, broken = broken_links([*DOCS, ROOT / "CHANGES.md"])
    assert checked >= 10
    assert not broken, broken


def test_slug_reads_headings_as_github_does() -> None:
    assert slug("Checking a running deployment (`--target`)") == (
        "checking-a-running-deployment---target"
    )
    assert slug("In your own test suite (pytest plugin)") == "in-your-own-test-suite-pytest-plugin"
    assert slug("A proxy in front (harness/servers/_proxy.py, nginx.py)") == (
        "a-proxy-in-front-harnessservers_proxypy-nginxpy"
    )


#: Top-level folders whose paths a code span may name.
_TOP = ("core", "harness", "scenarios", "tests", "benchmarks", "docs", "examples", ".ci")


def test_every_repository_path_in_a_code_span_exists() -> None:
    """``harness/load/fairness.py``, ``scenarios/test_corpus.py``: the files the prose sends a
    reader to are there (a path with a placeholder or a glob is a pattern, not a file)."""
    checked, missing = missing_paths(DOCS)
    assert checked > 30
    assert not missing, missing


def missing_paths(docs: list[Path]) -> tuple[int, list[str]]:
    """How many repository paths the code spans of ``docs`` name, and the missing ones."""
    top = "|".join(re.escape(t) for t in _TOP)
    path = re.compile(rf"(?<![\w./-])((?:{top})/[\w./-]*)")
    checked, missing = 0, []
    for doc in docs:
        for line, span in code_spans(doc):
            for m in path.finditer(span):
                found = m.group(1).rstrip(".")
                if re.search(r"[<*{]", span[m.end() : m.end() + 1]):
                    continue  # a pattern: results/<run-id>/, ctxbench-<mode>-*
                checked += 1
                if not ((ROOT / found).exists() or (ROOT / found).with_suffix(".py").exists()):
                    missing.append(f"{_rel(doc)}:{line}: `{span}` names {found}")
    return checked, missing


def test_every_docs_section_the_code_cites_exists() -> None:
    """Messages and docstrings that send the reader to "README, 'Auth hooks and middleware'" or
    docs/architecture.md ("The probe protocol") name a heading that is there."""
    cite = re.compile(
        r"(README(?:\.md)?|docs/architecture\.md)`{0,2}[,:]?\s*\(?[\"']([A-Z][^\"')]+)[\"')]"
    )
    found = 0
    for source in sorted([*ROOT.glob("harness/**/*.py"), *ROOT.glob("core/*.py")]):
        text = " ".join(source.read_text(encoding="utf-8").split())
        text = re.sub(r"\"\s*\"", "", text)  # implicitly joined string literals
        for m in cite.finditer(text):
            doc = ROOT / ("README.md" if m.group(1).startswith("README") else m.group(1))
            name = m.group(2).strip()
            assert any(h.startswith(name) for h in headings(doc)), (
                f"{_rel(source)} cites {m.group(1)} section {name!r}, which is not a heading there"
            )
            found += 1
    assert found >= 6, found


def test_the_checks_here_fire_on_a_doc_that_is_wrong(tmp_path: Path) -> None:
    """Each check above, given a page with one mistake of its kind, reports exactly it."""
    (tmp_path / "guide.md").write_text("# Guide\n\n## Setup\n", encoding="utf-8")
    doc = tmp_path / "page.md"
    doc.write_text(
        "# Title\n\nSee [setup](guide.md#setup), [the guide](guide.md#no-such-section),"
        " [gone](nowhere.md) and [here](#title).\n`harness/no_such_module.py` and"
        " `harness/cli.py`; run `make no-such-target`.\n\n```python\n"
        "checker.examine(token, status, body) -> ProbeVerdict\n```\n",
        encoding="utf-8",
    )
    checked, broken = broken_links([doc])
    assert checked == 4 and len(broken) == 2, broken
    assert "#no-such-section" in broken[0] and "nowhere.md" in broken[1]
    checked, missing = missing_paths([doc])
    assert checked == 2 and len(missing) == 1 and "no_such_module" in missing[0], missing
    assert [t for _, t in make_targets_named([doc])] == ["no-such-target"]
    assert len(python_blocks_that_do_not_compile([doc])) == 1


# -- live: the own-app example through ctxbench run --------------------------------------------

#: Bounds the README's commands to a few seconds: one connection pattern, one short measurement.
_BOUNDED = ["--connections", "fresh", "--requests", "400", "--repeats", "1", "--warmup", "0"]


def _readme_command(start: str) -> list[str]:
    """The README's ``ctxbench run`` command in a code span that starts with ``start``."""
    for _, span in code_spans(ROOT / "README.md"):
        if span.startswith(start):
            return shlex.split(span)
    raise AssertionError(f"README.md shows no `{start}...` any more")


def _ctxbench_run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    assert argv[:2] == ["ctxbench", "run"], argv
    script = Path(sys.executable).with_name("ctxbench")
    return subprocess.run(
        [str(script), *argv[1:], *_BOUNDED], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.live
def test_the_own_app_example_runs_clean_as_the_readme_says(tmp_path: Path) -> None:
    """``ctxbench run --app myproject.wsgi:app`` from the folder that holds ``myproject/``: no
    leak (exit 0), and the summary names the app's own ``observe()`` state it checked."""
    project = own_app_project(tmp_path)
    argv = _readme_command("ctxbench run --app myproject.wsgi:app")
    rv = _ctxbench_run([*argv, "--modes", "gunicorn-gthread"], project)  # (one of every mode)
    assert rv.returncode == 0, rv.stdout + rv.stderr
    assert "Checked the app's own observe() state too: my_local" in rv.stdout, rv.stdout
    [results] = project.glob("results/*/results.json")
    assert json.loads(results.read_text(encoding="utf-8"))["cells"][0]["leaks"] == 0


@pytest.mark.live
def test_the_own_app_example_leaks_under_preload_as_the_readme_says(tmp_path: Path) -> None:
    """The same app with ``--server-arg=--preload`` under gunicorn-gevent: every greenlet shares
    the ``threading.local`` made before the patch, and ctxbench exits 1 with ``my_local``."""
    project = own_app_project(tmp_path)
    argv = _readme_command("ctxbench run --app myproject.wsgi:app --modes gunicorn-gevent")
    assert "--server-arg=--preload" in argv, argv
    rv = _ctxbench_run(argv, project)
    assert rv.returncode == 1, rv.stdout + rv.stderr
    [results] = project.glob("results/*/results.json")
    evidence = json.loads(results.read_text(encoding="utf-8"))["cells"][0]["evidence"]
    assert evidence and {e["name"] for e in evidence} == {"my_local"}, evidence


@pytest.mark.live
def test_the_pytest_plugin_snippet_passes_on_the_own_app_example(tmp_path: Path) -> None:
    """README's ``tests/test_isolation.py``, run by ``pytest`` in the project as written."""
    project = own_app_project(tmp_path)
    rv = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_isolation.py",
         "--ctxbench-results", "checked", "--ctxbench-requests", "100"],
        cwd=project, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rv.returncode == 0, rv.stdout + rv.stderr
    assert "1 passed" in rv.stdout, rv.stdout
    cells = [
        cell
        for path in project.glob("checked/**/results.json")
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]
    ]
    assert {c["mode"] for c in cells} == {"gunicorn-gthread", "gunicorn-gevent"}, cells
    assert all("my_local" in c["observed"] and c["leaks"] == 0 for c in cells), cells


# -- live: the errors the README quotes are the ones a user gets -------------------------------

_LOGIN_REDIRECT = """\
from flask import Flask, redirect, session


def create_app():
    app = Flask(__name__)
    app.secret_key = "dev"

    @app.before_request
    def require_login():
        if "user_id" not in session:
            return redirect("/login")

    return app
"""
_RATE_LIMIT = """\
import itertools

from flask import Flask


def create_app():
    app = Flask(__name__)
    seen = itertools.count()

    @app.before_request
    def rate_limit():
        if next(seen) >= 5:
            return "slow down", 429

    return app
"""
_SECRET_AT_IMPORT = """\
import os

from flask import Flask

app = Flask(__name__)

SECRET_KEY = os.environ["SECRET_KEY"]
"""
_DISPATCHER = """\
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

dispatcher = DispatcherMiddleware(
    Flask("root"), {"/api": Flask("api"), "/admin": Flask("admin")}
)
"""
_PLAIN_WSGI = """\
def application(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"Not Found"]
"""
#: What each error the README quotes is about -> the project's file that makes it (over the
#: README's own snippets; ``None``: the snippets as they are) and the app string.
_QUOTED_ERRORS: dict[str, tuple[tuple[str, str] | None, str]] = {
    "raised KeyError: 'DATABASE_URL'": (None, "myproject:create_app()"),
    "importing app 'myproject:app' failed": (("__init__.py", _SECRET_AT_IMPORT), "myproject:app"),
    "answered 302 (a redirect to /login)": (
        ("__init__.py", _LOGIN_REDIRECT),
        "myproject:create_app()",
    ),
    "got an answer that was not the probe's": (
        ("__init__.py", _RATE_LIMIT),
        "myproject:create_app()",
    ),
    "is a DispatcherMiddleware that serves apps under": (
        ("wsgi.py", _DISPATCHER),
        "myproject.wsgi:dispatcher",
    ),
    "which is no core or Flask app, and ctxbench found none": (
        ("wsgi.py", _PLAIN_WSGI),
        "myproject.wsgi:application",
    ),
}


def quoted_errors() -> list[str]:
    """Every ``ctxbench: error: ...`` line README.md quotes, in a block or a code span."""
    rv = [b.text for b in blocks("text") if b.text.startswith("ctxbench: error:")]
    rv += [s for _, s in code_spans(ROOT / "README.md") if s.startswith("ctxbench: error:")]
    return [line for line in rv if "README.md" not in line]


def test_every_quoted_error_has_a_live_check() -> None:
    quoted = quoted_errors()
    assert len(quoted) >= 4, quoted
    for line in quoted:
        assert any(key in line for key in _QUOTED_ERRORS), (
            f"README.md quotes {line!r}: add the project that makes it to _QUOTED_ERRORS"
        )


def _as_pattern(quoted: str) -> re.Pattern[str]:
    """The quoted line as a pattern: its counts any count, a trailing ``...`` anything."""
    text = quoted.removesuffix("...")
    parts = re.split(r"\d[\d,]*", text)
    rv = r"\d[\d,]*".join(re.escape(p) for p in parts)
    return re.compile("^" + rv + ("" if text != quoted else "$"))


@pytest.mark.live
@pytest.mark.parametrize(
    "key",
    list(_QUOTED_ERRORS),
    ids=["factory", "import", "auth", "429", "dispatcher", "other-framework"],
)
def test_the_errors_the_readme_quotes_are_what_ctxbench_says(tmp_path: Path, key: str) -> None:
    [quoted] = [line for line in quoted_errors() if key in line]
    source, app = _QUOTED_ERRORS[key]
    project = own_app_project(tmp_path)
    if source is not None:
        (project / "myproject" / source[0]).write_text(source[1], encoding="utf-8")
    (project / ".env").write_text("SECRET_KEY=dev\n", encoding="utf-8")  # (not loaded: README)
    from harness.servers import MODES

    mode = max((m for m in MODES if m in quoted), key=len)
    connections = "keepalive" if "keepalive" in quoted else "fresh"
    script = Path(sys.executable).with_name("ctxbench")
    rv = subprocess.run(
        [str(script), "run", "--app", app, "--modes", mode, "--connections", connections,
         "--requests", "200", "--repeats", "1", "--warmup", "0"],
        cwd=project, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")},
    )  # fmt: skip
    assert rv.returncode == 2, rv.stdout + rv.stderr
    said = rv.stderr.splitlines()[-1] if "not the probe's" in key else rv.stderr.splitlines()[0]
    assert _as_pattern(quoted).match(said), f"README.md quotes\n{quoted}\nctxbench says\n{said}"


# -- figures and defaults the prose states ------------------------------------------------------


def _stated_figures() -> list[tuple[str, str]]:
    """``(doc, sentence)``: each default or limit the prose states, written from the constant
    that owns it, so a changed constant fails here until the sentence is updated."""
    from benchmarks.corpus_catch import BAR
    from harness.corpus.run import LOAD
    from harness.load.cpu import DRIVER_BOUND_SHARE
    from harness.load.fairness import STARVED_MIN_WAIT_NS, STARVED_OVERTAKEN, STARVED_SHARE
    from harness.load.spec import DRIVER_TOP_RPS, MAX_CONCURRENCY, MAX_DURATION_S, MAX_REQUESTS
    from harness.protocol import MAX_SLEEP_MS, RESIDUE_PREFIX
    from harness.results import SPREAD_WARNING
    from harness.servers._supervised import DEFAULT_WORKERS
    from harness.servers.gunicorn_gthread import GunicornGthread
    from harness.settings import DEFAULT_DURATION_S, ChaosSettings, RunSettings
    from harness.soak.runner import SAVE_EVERY, default_warmup
    from harness.soak.verdict import RSS_GROWTH_LIMIT
    from pytest_ctxbench import DEFAULT_MODES, DEFAULT_REQUESTS

    run = {a.dest: a.default for a in _subparsers()["run"]._actions}
    compare = {a.dest: a.default for a in _subparsers()["compare"]._actions}
    chaos = ChaosSettings()
    timeout = RunSettings.__dataclass_fields__["timeout"].default
    assert STARVED_SHARE == 0.5 and len(DEFAULT_MODES) == 4 and chaos.fail_fraction == 0.1
    assert MAX_DURATION_S == 24 * 3600 and default_warmup(60) == 20 and default_warmup(12) == 6
    assert default_warmup(15) == 7.5 and default_warmup(24) == 10 and default_warmup(6e3) == 180
    readme, arch, results = "README.md", "docs/architecture.md", "results/README.md"
    return [
        (readme, f"Each cell is a {run['warmup']:g} s warm-up and {run['repeats']} measurements"
                 f" of {DEFAULT_DURATION_S:g} s"),
        (readme, f"`--concurrency` up to {MAX_CONCURRENCY}, `--sleep-ms` under the {timeout:g} s"
                 " request timeout, `--duration` up to a day,"
                 f" `--requests` up to {MAX_REQUESTS:,}"),
        (readme, f"`--duration` is in seconds (default {DEFAULT_DURATION_S:g})"),
        (readme, f"waiting for one more than {DRIVER_BOUND_SHARE:.0%} of the run"),
        (readme, f"One driver process checks about {DRIVER_TOP_RPS:,} keep-alive responses"),
        (readme, "waited more than half the measured window (and at least"
                 f" {STARVED_MIN_WAIT_NS / 1e9:g} s) while at least {STARVED_OVERTAKEN} requests"),
        (readme, f"sends `requests` (default {DEFAULT_REQUESTS}) probe requests"),
        (readme, f"except under a name that starts with `{RESIDUE_PREFIX}`: there it must be"
                 " `None`"),
        (readme, "the default is the four base modes"),
        (readme, f"every `--interval` ({chaos.interval_s:g} s), `--injections`"
                 f" ({chaos.injections}) times"),
        (readme, f"every worker exits after about {chaos.recycle_requests} requests"),
        (readme, f"(`--worker-timeout`, {chaos.worker_timeout_s} s)"),
        (readme, f"(bounded: {chaos.slow_seconds:g} s each)"),
        (readme, "| `hook-error` | a tenth of the requests raise"),
        (readme, "After the warm-up (a third of the soak, 10 to 180 s and at most half of it,"),
        (readme, f"RSS grows more than {RSS_GROWTH_LIMIT:.0%}"),
        (readme, f"then every {SAVE_EVERY:g} s of samples, marked `running`"),
        (readme, f"column, `gthread w{DEFAULT_WORKERS} t{GunicornGthread.default_threads}`"),
        (arch, f"`SPREAD_WARNING` ({SPREAD_WARNING:.2f}:"),
        (arch, f"more than `RSS_GROWTH_LIMIT` ({RSS_GROWTH_LIMIT:.0%}) growth fails"),
        (results, f"A spread above {SPREAD_WARNING:.0%} gets a warning"),
        (results, f"more than the threshold (default {compare['threshold']})"),
        ("docs/locust.md", f"(0 to {MAX_SLEEP_MS:g};"),
        ("benchmarks/README.md", f"sends {BAR} probe requests at the default concurrency"
                                 f" ({LOAD.concurrency} users, {LOAD.sleep_ms:g} ms in the view)"),
    ]  # fmt: skip


def test_the_figures_the_prose_states_are_the_code_s() -> None:
    stated = _stated_figures()
    for doc, sentence in stated:
        text = " ".join((ROOT / doc).read_text(encoding="utf-8").split())
        assert sentence in text, f"{doc} should say {sentence!r} (the code's figures)"


def test_each_option_s_help_states_its_real_default() -> None:
    """``--help`` says "(default N)" only where N is the default argparse applies."""
    checked = 0
    for name, sub in _subparsers().items():
        for action in sub._actions:
            m = re.search(r"\(default:? ([\w.%-]+)[;)]", action.help or "")
            if not m or action.default in (None, "") or isinstance(action.default, bool):
                continue  # (no default, or one the handler fills in: "all", "per mode")
            said = m.group(1).replace("%%", "%")
            real = action.default
            assert said == (f"{real:g}" if isinstance(real, float) else str(real)), (
                f"ctxbench {name} {action.option_strings[0]}: help says default {said},"
                f" it is {real!r}"
            )
            checked += 1
    assert checked >= 15, checked


def test_every_section_the_docs_send_the_reader_to_exists() -> None:
    """``see "Faults and soak"`` in a page names a heading of that page or of README.md."""
    found = 0
    for doc in DOCS:
        prose = " ".join(" ".join(_split(doc)[1]).split())
        for m in re.finditer(r"\b[Ss]ee \"([^\"]+)\"", prose):
            names = headings(doc) + headings(ROOT / "README.md")
            assert any(h.startswith(m.group(1)) for h in names), (
                f"{_rel(doc)} says see {m.group(1)!r}, which is not a heading there or in README"
            )
            found += 1
    assert found >= 4, found


# -- the install steps the docs give install what the modes need --------------------------------


def test_each_gunicorn_mode_checks_for_and_installs_what_its_worker_class_imports() -> None:
    """gunicorn declares its worker classes' libraries as its own extras (``gevent``: gevent and
    packaging). ``ctxbench list`` calls a mode runnable only when they are all there, and the
    ctxbench extra it names (``pip install 'ctxbench[servers]'``) installs them: a venv with
    gunicorn and gevent but not packaging listed gunicorn-gevent as ok, and its workers exited."""
    import tomllib
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    from harness.servers import MODES
    from harness.servers._gunicorn import GunicornMode

    needs: dict[str, set[str]] = {}
    for line in requires("gunicorn") or []:
        req = Requirement(line)
        for extra in ("gevent", "tornado", "eventlet"):
            if req.marker is not None and req.marker.evaluate({"extra": extra}):
                needs.setdefault(extra, set()).add(req.name)
    assert "packaging" in needs["gevent"], needs
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    checked = 0
    for mode in MODES.values():
        if not isinstance(mode, GunicornMode) or mode.worker_class not in needs:
            continue
        wanted = needs[mode.worker_class]
        assert wanted <= set(mode.requires), (
            f"{mode.name}.requires lacks {wanted - set(mode.requires)}"
        )
        declared = [Requirement(r) for r in extras[mode.extra]]
        installs = {r.name for r in declared} | {
            name for r in declared if r.name == "gunicorn" and mode.worker_class in r.extras
            for name in wanted
        }  # fmt: skip
        assert wanted <= installs, f"ctxbench[{mode.extra}] does not install {wanted - installs}"
        checked += 1
    assert checked >= 2, checked


def _layout(block: str) -> list[str]:
    """The paths of a layout tree (``docs/architecture.md``): a name per line, two spaces of
    indent per level; continuation lines (more indent, or not a file name) are skipped."""
    folders: list[str] = []  # the folders the current line can be in, outermost first
    rv = []
    for line in block.splitlines():
        m = re.match(r"^( *)([\w.]+/?)(?: |$)", line)
        level = len(m.group(1)) // 2 if m and len(m.group(1)) % 2 == 0 else -1
        if not m or not 0 <= level <= len(folders):
            continue
        folders = folders[:level]
        rv.append("/".join([*folders, m.group(2).rstrip("/")]))
        if m.group(2).endswith("/"):
            folders.append(m.group(2).rstrip("/"))
    return rv


def test_the_architecture_layout_lists_every_harness_module_and_nothing_gone() -> None:
    [block] = [
        b
        for b in blocks("text", docs=[ROOT / "docs" / "architecture.md"])
        if b.text.startswith("core/")
    ]
    listed = _layout(block.text)
    missing = [p for p in listed if not (ROOT / p).exists()]
    assert not missing, f"docs/architecture.md's layout lists what is gone: {missing}"
    modules = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "harness").iterdir()
        if not p.name.startswith(("_", ".")) and (p.suffix == ".py" or (p / "__init__.py").exists())
    }
    unlisted = sorted(modules - set(listed))
    assert not unlisted, f"docs/architecture.md's layout does not list {unlisted}"
    assert _layout("a/\n  b.py  x\n    continued\n  c/\n    d.py\ne.md") == [
        "a", "a/b.py", "a/c", "a/c/d.py", "e.md"
    ]  # fmt: skip


def test_core_readme_maps_every_core_module() -> None:
    text = (ROOT / "core" / "README.md").read_text(encoding="utf-8")
    mapped = set(re.findall(r"^\| `(\w+\.py)` \|", text, re.M))
    modules = {p.name for p in (ROOT / "core").glob("*.py") if p.name != "__init__.py"}
    assert mapped == modules, (
        f"core/README.md's map: missing {modules - mapped}, gone {mapped - modules}"
    )


def test_what_is_in_the_box_names_every_top_level_folder() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## What is in the box", 1)[1].split("\n## ", 1)[0]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )  # (what the repository holds, not a scratch folder of one's own)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    folders = {
        path.split("/", 1)[0]
        for path in tracked.stdout.splitlines()
        if "/" in path and not path.startswith(".")
    }
    assert {"core", "harness", "docs"} <= folders, folders
    unnamed = sorted(f for f in folders if f"`{f}/`" not in section and f"({f}/" not in section)
    assert not unnamed, f"README's 'What is in the box' does not name {unnamed}"


def test_the_micro_figures_benchmarks_readme_states_are_the_reference_run_s() -> None:
    """benchmarks/README.md's medians are results/reference/micro.json's (within a quarter:
    regenerating the reference moves them a little; a figure from another machine or another
    core does not pass)."""
    micro = json.loads((ROOT / "results" / "reference" / "micro.json").read_text("utf-8"))
    median_us = {
        (b["group"], b["name"].split("[")[1].rstrip("]")): b["stats"]["median"] * 1e6
        for b in micro["benchmarks"]
    }
    text = " ".join((ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8").split())
    m = re.search(
        r"Flask about ([\d.]+) µs per full call, ([\d.]+) µs per request-context push/pop,"
        r" ([\d.]+) µs per app-context push/pop; the core about ([\d.]+) µs, ([\d.]+) µs and"
        r" ([\d.]+) µs; a bare werkzeug app about ([\d.]+) µs; a `ContextVar` set/reset about"
        r" ([\d.]+) µs",
        text,
    )
    assert m, "benchmarks/README.md lost its sentence of reference medians"
    keys = [
        ("full-wsgi-call", "flask"), ("request-context", "flask"), ("app-context", "flask"),
        ("full-wsgi-call", "core"), ("request-context", "core"), ("app-context", "core"),
        ("full-wsgi-call", "werkzeug"), ("app-context", "werkzeug"),
    ]  # fmt: skip
    for key, stated in zip(keys, m.groups(), strict=True):
        real = median_us[key]
        assert abs(float(stated) - real) <= 0.25 * real, (
            f"benchmarks/README.md says {key}: {stated} µs; the reference run: {real:.3g} µs"
        )
