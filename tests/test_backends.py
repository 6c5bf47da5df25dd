"""Unit tests of harness.backends: the mutants' slot semantics, install() and the registry."""

from __future__ import annotations

import _thread
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core import storage as core_storage
from harness import backends
from harness.backends import (
    BACKENDS,
    MutantSlot,
    NeverReleaseSlot,
    NoResetSlot,
    SharedGlobalSlot,
    ThreadIdentSlot,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _default_storage_after() -> Iterator[None]:
    yield
    backends.restore_default()


def in_thread(fn: Callable[[], object]) -> object:
    """Run ``fn`` in a new OS thread and return its result (assert in the caller's thread)."""
    box: list[object] = []
    thread = threading.Thread(target=lambda: box.append(fn()))
    thread.start()
    thread.join(5)
    assert box, "the thread did not finish"
    return box[0]


# -- registry and install() ---------------------------------------------------------------------


def test_registry_names() -> None:
    assert list(BACKENDS) == [
        "contextvar",
        "shared-global",
        "thread-ident",
        "no-reset",
        "never-release",
    ]
    assert backends.DEFAULT_BACKEND == "contextvar"


def test_contextvar_is_the_core_default() -> None:
    assert BACKENDS["contextvar"]() is core_storage.default_storage


@pytest.mark.parametrize("name", ["shared-global", "thread-ident", "no-reset", "never-release"])
def test_mutant_factories_are_named_fresh_and_empty(name: str) -> None:
    first, second = BACKENDS[name](), BACKENDS[name]()
    assert first.name == second.name == name
    assert first is not second
    assert first.app is not second.app
    assert isinstance(first.app, MutantSlot)
    assert isinstance(first.request, MutantSlot)
    assert first.app.get(None) is None
    assert first.request.get(None) is None


@pytest.mark.parametrize("name", list(BACKENDS))
def test_install_switches_the_core(name: str) -> None:
    storage = backends.install(name)
    assert core_storage.current_storage() is storage
    assert storage.name == name
    assert core_storage.app_slot is storage.app
    assert core_storage.request_slot is storage.request


def test_install_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'thread-local'") as exc_info:
        backends.install("thread-local")
    for name in BACKENDS:
        assert repr(name) in str(exc_info.value)
    assert core_storage.current_storage() is core_storage.default_storage


def test_install_refuses_while_mutant_residue_looks_active_until_cleared() -> None:
    storage = backends.install("no-reset")
    token = storage.request.set("stale request context")
    storage.request.reset(token)  # no-reset: the value stays
    with pytest.raises(RuntimeError, match="while an app or request context is active"):
        backends.install("contextvar")
    assert core_storage.current_storage() is storage

    backends.clear()
    assert storage.request.get(None) is None
    assert backends.install("contextvar") is core_storage.default_storage


@pytest.mark.parametrize("name", ["shared-global", "thread-ident", "no-reset", "never-release"])
def test_restore_default_clears_leftovers(name: str) -> None:
    storage = backends.install(name)
    storage.app.set("stale app context")
    assert backends.restore_default() is core_storage.default_storage
    assert core_storage.current_storage() is core_storage.default_storage
    assert storage.app.get(None) is None


def test_clear_leaves_the_default_storage_alone() -> None:
    token = core_storage.default_storage.request.set("live")
    try:
        backends.clear(core_storage.default_storage)
        assert core_storage.default_storage.request.get(None) == "live"
    finally:
        core_storage.default_storage.request.reset(token)


# -- token checks shared by every mutant ---------------------------------------------------------

SLOT_TYPES = [
    pytest.param(SharedGlobalSlot, id="shared-global"),
    pytest.param(ThreadIdentSlot, id="thread-ident"),
    pytest.param(NoResetSlot, id="no-reset"),
    pytest.param(NeverReleaseSlot, id="never-release"),
]


@pytest.mark.parametrize("slot_type", SLOT_TYPES)
def test_get_returns_default_when_unset(slot_type: Callable[[str], MutantSlot]) -> None:
    slot = slot_type("request")
    assert slot.get(None) is None
    sentinel = object()
    assert slot.get(sentinel) is sentinel


@pytest.mark.parametrize("slot_type", SLOT_TYPES)
def test_reset_rejects_a_foreign_token(slot_type: Callable[[str], MutantSlot]) -> None:
    slot, other = slot_type("request"), slot_type("request")
    with pytest.raises(ValueError, match="different slot"):
        slot.reset(other.set("x"))
    with pytest.raises(ValueError, match="different slot"):
        slot.reset(object())


@pytest.mark.parametrize("slot_type", SLOT_TYPES)
def test_reset_rejects_a_used_token(slot_type: Callable[[str], MutantSlot]) -> None:
    slot = slot_type("request")
    token = slot.set("x")
    slot.reset(token)
    with pytest.raises(RuntimeError, match="already been used"):
        slot.reset(token)


# -- shared-global -------------------------------------------------------------------------------


def test_shared_global_reset_restores_the_previous_value() -> None:
    slot = SharedGlobalSlot("request")
    outer = slot.set("outer")
    inner = slot.set("inner")
    assert slot.get(None) == "inner"
    slot.reset(inner)
    assert slot.get(None) == "outer"
    slot.reset(outer)
    assert slot.get(None) is None


def test_shared_global_is_shared_across_threads() -> None:
    slot = SharedGlobalSlot("request")
    slot.set("main")
    assert in_thread(lambda: slot.get(None)) == "main"
    in_thread(lambda: slot.set("other thread"))
    assert slot.get(None) == "other thread"


def test_shared_global_out_of_order_reset_restores_a_foreign_value() -> None:
    # Two overlapping requests: A pushes, B pushes, A pops. A's reset puts back what was there
    # before A, so B now sees nothing; B's reset then puts back A's value: residue.
    slot = SharedGlobalSlot("request")
    token_a = slot.set("A")
    token_b = slot.set("B")
    slot.reset(token_a)
    assert slot.get(None) is None
    slot.reset(token_b)
    assert slot.get(None) == "A"


# -- thread-ident --------------------------------------------------------------------------------


def test_thread_ident_is_isolated_across_threads() -> None:
    slot = ThreadIdentSlot("request")
    slot.set("main")
    assert in_thread(lambda: slot.get(None)) is None

    def set_and_reset() -> object:
        token = slot.set("other")
        seen = slot.get(None)
        slot.reset(token)
        return seen

    assert in_thread(set_and_reset) == "other"
    assert slot.get(None) == "main"


def test_thread_ident_reset_removes_the_entry() -> None:
    slot = ThreadIdentSlot("request")
    token = slot.set("x")
    slot.reset(token)
    assert slot.get(None) is None
    assert slot._values == {}


def test_thread_ident_is_shared_across_greenlets_of_one_thread() -> None:
    gevent = pytest.importorskip("gevent")
    slot = ThreadIdentSlot("request")
    seen: list[object] = []

    def first() -> None:
        slot.set("first")
        gevent.sleep(0)
        seen.append(slot.get(None))

    def second() -> None:
        seen.append(slot.get(None))
        slot.set("second")

    gevent.joinall([gevent.spawn(first), gevent.spawn(second)], timeout=5, raise_error=True)
    # second saw first's value, and first, resuming after the yield, saw second's.
    assert seen == ["first", "second"]
    slot.clear()


def test_thread_ident_default_key_is_the_os_thread() -> None:
    assert backends._get_ident() == _thread.get_ident() == threading.get_ident()


_IDENT_SCRIPT = """
import _thread, sys, threading
from gevent import monkey
{before}
import harness.backends as b
{after}
import gevent
assert monkey.is_module_patched("_thread")
original = monkey.get_original("_thread", "get_ident")
assert b._get_ident is original, (b._get_ident, original)
main_thread = original()
keys = gevent.joinall([gevent.spawn(b._get_ident) for _ in range(3)], raise_error=True)
assert {{g.value for g in keys}} == {{main_thread}}, keys
# patched threading.get_ident is per greenlet; the mutant's key is not
greenlet_ids = gevent.joinall([gevent.spawn(threading.get_ident) for _ in range(3)])
assert len({{g.value for g in greenlet_ids}}) == 3
print("ok")
"""


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param("monkey.patch_all()", "", id="patched-before-import"),
        pytest.param("", "monkey.patch_all()", id="patched-after-import"),
    ],
)
def test_thread_ident_keys_by_os_thread_under_gevent_patching(before: str, after: str) -> None:
    # gunicorn's gevent worker patches before it imports the app (and so this module); a
    # thread-local made before that keys by the OS thread, which is what the mutant models.
    pytest.importorskip("gevent")
    script = textwrap.dedent(_IDENT_SCRIPT.format(before=before, after=after))
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


