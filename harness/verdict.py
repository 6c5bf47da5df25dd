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
"""

from __future__ import annotations

import json
import typing as t
from dataclasses import asdict, dataclass

from harness.protocol import PHASES, RESIDUE_PREFIX

__all__ = [
    "Evidence",
    "ProbeProtocolError",
    "ProbeVerdict",
    "Unit",
    "UnitKey",
    "check_probe_response",
    "examine_probe_response",
]

#: Every probe response carries at least one observation from each phase.
_PHASES = frozenset(PHASES)
_RESIDUE_LEN = len(RESIDUE_PREFIX)

#: An execution unit as the load driver collects it: ``(pid, thread, greenlet)``.
UnitKey = tuple[int, int, int | None]


class ProbeProtocolError(ValueError):
    """The response is not a well-formed probe response, so it says nothing about isolation."""


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
        " /_ctxbench/probe."
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
            evidence.append(Evidence(mode, phase, name, expected, seen, Unit(*key)))
    if len(phases) != len(_PHASES):
        missing = ", ".join(sorted(_PHASES - phases))
        raise _fail(token, f"no observations from phase(s) {missing}", body)
    return ProbeVerdict(key, evidence)


def _as_seen(value: object) -> str | None:
    return value if value is None or isinstance(value, str) else repr(value)


def check_probe_response(token: str, status: int, body: bytes, *, mode: str) -> list[Evidence]:
    """Return the isolation failures shown by one probe response (empty when it is clean).

    ``token`` is what the client sent, ``status`` and ``body`` what it got back, ``mode`` a label
    (the server mode) copied into each :class:`Evidence`. Raises :class:`ProbeProtocolError`
    when the status is not 200 or the body is not a complete probe response.
    """
    return examine_probe_response(token, status, body, mode=mode).evidence
