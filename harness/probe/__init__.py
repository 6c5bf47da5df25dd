"""The isolation probe, mounted inside the app under test.

``install_probe(app)`` adds ``GET /_ctxbench/probe`` plus hooks and a WSGI middleware to a
``core.App`` or ``flask.Flask``; ``observe(name, value)`` records an app's own per-request state;
``current_token()`` returns the trusted token of the request being served. The protocol is
specified in ``docs/architecture.md`` ("The probe protocol").
"""

from __future__ import annotations

from .install import install_probe
from .middleware import PROBE_PATH
from .state import PHASES, current_token, observe

__all__ = ["PHASES", "PROBE_PATH", "current_token", "install_probe", "observe"]
