"""The probe protocol's shared facts, for both sides of it.

The probe (:mod:`harness.probe`, inside the app under test) and everything that checks its
responses (:mod:`harness.verdict`, the load driver, the locustfile, the servers' readiness check)
import these from here, as do both ends of a server's environment (the harness that starts it,
:mod:`harness.wsgi` inside it). Stdlib only and free of imports, so a client never loads the
probe. The protocol itself is specified in ``docs/architecture.md`` ("The probe protocol").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "APP_ENV",
    "BACKEND_ENV",
    "CONTEXT_NAMES",
    "DEFAULT_BACKEND",
    "ENABLE_ENV",
    "FAIL_PHASES",
    "FRAMEWORK_NAMES",
    "FRAMEWORK_RESIDUES",
    "MOUNT_ENV",
    "PHASES",
    "PROBE_PATH",
    "RESIDUE_PREFIX",
    "SECRET_ENV",
    "STATE_DIR_ENV",
    "STOPPED_HEADER",
    "app_observation_names",
    "parse_mount",
    "probe_path",
]

#: The probe route.
PROBE_PATH = "/_ctxbench/probe"
#: The response header the probe middleware adds to a probe request that its view did not
#: answer (an auth hook's 401, a login redirect, a rate limiter's 429): the last phase the probe
#: saw (``entry``: the framework or a middleware inside the app answered before any hook;
#: ``routing``: the framework did not route the probe path to the probe's view;
#: ``before_request``: one of the app's ``before_request`` hooks did; ``front <names>``: a
#: middleware in front of the app the probe is on; ``none <class>``: an app of another framework,
#: with no probe mounted). Without it, a non-probe answer came from something the probe does not
#: wrap.
STOPPED_HEADER = "X-Ctxbench-Probe-Stopped"

#: The environment variable that switches the probe on: ``install_probe(app)`` mounts nothing
#: unless it is ``1`` (or ``true``, ``yes``, ``on``). Servers started by ctxbench set it.
ENABLE_ENV = "CTXBENCH_PROBE"
#: The environment variable holding the probe's shared secret (optional): when set, a probe
#: request must carry it in the ``X-Ctxbench-Probe-Secret`` header or it gets a 404.
SECRET_ENV = "CTXBENCH_PROBE_SECRET"
#: What the harness tells :mod:`harness.wsgi` in a server it starts: the app's import string,
#: the context-storage backend, and the folder where the server processes write their state.
APP_ENV = "CTXBENCH_APP"
BACKEND_ENV = "CTXBENCH_BACKEND"
#: The context storage a server gets without :data:`BACKEND_ENV`: the core's own ContextVars
#: (the correct one; :mod:`harness.backends` holds it and the deliberately broken ones).
DEFAULT_BACKEND = "contextvar"
STATE_DIR_ENV = "CTXBENCH_STATE_DIR"
#: The path prefix the app is served under (``--mount /api``), as :func:`parse_mount` returns
#: it; unset when none was given. :mod:`harness.wsgi` finds the app mounted there.
MOUNT_ENV = "CTXBENCH_MOUNT"

# One path segment of a mount: RFC 3986's unreserved characters, which mean the same in a URL,
# a decoded PATH_INFO, a shell and an nginx location (a percent-escape would be compared with
# the decoded path, and ';', '$' or a quote would need quoting in each of them).
_MOUNT_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+\Z")


def parse_mount(text: str) -> str:
    """The path prefix an app is served under, normalised: ``"/api"`` (no trailing slash), or
    ``"/"`` for the root.

    Raises ``ValueError`` saying what is wrong with ``text``: it must start with ``/``, and its
    segments be non-empty, neither ``.`` nor ``..``, and hold only letters, digits and
    ``-._~`` (no query, fragment, space or percent-escape).
    """
    if not text.startswith("/"):
        raise ValueError("a mount is a path that starts with '/', e.g. /api")
    if text == "/":
        return "/"
    segments = text.removesuffix("/")[1:].split("/")
    for segment in segments:
        if segment in ("", ".", "..") or _MOUNT_SEGMENT.match(segment) is None:
            raise ValueError(
                "a mount's path segments hold only letters, digits and -._~ (no empty, '.' or"
                " '..' segment, query, fragment, space or %-escape)"
            )
    return "/" + "/".join(segments)


def probe_path(mount: str | None = None, path: str = PROBE_PATH) -> str:
    """The path a client requests the probe at, for an app served under ``mount``
    (:func:`parse_mount`'s form; ``None``, ``""`` or ``"/"``: the root); ``path`` is another of
    the probe's paths (its streamed body's, ``harness.probe.middleware.STREAM_PATH``)."""
    return (mount or "").rstrip("/") + path


#: The longest sleep a probe request may ask for (``sleep_ms``): the probe refuses more, and the
#: settings and the load driver check it before anything starts.
MAX_SLEEP_MS = 60_000.0

#: The phases of one request, in the order they happen; every response observes each of them.
PHASES: tuple[str, ...] = (
    "entry",
    "before_request",
    "view",
    "after_request",
    "teardown_request",
    "teardown_appcontext",
)

#: Where a probe request can be made to raise (``fail=<phase>`` in the query): loading the
#: session, or one of the request's phases. ``session`` raises from the app's session interface
#: (``open_session``), wherever the framework loads it; the others raise from the probe's own hook
#: of that phase, after it observed (the teardown ones from a teardown function).
FAIL_PHASES: tuple[str, ...] = (
    "session",
    "before_request",
    "view",
    "after_request",
    "teardown_request",
    "teardown_appcontext",
)

#: Observation names starting with this must be ``None``: left over from an earlier request.
RESIDUE_PREFIX = "residue."

#: The framework's per-request state the probe checks, in the order the report names it.
CONTEXT_NAMES: tuple[str, ...] = ("request", "g", "session", "current_app")
#: The residues the probe itself checks (what a request finds of an earlier one when it starts).
#: An app's own residue checks (``observe("residue.my_local", ...)``) are the app's state.
FRAMEWORK_RESIDUES = frozenset(
    RESIDUE_PREFIX + name
    for name in (
        *("token", "request_context", "app_context", "g", "session"),
        "before_first_request",
    )
)
#: What the probe itself observes: :data:`CONTEXT_NAMES`, the echoed ``token``, a ``skipped``
#: phase and :data:`FRAMEWORK_RESIDUES`. Any other name came from the app's own ``observe()``.
FRAMEWORK_NAMES = frozenset({*CONTEXT_NAMES, "token", "skipped", *FRAMEWORK_RESIDUES})


def app_observation_names(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that the app gave to ``observe()`` itself, sorted."""
    return sorted({n for n in names if n not in FRAMEWORK_NAMES})
