"""Apps that keep their own per-request state, reported with ``observe("app_local")``.

Both store the request's token in ``before_request`` and report what they hold in
``after_request``, after the probe view has slept (yielded to other greenlets under gevent):

- ``thread_local_app`` keeps it in an OS-thread-local: the original ``threading.local`` when gevent
  or eventlet has monkey-patched the process (gunicorn's gevent worker patches before it imports
  the app), the ordinary one otherwise. That is what a thread-local created before the patch, or
  by a library that captured the original class, does: every greenlet of the worker shares it.
  Under gevent a concurrent request overwrites it during the sleep, and ``observe`` must catch
  that; under real threads (gthread, the werkzeug dev server) it is isolated.
- ``keep_in_thread_local(app)`` adds that pair of hooks to any core or Flask app
  (:mod:`scenarios.apps.flask_local_state` is the Flask twin, so a user's Flask app is caught
  the same way).
- ``module_local_app`` keeps it in a plain module-level ``threading.local()``, created when the
  app is imported: greenlet-local if the server monkey-patched ``threading`` before that (uWSGI
  ``--gevent-early-monkey-patch``, eventlet), one native local shared by every greenlet of a
  worker if it patched after (uWSGI ``--gevent-monkey-patch``, gunicorn ``--preload``).
- ``contextvar_app`` keeps it in a ``ContextVar`` set in ``before_request`` and reset by token in
  ``teardown_request``: the negative control, isolated everywhere.
"""

from __future__ import annotations

import sys
import threading
import typing as t
from contextvars import ContextVar, Token

from core import App, g
from harness.probe import current_token, install_probe, observe

NAME = "app_local"


def _os_thread_local_class() -> type[threading.local]:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        original: type[threading.local] = monkey.get_original("threading", "local")
        return original
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched("thread"):
        native: type[threading.local] = patcher.original("_thread")._local
        return native
    return threading.local


_thread_state = _os_thread_local_class()()
#: Whatever ``threading.local`` is when this module is imported, patched or not.
_module_state = threading.local()


def keep_in_thread_local(app: t.Any, state: threading.local = _thread_state) -> None:
    """Register hooks that keep the request's token in ``state`` (by default the OS-thread-local)
    and report it."""

    @app.before_request
    def remember_in_thread_local() -> None:
        state.token = current_token()

    @app.after_request
    def report_thread_local(response: t.Any) -> t.Any:
        observe(NAME, getattr(state, "token", None))
        return response


thread_local_app = App("ctxbench_thread_local_app")
keep_in_thread_local(thread_local_app)

module_local_app = App("ctxbench_module_local_app")
keep_in_thread_local(module_local_app, _module_state)


_cv_token: ContextVar[str | None] = ContextVar("scenarios.app_local", default=None)

contextvar_app = App("ctxbench_contextvar_app")


@contextvar_app.before_request
def remember_in_contextvar() -> None:
    g.app_local_reset = _cv_token.set(current_token())


@contextvar_app.after_request
def report_contextvar(response: t.Any) -> t.Any:
    observe(NAME, _cv_token.get())
    return response


@contextvar_app.teardown_request
def forget_contextvar(exc: BaseException | None) -> None:
    reset: Token[str | None] | None = g.pop("app_local_reset", None)
    if reset is not None:
        _cv_token.reset(reset)


install_probe(thread_local_app)
install_probe(module_local_app)
install_probe(contextvar_app)
