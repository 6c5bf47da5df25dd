"""What uvicorn and hypercorn load: ``harness.servers._asgiref_app:app``, ``harness.wsgi:app``
in asgiref's ``WsgiToAsgi``, as Flask's deployment docs wrap a WSGI app for an ASGI server.

Design note: uvicorn imports this module inside its serving task, hypercorn on a worker's main
thread before its loop starts, in every process that serves (the one process, or each worker
its supervisor spawned with ``multiprocessing``). A spawned worker first asks the kernel to kill
it when the supervisor dies, so that no worker outlives a supervisor killed outright. The state
file records what serves requests here: the event loop running this import (uvicorn's; none
under hypercorn), and the size of asgiref's single-thread executor, which runs every WSGI call
of the process (``SyncToAsync`` with ``thread_sensitive=True`` and no outer ``async_to_sync``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os

from harness.servers._state import die_with_parent, loaded_app_info, write_state

if multiprocessing.current_process().name != "MainProcess":
    die_with_parent()

# Imported after the parent-death request: a worker that outlives uvicorn must not load the app.
from asgiref.sync import SyncToAsync
from asgiref.wsgi import WsgiToAsgi

from harness import wsgi
from harness.packages import package_version

app = WsgiToAsgi(wsgi.app)  # type: ignore[no-untyped-call]  # asgiref's wsgi.py has no hints

_info = loaded_app_info()
try:
    _loop: str | None = type(asyncio.get_running_loop()).__module__
except RuntimeError:  # hypercorn imports the app before its loop starts
    _loop = None
_info.update(
    ppid=os.getppid(),
    process_name=multiprocessing.current_process().name,
    worker_class="asgiref-wsgi-to-asgi",
    asgiref=package_version("asgiref"),
    event_loop=_loop,
    wsgi_threads=SyncToAsync.single_thread_executor._max_workers,
)
write_state(f"worker-{os.getpid()}", _info)
