"""Server modes: the registry and the ``live_server`` context manager.

Every module of this package that does not start with an underscore defines one server mode and
registers it with :func:`register` (or a reverse proxy, registered with
:func:`~harness.servers._proxy.register_proxy`); importing the package imports them all. Adding a
server (uWSGI, waitress, ...) is one new module here::

    @register
    class Waitress(ServerMode):
        name = "waitress"
        summary = "..."
        def available(self) -> Availability: ...
        def command(self, cfg: ServerConfig) -> list[str]: ...

Use a server::

    with live_server("gunicorn-gevent", app="harness.apps.core_app:app", workers=2) as srv:
        srv.url, srv.effective  # effective: what really ran (worker class, pids, versions)

Any mode runs behind a registered proxy by its composed name, ``nginx-keepalive+gunicorn-gevent``
(see :mod:`harness.servers._proxy`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import typing as t
from collections.abc import Iterator

from harness.servers._process import (
    HOST,
    check_port_free,
    free_port,
    group_members,
    is_helper,
    poll_until,
)
from harness.servers._proxy import PROXIES, proxied_modes
from harness.servers.base import (
    MODES,
    PROXY_SEPARATOR,
    Availability,
    LiveServer,
    ServerConfig,
    ServerMode,
    available_modes,
    get_mode,
    register,
    start_server,
)

__all__ = [
    "HOST",
    "MODES",
    "PROXIES",
    "PROXY_SEPARATOR",
    "Availability",
    "LiveServer",
    "ServerConfig",
    "ServerMode",
    "available_modes",
    "check_port_free",
    "free_port",
    "get_mode",
    "group_members",
    "is_helper",
    "live_server",
    "poll_until",
    "proxied_modes",
    "register",
    "start_server",
]

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")
for _name in sorted(MODES, key=lambda name: (MODES[name].order, name)):
    MODES[_name] = MODES.pop(_name)


@contextlib.contextmanager
def live_server(
    mode: str,
    cfg: ServerConfig | None = None,
    *,
    log_dir: str | os.PathLike[str] | None = None,
    ready_timeout: float | None = None,
    **changes: t.Any,
) -> Iterator[LiveServer]:
    """Run ``mode`` with ``cfg`` (changed by ``changes``) for the duration of the ``with`` block.

    Takes the arguments of :func:`start_server`: a :class:`ServerConfig`, or its fields as
    keywords (``app``, ``backend``, ``port``, ``workers``, ``threads``, ``worker_connections``,
    ``extra_args``, ``prefix``). The server is ready (it answered a probe request) when the block
    starts and gone, with every process of its group, when it ends, however it ends. See
    :func:`start_server` for errors.
    """
    server = start_server(mode, cfg, log_dir=log_dir, ready_timeout=ready_timeout, **changes)
    try:
        yield server
    finally:
        server.stop()
