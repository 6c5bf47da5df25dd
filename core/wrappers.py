"""The request and response classes the core uses.

:class:`Request` adds what routing found (``url_rule``, ``view_args``, ``routing_exception``)
and reads its body limits from the app's config, so a client cannot make the server buffer an
unbounded body or form.

It also turns input that werkzeug cannot decode into a 400 instead of an unhandled exception
(a 500, in Flask 3.1 too) or a silently empty form: a query string or an urlencoded form body
that is not UTF-8 (a ``%XX`` escape that is not UTF-8 stays escaped in the value, werkzeug's
rule, and is not an error), and JSON nested deeper than the interpreter can parse; and it
closes the uploads of a multipart body that fails to parse.
"""

from __future__ import annotations

import json
import typing as t
from urllib.parse import parse_qsl

from werkzeug.exceptions import BadRequest
from werkzeug.formparser import FormDataParser as _WerkzeugFormDataParser
from werkzeug.utils import cached_property
from werkzeug.wrappers import Request as _WerkzeugRequest
from werkzeug.wrappers import Response as _WerkzeugResponse

if t.TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict
    from werkzeug.exceptions import HTTPException
    from werkzeug.formparser import t_parse_result
    from werkzeug.routing import Rule

__all__ = ["FormDataParser", "Request", "Response"]

_URLENCODED = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"


def _decode_utf8(data: bytes, what: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise BadRequest(
            f"The {what} is not valid UTF-8 (byte {data[e.start]:#04x} at offset {e.start})."
            " Percent-encode it as UTF-8."
        ) from None


def _parse_urlencoded(text: str) -> list[tuple[str, str]]:
    # werkzeug's own parsing: a %XX escape that is not UTF-8 stays escaped in the value.
    return parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote")


class FormDataParser(_WerkzeugFormDataParser):
    """werkzeug's form parser, except that an urlencoded body that is not UTF-8 is a 400, and a
    multipart body that fails to parse closes the uploaded files it had already opened.

    werkzeug's parser is silent: it swallows the decoding error and gives the view an empty
    form, as if the client had sent nothing. And when a multipart body turns out malformed or
    short after a file part, werkzeug drops that part's temporary file without closing it (a
    ``ResourceWarning``; above 500 kB a real file descriptor, held until garbage collection).
    """

    def parse(
        self,
        stream: t.IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str] | None = None,
    ) -> t_parse_result:
        if mimetype == _URLENCODED:
            items = _parse_urlencoded(_decode_utf8(stream.read(), "form body"))
            return stream, self.cls(items), self.cls()
        if mimetype != _MULTIPART:
            return super().parse(stream, mimetype, content_length, options)
        opened: list[t.IO[bytes]] = []
        factory = self.stream_factory  # this parser serves one request: no one else sees it

        def open_file(*args: t.Any, **kwargs: t.Any) -> t.IO[bytes]:
            rv = factory(*args, **kwargs)
            opened.append(rv)
            return rv

        self.stream_factory = open_file
        try:
            rv = super().parse(stream, mimetype, content_length, options)
        except BaseException:
            _close_all(opened)
            raise
        finally:
            self.stream_factory = factory
        kept = {id(upload.stream) for _, upload in rv[2].items(multi=True)}
        _close_all(f for f in opened if id(f) not in kept)  # a parse that failed silently
        return rv


def _close_all(files: t.Iterable[t.IO[bytes]]) -> None:
    for f in files:
        f.close()


class _JSON:
    """The ``json`` module for :attr:`Request.json_module`, with a recursion limit that is the
    client's error: werkzeug answers a ``ValueError`` from ``loads`` with a 400."""

    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(s: str | bytes, **kwargs: t.Any) -> t.Any:
        try:
            return json.loads(s, **kwargs)
        except RecursionError:
            raise ValueError("The JSON body is nested too deeply to parse.") from None


class Request(_WerkzeugRequest):
    """A werkzeug request that knows its matched rule and its app's body limits.

    ``max_content_length``, ``max_form_memory_size`` and ``max_form_parts`` come from the app's
    ``MAX_CONTENT_LENGTH``, ``MAX_FORM_MEMORY_SIZE`` and ``MAX_FORM_PARTS`` config keys unless
    set on the request itself. Reading a body over a limit raises werkzeug's
    ``RequestEntityTooLarge`` (a 413 response).
    """

    #: The rule that matched, or ``None`` if routing failed or has not run.
    url_rule: Rule | None = None
    #: The arguments the rule extracted from the URL.
    view_args: dict[str, t.Any] | None = None
    #: The ``NotFound``/``MethodNotAllowed``/redirect routing raised, raised again on dispatch.
    routing_exception: HTTPException | None = None

    form_data_parser_class = FormDataParser
    json_module = _JSON  # type: ignore[assignment]  # werkzeug types it as the json module

    @cached_property
    def args(self) -> MultiDict[str, str]:
        """The parsed query string, as werkzeug parses it; a 400 if it is not UTF-8."""
        return self.parameter_storage_class(
            _parse_urlencoded(_decode_utf8(self.query_string, "query string"))
        )

    #: The app's config, set by the request context that creates the request.
    _config: t.Mapping[str, t.Any] | None = None
    _limits: dict[str, int | None] | None = None

    def _limit(self, key: str, default: int | None) -> int | None:
        if self._limits is not None and key in self._limits:
            return self._limits[key]
        if self._config is None:
            return default
        rv = self._config.get(key, default)
        return None if rv is None else int(rv)

    def _set_limit(self, key: str, value: int | None) -> None:
        if self._limits is None:
            self._limits = {}
        self._limits[key] = value

    @property
    def max_content_length(self) -> int | None:
        """The largest body, in bytes, that the request will read (``MAX_CONTENT_LENGTH``)."""
        return self._limit("MAX_CONTENT_LENGTH", None)

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._set_limit("MAX_CONTENT_LENGTH", value)

    @property
    def max_form_memory_size(self) -> int | None:
        """The largest non-file form field, in bytes (``MAX_FORM_MEMORY_SIZE``)."""
        return self._limit("MAX_FORM_MEMORY_SIZE", 500_000)

    @max_form_memory_size.setter
    def max_form_memory_size(self, value: int | None) -> None:
        self._set_limit("MAX_FORM_MEMORY_SIZE", value)

    @property  # type: ignore[override]
    def max_form_parts(self) -> int | None:
        """The largest number of multipart form parts (``MAX_FORM_PARTS``)."""
        return self._limit("MAX_FORM_PARTS", 1000)

    @max_form_parts.setter
    def max_form_parts(self, value: int | None) -> None:
        self._set_limit("MAX_FORM_PARTS", value)

    @property
    def endpoint(self) -> str | None:
        """The endpoint of the matched rule, or ``None``."""
        return self.url_rule.endpoint if self.url_rule is not None else None


class Response(_WerkzeugResponse):
    """The response class the core builds; ``text/html`` unless a view says otherwise."""

    default_mimetype = "text/html"
