"""Installed distributions' versions: what a run records and a server reports of itself.

The results model records them with every run (:data:`harness.results.PACKAGES`), each server
mode with what really ran (:meth:`harness.servers.base.ServerMode.effective`), and
``ctxbench --version`` prints ctxbench's own. A module of its own, importing nothing of
``harness``, so that the results model reads them without loading the server registry and a
server process (``harness.servers._asgiref_app``) without loading the results model.
"""

from __future__ import annotations

from importlib import metadata

__all__ = ["package_version"]


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or ``None`` if it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
