"""``uwsgi-processes``: uWSGI, ``--processes N``, one request at a time per process.

Design note: each worker process serves one request at a time on its main thread (no
``--threads``), so requests never overlap inside a process and shared state shows no
cross-talk; but the same thread serves request after request, so state a request forgets to
reset is seen by the next one (residue), on fresh and keep-alive connections alike. With
``--http11-socket`` a kept-alive connection holds its worker until the client closes it or it is
idle for ``--socket-timeout``: with more keep-alive clients than workers, the others wait.
Measured here with 16 keep-alive clients and 2 workers: 2 clients were served for the whole
1 s run while the 14 others waited for its end (their latency is the run's length, in p99 and
max), and the fresh pattern was served fairly. The driver says so: 14 of 16 users starved
(``Cell.starved``, :mod:`harness.load.fairness`) in every measurement of ``ctxbench run
--modes uwsgi-processes`` on keep-alive connections, 0 on fresh ones; behind nginx without
upstream keep-alive (``nginx+uwsgi-processes``) 0, behind ``nginx-keepalive`` 14 again (nginx's
idle upstream connections hold the processes, and 50 requests timed out). That is uWSGI's
behaviour, not the harness's.
"""

from __future__ import annotations

from harness.servers._uwsgi import UwsgiMode
from harness.servers.base import ModeTraits, register


@register
class UwsgiProcesses(UwsgiMode):
    name = "uwsgi-processes"
    summary = "uWSGI --processes: one request at a time per process, keep-alive (http11)"
    order = 80
    traits = ModeTraits(unit="main-thread", keepalive=True)
