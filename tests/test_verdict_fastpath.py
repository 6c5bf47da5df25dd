"""harness.verdict.ProbeChecker: the shape cache gives exactly examine_probe_response's verdicts.

Each crafted body is judged twice, by the full check and by a checker that already cached the
clean shape the body was crafted from (with an earlier token); both must raise, or both must
return the same unit and the same evidence. A seeded mutation sweep does the same for bodies
with random byte edits.
"""

from __future__ import annotations

import json
import random
import typing as t

import pytest
from hypothesis import example, given, note
from hypothesis import strategies as st

from harness.load.echo import ECHO_APP, echo_body_template
from harness.verdict import ProbeChecker, ProbeProtocolError, examine_probe_response

MODE = "fast-path"
EARLIER = "ab12cd34-3-16"  # the token whose clean response was cached
TOKEN = "ab12cd34-3-17"  # the token of the response under test
PID = "4242"


def clean(token: str = TOKEN, pid: str = PID) -> bytes:
    return echo_body_template(token, pid).encode()


def primed(*bodies: tuple[str, bytes]) -> ProbeChecker:
    checker = ProbeChecker(MODE)
    for token, body in bodies or ((EARLIER, clean(EARLIER)),):
        assert checker.examine(token, 200, body).evidence == []
    return checker


def outcome(fn: t.Callable[[], t.Any]) -> tuple[str, t.Any]:
    try:
        verdict = fn()
    except ProbeProtocolError:
        return ("protocol-error", None)
    return ("verdict", (verdict.unit, verdict.evidence))


def assert_agree(token: str, body: bytes, status: int = 200) -> tuple[str, t.Any]:
    slow = outcome(lambda: examine_probe_response(token, status, body, mode=MODE))
    checker = primed()
    fast = outcome(lambda: checker.examine(token, status, body))
    again = outcome(lambda: checker.examine(token, status, body))  # now maybe from the cache
    assert fast == slow, body
    assert again == slow, body
    return slow


def doc(token: str = TOKEN) -> dict[str, t.Any]:
    rv: dict[str, t.Any] = json.loads(clean(token))
    return rv


