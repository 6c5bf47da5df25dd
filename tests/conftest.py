"""Fixtures for the core's unit tests, and the context hygiene check run after every test."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from werkzeug.test import Client

import core.storage
from core import App

# Hypothesis profiles for tests/test_fuzz.py. "ci" (the default) tries the same 1,000 inputs per
# property on every run (derandomized, no example database), so a CI failure reproduces; "long"
# is for a run by hand: 50,000 fresh random inputs per property (CTXBENCH_FUZZ_EXAMPLES=N for
# another count). Choose one with
# CTXBENCH_FUZZ_PROFILE=long, or hypothesis' own --hypothesis-profile=long. The per-example
# deadline is off: these machines are shared, and a slow example is not a failure here.
_FUZZ_COMMON = {
    "deadline": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=1_000, derandomize=True, database=None, **_FUZZ_COMMON)
settings.register_profile(
    "long", max_examples=int(os.environ.get("CTXBENCH_FUZZ_EXAMPLES", "50000")), **_FUZZ_COMMON
)
settings.load_profile(os.environ.get("CTXBENCH_FUZZ_PROFILE", "ci"))


def _active() -> dict[str, object]:
    storage = core.storage.current_storage()
    found = {"app": storage.app.get(None), "request": storage.request.get(None)}
    return {k: v for k, v in found.items() if v is not None}


def _force_pop_all() -> None:
    # Pop what a failing test left behind, so that the next tests start clean.
    for _ in range(32):
        storage = core.storage.current_storage()
        ctx = storage.request.get(None) or storage.app.get(None)
        if ctx is None or not getattr(ctx, "_pushed", None):
            return
        try:
            ctx.pop(None)
        except Exception:
            return


@pytest.fixture(autouse=True)
def _no_context_left_behind() -> Iterator[None]:
    """Fail a test that leaves an app or request context pushed; restore the default storage."""
    yield
    left = _active()
    _force_pop_all()
    if core.storage.current_storage() is not core.storage.default_storage:
        try:
            core.storage.use_storage(core.storage.default_storage)
        except RuntimeError:
            core.storage._storage = core.storage.default_storage
            core.storage.app_slot = core.storage.default_storage.app
            core.storage.request_slot = core.storage.default_storage.request
        left.update({f"default.{k}": v for k, v in _active().items()})
        _force_pop_all()
    if left:
        pytest.fail(f"The test left contexts pushed: {left!r}", pytrace=False)


@pytest.fixture
def app() -> App:
    app = App("test_app")
    app.secret_key = "test secret key"
    return app


@pytest.fixture
def client(app: App) -> Client:
    return app.test_client()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections for the whole test.

    It stays bound by a socket that never listens: a port closed right after the OS picked it is
    free for the next program that binds one (another helper's server, say), and then it answers.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


#: ``start(server_class, handler_class) -> port`` (the :func:`http_server` fixture).
HttpServer = Callable[[type[HTTPServer], type[BaseHTTPRequestHandler]], int]


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    """Start ``http.server`` servers on 127.0.0.1 in threads of their own (an ephemeral port
    each, returned); every one is shut down and closed at teardown. For a fake probe server
    whose behaviour on the wire is the point (tests/test_fairness.py, tests/test_acks.py)."""
    started: list[tuple[HTTPServer, threading.Thread]] = []

    def start(server_class: type[HTTPServer], handler: type[BaseHTTPRequestHandler]) -> int:
        server = server_class(("127.0.0.1", 0), handler)
        server.daemon_threads = True  # type: ignore[attr-defined]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.daemon = True
        thread.start()
        started.append((server, thread))
        return server.server_address[1]

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def interrupt_the_complete_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C as a finished run's last write of results.json begins (``status == "complete"``),
    where every earlier write goes through: what `run`, `chaos` and `corpus` must keep then."""
    from harness import results

    write = results.write

    def interrupted(run_dir: str | os.PathLike[str], run: results.Run) -> Path:
        if run.status == "complete":
            raise KeyboardInterrupt
        return write(run_dir, run)

    monkeypatch.setattr(results, "write", interrupted)
