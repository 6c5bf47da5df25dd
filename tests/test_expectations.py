"""harness.expectations: each trait changes exactly the cells it should (no live servers).

The live table of the registered modes is pinned in ``scenarios/test_mutants.py``; these tests
derive cells for declared traits directly, so a new mode's cells follow from facts checked here.
"""

from __future__ import annotations

import dataclasses

import pytest

from harness.expectations import (
    BACKEND_TRAITS,
    MODULE_THREAD_LOCAL,
    BackendTraits,
    LeakTraits,
    applicable_patterns,
    derive_expectation,
    derive_leak,
    derive_table,
    render_markdown,
    situation,
)
from harness.load.spec import ConnectionPattern
from harness.servers import MODES, ServerConfig, get_mode
from harness.servers.base import ModeTraits


def leaks(traits: ModeTraits, backend: BackendTraits, connections: ConnectionPattern) -> bool:
    return derive_expectation("b", backend, "m", traits, connections).can_leak


def leaky_backends(traits: ModeTraits, connections: ConnectionPattern) -> set[str]:
    return {name for name, b in BACKEND_TRAITS.items() if leaks(traits, b, connections)}


MAIN_KEEPALIVE = ModeTraits(unit="main-thread", keepalive=True)
TORNADO = ModeTraits(unit="main-thread", keepalive=True, context="request")
ASGIREF = ModeTraits(unit="dedicated-thread", keepalive=True, context="request")
POOL = ModeTraits(unit="pool-thread", keepalive=True)
GEVENT = ModeTraits(unit="greenlet-per-connection", keepalive=True, monkey_patch="before-app")
PER_REQUEST = ModeTraits(
    unit="greenlet-per-request", keepalive=False, keepalive_applicable=False,
    monkey_patch="before-app",
)  # fmt: skip


def test_a_main_thread_that_keeps_connections_alive_leaks_residue_on_both_patterns() -> None:
    for connections in ("keepalive", "fresh"):
        assert leaky_backends(MAIN_KEEPALIVE, connections) == {"no-reset"}


def test_a_context_per_request_has_no_contextvar_residue_but_thread_local_residue() -> None:
    # tornado: the main thread serves every request, each in a fresh copy of the context.
    for connections in ("keepalive", "fresh"):
        assert leaky_backends(TORNADO, connections) == set()
        s = situation(TORNADO, connections)
        assert s.unit_reused and s.os_thread_reused and not s.context_reused
    never_reset_local = BackendTraits(scope="thread-local", resets=False)
    assert leaks(TORNADO, never_reset_local, "fresh")
    assert not leaks(TORNADO, MODULE_THREAD_LOCAL, "fresh")  # set in every request: no overlap


def test_a_dedicated_thread_with_a_context_per_request_leaks_no_backend() -> None:
    # uvicorn-asgiref: asgiref's one executor thread runs every request, each task starts empty.
    for connections in ("keepalive", "fresh"):
        assert leaky_backends(ASGIREF, connections) == set()
        s = situation(ASGIREF, connections)
        assert not s.overlap_in_process and "one WSGI thread" in s.overlap_in_process_why
        assert s.unit_reused and s.os_thread_reused and not s.context_reused
    # The thread outlives its connections: a thread-local left set shows on fresh ones too, and
    # a context that came from the thread would leak no-reset there as well.
    assert leaks(ASGIREF, BackendTraits(scope="thread-local", resets=False), "fresh")
    from_thread = dataclasses.replace(ASGIREF, context="unit")
    assert leaky_backends(from_thread, "fresh") == {"no-reset"}
    import_context = LeakTraits(scope="import-context", resets=False)
    assert not derive_leak("e", import_context, "m", ASGIREF, "keepalive").can_leak
    # hypercorn: the same, but every request's context descends from the importing one.
    hypercorn = dataclasses.replace(ASGIREF, import_context_copied=True)
    for connections in ("keepalive", "fresh"):
        assert leaky_backends(hypercorn, connections) == set()
        assert derive_leak("e", import_context, "m", hypercorn, connections).can_leak


def test_pool_threads_shared_across_connections() -> None:
    for connections in ("keepalive", "fresh"):
        assert leaky_backends(POOL, connections) == {"shared-global", "no-reset"}
        assert not leaks(POOL, MODULE_THREAD_LOCAL, connections)


def test_a_greenlet_per_request_never_leaves_residue() -> None:
    assert leaky_backends(PER_REQUEST, "fresh") == {"shared-global", "thread-ident"}
    assert not situation(PER_REQUEST, "fresh").unit_reused


