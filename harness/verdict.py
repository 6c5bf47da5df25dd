"""Turn one probe response into evidence of isolation failures.

Pure and I/O-free: no sockets, no files, no framework imports, so it runs anywhere a response is
received (the load driver's measured loop, a locust user, a test). The rules come from the probe
protocol in ``docs/architecture.md``:

* an observation whose name starts with ``residue.`` must be ``None``: nothing an earlier request
  left behind may be visible;
* ``current_app`` must equal the response's ``app``;
* everything else (``request``, ``g``, ``session``, names given to ``observe()``) must equal the
  client's token, and so must the echoed ``token``.

A body that is not a probe response, or one that lacks any of the phases the probe records, raises
:class:`ProbeProtocolError`: a probe that silently records nothing must not pass.

:class:`ProbeChecker` gives the same verdicts faster when most responses are clean and alike, as
under load: it remembers the *shape* of each clean response (the body with the token's string
values blanked out) and answers a response of a known shape without parsing it again. See its
docstring for why that is exactly the verdict of :func:`examine_probe_response`.
"""

from __future__ import annotations

import json
import re
import typing as t
from dataclasses import asdict, dataclass

from harness.protocol import PHASES, RESIDUE_PREFIX

__all__ = [
    "MAX_SEEN",
    "Evidence",
    "ProbeChecker",
    "ProbeProtocolError",
    "ProbeVerdict",
    "Unit",
    "UnitKey",
    "check_probe_response",
    "examine_probe_response",
    "observation_names",
    "printable",
]

#: Every probe response carries at least one observation from each phase.
_PHASES = frozenset(PHASES)
_RESIDUE_LEN = len(RESIDUE_PREFIX)

#: The most of a seen value an :class:`Evidence` keeps: a token is about 20 characters, and each
#: piece of evidence is copied into results.json, both reports and the terminal.
MAX_SEEN = 200

#: An execution unit as the load driver collects it: ``(pid, thread, greenlet)``.
UnitKey = tuple[int, int, int | None]


