"""The bundled probe apps, loaded by servers through an import string.

:data:`CORE_APP` is a ``core.App``; :data:`FLASK_APP` is the same app on ``flask.Flask`` (the
reference framework). Each has a secret key, so the probe also checks the session, a couple of
ordinary routes, and the probe installed. Importing this package imports neither: flask is loaded
only by ``flask_app``. This module owns their import strings and the short labels the results,
the CLI and the report use for them.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["APPS", "CORE_APP", "FLASK_APP", "app_folder", "app_label", "mounted"]

CORE_APP = "harness.apps.core_app:app"
FLASK_APP = "harness.apps.flask_app:app"

#: Import strings of the bundled apps, by label.
APPS: dict[str, str] = {"core": CORE_APP, "flask": FLASK_APP}
_LABELS = {import_string: label for label, import_string in APPS.items()}


def app_label(import_string: str) -> str:
    """A short name for an app: ``core``/``flask`` for the bundled ones, else the import string."""
    return _LABELS.get(import_string, import_string)


def mounted(app_label: str, mount: str) -> str:
    """An app named with the path prefix it was checked under (``--mount``,
    ``ServerInfo.mount``), when that is not the root: ``myproject.wsgi:dispatcher at /api``. The
    status line, the report, ``compare`` and the pytest plugin name an app so."""
    return app_label if mount == "/" else f"{app_label} at {mount}"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
#: Longer folder names are cut, with a hash of the whole label, so distinct apps stay distinct.
_FOLDER_MAX = 80


def app_folder(import_string: str) -> str:
    """The app's label as one safe path component, for the folders of its server logs.

    A factory's arguments may hold anything (``pkg:create_app('/etc/x.cfg')``): every character
    but letters, digits, ``.``, ``_`` and ``-`` becomes ``_``, so the name never leaves its
    folder; ``pkg.wsgi:app`` gives ``pkg.wsgi_app``.
    """
    label = app_label(import_string)
    rv = _UNSAFE.sub("_", label)
    if len(rv) > _FOLDER_MAX or rv.strip(".") == "":
        digest = hashlib.sha256(label.encode()).hexdigest()[:8]
        rv = f"{rv[: _FOLDER_MAX - 9]}-{digest}"
    return rv
