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

So is ``module:create_app`` when the module's source shows a factory there
(:func:`factory_named_without_call`): flask calls a function named so without arguments, which
fails when the factory needs some, and gunicorn serves the factory itself, which fails every
request (uWSGI then never answers the readiness check). The source is read with :mod:`ast`,
found on the import path the servers use; the module is never imported, and when it cannot be
read the servers' loader (:mod:`harness.wsgi`) still refuses what it can.
"""

from __future__ import annotations

import ast
import os
import sys
import typing as t
from dataclasses import dataclass
from pathlib import Path

from harness.apps import CORE_APP
from harness.errors import AppLoadError

__all__ = [
    "FACTORY_NAMES",
    "MAX_IMPORT_STRING",
    "AppRef",
    "asgi_refused",
    "factory_named_without_call",
    "harness_hidden_by",
    "parse_import_string",
]

#: The longest app import string taken; far more than a deployment's, and short enough that a
#: mistake is not a megabyte copied into every server process's environment.
MAX_IMPORT_STRING = 1000

#: The names flask's ``--app`` takes for an app factory (``cli.find_best_app``): a function
#: named so is a factory, never a WSGI app.
FACTORY_NAMES = ("create_app", "make_app")

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
        parent, _, last = module.rpartition(".")
        if parent and _module_source(module) is None and _module_source(parent) is not None:
            # 'myproject.wsgi.app' (Django's WSGI_APPLICATION spells it so): no module of
            # that name, but its parent is one, and the last part is what it holds.
            raise bad(
                f"there is no module {module!r}, but {parent!r} is one: name the app in it"
                f" after a colon, '{parent}:{last}'"
            )
        bound = _bound_in(module)
        named = [f"'{module}:{n}'" for n in ("app", "application") if n in bound]
        named += [f"'{module}:{n}()'" for n in FACTORY_NAMES if n in bound]
        if named:  # Django's wsgi.py binds 'application' only
            say = f"{' or '.join(named)}, which it has"
        else:
            say = f"'{module}:app' for an app object or '{module}:create_app()' for an app factory"
        raise bad(
            f"name the app after a colon, {say} (a bare module means 'application' to gunicorn"
            " and 'app' or 'create_app' to flask, so ctxbench does not guess)"
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
        ref = AppRef(text, module, attr)
        why = factory_named_without_call(ref)
        if why is not None:
            raise bad(why)
        return ref
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


# -- a factory named without its call -----------------------------------------------------------


def takes_wsgi_call(
    name: str, required: int, positional: int, star_args: bool, required_keywords: int
) -> bool:
    """Whether a function with this shape is a WSGI app, ``app(environ, start_response)``, and
    not an app factory named without its call: exactly two required positional parameters (a
    WSGI server passes both; a default on either is a factory's option, ``create_app(config,
    debug=False)``), no required keyword-only one, and not one of :data:`FACTORY_NAMES`.

    ``required`` and ``positional`` count the positional parameters without a default and in
    all; ``star_args`` is a ``*args``. The servers' loader asks the same of the object it
    imported (:mod:`harness.wsgi`); :func:`factory_named_without_call` asks it of the source.
    """
    if name in FACTORY_NAMES or required_keywords:
        return False
    return required == 2 or (star_args and required == 1 and positional == 1)


def factory_named_without_call(ref: AppRef) -> str | None:
    """Why ``ref`` (``module:name``, no call) names an app factory rather than an app, read
    from the module's source without importing it; ``None`` when it does not, or when that
    cannot be known here (the source is not found or not Python, ``name`` is bound more than
    once, decorated, or is not a function)."""
    if ref.is_factory or "." in ref.attr:
        return None
    path = _module_source(ref.module)
    if path is None:
        return None
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    names = [_names_bound(node) for node in tree.body]
    if any("__getattr__" in bound for bound in names):  # module attributes made on demand
        return None
    bound = [node for node, found in zip(tree.body, names, strict=True) if ref.attr in found]
    if len(bound) != 1:
        return None
    [func] = bound
    if (
        not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        or func.name != ref.attr
        or func.decorator_list
    ):
        return None
    a = func.args
    if isinstance(func, ast.AsyncFunctionDef):
        where = f"async def {func.name}({ast.unparse(a)}) at {_shown(path)}:{func.lineno}"
        return f"{ref.attr} is {asgi_refused(ref, where)}"
    positional = [*a.posonlyargs, *a.args]
    required = len(positional) - len(a.defaults)
    required_keywords = sum(default is None for default in a.kw_defaults)
    if takes_wsgi_call(func.name, required, len(positional), a.vararg is not None,
                       required_keywords):  # fmt: skip
        return None
    where = f"def {func.name}({ast.unparse(a)}) at {_shown(path)}:{func.lineno}"
    needs = [arg.arg for arg in positional[:required]]
    needs += [arg.arg for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is None]
    call = f"{ref.module}:{ref.attr}({', '.join(f'{n}=...' for n in needs)})"
    return (
        f"{ref.attr} is an app factory ({where}), not a WSGI app: name its call, '{call}'"
        + (f" with literal values for {', '.join(needs)}" if needs else "")
        + " (flask --app would call it without arguments; gunicorn would serve the factory"
        " itself and fail every request)"
    )


def _bound_in(module: str) -> set[str]:
    """The names a module's source binds at its top level (see :func:`_names_bound`), read
    without importing it; empty when the source is not found or not Python."""
    path = _module_source(module)
    if path is None:
        return set()
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError, MemoryError, RecursionError):
        return set()
    return set().union(*(_names_bound(node) for node in tree.body))


def asgi_refused(ref: AppRef, what: str) -> str:
    """Why an ASGI app is refused, after "is" (``what`` says how it is defined): a WSGI server
    cannot call it; with the WSGI app to name instead when ``ref``'s module has a ``wsgi``
    sibling (Django's ``mysite.asgi`` beside ``mysite.wsgi``)."""
    parent, _, last = ref.module.rpartition(".")
    sibling = f"{parent}.wsgi" if parent else "wsgi"
    instead = "name your project's WSGI app"
    if last == "asgi" and _module_source(sibling) is not None:
        instead = f"name its WSGI app, '{sibling}:application'"
    return (
        f"an ASGI app ({what}), called as app(scope, receive, send), and every"
        f" server ctxbench starts calls a WSGI app, app(environ, start_response): {instead}"
        " (uvicorn-asgiref and hypercorn-asgiref serve that WSGI app through asgiref)"
    )


def _names_bound(node: ast.stmt) -> set[str]:
    """The names a top-level statement may bind, in any block it holds (a def under an ``if``,
    an import in a ``try``): a name found twice is not judged, so counting too many only
    leaves a case to the servers' loader.

    A function's or class's body binds its own names, not the module's (the ``app = Flask(...)``
    inside ``create_app``), so it is not read, but for a ``global`` statement: naming the app
    a factory builds as one the module has sends the user to a string that fails to load.
    """
    rv: set[str] = set()
    todo: list[ast.AST] = [node]
    while todo:
        n = todo.pop()
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            rv.add(n.name)
            rv.update(name for g in ast.walk(n) if isinstance(g, ast.Global) for name in g.names)
            continue  # its decorators and defaults bind nothing a module would serve
        if isinstance(n, ast.Lambda):
            continue
        if isinstance(n, ast.Import | ast.ImportFrom):
            rv.update((alias.asname or alias.name).split(".")[0] for alias in n.names)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            rv.add(n.id)
        todo.extend(ast.iter_child_nodes(n))
    return rv


#: ctxbench's own ``harness`` package, which every server imports by that name
#: (``harness.wsgi:app``, the gunicorn hooks, the runners of the other modes).
_HARNESS = Path(__file__).resolve().parent


def harness_hidden_by() -> str | None:
    """The package or module named ``harness`` that comes before ctxbench's own on the servers'
    import path (the current folder, then ``PYTHONPATH`` and this interpreter's path),
    as a sentence names it (``the package harness/``, ``the module ../lib/harness.py``);
    ``None`` when ctxbench's own comes first, or none is found there (an editable install's
    finder provides it).

    ``harness`` is a common name for a project's own package, ctxbench's modules are a package of
    that name, and a Python process holds one module of a name: the servers would fail with "No
    module named 'harness.wsgi'" (the pytest plugin, :mod:`pytest_ctxbench`, checks its own
    session's ``harness`` before a fixture starts anything)."""
    found = _module_source("harness")
    if found is None or found.resolve() == _HARNESS / "__init__.py":
        return None
    if found.name == "__init__.py":
        return f"the package {_shown(found.parent)}{os.sep}"
    return f"the module {_shown(found)}"


def _module_source(module: str) -> Path | None:
    """The source file of ``module`` on the servers' import path (the current folder first,
    then ``PYTHONPATH`` and this interpreter's path), found without importing anything."""
    parts = module.split(".")
    extra = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    for entry in dict.fromkeys([os.getcwd(), *extra, *sys.path]):
        if not entry:
            continue
        base = Path(entry, *parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
