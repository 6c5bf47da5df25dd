"""``install_probe``: the probe's hooks, its view, and the middleware around ``wsgi_app``.

Design note: every hook and the view run inside the framework's request handling, in the thread
or greenlet serving the request, and find that request's :class:`~harness.probe.state.ProbeState`
in the probe's own ``ContextVar``. What they *observe* is read through the framework's proxies
(``request``, ``g``, ``session``, ``current_app``), which resolve through the framework's context
storage: that is the thing under test. A correct storage shows this request's token at every
phase; a broken one shows another request's token, a stale one, or nothing, and each of those
becomes an observation that differs from the trusted token. The view sleeps with ``time.sleep``
looked up at call time, so it yields to other greenlets after gevent's monkey-patching, even
when the app was imported before the patch.
"""

from __future__ import annotations

import ctypes
import os
import time
import typing as t
from collections.abc import Callable

from harness.osthread import original_get_ident
from harness.protocol import CONTEXT_NAMES, ENABLE_ENV, PROBE_PATH, SECRET_ENV

from .frameworks import Framework, framework_for
from .middleware import ProbeMiddleware, _json_encode
from .state import _cv_probe
from .stream import STREAM_PATH, make_stream_view

__all__ = ["ENABLE_ENV", "SECRET_ENV", "install_probe", "probe_enabled"]

try:
    from greenlet import getcurrent as _getcurrent
except ImportError:  # greenlet is optional; worker.greenlet is null without it
    _getcurrent = None

# The OS thread, not the greenlet: gevent patches threading.get_ident to return the greenlet id,
# and the evidence of a leak between greenlets must show that they shared one OS thread.
_os_thread_ident = original_get_ident()

_INSTALLED_ATTR = "_ctxbench_probe_installed"

App = t.TypeVar("App")


def _greenlet_id() -> int | None:
    # A thread's own (main) greenlet has no parent: the unit is the thread, and the id of a new
    # thread's main greenlet would only make a thread that reuses an old one's ident look like
    # several greenlets of one thread.
    if _getcurrent is None:
        return None
    current = _getcurrent()
    return None if current.parent is None else id(current)


def _worker() -> dict[str, int | None]:
    return {"pid": os.getpid(), "thread": _os_thread_ident(), "greenlet": _greenlet_id()}


