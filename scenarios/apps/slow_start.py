"""The bundled core probe app, loaded slowly: ``create_app(load_ms)`` returns it ``load_ms``
milliseconds later, in every process that loads it, as a worker's start takes on a loaded
machine.

The timeout fault's live case under gunicorn-tornado serves it: gunicorn's master times a tornado
worker only from its first heartbeat, a second after the worker loaded its app, so a fault that
sends its requests a fixed time after the worker started sends them too soon when the start is
slow, and nothing kills the worker they block.
"""

from __future__ import annotations

import time
import typing as t


def create_app(load_ms: int) -> t.Any:
    """The core probe app (:data:`harness.apps.CORE_APP`), ``load_ms`` ms after the call."""
    time.sleep(load_ms / 1000)  # the slow start itself, not a synchronisation
    from harness.apps.core_app import app

    return app