def dumps(value: t.Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def with_seen(index: int, seen: t.Any) -> bytes:
    d = doc()
    d["obs"][index][2] = seen
    return dumps(d)


CRAFTED = [
    pytest.param(clean(), id="clean-same-shape"),
    pytest.param(clean(pid="4243"), id="clean-other-worker"),
    pytest.param(clean(EARLIER), id="earlier-token-everywhere"),
    pytest.param(with_seen(6, EARLIER), id="earlier-token-in-view"),
    pytest.param(with_seen(0, EARLIER), id="earlier-token-as-residue"),
    pytest.param(with_seen(0, TOKEN), id="own-token-as-residue"),
    pytest.param(with_seen(5, TOKEN), id="own-token-as-current-app"),
    pytest.param(with_seen(6, None), id="null-in-view"),
    pytest.param(with_seen(6, 17), id="number-in-view"),
    pytest.param(with_seen(6, TOKEN + "x"), id="token-with-suffix"),
    pytest.param(with_seen(6, "x" + TOKEN), id="token-with-prefix"),
    pytest.param(
        clean().replace(f'"{TOKEN}"'.encode(), b'"\\u0061' + TOKEN[1:].encode() + b'"', 1),
        id="token-escaped",
    ),
    pytest.param(
        clean().replace(b'"g","' + TOKEN.encode(), b'"g","\\u0061' + EARLIER[1:].encode(), 1),
        id="earlier-token-escaped",
    ),
    pytest.param(clean().replace(f'"{TOKEN}"'.encode(), b"\x00", 1), id="nul-for-token"),
    pytest.param(clean().replace(f'"{TOKEN}"'.encode(), b'"' + TOKEN.encode(), 1), id="open-q"),
    pytest.param(clean()[:-1], id="truncated"),
    pytest.param(clean() + b" ", id="trailing-space"),
    pytest.param(clean() + b"x", id="trailing-garbage"),
    pytest.param(b" " + clean(), id="leading-space"),
    pytest.param(clean().replace(b'"view"', f'"{TOKEN}"'.encode(), 1), id="token-as-phase"),
    pytest.param(clean().replace(b'"request"', f'"{TOKEN}"'.encode(), 1), id="token-as-name"),
    pytest.param(
        clean().replace(f'"{ECHO_APP}"'.encode(), f'"{TOKEN}"'.encode()), id="token-as-app"
    ),
    pytest.param(clean().replace(b'"obs"', f'"{TOKEN}":1,"obs"'.encode(), 1), id="token-as-key"),
    pytest.param(
        clean().replace(b'"obs"', b'"token":"other-1-1","obs"', 1), id="duplicate-token-key"
    ),
    pytest.param(clean().replace(b'"greenlet":null', b"", 1), id="no-greenlet"),
    pytest.param(
        clean().replace(b',["view","g",', b',["view","g",null],["view","g",', 1),
        id="extra-observation",
    ),
    pytest.param(dumps({**doc(), "obs": doc()["obs"][:-2]}), id="missing-phase"),
    pytest.param(dumps(doc()).replace(b",", b", "), id="other-spacing"),
    pytest.param(clean().replace(b"4242", b"-1", 1), id="negative-pid"),
    pytest.param(clean().replace(b"4242", b"4242.0", 1), id="float-pid"),
    pytest.param(clean().replace(b"[", b"[ ", 1), id="space-in-obs"),
    pytest.param("é".encode() + clean(), id="non-ascii-prefix"),
    pytest.param(b"\xef\xbb\xbf" + clean(), id="utf8-bom"),
    pytest.param(clean().decode().encode("utf-16"), id="utf-16"),
    pytest.param(b"", id="empty"),
    pytest.param(b"[]", id="a-list"),
]


@pytest.mark.parametrize("body", CRAFTED)
def test_fast_and_full_check_agree_on_crafted_bodies(body: bytes) -> None:
    assert_agree(TOKEN, body)


@pytest.mark.parametrize("status", [201, 404, 500])
def test_fast_and_full_check_agree_on_status(status: int) -> None:
    assert_agree(TOKEN, clean(), status=status)


@pytest.mark.parametrize(
    "token", ["view", "current_app", "tok", "a-b", "a b-1", 'x"-1', "x\\-1", "-", "é-1"]
)
def test_fast_and_full_check_agree_on_odd_tokens(token: str) -> None:
    for body in (clean(token), clean(token).replace(b'"view"', f'"{token}"'.encode(), 1)):
        assert_agree(token, body)


def test_a_known_shape_is_answered_from_the_cache() -> None:
    checker = primed()
    assert checker.examine(TOKEN, 200, clean()).evidence == []
    assert checker.hits == 1
    assert checker.examine(TOKEN, 200, clean(pid="7")).unit == (7, 7, None)
    assert checker.hits == 1  # a new unit is a new shape: checked in full, then cached
    other = "ab12cd34-0-1"
    assert checker.examine(other, 200, clean(other, pid="7")).unit == (7, 7, None)
    assert checker.hits == 2


def test_leaky_responses_are_never_cached() -> None:
    checker = primed()
    leaky = with_seen(6, EARLIER)
    for _ in range(3):
        evidence = checker.examine(TOKEN, 200, leaky).evidence
        assert [(e.phase, e.name, e.expected, e.seen) for e in evidence] == [
            ("view", "request", TOKEN, EARLIER)
        ]
    assert checker.hits == 0


def test_the_cache_is_bounded() -> None:
    shape = len(clean(pid="0").replace(f'"{TOKEN}"'.encode(), b"\x00"))
    checker = ProbeChecker(MODE, max_bytes=2 * shape)
    for pid in range(5):
        checker.examine(TOKEN, 200, clean(pid=str(pid)))
    assert len(checker.shapes) == 2


def test_the_cache_is_bounded_in_bytes() -> None:
    """A server that answers each request in a long shape of its own (a clean answer with
    200 KB of padding) grew the cache to 4,096 shapes: ctxbench run --target reached 591 MB."""
    checker = ProbeChecker(MODE)
    for i in range(60):
        padded = {**doc(), "pad": f"{i:04}" * 50_000}
        assert checker.examine(TOKEN, 200, json.dumps(padded).encode()).evidence == []
    assert sum(map(len, checker.shapes)) <= 8 << 20
    assert checker.examine(TOKEN, 200, clean()).evidence == []
    assert clean().replace(f'"{TOKEN}"'.encode(), b"\x00") in checker.shapes


def test_mutated_bodies_agree() -> None:
    """Random byte edits of a clean body (seeded): insert, delete or replace one to three bytes
    drawn from the characters that matter to JSON and to the token."""
    rng = random.Random(11)
    alphabet = b'"\\{}[],:0123456789-abcdx \x00' + TOKEN.encode() + EARLIER.encode()
    base = clean()
    outcomes: dict[str, int] = {}
    for _ in range(3000):
        body = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(body))
            op = rng.random()
            if op < 0.3:
                del body[i]
            elif op < 0.6:
                body.insert(i, rng.choice(alphabet))
            else:
                body[i] = rng.choice(alphabet)
        kind, _ = assert_agree(TOKEN, bytes(body))
        outcomes[kind] = outcomes.get(kind, 0) + 1
    # The sweep reached both sides of the verdict.
    assert outcomes.get("protocol-error", 0) > 100 and outcomes.get("verdict", 0) > 100


