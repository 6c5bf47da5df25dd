"""The request and response classes the core uses.

:class:`Request` adds what routing found (``url_rule``, ``view_args``, ``routing_exception``)
and reads its body limits from the app's config, so a client cannot make the server buffer an
unbounded body or form.
"""

from __future__ import annotations

import typing as t

from werkzeug.wrappers import Request as _WerkzeugRequest
from werkzeug.wrappers import Response as _WerkzeugResponse

if t.TYPE_CHECKING:
    from werkzeug.exceptions import HTTPException
    from werkzeug.routing import Rule

__all__ = ["Request", "Response"]


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
