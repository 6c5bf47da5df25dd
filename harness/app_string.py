"""App import strings: what names the app under test, read as gunicorn and flask read them.

``--app``, the pytest plugin, ``ServerConfig`` and the loader (:mod:`harness.wsgi`) all go through
:func:`parse_import_string`, so a string is refused the same way everywhere, before a server
starts. Only the string is read: nothing is imported and nothing runs here.

The forms are those of gunicorn (``util.import_app``) and ``flask --app``
(``cli.find_app_by_string``), so the string of a deployment works here as it is:

- ``module:name`` names the app; ctxbench also takes a dotted path (``module:obj.app``), as it
  always did;
- ``module:factory(args)`` names an application factory: a name in the module (not ``a.b()``,
  which both refuse), called with arguments that are Python literals (``ast.literal_eval``), so
  no code from a command line runs. ``*args`` and ``**kwargs`` are refused (gunicorn fails on
  them and flask drops ``**kwargs`` silently).

A bare ``module`` is refused, because the two disagree on what it means (gunicorn takes its
``application``, flask its ``app``, or the result of ``create_app()`` or ``make_app()``).
"""

from __future__ import annotations

import ast
import typing as t
from dataclasses import dataclass

from harness.apps import CORE_APP
from harness.errors import AppLoadError

__all__ = ["MAX_IMPORT_STRING", "AppRef", "parse_import_string"]

#: The longest app import string taken; far more than a deployment's, and short enough that a
#: mistake is not a megabyte copied into every server process's environment.
MAX_IMPORT_STRING = 1000

_FORMS = f"use 'module:name', or 'module:factory(args)' for an app factory, e.g. {CORE_APP!r}"
_LITERALS = (
    "factory arguments must be literals (strings, numbers, True, False, None, and tuples,"
    " lists, dicts and sets of them): ctxbench runs no code from an app string"
)


@dataclass(frozen=True)
class AppRef:
    """An app import string, parsed by :func:`parse_import_string`.

    ``module:attr`` names the app (``attr`` may be a dotted path); ``module:attr(args)`` names an
    app factory and the literal arguments it is called with.
    """

    text: str
    module: str
    attr: str
    #: The factory's positional arguments; ``None`` when the string names the app itself.
    args: tuple[t.Any, ...] | None = None
    #: The factory's keyword arguments, in the order given.
    kwargs: tuple[tuple[str, t.Any], ...] = ()

    @property
    def is_factory(self) -> bool:
        """Whether the string calls a factory (``module:create_app()``)."""
        return self.args is not None


def _is_dotted_name(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def parse_import_string(import_string: str) -> AppRef:
    """Parse an app import string; raise :class:`AppLoadError` saying what is wrong with it.

    ``"pkg.wsgi:app"`` names the app, ``"pkg:create_app()"`` or
    ``"pkg:create_app('production', debug=False)"`` an app factory (as gunicorn and ``flask
    --app`` take them): the factory must be a name in the module, its arguments literals. Only
    the string is read; nothing is imported.
    """
    text = import_string

    def bad(why: str) -> AppLoadError:
        return AppLoadError(f"bad app import string {text!r}: {why}")

    if not isinstance(text, str):
        raise bad("give a string")
    if len(text) > MAX_IMPORT_STRING:
        raise bad(f"{len(text):,} characters, more than the {MAX_IMPORT_STRING:,} taken")
    if not text.isprintable():
        raise bad("it holds a control character (a newline, tab or NUL): write it on one line")
    module, sep, attr = text.partition(":")
    if not sep and module and _is_dotted_name(module):
        raise bad(
            f"name the app after a colon, '{module}:app' for an app object or"
            f" '{module}:create_app()' for an app factory (a bare module means 'application'"
            " to gunicorn and 'app' or 'create_app' to flask, so ctxbench does not guess)"
        )
    if not sep or not module or not attr:
        raise bad(_FORMS)
    if not _is_dotted_name(module):
        if "/" in module or module.endswith(".py"):
            dotted = module.removesuffix(".py").strip("./").replace("/", ".")
            raise bad(
                f"{module!r} is a file path: name the module, '{dotted}:{attr}', from the folder"
                f" that holds {dotted.split('.')[0]!r}"
            )
        raise bad(f"{module!r} is not a module name; {_FORMS}")
    if _is_dotted_name(attr):
        return AppRef(text, module, attr)
    try:
        expr: ast.expr | None = ast.parse(attr, mode="eval").body
        python_says = ""
    except SyntaxError as e:
        expr, python_says = None, f" (Python: {e.msg})"
    except (ValueError, MemoryError, RecursionError):
        expr, python_says = None, ""
    if not isinstance(expr, ast.Call) or expr.end_col_offset != len(attr.encode()):
        raise bad(f"{attr!r} is neither a name nor a factory call{python_says}; {_FORMS}")
    if not isinstance(expr.func, ast.Name):
        raise bad(
            f"the factory {ast.get_source_segment(attr, expr.func)!r} is not a name in module"
            f" {module!r}, as gunicorn and flask require: call a module-level function,"
            f" e.g. '{module}:create_app()'"
        )

    def literal(node: ast.expr) -> t.Any:
        source = ast.get_source_segment(attr, node)
        if isinstance(node, ast.Starred):
            raise bad(f"{source!r} unpacks arguments: write each one out; {_LITERALS}")
        try:
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise bad(f"{source!r} is not a literal: {_LITERALS}") from None

    args = tuple(literal(node) for node in expr.args)
    kwargs: dict[str, t.Any] = {}
    for kw in expr.keywords:
        if kw.arg is None:
            source = ast.get_source_segment(attr, kw)
            raise bad(f"{source!r} unpacks arguments: write each one out; {_LITERALS}")
        if kw.arg in kwargs:
            raise bad(f"keyword argument {kw.arg!r} is given twice")
        kwargs[kw.arg] = literal(kw.value)
    return AppRef(text, module, expr.func.id, args, tuple(kwargs.items()))
