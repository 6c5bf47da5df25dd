"""A plain Flask app with the probe installed passes in every mode and connection pattern,
and behind nginx (both settings) in front of gunicorn-gevent.

``harness.apps.flask_app:app`` is an ordinary ``flask.Flask`` (its own ContextVars, its own
``g`` and session) with :func:`harness.probe.install_probe`; the harness's context-storage
backends do not apply to it, so it runs with ``contextvar``. Same load and the same checks as
the core's matrix: no leak, no error, and a run that exercised what the mode is said to do.
"""

from __future__ import annotations

import typing as t

import pytest

from harness.apps import FLASK_APP
from harness.expectations import applicable_patterns
from harness.servers import MODES, get_mode, proxied_modes

pytest.importorskip("flask", reason="flask is not installed (pip install 'ctxbench[dev]')")


CASES = [
    pytest.param(mode, connections, id=f"{mode}-{connections}")
    for mode in [*MODES, *proxied_modes()]
    # innermost: both patterns share one server; keep-alive only where it can run
    for connections in applicable_patterns(get_mode(mode).traits)
]


@pytest.mark.live
@pytest.mark.parametrize(("mode", "connections"), CASES)
def test_flask_app_is_isolated(
    mode: str,
    connections: t.Any,
    shared_server: t.Any,
    drive: t.Any,
    assert_clean: t.Any,
) -> None:
    server = shared_server(mode, app=FLASK_APP, backend="contextvar")
    assert server.effective["app_class"] == "flask.app.Flask", server.effective
    assert server.effective["probe"] == "app", server.effective

    result = drive(server, connections)

    assert_clean(result, server, mode, connections)
