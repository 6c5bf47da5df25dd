"""The smallest HTTP/1.1 response parsing the driver needs.

The driver sends one GET at a time per connection and reads exactly one response back, so it
needs the status code, where the body ends (``Content-Length``, chunked, or read until close) and
whether the server will close the connection. Everything else is ignored.
"""

from __future__ import annotations

__all__ = ["MAX_BODY", "Dechunker", "HttpProtocolError", "ResponseHead", "dechunk", "parse_head"]

#: The longest response body read: a probe answer is about 1 KB (a few more with the app's own
#: observe() names), and a server that sends more, or without end, must not fill the memory of
#: the process reading it.
MAX_BODY = 1 << 20


class HttpProtocolError(ValueError):
    """The bytes received are not an HTTP/1.x response the driver can read."""


# Body framing of a response head.
LENGTH = 0
CHUNKED = 1
UNTIL_CLOSE = 2
#: An interim response (100 Continue, 103 Early Hints): no body, and the final one follows.
INTERIM = 3


class ResponseHead:
    __slots__ = ("close", "framing", "length", "status")

    def __init__(self, status: int, framing: int, length: int, close: bool) -> None:
        self.status = status
        self.framing = framing
        self.length = length
        self.close = close


def _header(lower: bytes, name: bytes) -> bytes | None:
    i = lower.find(name)
    if i < 0:
        return None
    i += len(name)
    j = lower.find(b"\r\n", i)
    return lower[i : j if j >= 0 else len(lower)].strip()


def parse_head(head: bytes) -> ResponseHead:
    """Parse a response head, status line to the last header, without the blank line.

    An interim response (1xx but 101) has the framing ``INTERIM``: skip it and read the next
    head."""
    if not head.startswith(b"HTTP/1."):
        raise HttpProtocolError(f"not an HTTP/1.x status line: {head[:80]!r}")
    try:
        status = int(head[9:12])
    except ValueError:
        raise HttpProtocolError(f"bad status line: {head[:80]!r}") from None
    if status < 200:
        if status < 100 or status == 101:  # the driver never asks to switch protocols
            raise HttpProtocolError(f"unexpected informational response {status}")
        # A client must read any number of these before the final response (RFC 9110, 15.2).
        return ResponseHead(status, INTERIM, 0, False)
    lower = head.lower()
    connection = _header(lower, b"\r\nconnection:")
    if head[7:8] == b"0":  # HTTP/1.0: closes unless told otherwise
        close = connection is None or b"keep-alive" not in connection
    else:
        close = connection is not None and b"close" in connection
    encoding = _header(lower, b"\r\ntransfer-encoding:")
    if encoding is not None:
        if encoding != b"chunked":
            raise HttpProtocolError(f"unsupported Transfer-Encoding {encoding!r}")
        return ResponseHead(status, CHUNKED, -1, close)
    length = _header(lower, b"\r\ncontent-length:")
    if length is not None:
        try:
            n = int(length)
        except ValueError:
            raise HttpProtocolError(f"bad Content-Length {length!r}") from None
        if n < 0:
            raise HttpProtocolError(f"bad Content-Length {length!r}")
        # Two that differ leave the response's end unknown (RFC 9112, 6.3): reading by the
        # first judged what it framed, which need not be the answer the server meant.
        if lower.count(b"\r\ncontent-length:") > 1:
            lengths = {
                v.split(b"\r\n", 1)[0].strip() for v in lower.split(b"\r\ncontent-length:")[1:]
            }
            if len(lengths) > 1:
                raise HttpProtocolError(f"Content-Length given as {sorted(lengths)!r}")
        return ResponseHead(status, LENGTH, n, close)
    if status in (204, 304):
        return ResponseHead(status, LENGTH, 0, close)
    return ResponseHead(status, UNTIL_CLOSE, -1, True)


def dechunk(data: bytes | bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``data[start]``.

    Return ``(body, end)`` once the last chunk and the trailer are in ``data``, ``None`` while
    more bytes are needed; raise :class:`HttpProtocolError` on malformed framing. To read a
    body as it arrives, feed a :class:`Dechunker` instead: this decodes it from its start.
    """
    return Dechunker(start).feed(data)


class Dechunker:
    """A chunked body decoded as it arrives, each chunk once: after each read, :meth:`feed` it
    everything received so far (decoding it all again each time is quadratic in the reads, and
    a server can send a body one byte at a time)."""

    def __init__(self, start: int) -> None:
        self.pos = start  # where the first chunk not yet decoded starts
        self.parts: list[bytes] = []

    def feed(self, data: bytes | bytearray) -> tuple[bytes, int] | None:
        """``(body, end)`` once the last chunk and the trailer are in ``data``, ``None`` while
        more bytes are needed; raises :class:`HttpProtocolError` on malformed framing."""
        while True:
            eol = data.find(b"\r\n", self.pos)
            if eol < 0:
                return None
            size_field = bytes(data[self.pos : eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                size = -1
            if size < 0:  # "-6" took pos back to the start of its line, for ever
                raise HttpProtocolError(f"bad chunk size {size_field!r}")
            pos = eol + 2
            if size == 0:
                # Skip trailer fields up to the blank line.
                while True:
                    eol = data.find(b"\r\n", pos)
                    if eol < 0:
                        return None
                    if eol == pos:
                        return b"".join(self.parts), eol + 2
                    pos = eol + 2
            if len(data) < pos + size + 2:
                return None
            if data[pos + size : pos + size + 2] != b"\r\n":
                raise HttpProtocolError("chunk not followed by CRLF")
            self.parts.append(bytes(data[pos : pos + size]))
            self.pos = pos + size + 2
