"""The one import string every server mode loads: ``harness.wsgi:app``.

The first access to ``harness.wsgi.app``, inside the server process, does three things in order
(importing the module does nothing else, so the harness uses its helpers freely):

1. installs the context-storage backend named by ``CTXBENCH_BACKEND`` (default ``contextvar``)
   with :func:`harness.backends.install`, or the negative control of that name
   (:func:`harness.controls.install`), before the app exists, so the app never runs on the
   default storage by accident;
2. imports the app named by ``CTXBENCH_APP`` (an import string ``module:attr``, default the
   bundled core probe app) and exposes it as ``app``; a ``core.App`` or ``flask.Flask`` without
   the probe gets it mounted here (:func:`harness.probe.install_probe`), so any such app can be
   tested as it is;
3. records what really loaded in :data:`LOADED` (pid, app class, active storage), which the
   server's start-up hooks write to ``CTXBENCH_STATE_DIR`` for the harness to read back.

Servers import it in the process that serves requests: after ``fork`` and, for gunicorn's gevent
worker, after ``monkey.patch_all()``, so the backend sees the patched world.

A failure (bad import string, missing module, a backend mutant with a non-core app) writes one
line to ``CTXBENCH_STATE_DIR/app-error.txt`` before raising, so the harness can show the user
that line instead of the server's traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
import typing as t
from pathlib import Path

from harness.apps import CORE_APP
from harness.errors import AppLoadError
from harness.protocol import APP_ENV, BACKEND_ENV, DEFAULT_BACKEND, STATE_DIR_ENV

__all__ = ["LOADED", "load_app", "parse_import_string"]  # and `app`, lazily


#: What really loaded in this process; filled in when this module is imported.
LOADED: dict[str, t.Any] = {}


def parse_import_string(import_string: str) -> tuple[str, str]:
    """Split ``"module:attr"`` into its parts; raise :class:`AppLoadError` if it is malformed."""
    module, sep, attr = import_string.partition(":")
    if (
        not sep
        or not module
        or not attr
        or not all(part.isidentifier() for part in (*module.split("."), *attr.split(".")))
    ):
        raise AppLoadError(
            f"bad app import string {import_string!r}: use 'module:attr', e.g. {CORE_APP!r}"
        )
    return module, attr


def load_app(import_string: str) -> t.Any:
    """Import ``module:attr`` and return the attribute; raise :class:`AppLoadError` on failure."""
    module_name, attr = parse_import_string(import_string)
    try:
        rv: t.Any = importlib.import_module(module_name)
    except ImportError as e:
        raise AppLoadError(f"cannot import app {import_string!r}: {type(e).__name__}: {e}") from e
    except Exception as e:
        raise AppLoadError(
            f"importing app {import_string!r} failed: {type(e).__name__}: {e}"
        ) from e
    for part in attr.split("."):
        try:
            rv = getattr(rv, part)
        except AttributeError:
            raise AppLoadError(
                f"cannot load app {import_string!r}: module {module_name!r} has no"
                f" attribute {attr!r}"
            ) from None
    if not callable(rv):
        raise AppLoadError(f"app {import_string!r} is not a WSGI callable: got {rv!r}")
    return rv


def _is_core_app(obj: t.Any) -> bool:
    core_app_class = getattr(sys.modules.get("core"), "App", None)
    return isinstance(core_app_class, type) and isinstance(obj, core_app_class)


def _ensure_probe(app: t.Any) -> str:
    """Mount the probe into a core or Flask app that lacks it; say who installed it."""
    from harness.probe import install_probe
    from harness.probe.frameworks import framework_for

    # The attribute install_probe() sets on the app (harness.probe.install._INSTALLED_ATTR).
    if getattr(app, "_ctxbench_probe_installed", False):
        return "app"
    try:
        framework_for(app)
    except TypeError:
        return "none"  # a plain WSGI callable: it has to answer the probe itself
    install_probe(app, enabled=True)
    return "harness.wsgi"


def _bootstrap() -> t.Any:
    import_string = os.environ.get(APP_ENV) or CORE_APP
    backend = os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND

    from harness import controls
    from harness.backends import BACKENDS, install

    try:
        if backend in controls.CONTROLS:
            # A negative control on the correct storage (harness.controls): one proxy at a time,
            # or a broken request lifecycle.
            controls.install(backend)
        else:
            install(backend)
    except (KeyError, ValueError) as e:
        valid = ", ".join([*BACKENDS, *controls.CONTROLS])
        raise AppLoadError(f"cannot install backend {backend!r}: {e} (valid: {valid})") from e
    rv = load_app(import_string)
    if backend != DEFAULT_BACKEND and not _is_core_app(rv):
        raise AppLoadError(
            f"backend {backend!r} swaps the storage of ctxbench's core framework, but app"
            f" {import_string!r} is a {type(rv).__module__}.{type(rv).__qualname__}, not a"
            " core.App: use --backend contextvar with this app"
        )
    probe = _ensure_probe(rv)
    from core import storage

    LOADED.update(
        probe=probe,
        pid=os.getpid(),
        app=import_string,
        app_class=f"{type(rv).__module__}.{type(rv).__qualname__}",
        backend=backend,
        storage=storage.current_storage().name,
    )
    return rv


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
            _report_failure(f"loading the app failed: {type(e).__name__}: {e}")
            raise
    return _app
