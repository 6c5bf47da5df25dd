"""Entry 6: A streamed body abandoned by its client.

``stream_with_context`` keeps the request's contexts pushed in the thread that iterates the
body. When the client disconnects mid-body, the server abandons the iterator; if it is only
finalized later by the garbage collector, on another thread, the cross-context pop fails and the
app context stays current on the worker thread, where every later request reuses it (Flask
#6123). The app's ``/export`` route streams such a body; the corpus run abandons a fraction of its
requests after their first bytes (:func:`harness.load.hostile.abort_mid_body`) while the
ordinary probe checks what the next requests find.

Every registered mode closes an abandoned body in the thread or greenlet that was iterating it
(PEP 3333's ``close()``), so the contexts are popped where they were pushed: on the current
versions this entry does not reproduce under any of them, and its derived cells say so
(``ModeTraits.closes_abandoned_body``). It stays in the corpus to keep that verdict checked.
The fixed twin reads what the body needs before it returns, without ``stream_with_context``.
"""

from __future__ import annotations

import time
import typing as t
from collections.abc import Callable, Iterator

from harness.corpus import LoadNeeds
from harness.expectations import LeakTraits

from ._common import APP_CONTEXT_RESIDUE, entry, flask_twins

if t.TYPE_CHECKING:
    from flask import Flask

#: The streamed route the corpus run abandons mid-body.
PATH = "/export"
CHUNKS = 200


def _rows(user: Callable[[], str]) -> Iterator[str]:
    for i in range(CHUNKS):
        time.sleep(0.001)
        yield f"{user()},{i}\n" + "." * 1024


def _build(app: Flask, *, fixed: bool) -> None:
    from flask import g, request, stream_with_context

    @app.route(PATH)
    def export() -> t.Any:
        g.export_for = request.args.get("token", "")
        if fixed:
            who = g.export_for  # read up front: the body needs no context
            return app.response_class(_rows(lambda: who), mimetype="text/csv")
        # The bug: the body reads g as it streams, so it keeps the contexts pushed meanwhile.
        body = stream_with_context(_rows(lambda: g.export_for))
        return app.response_class(body, mimetype="text/csv")


__getattr__ = flask_twins(__name__, _build, session=True)

ENTRY = entry(
    __name__,
    source="Flask #6123",
    traits=LeakTraits(scope="context", resets=False, needs_unclosed_body=True),
    shows_through=APP_CONTEXT_RESIDUE,
    fix="no stream_with_context: read what the body needs before returning it",
    load=LoadNeeds(abandon_path=PATH, abandon_fraction=0.1),
    note="no: every mode here closes an abandoned body in the thread that iterated it",
)
