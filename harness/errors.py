"""The errors the harness reports to its user.

Every error here is something the user can act on: the CLI prints its message as one line on
stderr and exits with status 2, never with a traceback. Anything else that escapes is a bug in
ctxbench and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "AppLoadError",
    "CtxbenchError",
    "PortInUseError",
    "ResultsError",
    "ServerStartError",
    "UsageError",
    "check_count",
]


class CtxbenchError(Exception):
    """Base class: a failure the user can fix, reported as one line (exit status 2)."""

    exit_code = 2

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        #: Extra lines worth showing under the message (e.g. the tail of a server log).
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class UsageError(CtxbenchError):
    """Incorrect usage: an unknown mode, a bad option value, a missing optional dependency."""


class PortInUseError(UsageError):
    """The requested port on 127.0.0.1 is taken by another program."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(
            f"port {port} on {host} is in use: stop the other program or pick another port"
        )
        self.port = port


class AppLoadError(UsageError):
    """The server could not load the app under test (``--app module:name`` or ``module:f()``)."""


class ServerStartError(CtxbenchError):
    """A server did not become ready: it exited early or missed its readiness deadline."""


class ResultsError(CtxbenchError):
    """A results document is missing, unreadable, or in none of the schemas ctxbench reads
    (``ctxbench.results/2`` and older, :data:`harness.results.READERS`)."""


def check_count(option: str, value: object, *, high: int, optional: bool = False) -> None:
    """Check that ``option``'s ``value`` is a whole number from 1 to ``high``, or ``None`` when
    ``optional``; raise :class:`UsageError` naming both if not."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise UsageError(f"bad {option} {value!r}: use a whole number in 1..{high}")