def test_swapped_token_pieces_agree() -> None:
    """Every string value of a clean body replaced, one at a time, by tokens and names."""
    d = doc()
    candidates = [TOKEN, EARLIER, ECHO_APP, None, "view", "", TOKEN.upper()]
    for i in range(len(d["obs"])):
        for j in range(3):
            for value in candidates:
                mutated = doc()
                mutated["obs"][i][j] = value
                assert_agree(TOKEN, dumps(mutated))
    for key in ("token", "app"):
        for value in candidates:
            assert_agree(TOKEN, dumps({**d, key: value}))


def test_an_escaped_token_does_not_make_a_shape() -> None:
    # Clean for EARLIER (the escape decodes to EARLIER); for TOKEN the same bytes are a leak.
    escaped = b'"\\u0061' + EARLIER[1:].encode() + b'"'
    earlier_body = clean(EARLIER).replace(f'"{EARLIER}"'.encode(), escaped, 1)
    checker = primed((EARLIER, earlier_body))
    token_body = earlier_body.replace(f'"{EARLIER}"'.encode(), f'"{TOKEN}"'.encode())
    assert checker.examine(TOKEN, 200, token_body).evidence != []


def test_mutated_shapes_agree() -> None:
    """The case the cache must get right: a body of a cached shape. Mutate the body for the
    earlier token, cache it if it is clean, then judge the same mutation for the new token (the
    one body of that shape) both ways."""
    rng = random.Random(12)
    earlier_q, token_q = f'"{EARLIER}"'.encode(), f'"{TOKEN}"'.encode()
    escaped_q = b'"\\u0061' + EARLIER[1:].encode() + b'"'  # EARLIER, spelled with an escape
    pieces = [earlier_q, escaped_q, b" ", b'"x"', b"null", b",", b'"view"', b"\\", b"\x00", b'"']
    clean_edits: list[t.Callable[[dict[str, t.Any]], None]] = [
        lambda d: d.__setitem__("extra", EARLIER),
        lambda d: d["obs"].insert(7, ["view", "custom", EARLIER]),
        lambda d: d["obs"].insert(1, ["entry", "residue.custom", None]),
        lambda d: d["worker"].__setitem__("greenlet", 99),
        lambda d: d.__setitem__(EARLIER, [EARLIER, 1]),
    ]
    hits = 0
    for _ in range(3000):
        d = json.loads(clean(EARLIER))
        for edit in rng.sample(clean_edits, rng.randint(0, 3)):
            edit(d)
        body = bytearray(json.dumps(d, separators=rng.choice([(",", ":"), (", ", ": ")])).encode())
        for _ in range(rng.randint(0, 2)):
            i = rng.randrange(len(body))
            piece = rng.choice(pieces)
            if rng.random() < 0.5:
                body[i:i] = piece
            else:
                body[i : i + len(piece)] = piece
        earlier_body = bytes(body)
        checker = ProbeChecker(MODE)
        outcome(lambda b=earlier_body, c=checker: c.examine(EARLIER, 200, b))  # cached if clean
        token_body = earlier_body.replace(earlier_q, token_q)
        before = checker.hits
        fast = outcome(lambda b=token_body, c=checker: c.examine(TOKEN, 200, b))
        hits += checker.hits - before
        slow = outcome(lambda b=token_body: examine_probe_response(TOKEN, 200, b, mode=MODE))
        assert fast == slow, token_body
    assert hits > 500  # the sweep did exercise the cache


