"""App import strings (harness.app_string): what parses, as gunicorn and flask read them.

A table of good and bad strings, hostile ones included: nothing in an app string may run as
code, and every refusal is one line that starts ``bad app import string`` and says why. Also the
folder name an app's logs get (``harness.apps.app_folder``), which a factory's arguments must
not steer out of the run folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from harness.app_string import MAX_IMPORT_STRING, AppRef, harness_hidden_by, parse_import_string
from harness.apps import CORE_APP, app_folder
from harness.errors import AppLoadError

GOOD = [
    pytest.param("pkg.wsgi:app", AppRef("pkg.wsgi:app", "pkg.wsgi", "app"), id="name"),
    pytest.param("m:a.b", AppRef("m:a.b", "m", "a.b"), id="dotted-attribute"),
    pytest.param("m:create_app()", AppRef("m:create_app()", "m", "create_app", ()), id="factory"),
    pytest.param(
        "m:create_app('prod', debug=False)",
        AppRef(
            "m:create_app('prod', debug=False)", "m", "create_app", ("prod",), (("debug", False),)
        ),
        id="factory-args",
    ),
    pytest.param(
        "m:f(-1, 2.5, 1+2j, b'x', None, True, ..., (1,), [2], {'a': {3}}, 'a:b')",
        AppRef(
            "m:f(-1, 2.5, 1+2j, b'x', None, True, ..., (1,), [2], {'a': {3}}, 'a:b')", "m", "f",
            (-1, 2.5, 1 + 2j, b"x", None, True, ..., (1,), [2], {"a": {3}}, "a:b"),
        ),
        id="every-literal",
    ),
    pytest.param(
        'm:f(z=1, a="x")', AppRef('m:f(z=1, a="x")', "m", "f", (), (("z", 1), ("a", "x"))),
        id="keywords-in-order",
    ),
    pytest.param("m:f(1,)", AppRef("m:f(1,)", "m", "f", (1,)), id="trailing-comma"),
]  # fmt: skip

#: (string, what the message must say). Every one of them is refused before anything is imported.
BAD = [
    pytest.param("myproject", "'myproject:app' for an app object or 'myproject:create_app()'",
                 id="bare-module"),
    pytest.param("", "use 'module:name'", id="empty"),
    pytest.param("m:", "use 'module:name'", id="no-name"),
    pytest.param(":app", "use 'module:name'", id="no-module"),
    pytest.param("not a path", "use 'module:name'", id="spaces"),
    pytest.param("my-project:app", "'my-project' is not a module name", id="module-dash"),
    pytest.param("./myproject/wsgi.py:create_app()", "is a file path: name the module,"
                 " 'myproject.wsgi:create_app()', from the folder that holds 'myproject'",
                 id="file-path"),
    pytest.param("m:app-x", "neither a name nor a factory call", id="name-dash"),
    pytest.param("m:f(1", "'(' was never closed", id="unclosed"),
    pytest.param("m:f(1)x", "neither a name nor a factory call", id="trailing-junk"),
    pytest.param("m:f() # x", "neither a name nor a factory call", id="comment"),
    pytest.param("m: f()", "neither a name nor a factory call", id="leading-space"),
    pytest.param("m:f[0]", "neither a name nor a factory call", id="subscript"),
    pytest.param("m:class()", "neither a name nor a factory call", id="keyword"),
    # As gunicorn and flask: the factory is a name in the module, called once.
    pytest.param("m:a.b()", "the factory 'a.b' is not a name in module 'm'", id="dotted-factory"),
    pytest.param("m:f()()", "the factory 'f()' is not a name", id="call-of-call"),
    # Hostile: code where a literal belongs never runs.
    pytest.param("m:f(__import__('os').system('x'))", "\"__import__('os').system('x')\" is not a"
                 " literal", id="import-call"),
    pytest.param("m:f(open('/etc/passwd').read())", "is not a literal", id="open"),
    pytest.param("m:f(lambda: 0)", "'lambda: 0' is not a literal", id="lambda"),
    pytest.param("m:f(x:=1)", "is not a literal", id="walrus"),
    pytest.param("m:f(1 for x in y)", "is not a literal", id="generator"),
    pytest.param("m:f(a=b)", "'b' is not a literal", id="name-argument"),
    pytest.param("m:f(f'{x}')", "is not a literal", id="f-string"),
    pytest.param("m:f(2**10)", "is not a literal", id="power"),
    pytest.param("m:f(*a)", "'*a' unpacks arguments", id="star-args"),
    pytest.param("m:f(*[1])", "'*[1]' unpacks arguments", id="star-literal"),
    pytest.param("m:f(**{'a': 1})", "unpacks arguments", id="star-star"),
    pytest.param("m:f(x=1, x=2)", "keyword argument 'x' is given twice", id="repeated-keyword"),
    pytest.param("m:f()\nimport os", "control character", id="newline"),
    pytest.param("m:f(\x00)", "control character", id="nul"),
    pytest.param("m:f(" + "[" * 300 + "]" * 300 + ")", "too many nested parentheses",
                 id="deep-nesting"),
    pytest.param("m:f('" + "x" * MAX_IMPORT_STRING + "')", "more than the 1,000", id="too-long"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_good_import_strings(text: str, expected: AppRef) -> None:
    assert parse_import_string(text) == expected


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_import_strings(text: str, message: str) -> None:
    with pytest.raises(AppLoadError) as info:
        parse_import_string(text)
    assert str(info.value).startswith(f"bad app import string {text!r}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value).replace(repr(text), "")


def test_bundled_app_string_parses() -> None:
    assert parse_import_string(CORE_APP).is_factory is False


@pytest.mark.parametrize(
    ("text", "folder"),
    [
        pytest.param("harness.apps.core_app:app", "core", id="bundled"),
        pytest.param("pkg.wsgi:app", "pkg.wsgi_app", id="name"),
        pytest.param("pkg:create_app('/../../etc', x=1)", "pkg_create_app___.._.._etc___x_1_",
                     id="factory-path-argument"),
    ],
)  # fmt: skip
def test_app_folder_is_one_safe_component(text: str, folder: str) -> None:
    assert app_folder(text) == folder
    assert Path(app_folder(text)).name == app_folder(text)


def test_app_folder_of_a_long_string_is_cut_and_stays_distinct() -> None:
    a, b = (f"pkg:create_app('{'x' * 200}{end}')" for end in "ab")
    assert len(app_folder(a)) <= 80
    assert app_folder(a) != app_folder(b)


FACTORY_SOURCE = """
import functools


