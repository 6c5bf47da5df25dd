"""The probe's streamed route: ``GET /_ctxbench/probe/stream``, a long body under
``stream_with_context``.

Design note: the view runs like any other in the thread or greenlet serving the request; it
stores the token in ``g`` and returns a generator wrapped in the framework's
``stream_with_context``, which keeps the request context pushed while the server iterates the
body, chunk after chunk, after the view has returned. Every chunk is one JSON line with what
``request`` and ``g`` hold at that moment and the unit producing it (``worker``, as in a probe
response), padded to a fixed size, so a client that reads the
whole body can check each chunk against its token, and a client that leaves after the first
bytes (:func:`harness.load.hostile.abort_mid_body`) leaves the server with a half-sent body to
abandon: the server finds out on its next write and closes the iterator, which must pop the
context. What the *next* request served by that thread or greenlet finds is checked by the
ordinary probe. The middleware passes this path through untouched (it streams; nothing is
buffered), behind the probe's secret when it has one.

Query: ``token`` (required, as for the probe), ``chunks`` (1..100000, default 64),
``chunk_ms`` (a sleep between chunks, 0..1000, default 1), ``size`` (the bytes each chunk is
padded to, 64..65536, default 1024; a chunk whose JSON is longer is not cut).
"""

from __future__ import annotations

import json
import math
import time
import typing as t
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from .frameworks import Framework
from .middleware import _TOKEN_RE, STREAM_PATH

__all__ = ["STREAM_PATH", "StreamQuery", "make_stream_view", "parse_stream_query", "read_chunks"]

_LIMITS = {"chunks": (1, 100_000, 64), "chunk_ms": (0, 1000, 1), "size": (64, 65536, 1024)}


@dataclass(frozen=True)
class StreamQuery:
    token: str
    chunks: int
    chunk_s: float
    size: int


def parse_stream_query(args: Mapping[str, str]) -> StreamQuery:
    """Read the stream route's query; raise ``ValueError`` with a message for the client."""
    token = args.get("token")
    if token is None or _TOKEN_RE.match(token) is None:
        raise ValueError(f"The token must match [A-Za-z0-9_-]{{1,64}}, got {token!r}.")
    values: dict[str, float] = {}
    for name, (low, high, default) in _LIMITS.items():
        raw = args.get(name)
        try:
            value = float(default if raw is None else raw)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {raw!r}.") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"{name} must be between {low} and {high}, got {raw!r}.")
        values[name] = value
    return StreamQuery(
        token, int(values["chunks"]), values["chunk_ms"] / 1000.0, int(values["size"])
    )


def make_stream_view(
    fw: Framework, response_class: t.Any, worker: t.Callable[[], dict[str, int | None]]
) -> t.Callable[[], t.Any]:
    """Build the view of :data:`STREAM_PATH` for one framework; ``worker()`` says which unit
    (pid, thread, greenlet) is producing a chunk."""

    def ctxbench_probe_stream() -> t.Any:
        try:
            query = parse_stream_query(fw.request.args)
        except ValueError as exc:
            return response_class(f"{exc}\n", status=400, mimetype="text/plain")
        fw.store_g(query.token)

        def generate() -> Iterator[bytes]:
            for i in range(query.chunks):
                line = json.dumps(
                    {
                        "i": i,
                        "request": fw.read_request_token(),
                        "g": fw.read_g(),
                        "worker": worker(),
                    },
                    separators=(",", ":"),
                )
                yield (line.ljust(query.size - 1) + "\n").encode()
                if query.chunk_s > 0.0:
                    time.sleep(query.chunk_s)

        return response_class(fw.stream_with_context(generate()), mimetype="application/x-ndjson")

    return ctxbench_probe_stream


def read_chunks(body: bytes) -> list[dict[str, t.Any]]:
    """The chunks of a whole stream body, in order; raise ``ValueError`` on anything else."""
    rv = []
    for line in body.splitlines():
        item = json.loads(line)
        if not isinstance(item, dict) or "i" not in item:
            raise ValueError(f"not a stream chunk: {line[:80]!r}")
        rv.append(item)
    return rv
