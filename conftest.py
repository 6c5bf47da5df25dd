"""Shared by every test tree here (tests/, scenarios/, benchmarks/).

The probe is off unless ``CTXBENCH_PROBE=1`` (see ``harness.probe.install_probe``): the bundled
and test apps call ``install_probe(app)`` at import, as a user's app would, so switch it on for
the whole session. Servers started by the harness set it themselves.
"""

from __future__ import annotations

import os

os.environ.setdefault("CTXBENCH_PROBE", "1")
