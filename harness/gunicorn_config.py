"""The user's own gunicorn settings, which the gunicorn that ctxbench starts does not read.

gunicorn reads ``./gunicorn.conf.py`` and ``GUNICORN_CMD_ARGS`` by itself; ctxbench runs it with a
config of its own (:data:`CONFIG`) and none of the user's, so a clean check under a gunicorn mode
is not a check of those settings. Every command that starts a gunicorn mode says so once
(:func:`harness.servers._gunicorn.unread_settings`), and so does the pytest plugin under its
session's header. This module imports nothing of ctxbench's, so that header stays cheap.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CONFIG", "unread_gunicorn_settings"]

#: The config module ctxbench runs gunicorn with: its hooks report what ran (the workers, their
#: class and threads, whether gevent patched them).
CONFIG = "python:harness.servers._gunicorn_conf"


def unread_gunicorn_settings(given: str | None) -> str | None:
    """The line that names the user's gunicorn settings that gunicorn reads by itself here
    (``./gunicorn.conf.py``, ``GUNICORN_CMD_ARGS``) and ctxbench's gunicorn does not, or ``None``
    when there are none. ``given`` is how the command takes a server argument (``None``: it
    takes none)."""
    unread = ["gunicorn.conf.py"] * Path("gunicorn.conf.py").is_file()
    unread += ["GUNICORN_CMD_ARGS"] * bool(os.environ.get("GUNICORN_CMD_ARGS"))
    if not unread:
        return None
    give = f"give those that matter as server arguments ({given}), or " if given else ""
    return (
        f"not read: {' and '.join(unread)}: ctxbench runs gunicorn with a config of its own (-c"
        f" {CONFIG}) and none of yours, so your settings (preload_app, worker_class, max_requests,"
        f" ...) do not apply; {give}start gunicorn with yours and check it with ctxbench run"
        " --target (README, 'Checking a running deployment')"
    )
