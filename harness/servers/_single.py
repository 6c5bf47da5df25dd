"""What the single-process modes share: a runner started with this Python, and its record.

eventlet, waitress and werkzeug-threaded each serve from one process that the harness starts as
``python -m <runner>`` (or ``-c <bootstrap>``) with ``--host`` and ``--port``; the runner writes
the server's own version and settings into its state file. A mode here names its runner, its
distribution (:attr:`ServerMode.package`) and the :class:`ServerConfig` fields it does not
apply, and adds its own options and record fields on top.
"""

from __future__ import annotations

import typing as t

from harness.servers._runner import RunnerMode
from harness.servers.base import Reported, ServerConfig, ignored_options


class SingleProcessMode(RunnerMode):
    """Base for a mode served by one process running a harness runner under this Python."""

    listen_options = frozenset({"--host", "--port"})  # the runner's own
    #: How the server runs requests, recorded as the effective ``worker_class``.
    worker_class: t.ClassVar[str]
    #: :class:`ServerConfig` fields the server has no use for, recorded as ignored when given.
    ignored: t.ClassVar[tuple[str, ...]] = ()

    def server_args(self, cfg: ServerConfig) -> list[str]:
        """The runner's options beyond ``--host`` and ``--port``; none by default."""
        return []

    def runner_details(self, state: dict[str, t.Any]) -> dict[str, t.Any]:
        """The mode's own record fields, from the runner's state file (``{}`` if none)."""
        return {}

    def runner_args(self, cfg: ServerConfig) -> list[str]:
        return [
            "--host", cfg.host, "--port", str(cfg.port),
            *self.server_args(cfg),
            *cfg.extra_args,
        ]  # fmt: skip

    def details(self, cfg: ServerConfig, reported: Reported) -> dict[str, t.Any]:
        return {
            "worker_class": self.worker_class,
            "access_log": None,
            "ignored_options": ignored_options(cfg, self.ignored),
            **self.runner_details(reported.first),
        }
