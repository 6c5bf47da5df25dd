"""Entry 6: a streamed body abandoned by its client.

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

from harness.corpus import Entry, LoadNeeds, Variant
from harness.expectations import LeakTraits

from ._lazy import lazy_apps

#: The streamed route the corpus run abandons mid-body.
PATH = "/export"
CHUNKS = 200


def _make(name: str, *, with_context: bool) -> t.Any:
    from flask import Flask, g, request, stream_with_context

    app = Flask(name)
    app.config["SECRET_KEY"] = "ctxbench-corpus-not-a-secret"

    @app.route(PATH)
    def export() -> t.Any:
        g.export_for = request.args.get("token", "")
        if with_context:

            def rows() -> t.Iterator[str]:
                for i in range(CHUNKS):
                    time.sleep(0.001)
                    yield f"{request.args.get('token')},{g.export_for},{i}\n" + "." * 1024

            return app.response_class(stream_with_context(rows()), mimetype="text/csv")
        who = g.export_for  # read up front: the body needs no context

        def plain_rows() -> t.Iterator[str]:
            for i in range(CHUNKS):
                time.sleep(0.001)
                yield f"{who},{who},{i}\n" + "." * 1024

        return app.response_class(plain_rows(), mimetype="text/csv")

    return app


__getattr__ = lazy_apps(
    buggy=lambda: _make("corpus_abandoned_stream", with_context=True),
    fixed=lambda: _make("corpus_abandoned_stream_fixed", with_context=False),
)

ENTRIES = (
    Entry(
        key="abandoned-stream",
        number="6",
        title="A streamed body abandoned by its client",
        source="Flask #6123",
        buggy=Variant(f"{__name__}:buggy"),
        fixed=Variant(f"{__name__}:fixed"),
        traits=LeakTraits(scope="context", resets=False, needs_unclosed_body=True),
        shows_through=frozenset({"residue.app_context", "residue.g", "g", "skipped"}),
        fix="no stream_with_context: read what the body needs before returning it",
        requires=("flask",),
        load=LoadNeeds(abandon_path=PATH, abandon_fraction=0.1),
        note="no: every mode here closes an abandoned body in the thread that iterated it",
    ),
)
