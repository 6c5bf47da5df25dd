"""A reverse proxy in front of a server mode: ``<proxy>+<mode>``, e.g. ``nginx+gunicorn-gevent``.

Design note: a proxy changes who opens connections to the server. The client's connection ends
at the proxy; the proxy forwards each request on a connection of its own choosing, so where
per-request state can leak inside the server follows from the *proxy's* connections, not the
client's: a proxy that opens a new upstream connection per request gives every request a fresh
greenlet under gevent even when the client keeps its connection alive, and one that keeps its
upstream connections alive hands the same connection (the same greenlet, the same thread) to one
client after another. :class:`~harness.servers.base.ProxyTraits` declares which it does, and
:mod:`harness.expectations` derives the rest.

A proxy is registered like a mode (:func:`register_proxy`, one module per proxy family) and
never runs alone: :func:`proxied_mode` composes it with a registered mode into a
:class:`ProxiedMode`, which :func:`harness.servers.base.get_mode` returns for any
``<proxy>+<mode>`` name, so that name works wherever a mode name does (the CLI, the runner, the
results). Starting one starts the mode first (a free port, its own process group), then the proxy
(on the port the client uses, its own process group), and is ready when a probe request passes
through both. The logs, the proxy's generated configuration and its working files go into one
folder per stack (``<log_dir>/<proxy>+<mode>/``). The effective configuration is the mode's, with
the proxy's under ``"proxy"``.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
import shutil
import typing as t
from pathlib import Path

from harness.errors import UsageError
from harness.owner import TEMPDIR_PREFIX, owned_tempdir
from harness.servers._process import held_signals
from harness.servers.base import (
    MODES,
    PROXY_SEPARATOR,
    Availability,
    Lifecycle,
    LiveServer,
    ModeTraits,
    ProxyTraits,
    ServerConfig,
    ServerMode,
    start_server,
)

__all__ = [
    "PROXIES",
    "REPRESENTATIVE_UPSTREAMS",
    "ProxiedMode",
    "ProxiedServer",
    "Proxy",
    "proxied_mode",
    "proxied_modes",
    "register_proxy",
]

#: The modes shown behind every proxy in the README's table and the live scenarios: gevent's
#: greenlet per connection, where the proxy's connections change what can leak. (Behind a proxy,
#: a thread pool or a main thread serves request after request as it does without one; the
#: expectations derive that too, and ``scenarios/test_nginx.py`` runs the gthread pool behind
#: both proxies.) Any mode runs behind a proxy: ``ctxbench run --proxy nginx-keepalive``.
REPRESENTATIVE_UPSTREAMS = ("gunicorn-gevent",)


class Proxy(abc.ABC):
    """A reverse proxy that can front any registered mode.

    Subclass it in a module of :mod:`harness.servers` and register instances with
    :func:`register_proxy`.
    """

    #: Registry name, e.g. ``"nginx-keepalive"``; the left half of ``nginx-keepalive+<mode>``.
    name: str
    #: One line for ``ctxbench list``.
    summary: str
    #: How it connects to the mode behind it.
    traits: ProxyTraits

    @abc.abstractmethod
    def available(self) -> Availability:
        """Say whether this proxy can run here, and if not, the exact install step."""

    @abc.abstractmethod
    def front(self, upstream: LiveServer, workdir: Path, traits: ModeTraits) -> ServerMode:
        """A mode that runs this proxy in front of ``upstream``, with its files in ``workdir``.

        Its :meth:`~ServerMode.command` serves ``cfg.host:cfg.port`` and forwards every request
        to ``upstream``; its :meth:`~ServerMode.effective` records the proxy's settings; its
        traits are ``traits``, the whole stack's as the client sees it.
        """


PROXIES: dict[str, Proxy] = {}


def register_proxy(proxy: Proxy) -> Proxy:
    """Add ``proxy`` to :data:`PROXIES` under its name."""
    if proxy.name in PROXIES or proxy.name in MODES:
        raise ValueError(f"proxy {proxy.name!r} is registered twice, or clashes with a mode")
    if PROXY_SEPARATOR in proxy.name:
        raise ValueError(f"proxy name {proxy.name!r} must not contain {PROXY_SEPARATOR!r}")
    PROXIES[proxy.name] = proxy
    return proxy


def proxied_mode(name: str) -> ProxiedMode:
    """The mode ``<proxy>+<mode>``; :class:`UsageError` naming the valid proxies and modes."""
    proxy_name, _, mode_name = name.partition(PROXY_SEPARATOR)
    if proxy_name not in PROXIES:
        raise UsageError(
            f"unknown proxy {proxy_name!r} in server mode {name!r}:"
            f" choose from {', '.join(PROXIES) or '(none registered)'}"
        )
    if mode_name not in MODES:
        raise UsageError(
            f"unknown server mode {mode_name!r} behind proxy {proxy_name!r}:"
            f" choose from {', '.join(sorted(MODES))}"
        )
    return ProxiedMode(PROXIES[proxy_name], MODES[mode_name])


def proxied_modes(upstreams: t.Iterable[str] = REPRESENTATIVE_UPSTREAMS) -> list[str]:
    """``<proxy>+<mode>`` for every registered proxy in front of each of ``upstreams`` (by
    default :data:`REPRESENTATIVE_UPSTREAMS`: what the README and the live scenarios cover)."""
    return [
        f"{proxy}{PROXY_SEPARATOR}{mode}"
        for mode in upstreams
        if mode in MODES
        for proxy in PROXIES
    ]


class ProxiedMode(ServerMode):
    """A registered mode with a proxy in front; built on demand, never registered itself."""

    def __init__(self, proxy: Proxy, upstream: ServerMode) -> None:
        self.proxy = proxy
        self.upstream = upstream
        # Instance attributes shadow the class-level declarations of ServerMode.
        self.name = f"{proxy.name}{PROXY_SEPARATOR}{upstream.name}"  # type: ignore[misc]
        self.summary = f"{proxy.summary}, in front of {upstream.name}"  # type: ignore[misc]
        self.order = upstream.order  # type: ignore[misc]
        self.traits = self._in_front(upstream.traits)  # type: ignore[misc]
        # The faults act on the upstream's server processes, as they would without a proxy.
        self.lifecycle = upstream.lifecycle  # type: ignore[misc]

    def _in_front(self, traits: ModeTraits) -> ModeTraits:
        # The client's connection ends at the proxy, which keeps it alive: a keep-alive client
        # can always run, whatever the server behind does with its own connections.
        return dataclasses.replace(traits, proxy=self.proxy.traits, keepalive_applicable=True)

    def traits_for(self, cfg: ServerConfig) -> ModeTraits:
        return self._in_front(self.upstream.traits_for(cfg))

    def lifecycle_for(self, cfg: ServerConfig) -> Lifecycle:
        return self.upstream.lifecycle_for(cfg)

    def check_args(self, cfg: ServerConfig) -> None:
        self.upstream.check_args(cfg)  # the server arguments go to the server behind

    def available(self) -> Availability:
        for part in (self.upstream.available(), self.proxy.available()):
            if not part.ok:
                return part
        return Availability(True)

    def command(self, cfg: ServerConfig) -> list[str]:
        raise TypeError(f"{self.name} runs two commands: start it with start_server()")

    def log_paths(self, log_dir: Path) -> list[Path]:
        workdir = log_dir / self.name
        return [*self.upstream.log_paths(workdir), workdir / f"{self.proxy.name}.log"]

    def start(
        self,
        cfg: ServerConfig,
        log_dir: str | os.PathLike[str] | None,
        ready_timeout: float,
    ) -> ProxiedServer:
        """Start the upstream mode, then the proxy on ``cfg.port`` in front of it."""
        temporary = log_dir is None
        if log_dir is None:
            workdir = owned_tempdir(f"{TEMPDIR_PREFIX}{self.name}-")
        else:
            workdir = Path(log_dir) / self.name
            workdir.mkdir(parents=True, exist_ok=True)
        upstream: LiveServer | None = None
        try:
            # The proxy listens on cfg.port; the upstream on a free port of its own.
            upstream = start_server(
                self.upstream, cfg.replace(port=None), log_dir=workdir, ready_timeout=ready_timeout
            )
            traits = self._in_front(upstream.traits)
            front = self.proxy.front(upstream, workdir, traits)
            proxy = front.start(cfg.replace(extra_args=(), prefix=()), workdir, ready_timeout)
        except BaseException:
            if upstream is not None:
                upstream.stop()
            if temporary:
                shutil.rmtree(workdir, ignore_errors=True)
            raise
        effective = dict(upstream.effective)
        effective["mode"] = self.name
        effective["traits"] = proxy.effective.pop("traits", None)
        effective["proxy"] = proxy.effective
        return ProxiedServer(
            mode=self.name,
            host=proxy.host,
            port=proxy.port,
            process=proxy.process,
            log_path=upstream.log_path,
            effective=effective,
            traits=traits,
            stop_signal=proxy.stop_signal,
            mount=cfg.mount,
            proxy=proxy,
            upstream=upstream,
            _cleanup_dir=workdir if temporary else None,
            workdir=workdir,
        )


@dataclasses.dataclass
class ProxiedServer(LiveServer):
    """A running proxy and the server behind it; :meth:`stop` stops the proxy, then the server.

    ``host``, ``port``, ``process`` and ``pid`` are the proxy's (what clients connect to);
    ``log_path`` is the upstream's (where the app's errors go); ``proxy.log_path`` the proxy's.
    """

    proxy: LiveServer | None = None
    upstream: LiveServer | None = None
    #: The stack's folder: what the proxy left empty there (nginx's temp paths) goes at stop.
    workdir: Path | None = None

    @property
    def app_server(self) -> LiveServer:
        return self.upstream or self

    def process_groups(self) -> list[int]:
        return [
            pgid for server in (self.proxy, self.upstream) if server is not None
            for pgid in server.process_groups()
        ]  # fmt: skip

    def gone(self) -> str | None:
        for server in (self.proxy, self.upstream):
            why = None if server is None or self._stopped else server.gone()
            if why is not None:
                return f"{self.mode}: {why}"
        return None

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        # Held across both stops, so that a Ctrl-C between them cannot leave the upstream up.
        with held_signals():
            try:
                for server in (self.proxy, self.upstream):
                    if server is not None:
                        server.stop()
            finally:
                if self._cleanup_dir is not None:
                    shutil.rmtree(self._cleanup_dir, ignore_errors=True)
                elif self.workdir is not None:
                    _remove_empty_folders(self.workdir)


def _remove_empty_folders(top: Path) -> None:
    """Remove the empty folders under ``top`` (nginx makes its five temp paths at start and
    they stay empty): a run's folder keeps only what was written, the configuration and logs."""
    for folder, _, _ in os.walk(top, topdown=False):
        if folder != str(top):
            with contextlib.suppress(OSError):  # not empty: something was written, keep it
                os.rmdir(folder)
