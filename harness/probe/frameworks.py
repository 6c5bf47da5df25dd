"""What the probe needs from a framework: its proxies, its context tests and its hook lists.

The probe supports ``core.App`` and ``flask.Flask``. Both expose the same proxies (``request``,
``g``, ``session``, ``current_app``) and context tests (``has_request_context``,
``has_app_context``); they differ in how hooks are stored (plain lists in ``core``, dicts of
lists keyed by blueprint name in Flask). :class:`Framework` hides that difference and reads the
proxies defensively: a broken context storage makes a proxy unbound or point at another request,
and that must show up as an observation, never as a crash of the probe.

flask is optional: it is only looked at when the caller's app is a Flask instance, which can only
be the case when flask is already imported.
"""

from __future__ import annotations

import contextlib
import sys
import typing as t
from collections.abc import Callable

from .state import _cv_probe

__all__ = ["PROBE_KEY", "FailingSessionInterface", "Framework", "framework_for"]

#: The name under which the probe stores the token in ``g`` and in the session.
PROBE_KEY = "_ctxbench_token"

Hook = Callable[..., t.Any]


def _error(exc: BaseException) -> str:
    return f"<error: {type(exc).__name__}>"


class FailingSessionInterface:
    """Wraps an app's session interface so that a probe request with ``fail=session`` raises
    :class:`~harness.probe.state.InjectedFailure` from ``open_session``, wherever the framework
    loads the session (Flask in ``RequestContext.push``, core on first access). Every other
    attribute and call goes to the wrapped interface unchanged."""

    def __init__(self, inner: t.Any) -> None:
        self.inner = inner

    def open_session(self, app: t.Any, request: t.Any) -> t.Any:
        state = _cv_probe.get()
        if state is not None:
            state.fail_at("session")
        return self.inner.open_session(app, request)

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"<FailingSessionInterface around {self.inner!r}>"


class Framework:
    """One framework's proxies plus where its hooks go."""

    def __init__(self, name: str, app: t.Any, module: t.Any, hooks_by_blueprint: bool) -> None:
        self.name = name
        self.app = app
        self.request = module.request
        self.g = module.g
        self.session = module.session
        self.current_app = module.current_app
        self.stream_with_context: Callable[[t.Any], t.Any] = module.stream_with_context
        self.has_request_context: Callable[[], bool] = module.has_request_context
        self.has_app_context: Callable[[], bool] = module.has_app_context
        self._by_blueprint = hooks_by_blueprint

    # -- hooks ---------------------------------------------------------------------------------

    def _hook_list(self, attr: str) -> list[Hook]:
        funcs = getattr(self.app, attr)
        if self._by_blueprint and isinstance(funcs, dict):
            rv: list[Hook] = funcs.setdefault(None, [])
            return rv
        if not isinstance(funcs, list):
            raise TypeError(
                f"{type(self.app).__name__}.{attr} is {type(funcs).__name__}, expected a list of"
                " hook functions (see docs/architecture.md, 'Core attributes the harness relies"
                " on')."
            )
        return funcs

    def add_hook_first(self, attr: str, func: Hook) -> None:
        """Register ``func`` so that it runs before every hook already in ``attr``."""
        self._hook_list(attr).insert(0, func)

    def add_hook_both_ends(self, attr: str, func: Hook) -> None:
        """Register ``func`` at both ends of ``attr``: it runs first and last in either order."""
        funcs = self._hook_list(attr)
        funcs.insert(0, func)
        funcs.append(func)

    def run_before(self, method: str, func: Callable[[], None]) -> None:
        """Make the app call ``func()`` at the start of its method ``method``.

        The wrapper is set on the instance, so it only affects this app.
        """
        original: Callable[..., t.Any] = getattr(self.app, method)

        def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
            func()
            return original(*args, **kwargs)

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(self.app, method, wrapper)

    def wrap_session_interface(self) -> None:
        """Put :class:`FailingSessionInterface` around the app's session interface (once)."""
        current = getattr(self.app, "session_interface", None)
        if current is not None and not isinstance(current, FailingSessionInterface):
            self.app.session_interface = FailingSessionInterface(current)

    def load_session(self) -> None:
        """Load the session now, letting any error propagate (``fail=session`` on a lazy
        framework: the failure must come out of the framework's own session loading)."""
        len(self.session)

    def has_secret_key(self) -> bool:
        if getattr(self.app, "secret_key", None):
            return True
        config = getattr(self.app, "config", None)
        return bool(config is not None and config.get("SECRET_KEY"))

    # -- defensive reads -----------------------------------------------------------------------

    def read_request_token(self) -> str | None:
        try:
            rv: str | None = self.request.args.get("token")
            return rv
        except Exception as exc:
            return _error(exc)

    def read_g(self) -> str | None:
        try:
            rv = getattr(self.g, PROBE_KEY, None)
        except Exception as exc:
            return _error(exc)
        return None if rv is None else str(rv)

    def read_session(self) -> str | None:
        try:
            rv = self.session.get(PROBE_KEY)
        except Exception as exc:
            return _error(exc)
        return None if rv is None else str(rv)

    def read_app_name(self) -> str | None:
        try:
            return str(self.current_app.name)
        except Exception as exc:
            return _error(exc)

    def store_g(self, token: str) -> str | None:
        """Store the token in ``g``; return an error marker instead of raising."""
        try:
            setattr(self.g, PROBE_KEY, token)
        except Exception as exc:
            return _error(exc)
        return None

    def store_session(self, token: str) -> str | None:
        try:
            self.session[PROBE_KEY] = token
        except Exception as exc:
            return _error(exc)
        return None

    def drop_session_key(self) -> None:
        # The probe's key must not travel to the client in the session cookie: a client that
        # sends cookies back (a browser, the test client) would otherwise bring the previous
        # request's token along, and the residue check could not tell that from a leak.
        # A broken session was already recorded by the reads around this call.
        with contextlib.suppress(Exception):
            self.session.pop(PROBE_KEY, None)

    def entry_residue(self) -> tuple[str | None, str | None]:
        """Return what the framework shows before it pushed anything for this request: the
        stale request context's token and the stale app context's (``None`` for none active).

        Any active context here is left over from another request: report its token when it can
        be read, else ``"<active>"``.
        """
        return (
            _residue(self.has_request_context, self.read_request_token),
            _residue(self.has_app_context, self.read_g),
        )


def _residue(active: Callable[[], bool], read: Callable[[], str | None]) -> str | None:
    """What a context left active from another request shows (see ``entry_residue``)."""
    try:
        return (read() or "<active>") if active() else None
    except Exception as exc:
        return _error(exc)


def framework_for(app: object) -> Framework:
    """Return the :class:`Framework` that ``app`` belongs to, or raise ``TypeError``."""
    flask = sys.modules.get("flask")
    if flask is not None and isinstance(app, flask.Flask):
        return Framework("flask", app, flask, hooks_by_blueprint=True)
    import core

    app_type = getattr(core, "App", None)
    if app_type is not None and isinstance(app, app_type):
        return Framework("core", app, core, hooks_by_blueprint=False)
    raise TypeError(
        f"install_probe() takes a core.App or a flask.Flask, got {app!r}: it mounts into apps"
        " of those frameworks only (README, 'Apps of other frameworks'), and into the app"
        " itself, not a middleware around it.\n\n"
        "The probe mounts hooks, a route and a WSGI middleware into the app."
    )