def _make_hooks(fw: Framework, app_name: str) -> dict[str, Callable[..., t.Any]]:
    """Build the probe's hooks and view, bound to one framework and app."""
    response_class: t.Any = getattr(fw.app, "response_class", None)
    if response_class is None:
        from werkzeug.wrappers import Response as response_class

    # Every run of the app's before_first_request functions in this process (core only: Flask
    # removed them in 2.3). More than one run means the once-only guard failed.
    first_runs: list[None] = []
    if isinstance(getattr(fw.app, "before_first_request_funcs", None), list):
        fw.app.before_first_request_funcs.append(lambda: first_runs.append(None))

    def before_request() -> None:
        state = _cv_probe.get()
        if state is None:
            return None
        state.phase = "before_request"
        state.phases.append("before_request")
        # Flask matches the URL before the hooks run and raises the error in the view's place.
        state.routing_failed = getattr(fw.request, "routing_exception", None) is not None
        if state.fail == "session":
            fw.load_session()  # raises InjectedFailure from open_session, unless already loaded
        obs = state.obs
        if len(first_runs) > 1:
            obs.append(
                [
                    "before_request",
                    "residue.before_first_request",
                    f"<ran {len(first_runs)} times in this process>",
                ]
            )
        # Anything the probe finds in g or the session before it stored this request's token was
        # left there by an earlier request.
        obs.append(["before_request", "residue.g", fw.read_g()])
        state.use_session = fw.has_secret_key()
        if state.use_session:
            obs.append(["before_request", "residue.session", fw.read_session()])
        obs.append(["before_request", "request", fw.read_request_token()])
        obs.append(["before_request", "current_app", fw.read_app_name()])
        failed = fw.store_g(state.token)
        if failed is not None:
            obs.append(["before_request", "g", failed])
        if state.use_session:
            failed = fw.store_session(state.token)
            if failed is not None:
                obs.append(["before_request", "session", failed])
        state.fail_at("before_request")
        return None

    def ctxbench_probe() -> t.Any:
        state = _cv_probe.get()
        if state is None:
            # The middleware answers malformed probe requests itself; this is only reached when
            # the middleware was taken off wsgi_app after install_probe().
            return response_class(
                "The probe middleware is not wrapping this app's wsgi_app.\n",
                status=500,
                mimetype="text/plain",
            )
        state.phase = "view"
        state.phases.append("view")
        if state.sleep_s > 0.0:
            time.sleep(state.sleep_s)
        view_token = fw.read_request_token()
        obs = state.obs
        obs.append(["view", "request", view_token])
        obs.append(["view", "g", fw.read_g()])
        if state.use_session:
            obs.append(["view", "session", fw.read_session()])
        obs.append(["view", "current_app", fw.read_app_name()])
        state.fail_at("view")
        body = _json_encode(
            {
                "token": view_token,
                "app": app_name,
                "worker": {
                    "pid": os.getpid(),
                    "thread": _os_thread_ident(),
                    "greenlet": _greenlet_id(),
                },
                "obs": obs,
            }
        )
        state.spliced_at = len(obs)
        state.view_done = True
        return response_class(body, mimetype="application/json")

    def drop_session_key(response: t.Any) -> t.Any:
        # Registered at index 0 of after_request_funcs, which frameworks run in reverse: it
        # runs after every after_request hook of the app and before the session is saved.
        state = _cv_probe.get()
        if state is not None and state.use_session:
            fw.drop_session_key()
        return response

    # Phase boundaries are marked by wrapping the framework methods that run each phase's hooks,
    # so the app's own hooks observe in the right phase whether they were registered before or
    # after install_probe(). The probe observes first, then the app's hooks run.

    readers: dict[str, Callable[[], str | None]] = {
        "request": fw.read_request_token,
        "g": fw.read_g,
        "session": fw.read_session,
        "current_app": fw.read_app_name,
    }

    def enter_phase(phase: str, names: tuple[str, ...], *, fails: bool) -> Callable[[], None]:
        # Observe ``names`` once, when the phase starts; the session only if the app has one.
        # With ``fails``, a request that asked to fail at this phase raises here, after observing.
        reads = [(name, readers[name]) for name in names]

        def enter() -> None:
            state = _cv_probe.get()
            if state is None or state.phase == phase:
                return
            state.phase = phase
            state.phases.append(phase)
            obs = state.obs
            for name, read in reads:
                if name != "session" or state.use_session:
                    obs.append([phase, name, read()])
            if fails:
                state.fail_at(phase)

        return enter

    return {
        "before_request": before_request,
        "view": ctxbench_probe,
        "stream": make_stream_view(fw, response_class, _worker),
        "drop_session_key": drop_session_key,
        "process_response": enter_phase("after_request", CONTEXT_NAMES, fails=True),
        # A teardown phase fails from a teardown function (see _teardown_hook), not from the
        # method that runs them, so the framework's handling of a raising teardown is what runs.
        "do_teardown_request": enter_phase(
            "teardown_request", ("request", "g", "current_app"), fails=False
        ),
        "do_teardown_appcontext": enter_phase(
            "teardown_appcontext", ("g", "current_app"), fails=False
        ),
    }


def _teardown_hook(enter: Callable[[], None], phase: str) -> Callable[[BaseException | None], None]:
    def hook(exc: BaseException | None = None) -> None:
        enter()
        state = _cv_probe.get()
        if state is not None:
            state.fail_at(phase)

    return hook


def probe_enabled() -> bool:
    """Whether :data:`ENABLE_ENV` switches the probe on in this process."""
    return (_getenv(ENABLE_ENV) or "").strip().lower() in {"1", "true", "yes", "on"}


