"""The signed-cookie session.

The session is a dict stored in one cookie, serialized as JSON and signed with the app's secret
key by itsdangerous (``URLSafeTimedSerializer`` with a salt, as Flask's
``SecureCookieSessionInterface`` does). It is loaded lazily: a request that never touches
``session`` parses no cookie and sets none.

A cookie that is tampered with, expired, malformed or not a JSON object gives an empty session:
the client's bad cookie is never an error page.
"""

from __future__ import annotations

import hashlib
import typing as t
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.datastructures import CallbackDict

if t.TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from .app import App
    from .wrappers import Request

__all__ = ["SecureCookieSession", "SecureCookieSessionInterface"]


class SecureCookieSession(CallbackDict[str, t.Any]):
    """A dict that records whether it was read (``accessed``) or changed (``modified``).

    Mutating a value in place (``session["items"].append(x)``) is not seen; set
    ``session.modified = True`` after such a change.
    """

    #: Set when the session is changed; a modified session is saved in the response.
    modified = False
    #: Set when the session is read or changed; the response then varies on ``Cookie``.
    accessed = False
    #: Set when the session did not come from a valid cookie.
    new = False

    def __init__(self, initial: t.Mapping[str, t.Any] | None = None, new: bool = False) -> None:
        def on_update(self: SecureCookieSession) -> None:
            self.modified = True
            self.accessed = True

        super().__init__(initial, on_update)
        self.new = new

    def __getitem__(self, key: str) -> t.Any:
        self.accessed = True
        return super().__getitem__(key)

    def get(self, key: str, default: t.Any = None) -> t.Any:
        self.accessed = True
        return super().get(key, default)

    def setdefault(self, key: str, default: t.Any = None) -> t.Any:
        self.accessed = True
        return super().setdefault(key, default)

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        return super().__contains__(key)

    @property
    def permanent(self) -> bool:
        """Whether the cookie outlives the browser session (``PERMANENT_SESSION_LIFETIME``)."""
        return bool(self.get("_permanent", False))

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self["_permanent"] = bool(value)


class SecureCookieSessionInterface:
    """Loads and saves :class:`SecureCookieSession` in a signed cookie."""

    #: Separates the session signatures from other uses of the same secret key.
    salt = "core.session"
    #: The hash the HMAC signature uses.
    digest_method = staticmethod(hashlib.sha256)

    def __init__(self) -> None:
        self._serializer: tuple[t.Any, URLSafeTimedSerializer] | None = None

    def get_signing_serializer(self, app: App) -> URLSafeTimedSerializer | None:
        """Return the serializer for ``app``'s secret key, or ``None`` without a secret key."""
        secret_key = app.config.get("SECRET_KEY")
        if not secret_key:
            return None
        cached = self._serializer
        if cached is not None and cached[0] == secret_key:
            return cached[1]
        rv = URLSafeTimedSerializer(
            secret_key,
            salt=self.salt,
            signer_kwargs={"key_derivation": "hmac", "digest_method": self.digest_method},
        )
        self._serializer = (secret_key, rv)
        return rv

    def open_session(self, app: App, request: Request) -> SecureCookieSession | None:
        """Load the session from the request's cookie; ``None`` if there is no secret key."""
        s = self.get_signing_serializer(app)
        if s is None:
            return None
        value = request.cookies.get(app.config["SESSION_COOKIE_NAME"])
        if not value:
            return SecureCookieSession(new=True)
        max_age = int(_lifetime(app).total_seconds())
        try:
            data = s.loads(value, max_age=max_age)
        except (BadSignature, ValueError, TypeError, UnicodeError):
            return SecureCookieSession(new=True)
        if not isinstance(data, dict):
            return SecureCookieSession(new=True)
        return SecureCookieSession(data)

    def save_session(self, app: App, session: SecureCookieSession, response: Response) -> None:
        """Set, refresh or delete the session cookie on ``response`` as needed."""
        config = app.config
        name = config["SESSION_COOKIE_NAME"]

        if session.accessed:
            response.vary.add("Cookie")

        if not session:
            # An emptied session deletes the cookie; an untouched empty one sets nothing.
            if session.modified:
                response.delete_cookie(name, **_cookie_attributes(app))
                response.vary.add("Cookie")
            return

        permanent = session.permanent
        if not (session.modified or (permanent and config["SESSION_REFRESH_EACH_REQUEST"])):
            return
        s = self.get_signing_serializer(app)
        if s is None:  # the secret key was removed mid-request
            return
        expires = datetime.now(UTC) + _lifetime(app) if permanent else None
        response.set_cookie(
            name, s.dumps(dict(session)), expires=expires, **_cookie_attributes(app)
        )
        response.vary.add("Cookie")


class _CookieAttributes(t.TypedDict):
    domain: str | None
    path: str
    secure: bool
    samesite: str | None
    httponly: bool


def _cookie_attributes(app: App) -> _CookieAttributes:
    # The same for setting the cookie and for deleting it: a browser deletes a cookie only when
    # the domain and path match the ones it was set with.
    config = app.config
    return {
        "domain": config["SESSION_COOKIE_DOMAIN"],
        "path": config["SESSION_COOKIE_PATH"] or config["APPLICATION_ROOT"] or "/",
        "secure": config["SESSION_COOKIE_SECURE"],
        "samesite": config["SESSION_COOKIE_SAMESITE"],
        "httponly": config["SESSION_COOKIE_HTTPONLY"],
    }


def _lifetime(app: App) -> timedelta:
    rv = app.config["PERMANENT_SESSION_LIFETIME"]
    if isinstance(rv, timedelta):
        return rv
    return timedelta(seconds=int(rv))