# -- no-reset ------------------------------------------------------------------------------------


def test_no_reset_keeps_the_value_after_reset() -> None:
    slot = NoResetSlot("request")
    token = slot.set("request 1")
    slot.reset(token)
    assert slot.get(None) == "request 1"
    token = slot.set("request 2")
    slot.reset(token)
    assert slot.get(None) == "request 2"
    slot.clear()
    assert slot.get(None) is None


def test_no_reset_is_isolated_across_threads() -> None:
    slot = NoResetSlot("request")
    slot.set("main")
    assert in_thread(lambda: slot.get(None)) is None
    in_thread(lambda: slot.set("other"))
    assert slot.get(None) == "main"
    slot.clear()


def test_no_reset_clear_reaches_other_threads_contexts() -> None:
    slot = NoResetSlot("request")
    ready, cleared, done = threading.Event(), threading.Event(), threading.Event()
    seen: list[object] = []

    def worker() -> None:
        slot.set("stale")
        ready.set()
        cleared.wait(5)
        seen.append(slot.get(None))
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    assert ready.wait(5)
    slot.clear()
    cleared.set()
    thread.join(5)
    assert done.is_set()
    assert seen == [None]


# -- never-release ---------------------------------------------------------------------------------


def test_never_release_isolates_units_but_keeps_an_entry_for_each() -> None:
    slot = NeverReleaseSlot("request")
    seen: dict[int, object] = {}

    def serve(i: int) -> None:
        token = slot.set(f"ctx-{i}")
        seen[i] = slot.get(None)
        slot.reset(token)
        seen[-i - 1] = slot.get(None)

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {i: seen[i] for i in range(20)} == {i: f"ctx-{i}" for i in range(20)}
    assert all(seen[-i - 1] is None for i in range(20)), "a pop left its value visible"
    # The leak: one entry per thread that ever pushed, none dropped when its thread ended.
    assert len(slot) == 20
    slot.clear()
    assert len(slot) == 0


def test_never_release_nests_and_resets_by_depth() -> None:
    slot = NeverReleaseSlot("app")
    outer = slot.set("outer")
    inner = slot.set("inner")
    assert slot.get(None) == "inner"
    slot.reset(inner)
    assert slot.get(None) == "outer"
    slot.reset(outer)
    assert slot.get("default") == "default"
    assert len(slot) == 1  # the entry of this thread stays