def _getenv(name: str) -> str | None:
    """``name`` in this process's environment. ``os.environ`` is a copy made when the
    interpreter started; a server that embeds Python and sets variables after that changes only
    the C library's environment: uWSGI as pyuwsgi (the ``uwsgi`` command of ``ctxbench[uwsgi]``)
    applies an .ini's ``env = CTXBENCH_PROBE_SECRET=...`` so, and a probe reading ``os.environ``
    alone was served without its secret."""
    value = os.environ.get(name)
    if value is not None:
        return value
    try:
        getenv = ctypes.CDLL(None).getenv
    except (OSError, AttributeError):  # no C library to ask (not a POSIX platform)
        return None
    getenv.argtypes = [ctypes.c_char_p]
    getenv.restype = ctypes.c_char_p
    raw = getenv(os.fsencode(name))
    return None if raw is None else os.fsdecode(raw)


def install_probe(app: App, *, enabled: bool | None = None, secret: str | None = None) -> App:
    """Mount the isolation probe into a ``core.App`` or ``flask.Flask`` and return the app.

    The probe is off unless switched on: with ``enabled=None`` (the default) it is mounted only
    when the environment variable ``CTXBENCH_PROBE=1`` is set (every server ctxbench starts sets
    it), so a call left in production code mounts nothing. ``secret`` (default: the
    ``CTXBENCH_PROBE_SECRET`` environment variable) makes the probe answer 404 to any request
    without that value in the ``X-Ctxbench-Probe-Secret`` header; ``ctxbench run --target`` sends
    it from the same variable. The probe answers only with its own tokens, the app's name and the
    serving unit's identity (pid, thread, greenlet); a value given to :func:`observe` that is not
    a recent probe token is reported by its length only.

    Adds the route ``GET /_ctxbench/probe?token=<T>&sleep_ms=<ms>[&fail=<phase>]`` (and the
    streamed route ``GET /_ctxbench/probe/stream?token=<T>``, see :mod:`harness.probe.stream`),
    a ``before_request`` hook that runs before the app's own, an ``after_request`` hook that runs
    after the app's own, wrappers around the app's ``process_response``,
    ``do_teardown_request`` and ``do_teardown_appcontext`` (they mark where each phase starts),
    teardown functions, a wrapper around the app's ``session_interface`` (for ``fail=session``)
    and a middleware around ``app.wsgi_app``. Call it once, at start-up, after any other
    middleware that replaces ``wsgi_app`` (the probe must be the outermost to see the request
    before the framework) and after setting the app's ``session_interface``. Nothing is mounted
    unless you call it with the probe switched on. The response format is described in
    ``docs/architecture.md`` ("The probe protocol").
    """
    if not (probe_enabled() if enabled is None else enabled):
        return app
    if secret is None:
        secret = _getenv(SECRET_ENV) or None
    if getattr(app, _INSTALLED_ATTR, False):
        raise RuntimeError(
            f"install_probe() was already called on {app!r}.\n\n"
            "A second probe would record every observation twice. Call it once, at start-up."
        )
    fw = framework_for(app)
    app_name = str(t.cast(t.Any, app).name)
    hooks = _make_hooks(fw, app_name)
    fw.add_hook_first("before_request_funcs", hooks["before_request"])
    fw.add_hook_first("after_request_funcs", hooks["drop_session_key"])
    for method in ("process_response", "do_teardown_request", "do_teardown_appcontext"):
        fw.run_before(method, hooks[method])
    # The core skips do_teardown_* when no hook is registered, and a framework might run hooks
    # without those methods: the same idempotent phase markers also go at both ends of the
    # teardown hook lists.
    fw.add_hook_both_ends(
        "teardown_request_funcs", _teardown_hook(hooks["do_teardown_request"], "teardown_request")
    )
    fw.add_hook_both_ends(
        "teardown_appcontext_funcs",
        _teardown_hook(hooks["do_teardown_appcontext"], "teardown_appcontext"),
    )
    fw.wrap_session_interface()
    t.cast(t.Any, app).route(PROBE_PATH)(hooks["view"])
    t.cast(t.Any, app).route(STREAM_PATH)(hooks["stream"])
    target = t.cast(t.Any, app)
    target.wsgi_app = ProbeMiddleware(target.wsgi_app, fw, secret)
    setattr(app, _INSTALLED_ATTR, True)
    return app
