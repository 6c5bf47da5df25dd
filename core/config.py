"""The app's settings: :class:`Config` and its defaults.

Design note: the config is read on every request (body limits, session cookie settings,
``SERVER_NAME``), but written only while the app is set up. It is a plain ``dict`` so those
reads cost one dict lookup; nothing locks it, so change it before the app serves requests.
"""

from __future__ import annotations

import typing as t
from datetime import timedelta

__all__ = ["DEFAULT_CONFIG", "Config"]


class Config(dict[str, t.Any]):
    """The app's settings: a plain dict with defaults (see :data:`DEFAULT_CONFIG`)."""

    def from_mapping(self, mapping: t.Mapping[str, t.Any] | None = None, **kwargs: t.Any) -> None:
        """Update from ``mapping`` and ``kwargs``, keeping only upper-case keys."""
        items = dict(mapping or {}, **kwargs)
        for key, value in items.items():
            if key.isupper():
                self[key] = value


DEFAULT_CONFIG: dict[str, t.Any] = {
    "DEBUG": False,
    "TESTING": False,
    # Re-raise unhandled exceptions out of wsgi_app instead of answering 500 (for debuggers).
    "PASSTHROUGH_ERRORS": False,
    "SECRET_KEY": None,
    "SERVER_NAME": None,
    "APPLICATION_ROOT": "/",
    "PREFERRED_URL_SCHEME": "http",
    # Body limits (413 above them). None means unlimited, which lets a client fill memory.
    "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
    "MAX_FORM_MEMORY_SIZE": 500_000,
    "MAX_FORM_PARTS": 1000,
    "SESSION_COOKIE_NAME": "session",
    "SESSION_COOKIE_DOMAIN": None,
    "SESSION_COOKIE_PATH": None,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SECURE": False,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_REFRESH_EACH_REQUEST": True,
    "PERMANENT_SESSION_LIFETIME": timedelta(days=31),
}
