"""Entry 7: a context left pushed when loading the session or a teardown function raises.

Flask #1528 (fixed by PR #1822, long ago): ``wsgi_app`` pushed the context outside the ``try``
that pops it, and opened the session inside that push, so a failing session interface left the
context current in the thread; a raising teardown function skipped the pops the same way.
Flask has not had either bug for years, so they are reproduced on ``core`` as the lifecycle
mutants of :mod:`harness.controls`, with a third, ``before_first_request`` run twice under a
race. The load makes a tenth of the requests fail at the mutant's phase (the probe's
``fail=<phase>``); the requests after them are judged. The fixed twin is the correct core.

The app has a session (a secret key) and a ``before_first_request`` function that does I/O, the
window a race on the once-only guard needs.
"""

from __future__ import annotations

import time
import typing as t

from harness.controls import CONTROLS
from harness.corpus import Entry, LoadNeeds, Variant

from ._common import SECRET_KEY, lazy_apps


def _app() -> t.Any:
    from core import App

    app = App("corpus_lifecycle")
    app.config["SECRET_KEY"] = SECRET_KEY

    @app.before_first_request
    def connect() -> None:
        time.sleep(0.05)  # opening a connection pool, loading a model...

    return app


__getattr__ = lazy_apps(app=_app)

_SOURCES = {
    "pop-skipped-on-session-error": (
        "7a",
        "Flask #1528, PR #1822",
        "open the session inside the try that pops (correct core)",
    ),
    "teardown-skips-pop": (
        "7b",
        "Flask #1528, PR #1822",
        "run every teardown function, pop in a finally (core)",
    ),
    "before-first-request-race": (
        "7c",
        "Flask's before_first_request guard",
        "a locked once-only guard (correct core)",
    ),
}


def _entry(name: str) -> Entry:
    control = CONTROLS[name][0]
    number, source, fix = _SOURCES[name]
    return Entry(
        key=name,
        number=number,
        title=f"Lifecycle mutant: {control.summary.split(' (')[0]}",
        source=source,
        buggy=Variant(f"{__name__}:app", backend=name),
        fixed=Variant(f"{__name__}:app"),
        traits=control.traits,
        shows_through=control.breaks,
        fix=fix,
        load=LoadNeeds(fail_phase=control.fail_phase),
        note="fixed in Flask long ago: reproduced on core",
    )


ENTRIES = tuple(_entry(name) for name in _SOURCES)
