"""Where the probe goes in the app an import string names: :func:`locate`.

An import string may name the Flask or core app itself, a middleware wrapped around it
(``ProxyFix(app)``: werkzeug's middlewares keep the app they pass requests to in ``.app``,
whitenoise's ``WhiteNoise(app)`` in ``.application``), or a
dispatcher that serves several apps under path prefixes (werkzeug's
``DispatcherMiddleware(root, {"/api": api_app})`` keeps them in ``.mounts``, its root app in
``.app``). The probe must go on the app that serves the requests ctxbench sends, behind every
middleware in front of it, so that the middleware sees them too; for a dispatcher that is the app
mounted under the prefix the user names (``--mount /api``), and the probe is requested there
(``/api/_ctxbench/probe``). A dispatcher with no prefix named is refused: its root app is rarely
the app the user means, and checking it would say nothing of the mounted ones.

A prefix no dispatcher serves is one ctxbench serves the app under itself, as uWSGI's ``--mount
/api=module:app`` and gunicorn with ``SCRIPT_NAME=/api`` do: :class:`ServedUnder` moves the
prefix from ``PATH_INFO`` to ``SCRIPT_NAME``, and answers 404 for any other path.

Everything here runs in the server process, once, when :mod:`harness.wsgi` loads the app; no
request passes through it but :class:`ServedUnder`'s.
"""

from __future__ import annotations

import inspect
import typing as t
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from harness.protocol import STOPPED_HEADER

from .frameworks import framework_for
from .install import _INSTALLED_ATTR
from .middleware import SEEN_KEY, _not_found

__all__ = ["InFront", "Located", "MountError", "ServedUnder", "is_framework_app", "locate"]

#: How many wrappers and dispatchers deep the search goes (a cycle of ``.app`` ends it).
MAX_DEPTH = 8


class MountError(ValueError):
    """The app string and the mount do not lead to one app to check; the message says why and
    what to do."""


@dataclass(frozen=True)
class Located:
    """Where the probe goes: ``app`` (a core or Flask app, or ``None``: a plain WSGI callable
    that has to answer probe requests itself), what is in front of it, and the part of the mount
    ctxbench must serve the app under itself."""

    app: t.Any
    #: The probe is installed on ``app`` already (its module called ``install_probe``).
    installed: bool
    #: What a request passes through before ``app``, outermost first: a middleware by its class
    #: name, a dispatcher as ``"DispatcherMiddleware at /api"``.
    around: tuple[str, ...]
    #: A mount no dispatcher serves (``"/api"``): :class:`ServedUnder` serves the whole app
    #: there. ``""`` when there is none.
    serve_under: str = ""
    #: What the search ended at when it found no core or Flask app (``app`` is ``None``): the
    #: app object's class or function, ``"django.core.handlers.wsgi.WSGIHandler"``.
    reached: str = ""

    @property
    def where(self) -> str:
        """Who installed the probe where, for the effective configuration:
        ``"harness.wsgi inside ProxyFix"``, ``"app"`` (the app's own call) or ``"none"``."""
        if self.installed:
            return "app"
        if self.app is None:
            return "none"
        return " inside ".join(["harness.wsgi", *reversed(self.around)])


def is_framework_app(obj: object) -> bool:
    """Whether ``obj`` is a core or Flask app (the probe can be mounted on it)."""
    try:
        framework_for(obj)
    except TypeError:
        return False
    return True


def _mounts(obj: object) -> Mapping[str, t.Any] | None:
    """A dispatcher's apps by prefix (werkzeug's ``DispatcherMiddleware.mounts``), else None."""
    mounts = getattr(obj, "mounts", None)
    if isinstance(mounts, Mapping) and mounts and all(isinstance(k, str) for k in mounts):
        return mounts
    return None


def _prefix_for(mounts: Iterable[str], path: str) -> str | None:
    """The longest prefix of ``mounts`` that ``path`` is under, whole path segments, as
    ``DispatcherMiddleware`` matches one (a key with a trailing slash never matches), or
    ``None``."""
    found = [p for p in mounts if p and (path == p or path.startswith(p + "/"))]
    return max(found, key=len) if found else None


def wrapped_app(middleware: object) -> t.Any:
    """The app a WSGI middleware passes requests to, or ``None``: werkzeug's middlewares (and
    most others) keep it in ``.app``, whitenoise's ``WhiteNoise`` and Paste's in
    ``.application``."""
    for attr in ("app", "application"):
        wrapped = getattr(middleware, attr, None)
        if wrapped is not None and callable(wrapped):
            return wrapped
    return None


def _dispatcher_in(wsgi_app: object) -> t.Any:
    """The dispatcher an app's ``wsgi_app`` is, or wraps (through :func:`wrapped_app`, and the
    probe's own middleware's ``.wsgi_app``), or ``None``."""
    from .middleware import ProbeMiddleware

    obj = wsgi_app
    for _ in range(MAX_DEPTH):
        if obj is None:
            return None
        if _mounts(obj) is not None:
            return obj
        obj = obj.wsgi_app if isinstance(obj, ProbeMiddleware) else wrapped_app(obj)
    return None


