"""Fixtures for the core's unit tests, and the context hygiene check run after every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from werkzeug.test import Client

import core.storage
from core import App


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
