"""The signed-cookie session: round trip, laziness, bad cookies, no secret key."""

from __future__ import annotations

import time

import pytest
from itsdangerous import URLSafeTimedSerializer
from werkzeug.test import Client

from core import App, session


@pytest.fixture
def counter(app: App) -> App:
    @app.route("/count")
    def count() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    @app.route("/read")
    def read() -> str:
        return repr(session.get("n"))

    @app.route("/untouched")
    def untouched() -> str:
        return "x"

    @app.route("/clear")
    def clear() -> str:
        session.clear()
        return "cleared"

    @app.route("/permanent")
    def permanent() -> str:
        session.permanent = True
        return "p"

    return app


def _cookie(client: Client) -> str | None:
    c = client.get_cookie("session")
    return None if c is None else c.value


def test_round_trip(counter: App, client: Client) -> None:
    assert client.get("/count").data == b"1"
    assert client.get("/count").data == b"2"
    assert client.get("/read").data == b"2"


def test_untouched_session_sets_no_cookie_and_no_vary(counter: App, client: Client) -> None:
    resp = client.get("/untouched")
    assert "Set-Cookie" not in resp.headers
    assert "Vary" not in resp.headers


def test_read_only_session_varies_but_sets_no_cookie(counter: App, client: Client) -> None:
    client.get("/count")
    resp = client.get("/read")
    assert "Set-Cookie" not in resp.headers
    assert resp.headers["Vary"] == "Cookie"


def test_cookie_is_not_parsed_unless_session_is_used(counter: App, client: Client) -> None:
    client.get("/count")
    opened: list[object] = []
    real = counter.session_interface.open_session

    def spy(app, request):  # type: ignore[no-untyped-def]
        opened.append(request.path)
        return real(app, request)

    counter.session_interface.open_session = spy  # type: ignore[method-assign]
    client.get("/untouched")
    client.get("/read")
    assert opened == ["/read"]


def test_clearing_deletes_the_cookie(counter: App, client: Client) -> None:
    client.get("/count")
    resp = client.get("/clear")
    assert "session=;" in resp.headers["Set-Cookie"]
    assert _cookie(client) is None
    assert client.get("/read").data == b"None"


def test_cookie_flags(counter: App, client: Client) -> None:
    header = client.get("/count").headers["Set-Cookie"]
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Path=/" in header
    assert "Expires" not in header


def test_the_cookie_is_deleted_with_the_attributes_it_was_set_with(counter: App) -> None:
    # A browser deletes a cookie only when its domain and path match the ones it was set with.
    counter.config.update(
        SESSION_COOKIE_DOMAIN="example.test",
        SESSION_COOKIE_PATH="/app",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_SAMESITE="Strict",
    )
    client = Client(counter)
    base = "https://example.test"
    set_header = client.get("/count", base_url=base).headers["Set-Cookie"]
    cookie = set_header.split(";")[0]
    # The cookie's path is /app, so the client would not send it to /clear by itself.
    resp = client.get("/clear", base_url=base, headers={"Cookie": cookie})
    delete_header = resp.headers["Set-Cookie"]
    assert delete_header.startswith("session=;")

    def attributes(header: str) -> set[str]:
        parts = {part.strip() for part in header.split(";")[1:]}
        return {p for p in parts if not p.startswith(("Expires=", "Max-Age="))}

    expected = {"Domain=example.test", "Path=/app", "Secure", "HttpOnly", "SameSite=Strict"}
    assert attributes(set_header) == attributes(delete_header) == expected


def test_permanent_session_has_expiry(counter: App, client: Client) -> None:
    header = client.get("/permanent").headers["Set-Cookie"]
    assert "Expires=" in header
    # A permanent session is refreshed on every request that reads it.
    assert "Set-Cookie" in client.get("/read").headers


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("", id="empty"),
        pytest.param("a.b.c", id="dots"),
        pytest.param("\u00e9\u00e9\u00e9.x.y", id="non-ascii"),
        pytest.param("eyJuIjo5OX0.AAAAAA.BBBBBBBBBBBBBBBBBBBBBBBBBBB", id="bad-signature"),
        pytest.param("%%%%", id="percent"),
        pytest.param("x" * 8000, id="huge"),
    ],
)
def test_bad_cookie_gives_empty_session(counter: App, client: Client, value: str) -> None:
    resp = client.get("/read", headers={"Cookie": f"session={value}"})
    assert (resp.status_code, resp.data) == (200, b"None")


def test_tampered_cookie_gives_empty_session(counter: App, client: Client) -> None:
    client.get("/count")
    good = _cookie(client)
    assert good is not None
    payload, rest = good.split(".", 1)
    client.set_cookie("session", payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + rest)
    assert client.get("/read").data == b"None"


def test_cookie_signed_with_another_key_is_ignored(counter: App, client: Client) -> None:
    forged = URLSafeTimedSerializer("other key", salt="core.session").dumps({"n": 99})
    client.set_cookie("session", forged)
    assert client.get("/read").data == b"None"


def test_signed_non_dict_payload_is_ignored(counter: App, client: Client) -> None:
    s = counter.session_interface.get_signing_serializer(counter)
    assert s is not None
    client.set_cookie("session", s.dumps([1, 2, 3]))
    assert client.get("/read").data == b"None"


def test_expired_cookie_is_ignored(
    counter: App, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.get("/count")
    counter.config["PERMANENT_SESSION_LIFETIME"] = 10
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 60)
    assert client.get("/read").data == b"None"


def test_no_secret_key_is_a_clear_error(counter: App, client: Client) -> None:
    counter.secret_key = None
    with counter.test_request_context(), pytest.raises(RuntimeError) as info:
        session.get("n")
    text = str(info.value)
    assert "no secret key was set" in text
    assert "secret_key" in text and "SECRET_KEY" in text
    assert client.get("/count").status_code == 500
    # Views that never touch the session do not need a key.
    assert client.get("/untouched").status_code == 200


def test_session_flags(app: App) -> None:
    with app.test_request_context():
        s = session._get_current_object()  # type: ignore[attr-defined]
        assert s.new and not s.accessed and not s.modified
        assert "x" not in s
        assert s.accessed and not s.modified
        s["x"] = 1
        assert s.modified


def test_secret_key_change_invalidates_sessions(counter: App, client: Client) -> None:
    client.get("/count")
    counter.secret_key = "rotated"
    assert client.get("/read").data == b"None"
