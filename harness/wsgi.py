"""The one import string every server mode loads: ``harness.wsgi:app``.

The first access to ``harness.wsgi.app``, inside the server process, does three things in order
(importing the module does nothing else, so the harness uses its helpers freely):

1. installs the context-storage backend named by ``CTXBENCH_BACKEND`` with
   :func:`harness.backends.install`, or the negative control of that name
   (:func:`harness.controls.install`), before the app exists, so the app never runs on the
   default storage by accident; the default, ``contextvar``, is the core's own storage, and
   nothing is installed for it, so ctxbench's ``core`` package is imported only by an app that
   uses it (a Flask project with a top-level ``core`` package of its own runs as it is);
2. imports the app named by ``CTXBENCH_APP`` (an import string, default the bundled core probe
   app: ``module:name``, or ``module:factory(args)`` for an application factory, which is called
   here, once per process that loads the app) and exposes it as ``app``; a ``core.App`` or
   ``flask.Flask`` without the probe gets it mounted here (:func:`harness.probe.install_probe`),
   so any such app can be tested as it is: the app itself, the one a middleware wraps, or the
   one a dispatcher mounts under ``CTXBENCH_MOUNT`` (``--mount /api``; an app that is no
   dispatcher is served under it, see :mod:`harness.probe.locate`);
3. records what really loaded in :data:`LOADED` (the pid that loaded it, app class, active
   storage), which the server's start-up hooks write to ``CTXBENCH_STATE_DIR`` for the harness
   to read back.

Servers import it in the process that serves requests: after ``fork`` and, for gunicorn's gevent
worker, after ``monkey.patch_all()``, so the backend sees the patched world.

A failure (bad import string, missing module, a factory that raises or returns no WSGI app, a
backend mutant with a non-core app) writes one line to ``CTXBENCH_STATE_DIR/app-error.txt``
before raising, so the harness can show the user that line instead of the server's traceback.

The import string is parsed by :func:`harness.app_string.parse_import_string` (as gunicorn and
flask read it); only the call of a factory happens here, in :func:`load_app`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
import typing as t
from pathlib import Path

from werkzeug.local import LocalProxy

from harness.app_string import (
    FACTORY_NAMES,
    AppRef,
    asgi_refused,
    parse_import_string,
    takes_wsgi_call,
)
from harness.apps import CORE_APP
from harness.errors import AppLoadError
from harness.protocol import APP_ENV, BACKEND_ENV, DEFAULT_BACKEND, MOUNT_ENV, STATE_DIR_ENV

if t.TYPE_CHECKING:
    from harness.probe.locate import Located

__all__ = ["LOADED", "load_app"]  # and `app`, lazily


#: What really loaded in this process; filled in when this module is imported.
LOADED: dict[str, t.Any] = {}
#: Where ctxbench's own framework package is (an app may have a package named ``core`` too).
_CORE_DIR = Path(__file__).resolve().parent.parent / "core"


def load_app(import_string: str) -> t.Any:
    """Import the app an import string names and return it; raise :class:`AppLoadError` on
    failure.

    ``module:name`` returns the attribute; ``module:factory(args)`` calls the factory with the
    arguments and returns what it returns. Either must be a WSGI callable.
    """
    ref = parse_import_string(import_string)
    try:
        rv: t.Any = importlib.import_module(ref.module)
    except ImportError as e:
        hint, stem, name = "", ref.module.removesuffix(".py"), import_string.partition(":")[2]
        if stem != ref.module and Path(stem.replace(".", "/") + ".py").is_file():
            # gunicorn's hint too: "wsgi.py:app" names the file, not the module.
            hint = f" ('{stem.replace('.', '/')}.py' is a file: name its module, '{stem}:{name}')"
        else:
            hint = _module_not_found(e, ref.module)
        if ref.module.split(".")[0] in ("harness", "core") and (hidden := _core_hidden()):
            # ctxbench's own app (the default), whose framework a package of the folder hides.
            raise AppLoadError(
                f"cannot import app {import_string!r}, which runs on ctxbench's core framework:"
                f" the folder ctxbench runs in has {hidden} ({type(e).__name__}: {_one_line(e)}):"
                " run ctxbench from a folder without it, or name your own app with --app"
            ) from e
        raise AppLoadError(
            f"cannot import app {import_string!r}: {type(e).__name__}: {e}{hint}"
        ) from e
    except Exception as e:
        raise AppLoadError(
            f"importing app {import_string!r} failed: {type(e).__name__}:"
            f" {_one_line(e)}{_where(e)}{_missing_setting(e)}"
        ) from e
    module = rv
    for part in ref.attr.split("."):
        try:
            rv = getattr(rv, part)
        except AttributeError:
            raise AppLoadError(
                f"cannot load app {import_string!r}: module {ref.module!r} has no"
                f" attribute {ref.attr!r}{_apps_in(module, ref.module)}"
            ) from None
    if ref.is_factory:
        rv = _call_factory(ref, rv)
        _refuse_asgi(ref, rv, f"app factory {ref.text!r} returned")
        return rv
    if not callable(rv):
        raise AppLoadError(f"app {import_string!r} is not a WSGI callable: got {rv!r}")
    _refuse_asgi(ref, rv, f"app {import_string!r} is")
    if inspect.isfunction(rv) and _looks_like_factory(rv):
        raise AppLoadError(
            f"app {import_string!r} is a function that cannot be a WSGI app (it"
            f" is {ref.attr}{inspect.signature(rv)}): if it builds the app, call it:"
            f" '{ref.module}:{ref.attr}()'"
        )
    return rv


def _refuse_asgi(ref: AppRef, app: t.Any, label: str) -> None:
    """Refuse an ASGI app: an ``async def``, or an object whose ``__call__`` is one (Django's
    ``mysite.asgi:application``, Starlette, FastAPI). A WSGI server calls it with ``environ`` and
    ``start_response``, it raises, and every probe request was a 500 that said to mount the
    probe. ``label`` starts the message: ``"app 'mysite.asgi:application' is"``."""
    call = app if inspect.isroutine(app) else type(app).__call__
    if not inspect.iscoroutinefunction(call):
        return
    what = "async def" if call is app else f"{type(app).__module__}.{type(app).__qualname__}"
    raise AppLoadError(f"{label} {asgi_refused(ref, what)}")


def _module_not_found(e: ImportError, module: str) -> str:
    """What to do when a module is not found: the app's own (``module``, or a package on its
    path) or one the app imports, which the interpreter of ctxbench and its servers lacks."""
    missing = e.name if isinstance(e, ModuleNotFoundError) else None
    if not missing:
        return _where(e)
    own = module == missing or module.startswith(missing + ".")
    parent, _, name = missing.rpartition(".")
    package = sys.modules.get(parent) if parent else None
    if package is not None:  # a package that is there, without that module
        places = ", ".join(str(p) for p in getattr(package, "__path__", ())) or "?"
        return (
            f"{'' if own else _where(e)} (package {parent!r} at {places} has no module"
            f" {name!r})" + (": name a module that is there" if own else "")
        )
    if own:
        where = ", nor on PYTHONPATH" if os.environ.get("PYTHONPATH") else ""
        src = Path("src", *missing.split("."))
        if src.with_suffix(".py").is_file() or (src / "__init__.py").is_file():
            # A src layout (src/myproject/): the folder to add is src, not the one to run in.
            return (
                f" (not in {os.getcwd()}, the folder ctxbench runs in{where}, but in its src"
                " folder): put src on the import path (PYTHONPATH=src ctxbench ..., or"
                " pythonpath = src in pytest's ini), or install your project into the Python"
                f" ctxbench runs on ({sys.executable} -m pip install -e .)"
            )
        return (
            f" (not in {os.getcwd()}, the folder ctxbench runs in{where}): run ctxbench from the"
            f" folder that holds {missing!r}, or install your project into the Python ctxbench"
            f" runs on ({sys.executable})"
        )
    from harness.servers.base import pip_command

    return (
        f"{_where(e)}: the app needs {missing.split('.')[0]!r}, which the Python ctxbench and its"
        f" servers run on ({sys.executable}) does not have; install your app's requirements into"
        f" it ({pip_command()} install -r requirements.txt, or your project's own install step),"
        " or install ctxbench into your project's venv"
    )


def _apps_in(module: t.Any, name: str) -> str:
    """The apps and app factories a module does have, as app strings, for a message about one
    it has not."""
    apps, factories = [], []
    for attr, value in vars(module).items():
        if attr.startswith("_") or isinstance(value, LocalProxy):
            continue  # flask's g, request, session: looked at outside a request, one raises
        if attr in FACTORY_NAMES and inspect.isfunction(value):
            factories.append(f"'{name}:{attr}()'")
        elif _serves_wsgi(attr, value, name):
            apps.append(f"'{name}:{attr}'")
    found = apps + factories
    if not found:
        return ""
    return f": name one it has, {', '.join(found[:5])}"


def _serves_wsgi(attr: str, value: object, module: str) -> bool:
    """Whether a module's ``attr`` is an app a WSGI server can serve: a core or Flask app, or
    any object called as ``app(environ, start_response)`` (Django's ``application``, a Falcon,
    Bottle or Pyramid app, a middleware around one), a function only when the module defines
    it (an imported helper of two arguments is no app)."""
    from harness.probe.locate import is_framework_app

    if is_framework_app(value):
        return True
    if not callable(value) or inspect.isclass(value):
        return False
    if inspect.isroutine(value) and not (inspect.isfunction(value) and value.__module__ == module):
        return False
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        return False
    return _called_as_wsgi(attr, signature)


def _looks_like_factory(func: t.Callable[..., t.Any]) -> bool:
    """A function that is not called as ``app(environ, start_response)`` is no WSGI app: it is a
    factory named without its parentheses (flask's ``--app`` calls such a function; gunicorn
    would serve it and fail every request). The rule is :func:`harness.app_string.
    takes_wsgi_call`, which ``--app`` applies to the module's source before a server starts."""
    return not _called_as_wsgi(func.__name__, inspect.signature(func))