def test_keepalive_is_not_applicable_where_the_server_closes_without_saying_so() -> None:
    assert applicable_patterns(PER_REQUEST) == ("fresh",)
    assert applicable_patterns(GEVENT) == ("keepalive", "fresh")
    cell = derive_expectation("no-reset", BACKEND_TRAITS["no-reset"], "m", PER_REQUEST, "keepalive")
    assert not cell.applicable and not cell.can_leak
    assert "Not applicable" in cell.reason
    table = derive_table({"m": PER_REQUEST}, {"contextvar": BACKEND_TRAITS["contextvar"]})
    assert "| m | n/a / - |" in render_markdown(table)
    with pytest.raises(ValueError, match="keep-alive"):
        ModeTraits(unit="main-thread", keepalive=True, keepalive_applicable=False)


@pytest.mark.parametrize("traits", [GEVENT, PER_REQUEST], ids=["per-connection", "per-request"])
def test_a_module_thread_local_leaks_across_greenlets_only_when_patched_after_the_app(
    traits: ModeTraits,
) -> None:
    late = dataclasses.replace(traits, monkey_patch="after-app")
    for connections in applicable_patterns(traits):
        assert not leaks(traits, MODULE_THREAD_LOCAL, connections)
        assert leaks(late, MODULE_THREAD_LOCAL, connections)
        # The backends do not depend on the patch order: thread-ident keys by the OS thread.
        assert leaky_backends(traits, connections) == leaky_backends(late, connections)


def test_gunicorn_preload_imports_the_app_before_the_patch() -> None:
    mode = MODES["gunicorn-gevent"]
    cfg = ServerConfig(app="a:b", backend="contextvar", host="127.0.0.1", port=1)
    assert mode.traits_for(cfg).monkey_patch == "before-app"
    preload = dataclasses.replace(cfg, extra_args=("--preload",))
    assert mode.traits_for(preload).monkey_patch == "after-app"
    assert MODES["gunicorn-sync"].traits_for(preload).monkey_patch == "none"


def test_every_cell_has_a_reason() -> None:
    for cell in derive_table().values():
        assert cell.reason and cell.reason[0].isupper(), cell


@pytest.mark.parametrize(
    ("mode", "cfg"),
    [
        pytest.param("gunicorn-gthread", ServerConfig(threads=1), id="gunicorn-gthread-threads"),
        pytest.param(
            "gunicorn-gthread", ServerConfig(extra_args=("--threads=1",)), id="gunicorn-server-arg"
        ),
        pytest.param("waitress", ServerConfig(threads=1), id="waitress"),
        pytest.param("uwsgi-threads", ServerConfig(threads=1), id="uwsgi-threads"),
        pytest.param("granian", ServerConfig(threads=1), id="granian"),
        pytest.param(
            "granian", ServerConfig(extra_args=("--blocking-threads=1",)), id="granian-server-arg"
        ),
        pytest.param("gunicorn-gevent", ServerConfig(worker_connections=1), id="gunicorn-gevent"),
        pytest.param("eventlet", ServerConfig(worker_connections=1), id="eventlet"),
        pytest.param(
            "nginx+gunicorn-gthread", ServerConfig(threads=1), id="nginx+gunicorn-gthread"
        ),
    ],
)
def test_one_unit_per_process_serves_one_request_at_a_time(mode: str, cfg: ServerConfig) -> None:
    # ctxbench run --modes gunicorn-gthread,waitress --threads 1 --backend shared-global said
    # MISSED in every cell, exit 2, 'a ctxbench bug': a pool of one thread never overlaps two
    # requests, so a process-wide slot that resets cannot leak there.
    traits = get_mode(mode).traits_for(cfg)
    assert traits.serial is not None
    patterns: tuple[ConnectionPattern, ...] = ("keepalive", "fresh")
    for connections in patterns:
        for backend in ("shared-global", "thread-ident"):
            cell = derive_expectation(backend, BACKEND_TRAITS[backend], mode, traits, connections)
            assert not cell.can_leak, cell
            assert "one request at a time" in cell.reason
    # Residue still shows: the one thread or greenlet serves request after request.
    no_reset = derive_expectation("no-reset", BACKEND_TRAITS["no-reset"], mode, traits, "keepalive")
    assert no_reset.can_leak, no_reset
    # Two threads or connections overlap requests again.
    two = dataclasses.replace(
        cfg,
        threads=cfg.threads and 2,
        worker_connections=cfg.worker_connections and 2,
        extra_args=tuple(a.replace("=1", "=2") for a in cfg.extra_args),
    )
    assert get_mode(mode).traits_for(two).serial is None
