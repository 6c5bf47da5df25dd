"""The bundled probe apps, loaded by servers through an import string.

``harness.apps.core_app:app`` is a ``core.App``; ``harness.apps.flask_app:app`` is the same app on
``flask.Flask`` (the reference framework). Each has a secret key, so the probe also checks the
session, a couple of ordinary routes, and the probe installed. Importing this package imports
neither: flask is loaded only by ``flask_app``.
"""

from __future__ import annotations

#: Import strings of the bundled apps, by the label used in results ("app_label").
APPS: dict[str, str] = {
    "core": "harness.apps.core_app:app",
    "flask": "harness.apps.flask_app:app",
}

__all__ = ["APPS"]