def _called_as_wsgi(name: str, signature: inspect.Signature) -> bool:
    """Whether a callable ``name`` of this signature is called as ``app(environ,
    start_response)``: :func:`harness.app_string.takes_wsgi_call`."""
    params = list(signature.parameters.values())
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in params if p.kind in kinds]
    return takes_wsgi_call(
        name,
        required=sum(p.default is p.empty for p in positional),
        positional=len(positional),
        star_args=any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params),
        required_keywords=sum(
            p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is p.empty for p in params
        ),
    )


def _call_factory(ref: AppRef, factory: t.Any) -> t.Any:
    """Call the app factory ``ref`` names and check that it returned a WSGI app."""
    name = f"{ref.module}.{ref.attr}"
    if not callable(factory):
        raise AppLoadError(
            f"app factory {ref.text!r} cannot be called: {name} is {factory!r}; name a function,"
            f" or drop the parentheses if {ref.attr} is the app"
        )
    args, kwargs = ref.args or (), dict(ref.kwargs)
    try:
        signature: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None  # nothing to check against (a builtin): the call itself tells
    if signature is not None:
        # Checked before the call, so that a TypeError raised inside the factory is not taken
        # for a bad argument list.
        try:
            signature.bind(*args, **kwargs)
        except TypeError as e:
            if not (args or kwargs) and _called_as_wsgi(ref.attr, signature):
                # 'wsgi:application()': the app itself, with a call written after it.
                raise AppLoadError(
                    f"app string {ref.text!r} calls {name}, which is the WSGI app itself (called"
                    f" as {ref.attr}({', '.join(signature.parameters)})), not an app factory:"
                    f" name it without the call, '{ref.module}:{ref.attr}'"
                ) from None
            raise AppLoadError(
                f"app factory {ref.text!r} cannot take these arguments: {e} (it is"
                f" {ref.attr}{signature}): change the arguments in the app string"
            ) from None
    try:
        rv = factory(*args, **kwargs)
    except (Exception, SystemExit) as e:
        if isinstance(e, ModuleNotFoundError) and e.name:  # an import inside the factory
            fix = _module_not_found(e, ref.module)
        else:  # a setting the environment lacks (os.environ["DATABASE_URL"]) says which
            fix = _where(e) + (_missing_setting(e) or ": fix the factory or its arguments")
        raise AppLoadError(
            f"app factory {ref.text!r} raised {type(e).__name__}: {_one_line(e)}{fix}"
        ) from e
    if rv is None:
        raise AppLoadError(
            f"app factory {ref.text!r} returned None, not a WSGI app: it must return the app"
            " it builds ('return app')"
        )
    if not callable(rv):
        raise AppLoadError(
            f"app factory {ref.text!r} returned {_one_line(repr(rv))}, not a WSGI app (a"
            " callable taking environ and start_response): it must return the app it builds"
        )
    return rv