# -- property: any body, any token, both ways agree (hypothesis, the profile tests/conftest.py
# loads: 1,000 derandomized examples by default) ------------------------------------------------

_JSON_BITS = ['"', "\\", "{", "}", "[", "]", ",", ":", " ", "null", "0", "-", "\x00", "é"]
_ESCAPED_EARLIER = '"\\u0061' + EARLIER[1:] + '"'  # EARLIER, spelled with an escape
Edit = tuple[int, str, int]  # (position, piece, 0 insert | 1 overwrite | 2 replace a token)


def _edits() -> st.SearchStrategy[list[Edit]]:
    pieces = [*_JSON_BITS, f'"{EARLIER}"', f'"{TOKEN}"', _ESCAPED_EARLIER, EARLIER, "view"]
    return st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(pieces), st.integers(0, 2)), max_size=2
    )


def _apply(body: bytes, edits: list[Edit], token: str) -> bytes:
    out = bytearray(body)
    for pos, bit, op in edits:
        i = pos % (len(out) + 1)
        piece = bit.encode()
        if op == 0:
            out[i:i] = piece
        elif op == 1:
            out[i : i + len(piece)] = piece
        else:  # one of the token's quoted strings becomes the piece
            quoted = f'"{token}"'.encode()
            hits = [k for k in range(len(out)) if out.startswith(quoted, k)]
            if hits:
                k = hits[pos % len(hits)]
                out[k : k + len(quoted)] = piece
    return bytes(out)


def _shape_case(
    edits: list[Edit], late: list[Edit], earlier_first: bool, pid: int
) -> tuple[tuple[str, t.Any], tuple[str, t.Any], bytes]:
    """Cache the (possibly edited) body for the earlier token, then judge the same edits for
    the new token (the one body that can take the short way), edited again or not, both ways."""
    earlier_body = _apply(clean(EARLIER, pid=str(pid)), edits, EARLIER)
    token_body = earlier_body.replace(f'"{EARLIER}"'.encode(), f'"{TOKEN}"'.encode())
    token_body = _apply(token_body, late, TOKEN)
    checker = ProbeChecker(MODE)
    if earlier_first:
        outcome(lambda: checker.examine(EARLIER, 200, earlier_body))
    fast = outcome(lambda: checker.examine(TOKEN, 200, token_body))
    slow = outcome(lambda: examine_probe_response(TOKEN, 200, token_body, mode=MODE))
    return fast, slow, token_body


@given(
    edits=_edits(),
    late=st.just([]) | _edits(),
    earlier_first=st.booleans(),
    pid=st.integers(0, 2**31),
)
# The two ways a shape could lie, always tried: an escaped spelling of the earlier token (clean
# for it, a leak for the new one), and a NUL byte where the new token's string was.
@example(edits=[(7, _ESCAPED_EARLIER, 2)], late=[], earlier_first=True, pid=1)
@example(edits=[], late=[(3, "\x00", 2)], earlier_first=True, pid=1)
def test_property_a_cached_shape_never_changes_the_verdict(
    edits: list[Edit], late: list[Edit], earlier_first: bool, pid: int
) -> None:
    fast, slow, body = _shape_case(edits, late, earlier_first, pid)
    note(f"body={body!r}")
    assert fast == slow
