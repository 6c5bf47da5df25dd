"""Shared by every test tree here (tests/, scenarios/, benchmarks/).

The probe is off unless ``CTXBENCH_PROBE=1`` (see ``harness.probe.install_probe``): the bundled
and test apps call ``install_probe(app)`` at import, as a user's app would, so switch it on for
the whole session. Servers started by the harness set it themselves.

The tests that stop a subprocess as a Ctrl-C does (SIGINT to it or to its group) need it to
start as in a terminal, with SIGINT handled. A pytest started with SIGINT ignored (a background
job of a non-interactive shell, ``nohup``) hands the ignore down to every child, since exec
keeps an ignored signal ignored, and ctxbench keeps an ignored stop signal ignored, as ``nohup
ctxbench soak ... &`` needs: those tests then waited out their timeouts. So pytest gets
Python's own Ctrl-C handling back, which every child starts without (exec resets a handled
signal to its default).
"""

from __future__ import annotations

import os
import signal

os.environ.setdefault("CTXBENCH_PROBE", "1")

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
