"""Frozen records to and from JSON, by their fields and annotations.

The results model (:mod:`harness.results`) is made of frozen dataclasses (and a few
``NamedTuple``s); their JSON form is their fields by name, in declaration order, nested records
as objects and tuples as lists. :func:`from_json` reads that back, checking every value against
the field's annotation (``int``, ``float`` (finite), ``str``, ``bool``, ``X | None``,
``tuple[X, ...]``, ``Mapping[str, X]``, a record, ``Any``), so a record needs no reader of its
own: adding a field with a default is the whole change, and an older document without it
still reads. Errors name the path of the bad value (``results.json: cells[0].runs[1].rps:
expected a number, got 'fast'``).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import types
import typing as t
from collections.abc import Mapping

from harness.errors import CtxbenchError, ResultsError

__all__ = ["from_json", "to_json"]

_R = t.TypeVar("_R")


def from_json(cls: type[_R], raw: t.Any, source: str) -> _R:
    """Read the record ``cls`` from JSON data ``raw``; errors name ``source`` and the path."""
    return t.cast(_R, _decode(cls, raw, f"{source}:"))


def to_json(value: t.Any) -> t.Any:
    """``value`` as JSON data: a record as an object of its fields, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):  # a NamedTuple
        return {k: to_json(v) for k, v in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


_hints_cache: dict[type, dict[str, t.Any]] = {}


def _hints(cls: type) -> dict[str, t.Any]:
    if cls not in _hints_cache:
        _hints_cache[cls] = t.get_type_hints(cls)
    return _hints_cache[cls]


def _error(where: str, message: str) -> ResultsError:
    # ``where`` is "<source>:" at the top level, then "<source>: cells[0].rps" and so on.
    return ResultsError(f"{where} {message}" if where.endswith(":") else f"{where}: {message}")


def _fail(where: str, expected: str, raw: t.Any) -> t.NoReturn:
    raise _error(where, f"expected {expected}, got {raw!r}")


def _decode(tp: t.Any, raw: t.Any, where: str) -> t.Any:
    origin, args = t.get_origin(tp), t.get_args(tp)
    if tp is t.Any:
        return raw
    if origin is t.Union or origin is types.UnionType:
        if raw is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _decode(inner, raw, where)
    if tp is bool:
        return raw if isinstance(raw, bool) else _fail(where, "true or false", raw)
    if tp is int:
        ok = isinstance(raw, int) and not isinstance(raw, bool)
        return raw if ok else _fail(where, "an integer", raw)
    if tp is float:
        ok = isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw)
        return float(raw) if ok else _fail(where, "a number", raw)
    if tp is str:
        return raw if isinstance(raw, str) else _fail(where, "a string", raw)
    if origin is tuple:
        if not isinstance(raw, list):
            _fail(where, "a list", raw)
        return tuple(_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(raw))
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(raw, dict):
            _fail(where, "an object", raw)
        return {k: _decode(args[1], v, _child(where, k)) for k, v in raw.items()}
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or hasattr(tp, "_fields")):
        return _decode_record(tp, raw, where)
    raise TypeError(f"{where}: a record field cannot be a {tp!r}")  # a bug in the record


def _decode_record(cls: type, raw: t.Any, where: str) -> t.Any:
    if not isinstance(raw, dict):
        _fail(where, "an object", raw)
    hints = _hints(cls)
    if dataclasses.is_dataclass(cls):
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
    else:  # a NamedTuple
        defaults = getattr(cls, "_field_defaults", {})
        required = {name for name in hints if name not in defaults}
    for name in required:
        if name not in raw:
            raise _error(where, f"missing key {name!r}")
    for name in raw:
        if name not in hints:
            # The schema's name changes only when a field changes meaning: a newer ctxbench
            # adds fields (with defaults) under the same name, which this one cannot read.
            raise _error(
                where,
                f"unknown key {name!r}, a field this version of ctxbench does not have: the"
                " document was written by a newer ctxbench (read it with that one) or edited",
            )
    kwargs = {name: _decode(hints[name], value, _child(where, name)) for name, value in raw.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, CtxbenchError) as e:  # a record's own check (RunSettings')
        raise _error(where, str(e)) from None


def _child(where: str, name: str) -> str:
    # "results.json:" + "cells" -> "results.json: cells"; "...: cells[0]" + "rps" -> "...rps"
    return f"{where} {name}" if where.endswith(":") else f"{where}.{name}"