class ProbeProtocolError(ValueError):
    """The response is not a well-formed probe response, so it says nothing about isolation.

    ``reason`` is what is wrong with it, in a few words (``"no observations from phase(s)
    entry"``), for a message of the caller's own; ``""`` where the message alone says it."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class Unit(t.NamedTuple):
    """The execution unit that served a request: its server process, OS thread and greenlet."""

    pid: int
    thread: int
    #: ``None`` when greenlet is not installed in the server.
    greenlet: int | None


@dataclass(frozen=True)
class Evidence:
    """One observation that differs from what it must be."""

    mode: str
    phase: str
    name: str
    expected: str | None
    #: What the response held there; a value longer than :data:`MAX_SEEN` characters is cut to
    #: that many, with its length.
    seen: str | None
    #: The execution unit that answered.
    unit: Unit

    def to_dict(self) -> dict[str, t.Any]:
        """The JSON form: the fields, with ``unit`` as ``{"pid", "thread", "greenlet"}``."""
        return {**asdict(self), "unit": self.unit._asdict()}

    @classmethod
    def from_dict(cls, data: t.Mapping[str, t.Any]) -> Evidence:
        """The inverse of :meth:`to_dict`."""
        return cls(**{**data, "unit": Unit(**data["unit"])})

    def __str__(self) -> str:
        u = self.unit
        return (
            f"[{self.mode}] {self.phase}/{self.name}: expected {self.expected!r}, saw"
            f" {self.seen!r} (pid {u.pid}, thread {u.thread}, greenlet {u.greenlet})"
        )


@dataclass(frozen=True)
class ProbeVerdict:
    """What one probe response says: the unit that answered it, and what leaked."""

    unit: UnitKey
    evidence: list[Evidence]


def _fail(token: str, why: str, body: bytes) -> ProbeProtocolError:
    excerpt = body[:200]
    return ProbeProtocolError(
        f"Not a probe response for token {token!r}: {why}. Body starts {excerpt!r}.\n\n"
        "Check that the server runs an app with install_probe(app) and that the request went to"
        " /_ctxbench/probe.",
        why,
    )


def _unit(token: str, raw: object, body: bytes) -> UnitKey:
    if not isinstance(raw, dict):
        raise _fail(token, "'worker' is not an object", body)
    pid, thread, glet = raw.get("pid"), raw.get("thread"), raw.get("greenlet", False)
    if type(pid) is not int or type(thread) is not int or not (glet is None or type(glet) is int):
        raise _fail(
            token,
            "'worker' needs an integer pid and thread, and a greenlet that is an integer or null",
            body,
        )
    return (pid, thread, glet)


def examine_probe_response(token: str, status: int, body: bytes, *, mode: str) -> ProbeVerdict:
    """Like :func:`check_probe_response`, also returning the unit that answered."""
    if status != 200:
        raise ProbeProtocolError(
            f"A probe response has status 200, got {status} for token {token!r}.\n\n"
            "A non-2xx status is an error, not evidence: count it as one before calling this."
        )
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(token, f"the body is not JSON ({exc})", body) from None
    except RecursionError:  # arrays or objects nested deeper than the parser goes
        raise _fail(token, "the body is JSON nested too deep to read", body) from None
    if not isinstance(doc, dict):
        raise _fail(token, "the body is not a JSON object", body)
    app = doc.get("app")
    obs = doc.get("obs")
    if not isinstance(app, str):
        raise _fail(token, "'app' is missing or not a string", body)
    if not isinstance(obs, list) or not obs:
        raise _fail(token, "'obs' is missing or empty", body)
    if "token" not in doc:
        raise _fail(token, "'token' is missing", body)
    key = _unit(token, doc.get("worker"), body)

    evidence: list[Evidence] = []
    echoed = doc["token"]
    if echoed != token:
        if echoed is not None and type(echoed) is not str:  # no request's token: 12345, NaN
            raise _fail(token, "'token' is neither a string nor null", body)
        evidence.append(Evidence(mode, "view", "token", token, _as_seen(echoed), Unit(*key)))

    # This loop runs for every response inside the load driver's measured loop: type checks
    # use ``type(x) is`` and the seen value is only type-checked when it differs.
    phases: set[str] = set()
    last_phase = None
    for item in obs:
        if type(item) is not list or len(item) != 3:
            raise _fail(token, f"observation {item!r} is not [phase, name, seen]", body)
        phase, name, seen = item
        if type(phase) is not str or type(name) is not str:
            raise _fail(token, f"observation {item!r} has a non-string phase or name", body)
        if phase != last_phase:  # observations come grouped by phase
            if phase not in _PHASES:
                raise _fail(token, f"observation {item!r} has an unknown phase", body)
            phases.add(phase)
            last_phase = phase
        if name == "current_app":
            expected: str | None = app
        elif name[:_RESIDUE_LEN] == RESIDUE_PREFIX:
            expected = None
        else:
            expected = token
        if seen != expected:
            if seen is not None and type(seen) is not str:
                raise _fail(
                    token, f"observation {item!r} has a seen value that is not a string", body
                )
            evidence.append(
                Evidence(mode, phase, printable(name), expected, _as_seen(seen), Unit(*key))
            )
    if len(phases) != len(_PHASES):
        missing = ", ".join(sorted(_PHASES - phases))
        raise _fail(token, f"no observations from phase(s) {missing}", body)
    return ProbeVerdict(key, evidence)


def printable(text: str, limit: int = 100) -> str:
    """``text`` from a server as the terminal and the reports may show it: each character that
    is not printable (an escape sequence's ESC) as its ``\\x..`` escape, and at most ``limit``
    characters, then ``...``."""
    if text.isprintable() and len(text) <= limit:
        return text
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return text if len(text) <= limit else f"{text[:limit]}..."


def _as_seen(seen: str | None) -> str | None:
    if seen is not None and len(seen) > MAX_SEEN:
        return f"{seen[:MAX_SEEN]}... ({len(seen):,} characters)"
    return seen


def observation_names(body: bytes) -> tuple[str, ...]:
    """The observation names in a probe response body, sorted; empty for anything else.

    Not part of the per-response check: the load driver reads them once per run, to record
    which names (the app's own ``observe()`` ones among them) were checked.
    """
    try:
        obs = json.loads(body).get("obs")
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
        return ()
    if not isinstance(obs, list):
        return ()
    names = {
        printable(o[1])
        for o in obs
        if isinstance(o, list) and len(o) == 3 and isinstance(o[1], str)
    }
    return tuple(sorted(names))


def check_probe_response(token: str, status: int, body: bytes, *, mode: str) -> list[Evidence]:
    """Return the isolation failures shown by one probe response (empty when it is clean).

    ``token`` is what the client sent, ``status`` and ``body`` what it got back, ``mode`` a label
    (the server mode) copied into each :class:`Evidence`. Raises :class:`ProbeProtocolError`
    when the status is not 200 or the body is not a complete probe response.
    """
    return examine_probe_response(token, status, body, mode=mode).evidence


# A token the shape cache accepts: only characters that need no escaping in JSON, and a "-",
# which no name the verdict compares with (phases, "current_app", "residue.*", the keys) holds.
_SHAPE_TOKEN = re.compile(r"[A-Za-z0-9_]*-[A-Za-z0-9_-]*\Z")
# Stands for the token in a shape; a body that holds it (or a backslash) is never cached.
_BLANK = b"\x00"


class ProbeChecker:
    """:func:`examine_probe_response` for one load run, with a cache of clean response shapes.

    ``checker = ProbeChecker(mode)``, then ``checker.examine(token, status, body)`` for every
    response: it returns the same :class:`ProbeVerdict` and raises the same
    :class:`ProbeProtocolError` as ``examine_probe_response(token, status, body, mode=mode)``.

    How: a clean response's *shape* is its body with every ``"<token>"`` (the token's JSON
    string values, quotes included) replaced by a NUL byte. When a response's shape is one that
    was already checked clean, the response is clean too, with the same unit, and is not
    parsed again; any other response goes through :func:`examine_probe_response` and, if clean,
    adds its shape, while the shapes held come to at most ``max_bytes`` (8 MiB: thousands of
    probe answers, where a server that answers in ever new and long shapes must not fill
    memory). Under load a server answers in a handful of shapes (one per execution unit), so
    nearly every response takes the short way.

    Why that is exact: the short way is taken only when the token matches
    ``[A-Za-z0-9_]*-[A-Za-z0-9_-]*`` (as the load driver's tokens do) and the body holds no
    backslash and no NUL byte. Without a backslash every ``"`` in a body delimits a JSON string,
    and a token needs no escaping, so the blanked places are exactly the strings equal to the
    token, and two bodies of one shape parse to the same document except that those strings
    hold each one's own token; whether either is JSON at all is decided by the same bytes. The
    verdict compares strings only for equality, with the token, with the response's own
    ``app`` (blanked alike if it equals the token) and with names that hold no ``-`` (phases,
    ``current_app``, ``residue.*``, the keys), which therefore never equal a token. Every check
    then comes out the same for both bodies. A body that holds its token somewhere else (a
    string that is the token of *another* request, say) has another shape, because only its own
    token is blanked. Leaky responses are never cached: they always take the full check, which
    builds their evidence.
    """

    __slots__ = ("hits", "mode", "room", "shapes")

    def __init__(self, mode: str, *, max_bytes: int = 8 << 20) -> None:
        self.mode = mode
        #: how many more bytes of shapes the cache takes
        self.room = max_bytes
        #: shape -> the unit that answered it
        self.shapes: dict[bytes, UnitKey] = {}
        #: responses answered from the cache
        self.hits = 0

    def examine(self, token: str, status: int, body: bytes) -> ProbeVerdict:
        """The verdict on one response; see the class docstring."""
        if status != 200 or b"\\" in body or _BLANK in body or not _SHAPE_TOKEN.match(token):
            return examine_probe_response(token, status, body, mode=self.mode)
        # split + join searches the body once; replace would count the matches first.
        shape = _BLANK.join(body.split(b'"' + token.encode() + b'"'))
        unit = self.shapes.get(shape)
        if unit is not None:
            self.hits += 1
            return ProbeVerdict(unit, [])
        verdict = examine_probe_response(token, status, body, mode=self.mode)
        if not verdict.evidence and len(shape) <= self.room:
            self.shapes[shape] = verdict.unit
            self.room -= len(shape)
        return verdict
