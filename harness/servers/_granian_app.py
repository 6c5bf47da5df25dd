"""What granian loads: ``harness.servers._granian_app:app`` (granian worker processes only).

Design note: granian's main process forks its worker processes (``multiprocessing``, from its
main thread) and each worker imports its target itself, after the fork. Importing this module
there first asks the kernel to kill the worker when granian's main process dies (granian's
workers outlive a main process killed with SIGKILL otherwise, re-parented to init), then loads
``harness.wsgi:app`` and writes the worker's state file.
"""

from __future__ import annotations

import multiprocessing
import os

from harness.servers._state import die_with_parent, loaded_app_info, write_state

die_with_parent()

from harness import wsgi  # noqa: E402  (a worker that outlives granian must not load the app)

app = wsgi.app

_info = loaded_app_info()
_info.update(ppid=os.getppid(), process_name=multiprocessing.current_process().name)
write_state(f"worker-{os.getpid()}", _info)
