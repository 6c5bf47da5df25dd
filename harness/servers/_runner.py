"""What the harness's runners share: the command line a mode starts its runner with.

werkzeug, waitress, eventlet, uvicorn and hypercorn are served through a small runner of ours
(``harness.servers._<server>_runner``), which builds the server from its options, reports what
ran (:mod:`harness.servers._state`) and serves. Its mode starts it with ``--host`` and ``--port``
(and ``--workers`` where the server supervises worker processes), then the runner's own options
and the user's ``--server-arg``: :func:`runner_parser` reads the first ones, and each runner
adds its server's own options, under the server's own names, in a ``parser()`` of its own,
which :class:`RunnerMode` asks about the user's arguments before any server starts.
"""

from __future__ import annotations

import abc
import argparse
import importlib
import sys
import typing as t

from harness.servers._process import HOST
from harness.servers.base import ServerConfig, ServerMode, argparse_refusal

__all__ = ["RunnerMode", "runner_parser"]


def runner_parser(prog: str, *, workers: bool = False) -> argparse.ArgumentParser:
    """A runner's command line: ``--host`` (default ``127.0.0.1``) and ``--port``, and with
    ``workers`` ``--workers``, the number of worker processes; add the server's own options."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, required=True)
    if workers:
        parser.add_argument("--workers", type=int, required=True)
    return parser


class RunnerMode(ServerMode):
    """Base for a mode served through a runner of ours, started with this Python."""

    #: The runner's module.
    runner: t.ClassVar[str]
    #: How the interpreter starts the runner, where not ``("-m", runner)``: ``("-c", source)``.
    launch: t.ClassVar[tuple[str, str] | None] = None

    @abc.abstractmethod
    def runner_args(self, cfg: ServerConfig) -> list[str]:
        """The runner's command line: ``--host``, ``--port``, its options, the user's."""

    def check_args(self, cfg: ServerConfig) -> None:
        super().check_args(cfg)
        parser = importlib.import_module(self.runner).parser()
        # Any port: only the arguments are read.
        if why := argparse_refusal(parser, self.runner_args(cfg.replace(port=cfg.port or 1))):
            raise self.refused_args(cfg, f"ctxbench's {self.package} runner", why)

    def command(self, cfg: ServerConfig) -> list[str]:
        return [sys.executable, *(self.launch or ("-m", self.runner)), *self.runner_args(cfg)]