def locate(app: t.Any, mount: str | None, label: str) -> Located:
    """Find where the probe goes in ``app`` for requests under ``mount`` (``None``: none given;
    ``"/"``: the root; else ``"/api"``, as :func:`harness.protocol.parse_mount` returns it).

    ``label`` names the app in messages (its import string). Raises :class:`MountError` for a
    dispatcher with no mount named, a mount a dispatcher does not serve, or a mount left over
    inside the app a dispatcher mounts (it would have to be served inside the user's app).
    """
    inner = app
    rest = "" if mount in (None, "/") else mount
    around: list[str] = []
    dispatched = False
    for _ in range(MAX_DEPTH):
        installed = bool(getattr(inner, _INSTALLED_ATTR, False))
        inside, host = None, ""
        if installed or is_framework_app(inner):
            # Flask's own pattern for application dispatching:
            # app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/backend": backend}).
            inside = _dispatcher_in(getattr(inner, "wsgi_app", None))
            if inside is None or (not rest and mount is not None and not dispatched):
                return _found(inner, installed, around, rest, dispatched, label)
            host = type(inner).__name__
            around.append(f"{host}.wsgi_app")
            inner = inside
        mounts = _mounts(inner)
        name = type(inner).__name__
        if mounts is not None:
            prefix = _prefix_for(mounts, rest) if rest else None
            if prefix is not None:
                around.append(f"{name} at {prefix}")
                inner = mounts[prefix]
                rest = rest[len(prefix) :]
                dispatched = True
                continue
            # The prefixes it serves, as --mount would name them (after the outer dispatchers'
            # prefixes).
            taken = mount[: len(mount) - len(rest)] if mount and dispatched else ""
            served = ", ".join(sorted(taken + k for k in mounts))
            if rest:
                raise MountError(
                    f"app {label!r}: nothing is mounted at {mount} (its {name} serves"
                    f" {served}): give --mount one of those"
                )
            if mount is None or dispatched:
                # Nothing names one of its apps: its root app is rarely the one meant.
                root = "" if dispatched else ", or --mount / for its root app"
                if inside is not None:
                    name = f"{host} app whose wsgi_app is a {name}"
                raise MountError(
                    f"app {label!r} is a {name} that serves apps under {served}: ctxbench"
                    " requests the probe under one prefix, so name the app to check with"
                    f" --mount (--mount {min(served.split(', '), key=len)}){root}"
                )
            # --mount / (or the whole mount taken by outer dispatchers): the root app.
        wrapped = wrapped_app(inner)
        if wrapped is None:
            break  # a plain WSGI callable: it has to answer the probe itself
        around.append(name if mounts is None else f"{name} at /")
        inner = wrapped
    return replace(_found(None, False, around, rest, dispatched, label), reached=_named(inner))


def _named(obj: object) -> str:
    """``module.Name`` of a function or method, or of an object's class."""
    named = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else type(obj)
    return f"{named.__module__}.{named.__qualname__}"


def _found(
    app: t.Any, installed: bool, around: list[str], rest: str, dispatched: bool, label: str
) -> Located:
    if rest and dispatched:
        # What is left of the mount would have to be served inside the user's dispatcher:
        # refuse it rather than change their app.
        raise MountError(
            f"app {label!r}: the app its dispatcher mounts serves nothing under {rest} itself:"
            " give --mount the dispatcher's prefix"
        )
    return Located(app, installed, tuple(around), rest)


class ServedUnder:
    """Serves ``app`` under the path prefix ``mount``, as uWSGI's ``--mount`` and gunicorn with
    ``SCRIPT_NAME`` do: a request for ``mount/...`` reaches it with ``SCRIPT_NAME`` ending in
    ``mount`` and ``PATH_INFO`` the rest; any other path is a 404. A request the server has
    already moved under ``mount`` (gunicorn run with ``--env SCRIPT_NAME=/api``) passes as it
    is."""

    __slots__ = ("app", "mount")

    def __init__(self, app: WSGIApplication, mount: str) -> None:
        self.app = app
        self.mount = mount

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        script_name: str = environ.get("SCRIPT_NAME", "")
        if path == self.mount or path.startswith(self.mount + "/"):
            environ["SCRIPT_NAME"] = script_name + self.mount
            environ["PATH_INFO"] = path[len(self.mount) :]
            return self.app(environ, start_response)
        if script_name.endswith(self.mount):
            return self.app(environ, start_response)
        return _not_found(start_response)


class InFront:
    """Serves ``app`` and marks an answer to a probe request that the probe did not make with
    :data:`~harness.protocol.STOPPED_HEADER` ``mark``, so the harness says who answered rather
    than that no probe is mounted: ``"front ApiKeyGate"``, a middleware in front of the probe
    that turned it away (an API-key or basic-auth gate: let probe requests through it), or
    ``"none bottle.Bottle"``, an app with no core or Flask app inside, where no probe could be
    mounted. Requests to any other path pass as they are."""

    __slots__ = ("app", "mark", "path")

    def __init__(self, app: WSGIApplication, mark: str, path: str) -> None:
        self.app = app
        self.mark = mark
        #: The path a client requests the probe at (under the mount, if any).
        self.path = path

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != self.path:
            return self.app(environ, start_response)

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: t.Any = None
        ) -> t.Callable[[bytes], object]:
            # The probe marks its own stops; a middleware that copied the environ hides the probe's
            # mark, but then the probe answered 200 or said where it stopped. A 200 is marked
            # too: a plain WSGI callable that answers every path may be no probe at all, and
            # the harness reads the mark only when the body is no probe response.
            if not environ.get(SEEN_KEY) and all(
                k.lower() != STOPPED_HEADER.lower() for k, _ in headers
            ):
                headers = [*headers, (STOPPED_HEADER, self.mark)]
            return start_response(status, headers, exc_info)

        return self.app(environ, start)
