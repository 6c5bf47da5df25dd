"""The scaffolding every entry module shares, so that each module shows only its bug.

An entry module ``eN_some_words`` holds one leak class (``eN_...`` gives its number and key):

- ``_build(app, *, fixed)`` adds the bug to a fresh Flask app, or its fix when ``fixed``;
- ``__getattr__ = flask_twins(__name__, _build)`` builds the module's ``buggy`` and ``fixed``
  apps on first access, in the server process (some buggy apps do their damage when built);
- ``ENTRY = entry(__name__, ...)`` describes it: its title is the module docstring's summary
  line, its apps are the module's ``buggy`` and ``fixed``; the rest is given.

:func:`keep_user_on` is the auth and audit hooks of an app that keeps the request's user on an
object, the bug of every entry where that object turns out to be shared;
:func:`keep_user_in_contextvar` is their fixed twin.
"""

from __future__ import annotations

import re
import sys
import typing as t
from collections.abc import Callable
from contextvars import ContextVar

from harness.corpus import Entry, Variant
from harness.probe import current_token, observe

if t.TYPE_CHECKING:
    from flask import Flask

#: The secret key of the entries whose apps need a session.
SECRET_KEY = "ctxbench-corpus-not-a-secret"

#: What a context left current in a worker thread shows through: the probe's readings of the
#: app context and ``g`` before and during the next request, and the request it skipped.
APP_CONTEXT_RESIDUE = frozenset({"residue.app_context", "residue.g", "g", "skipped"})

_MODULE_NAME = re.compile(r"e(?P<number>\d+)_(?P<words>\w+)\Z")
_SUMMARY = re.compile(r"Entry (?P<number>\d+): (?P<title>.+)\.\Z")


def _number_and_words(module: str) -> tuple[str, str]:
    match = _MODULE_NAME.match(module.rpartition(".")[2])
    if match is None:
        raise ValueError(f"an entry module is named eN_some_words, got {module!r}")
    return match["number"], match["words"]


def entry(module: str, **fields: t.Any) -> Entry:
    """The :class:`~harness.corpus.Entry` of ``module``: number and key from its name (``e3_a_b``
    is entry 3, ``a-b``), title from its docstring's summary line (``Entry 3: A b.``, without
    the reST markup), apps from its ``buggy`` and ``fixed``; ``fields`` give the rest."""
    number, words = _number_and_words(module)
    doc = sys.modules[module].__doc__ or ""
    summary = _SUMMARY.match(doc.partition("\n")[0])
    if summary is None or summary["number"] != number:
        raise ValueError(f"{module}'s docstring must open with 'Entry {number}: <its title>.'")
    return Entry(
        key=words.replace("_", "-"),
        number=number,
        title=summary["title"].replace("``", ""),
        buggy=Variant(f"{module}:buggy"),
        fixed=Variant(f"{module}:fixed"),
        **fields,
    )


def lazy_apps(**builders: Callable[[], t.Any]) -> Callable[[str], t.Any]:
    """A module ``__getattr__`` that builds each named app once, when it is first looked up."""
    built: dict[str, t.Any] = {}

    def __getattr__(name: str) -> t.Any:
        if name not in builders:
            raise AttributeError(name)
        if name not in built:
            built[name] = builders[name]()
        return built[name]

    return __getattr__


def flask_twins(
    module: str, build: Callable[..., None], *, session: bool = False
) -> Callable[[str], t.Any]:
    """A module ``__getattr__`` for the entry's ``buggy`` and ``fixed`` Flask apps.

    Each is a fresh ``Flask("corpus_<key words>")`` (``..._fixed`` for the twin), with a secret
    key when ``session``, that ``build(app, fixed=...)`` completes on first access.
    """
    name = f"corpus_{_number_and_words(module)[1]}"

    def make(*, fixed: bool) -> Flask:
        from flask import Flask

        app = Flask(f"{name}_fixed" if fixed else name)
        if session:
            app.config["SECRET_KEY"] = SECRET_KEY
        build(app, fixed=fixed)
        return app

    return lazy_apps(buggy=lambda: make(fixed=False), fixed=lambda: make(fixed=True))


def keep_user_on(app: Flask, name: str, holder: Callable[[], object]) -> None:
    """Keep the request's user as an attribute of ``holder()``: an auth hook sets it when the
    request starts, an audit hook reports what ``holder()`` holds after the view, as ``name``.

    Per request only if ``holder()`` is; the view yields meanwhile, so a request served
    alongside on a holder shared with it overwrites the user.
    """

    @app.before_request
    def authenticate() -> None:
        holder().corpus_user = current_token()  # type: ignore[attr-defined]

    @app.after_request
    def audit(response: t.Any) -> t.Any:
        observe(name, getattr(holder(), "corpus_user", None))
        return response


def keep_user_in_contextvar(app: Flask, name: str) -> None:
    """The fix of :func:`keep_user_on`: keep the request's user in a ``ContextVar``, set at the
    start and reset by token at the end, and report it as ``name`` after the view."""
    from flask import g

    user: ContextVar[str | None] = ContextVar(f"corpus.{name}", default=None)

    @app.before_request
    def remember_user() -> None:
        g.corpus_user_reset = user.set(current_token())

    @app.after_request
    def report_user(response: t.Any) -> t.Any:
        observe(name, user.get())
        return response

    @app.teardown_request
    def forget_user(exc: BaseException | None) -> None:
        token = g.pop("corpus_user_reset", None)
        if token is not None:
            user.reset(token)
