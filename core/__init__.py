"""core: a Flask-style micro framework on werkzeug, the system under test of ctxbench.

Public API::

    from core import (App, request, g, current_app, session, has_request_context,
                      has_app_context, stream_with_context, copy_current_request_context,
                      abort, url_for, jsonify)

Per-request state lives in two context slots (see :mod:`core.storage`); the proxies read the
active slots at call time.
"""

from __future__ import annotations

from .app import App
from .config import Config
from .ctx import AppContext, RequestContext, has_app_context, has_request_context
from .globals import current_app, g, request, session
from .helpers import (
    abort,
    copy_current_request_context,
    jsonify,
    stream_with_context,
    url_for,
)
from .wrappers import Request, Response

__all__ = [
    "App",
    "AppContext",
    "Config",
    "Request",
    "RequestContext",
    "Response",
    "abort",
    "copy_current_request_context",
    "current_app",
    "g",
    "has_app_context",
    "has_request_context",
    "jsonify",
    "request",
    "session",
    "stream_with_context",
    "url_for",
]
