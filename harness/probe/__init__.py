"""The isolation probe, mounted inside the app under test.

``install_probe(app)`` adds ``GET /_ctxbench/probe`` plus hooks and a WSGI middleware to a
``core.App`` or ``flask.Flask``; ``observe(name, value)`` records an app's own per-request state;
``current_token()`` returns the trusted token of the request being served. The protocol is
specified in ``docs/architecture.md`` ("The probe protocol").
"""

from __future__ import annotations

from .install import ENABLE_ENV, SECRET_ENV, install_probe, probe_enabled
from .middleware import SECRET_HEADER
from .state import current_token, observe

__all__ = [
    "ENABLE_ENV",
    "SECRET_ENV",
    "SECRET_HEADER",
    "current_token",
    "install_probe",
    "observe",
    "probe_enabled",
]