def _one_line(e: object, limit: int = 300) -> str:
    if isinstance(e, SyntaxError) and e.msg:
        e = e.msg  # its file and line are said by _where, with the file's folder
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _where(e: BaseException) -> str:
    """Where in the app's own code an exception was raised, as `` (at file:line)``: the deepest
    frame outside the standard library and installed packages, else the factory's own line."""
    if isinstance(e, SyntaxError) and e.filename and e.lineno:
        # Where the code does not compile: no frame of the traceback is in that file.
        return f" (at {_relative(e.filename)}:{e.lineno})"
    frames = traceback.extract_tb(e.__traceback__)[1:]  # [0] is the call in _call_factory
    if not frames:  # raised by the call itself, never inside the factory
        return ""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    own = [
        f
        for f in frames
        if not f.filename.startswith("<")
        and not any(Path(f.filename).is_relative_to(prefix) for prefix in prefixes)
    ]
    frame = own[-1] if own else frames[0]
    return f" (at {_relative(frame.filename)}:{frame.lineno})"


def _relative(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


def _missing_setting(e: BaseException) -> str:
    """What to do when importing the app or calling its factory failed on a setting that the
    environment lacks (``os.environ["SECRET_KEY"]``): the servers inherit ctxbench's
    environment, and nothing reads a ``.env`` file (``flask run`` does, with python-dotenv;
    gunicorn does not)."""
    key = e.args[0] if isinstance(e, KeyError) and e.args else None
    if not isinstance(key, str) or key in os.environ:
        return ""
    rv = (
        f": if {key} is an environment variable, set it where you run ctxbench (every server"
        " inherits it)"
    )
    if Path(".env").is_file():
        rv += "; a .env file is here, but nothing loads it: export it (set -a; . ./.env; set +a)"
    return rv


def _is_core_app(obj: t.Any) -> bool:
    core_app_class = getattr(sys.modules.get("core"), "App", None)
    return isinstance(core_app_class, type) and isinstance(obj, core_app_class)


def _ensure_probe(app: t.Any, label: str, mount: str | None) -> tuple[t.Any, str]:
    """Mount the probe into the core or Flask app that serves requests under ``mount``
    (:func:`harness.probe.locate.locate`: the app itself, behind the middleware around it, or
    the one a dispatcher mounts there); return the app to serve (``app``, or ``app`` served
    under the mount) and who installed the probe where (``"harness.wsgi inside ProxyFix"``)."""
    return _install_probe(app, _locate(app, label, mount), mount)


def _locate(app: t.Any, label: str, mount: str | None) -> Located:
    from harness.probe.locate import MountError, locate

    try:
        return locate(app, mount, label)
    except MountError as e:
        raise AppLoadError(str(e)) from None


def _install_probe(app: t.Any, found: Located, mount: str | None = None) -> tuple[t.Any, str]:
    from harness.probe import install_probe
    from harness.probe.locate import InFront, ServedUnder
    from harness.protocol import probe_path

    if found.app is not None and not found.installed:
        try:
            install_probe(found.app, enabled=True)
        except AssertionError as e:  # flask: no new route or hook once the app has served
            raise AppLoadError(
                "cannot mount the probe: the app served a request before ctxbench could (a"
                " warm-up request at import?) and refuses new routes after one"
                f" ({_one_line(e, limit=100)}); call harness.probe.install_probe(app) where the"
                " app is set up, before that request"
            ) from None
    where = found.where
    if found.serve_under:
        app = ServedUnder(app, found.serve_under)
        where += f", served under {found.serve_under} by ctxbench"
    front = [name for name in found.around if " at " not in name and "." not in name]
    if found.app is not None and front:
        # A middleware in front of the probe (an auth gate) may answer probe requests itself.
        app = InFront(app, f"front {', '.join(front)}", probe_path(mount))
    elif found.app is None and not found.installed:
        # No core or Flask app inside: an app of another framework, where no probe can go (a
        # plain WSGI callable that answers probe requests itself passes as it is).
        app = InFront(app, f"none {found.reached}", probe_path(mount))
    return app, where


def _bootstrap() -> t.Any:
    import_string = os.environ.get(APP_ENV) or CORE_APP
    backend = os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND
    mount = os.environ.get(MOUNT_ENV) or None

    if backend != DEFAULT_BACKEND:
        _install_backend(backend)
    rv = load_app(import_string)
    found = _locate(rv, import_string, mount)
    # The app the probe checks: the one a middleware or dispatcher passes the requests to.
    checked = rv if found.app is None else found.app
    if backend != DEFAULT_BACKEND and not _is_core_app(checked):
        what = "is a" if checked is rv else "serves its probe requests from a"
        raise AppLoadError(
            f"backend {backend!r} swaps the storage of ctxbench's core framework, but app"
            f" {import_string!r} {what} {type(checked).__module__}.{type(checked).__qualname__},"
            " not a core.App: use --backend contextvar with this app"
        )
    app_class = f"{type(rv).__module__}.{type(rv).__qualname__}"
    rv, probe = _install_probe(rv, found, mount)
    LOADED.update(
        probe=probe,
        pid=os.getpid(),
        # Kept by a forked worker (``pid`` is rewritten where it reports): where the app was
        # loaded, and a factory called.
        loaded_pid=os.getpid(),
        app=import_string,
        mount=mount,
        app_class=app_class,
        backend=backend,
        storage=_storage_name(backend),
    )
    return rv


def _install_backend(backend: str) -> None:
    """Make the core run on ``backend``: a storage of :data:`harness.backends.BACKENDS`, or a
    negative control on the correct storage (:mod:`harness.controls`: one proxy at a time, or a
    broken request lifecycle)."""
    try:
        from harness import controls
        from harness.backends import BACKENDS, install
    except ImportError as e:  # they import ctxbench's core, which a package of the app's can hide
        raise AppLoadError(_hidden_core(e)) from e
    try:
        if backend in controls.CONTROLS:
            controls.install(backend)
        else:
            install(backend)
    except (KeyError, ValueError) as e:
        valid = ", ".join([*BACKENDS, *controls.CONTROLS])
        raise AppLoadError(f"cannot install backend {backend!r}: {e} (valid: {valid})") from e


def _storage_name(backend: str) -> str:
    """The core's storage in use, when the app loaded ctxbench's core; else the backend asked
    for (the default: nothing was installed, and a Flask app has its own context storage)."""
    storage = sys.modules.get("core.storage")
    current = getattr(storage, "current_storage", None)
    return str(current().name) if callable(current) and _ours(storage) else backend


def _ours(module: t.Any) -> bool:
    """``module`` is one of ctxbench's own ``core`` package (not an app's package of that name)."""
    path = getattr(module, "__file__", None)
    return path is not None and Path(path).resolve().parent == _CORE_DIR


def _hidden_core(e: ImportError) -> str:
    """Why ctxbench's own modules failed to import for a backend other than the default: most
    likely a package or module of the app's named ``core`` (a common name), found first on the
    servers' import path (the folder ctxbench runs in), where ctxbench's framework package of
    that name should be. The default backend imports none of it."""
    if (hidden := _core_hidden()) is None:
        return f"loading ctxbench's probe failed: {type(e).__name__}: {_one_line(e)}"
    return (
        f"the app has {hidden} ({type(e).__name__}: {_one_line(e)}): a backend other than"
        f" {DEFAULT_BACKEND} swaps the storage of ctxbench's core framework, so it applies only"
        f" to core apps; use --backend {DEFAULT_BACKEND} (the default) with this app"
    )


def _core_hidden() -> str | None:
    """``its own package or module named 'core' (core/__init__.py), which hides ...``, when the
    module named ``core`` this process imported is not ctxbench's; else ``None``."""
    module = sys.modules.get("core")
    found = getattr(module, "__file__", None)
    if found is None or _ours(module):
        return None
    return (
        f"its own package or module named 'core' ({_relative(found)}), which hides ctxbench's"
        " framework"
        f" package of that name ({_CORE_DIR}) in the server processes"
    )


def _report_failure(message: str) -> None:
    state_dir = os.environ.get(STATE_DIR_ENV)
    if state_dir:
        # Atomically: the harness polls for this file and reads it as soon as it exists.
        from harness.results import write_atomic

        write_atomic(Path(state_dir, "app-error.txt"), message + "\n")


_app: t.Any = None


def __getattr__(name: str) -> t.Any:
    # ``app`` is loaded on first access (PEP 562), so that the harness can import this module
    # for its helpers without installing a backend or importing the app in its own process.
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        try:
            _app = _bootstrap()
        except AppLoadError as e:
            _report_failure(e.message)
            raise
        except Exception as e:
            _report_failure(f"loading the app failed: {type(e).__name__}: {_one_line(e)}")
            raise
    return _app