def create_app(config, debug=False):  # one required argument, one option
    ...


def make_app(config, testing):  # flask's other factory name: two required, like a WSGI app
    ...


def build(*, settings):  # a required keyword
    ...


def app(environ, start_response):  # a WSGI app
    ...


def wsgi_with_option(environ, start_response, extra=None):
    ...


@functools.lru_cache
def decorated(config):  # a decorator may return anything: not read
    ...


def rebound(config):
    ...


rebound = rebound("x")  # bound twice: not read


def _build():
    inner = Flask()  # bound inside another function: not the module's
    return inner
"""


@pytest.mark.parametrize(
    ("attr", "says"),
    [
        pytest.param("create_app", "create_app is an app factory (def create_app(config,"
                     " debug=False) at mod_", id="option-on-the-second"),
        pytest.param("make_app", "name its call, 'mod_{u}:make_app(config=..., testing=...)'"
                     " with literal values for config, testing", id="flask-factory-name"),
        pytest.param("build", "'mod_{u}:build(settings=...)'", id="required-keyword"),
        pytest.param("app", None, id="wsgi-app"),
        pytest.param("wsgi_with_option", None, id="wsgi-with-option"),
        pytest.param("decorated", None, id="decorated"),
        pytest.param("rebound", None, id="bound-twice"),
        pytest.param("missing", None, id="not-in-the-source"),
        pytest.param("inner", None, id="bound-inside-a-function"),
    ],
)  # fmt: skip
def test_a_factory_named_without_its_call_is_refused_from_its_source(
    attr: str, says: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--app 'pkg:create_app'` for a factory that needs arguments was served as a WSGI app:
    # every request failed, and uWSGI never answered its readiness check (30 s). The source is
    # read, never imported, before a server starts.
    unique = tmp_path.name.replace("-", "_")
    (tmp_path / f"mod_{unique}.py").write_text(FACTORY_SOURCE)
    monkeypatch.chdir(tmp_path)
    text = f"mod_{unique}:{attr}"
    if says is None:
        assert parse_import_string(text) == AppRef(text, f"mod_{unique}", attr)
    else:
        with pytest.raises(AppLoadError) as info:
            parse_import_string(text)
        assert says.format(u=unique) in str(info.value), info.value
        assert str(info.value).startswith(f"bad app import string {text!r}: ")
    assert f"mod_{unique}" not in sys.modules  # read, never imported


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty package named for the test, in the current folder (the app's project)."""
    rv = tmp_path / f"site_{tmp_path.name.replace('-', '_')}"
    rv.mkdir()
    (rv / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    return rv


def test_a_dotted_app_names_the_module_that_holds_it(package: Path) -> None:
    # 'myproject.wsgi.app' (Django's WSGI_APPLICATION spelling) was told to write
    # 'myproject.wsgi.app:app', a module that does not exist.
    pkg = package.name
    (package / "wsgi.py").write_text("app = None\n")
    (package / "api").mkdir()
    (package / "api" / "__init__.py").write_text("")
    with pytest.raises(AppLoadError) as info:
        parse_import_string(f"{pkg}.wsgi.app")
    assert str(info.value) == (
        f"bad app import string '{pkg}.wsgi.app': there is no module '{pkg}.wsgi.app', but"
        f" '{pkg}.wsgi' is one: name the app in it after a colon, '{pkg}.wsgi:app'"
    )
    for module in (f"{pkg}.api", "nowhere_at_all.wsgi"):  # no app in the source, or no source
        with pytest.raises(AppLoadError, match=f"after a colon, '{module}:app' for an app obj"):
            parse_import_string(module)
    with pytest.raises(AppLoadError, match=f"after a colon, '{pkg}.wsgi:app', which it has"):
        parse_import_string(f"{pkg}.wsgi")
    assert pkg not in sys.modules  # read, never imported


def test_a_bare_module_names_the_apps_its_source_binds(package: Path) -> None:
    # A Django project's 'mysite.wsgi' was told to write 'mysite.wsgi:app' or
    # 'mysite.wsgi:create_app()', neither of which it has: its wsgi.py binds 'application'.
    pkg = package.name
    (package / "wsgi.py").write_text(
        "import os\n\nfrom django.core.wsgi import get_wsgi_application\n\n"
        f"os.environ.setdefault('DJANGO_SETTINGS_MODULE', '{pkg}.settings')\n\n"
        "application = get_wsgi_application()\n"
    )
    (package / "both.py").write_text("app = application = None\ndef create_app(): ...\n")
    with pytest.raises(AppLoadError) as info:
        parse_import_string(f"{pkg}.wsgi")
    assert str(info.value) == (
        f"bad app import string '{pkg}.wsgi': name the app after a colon, '{pkg}.wsgi:application',"
        " which it has (a bare module means 'application' to gunicorn and 'app' or 'create_app'"
        " to flask, so ctxbench does not guess)"
    )
    with pytest.raises(
        AppLoadError,
        match=(
            f"after a colon, '{pkg}.both:app' or '{pkg}.both:application' or"
            f" '{pkg}.both:create_app\\(\\)', which it has"
        ),
    ):
        parse_import_string(f"{pkg}.both")
    assert pkg not in sys.modules  # read, never imported


def test_a_bare_module_does_not_name_the_app_its_factory_builds(package: Path) -> None:
    # The README's factory package ('app = Flask(__name__)' inside create_app) was told to
    # write "'myproject:app' or 'myproject:create_app()', which it has": it has no 'app', and
    # 'myproject:app' then failed to load. A 'global' in a function does bind the module's name.
    pkg = package.name
    (package / "__init__.py").write_text(
        "from flask import Flask\n\n\ndef create_app(config='production'):\n"
        "    app = Flask(__name__)\n    return app\n"
    )
    (package / "glob.py").write_text(
        "def create_app():\n    global app\n    app = object()\n    return app\n"
    )
    with pytest.raises(AppLoadError) as info:
        parse_import_string(pkg)
    assert str(info.value) == (
        f"bad app import string '{pkg}': name the app after a colon, '{pkg}:create_app()',"
        " which it has (a bare module means 'application' to gunicorn and 'app' or 'create_app'"
        " to flask, so ctxbench does not guess)"
    )
    with pytest.raises(
        AppLoadError, match=f"after a colon, '{pkg}.glob:app' or '{pkg}.glob:create_app\\(\\)',"
    ):
        parse_import_string(f"{pkg}.glob")
    assert pkg not in sys.modules  # read, never imported


def test_an_asgi_function_is_refused_from_its_source_as_asgi(package: Path) -> None:
    # 'asgi:app' for `async def app(scope, receive, send)` was called an app factory, to be
    # written 'app(scope=..., receive=..., send=...)'.
    pkg = package.name
    (package / "asgi.py").write_text("async def app(scope, receive, send):\n    ...\n")
    tail = (
        " (async def app(scope, receive, send) at {pkg}/asgi.py:1), called as app(scope, receive,"
        " send), and every server ctxbench starts calls a WSGI app, app(environ,"
        " start_response): {instead} (uvicorn-asgiref and hypercorn-asgiref serve that WSGI app"
        " through asgiref)"
    )
    with pytest.raises(AppLoadError) as info:
        parse_import_string(f"{pkg}.asgi:app")
    assert str(info.value) == f"bad app import string '{pkg}.asgi:app': app is an ASGI app" + (
        tail.format(pkg=pkg, instead="name your project's WSGI app")
    )
    (package / "wsgi.py").write_text("application = None\n")  # Django's pair of modules
    with pytest.raises(AppLoadError) as info:
        parse_import_string(f"{pkg}.asgi:app")
    assert str(info.value).endswith(
        tail.format(pkg=pkg, instead=f"name its WSGI app, '{pkg}.wsgi:application'")
    )
    assert pkg not in sys.modules  # read, never imported


def test_the_loader_applies_the_same_rule_to_what_it_imported() -> None:
    from harness.wsgi import _looks_like_factory

    def create_app(config: object, debug: bool = False) -> None: ...

    def make_app(config: object, testing: object) -> None: ...

    def app(environ: object, start_response: object) -> None: ...

    def no_arguments() -> None: ...

    assert _looks_like_factory(create_app) and _looks_like_factory(make_app)
    assert _looks_like_factory(no_arguments) and not _looks_like_factory(app)


def test_a_name_bound_in_a_block_is_left_to_the_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = (
        "def create_app(config):\n    ...\n\n\n"
        "try:\n    from x import create_app\nexcept ImportError:\n    pass\n"
    )
    (tmp_path / "blocky.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    assert parse_import_string("blocky:create_app").attr == "create_app"
    # A module __getattr__ makes its attributes on demand (the corpus entries do): not read.
    (tmp_path / "lazy.py").write_text("def app(config):\n    ...\n\n\n__getattr__ = len\n")
    assert parse_import_string("lazy:app").attr == "app"


def test_a_harness_package_or_module_ahead_of_ctxbench_s_own_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "harness").mkdir()
    assert harness_hidden_by() is None  # no __init__.py: a namespace portion, which hides nothing
    (tmp_path / "harness" / "__init__.py").write_text("")
    assert harness_hidden_by() == f"the package harness{os.sep}"
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "harness.py").write_text("")
    (tmp_path / "harness" / "__init__.py").unlink()
    monkeypatch.setenv("PYTHONPATH", str(lib))  # as the plugin hands the servers its folders
    assert harness_hidden_by() == f"the module {Path('lib', 'harness.py')}"
    monkeypatch.delenv("PYTHONPATH")
    monkeypatch.chdir(Path(__file__).parent.parent)  # this checkout: ctxbench's own comes first
    assert harness_hidden_by() is None
