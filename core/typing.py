"""Type aliases for views, hooks and error handlers.

The decorators on :class:`core.App` are typed with the ``T_*`` variables below, so a decorated
function keeps its own signature for the type checker.
"""

from __future__ import annotations

import typing as t
from collections.abc import Callable, Iterator, Mapping, Sequence

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from werkzeug.datastructures import Headers
    from werkzeug.wrappers import Response

#: What a view may return as the body.
ResponseValue: t.TypeAlias = (
    "Response | str | bytes | dict[str, t.Any] | list[t.Any] | Iterator[str] | Iterator[bytes]"
)

#: A single header value, or several values for one name.
HeaderValue: t.TypeAlias = "str | list[str] | tuple[str, ...]"

#: Headers in any shape that a view may return in a tuple.
HeadersValue: t.TypeAlias = (
    "Headers | Mapping[str, HeaderValue] | Sequence[tuple[str, HeaderValue]]"
)

#: Everything a view, a ``before_request`` hook or an error handler may return.
ResponseReturnValue: t.TypeAlias = (
    "ResponseValue"
    " | tuple[ResponseValue, HeadersValue]"
    " | tuple[ResponseValue, int | str]"
    " | tuple[ResponseValue, int | str, HeadersValue]"
    " | WSGIApplication"
)

RouteCallable: t.TypeAlias = "Callable[..., ResponseReturnValue]"
BeforeFirstRequestCallable: t.TypeAlias = "Callable[[], object]"
BeforeRequestCallable: t.TypeAlias = "Callable[[], ResponseReturnValue | None]"
AfterRequestCallable: t.TypeAlias = "Callable[[Response], Response]"
TeardownCallable: t.TypeAlias = "Callable[[BaseException | None], object]"
ErrorHandlerCallable: t.TypeAlias = "Callable[[t.Any], ResponseReturnValue]"

T_route = t.TypeVar("T_route", bound=RouteCallable)
T_before_first_request = t.TypeVar("T_before_first_request", bound=BeforeFirstRequestCallable)
T_before_request = t.TypeVar("T_before_request", bound=BeforeRequestCallable)
T_after_request = t.TypeVar("T_after_request", bound=AfterRequestCallable)
T_teardown = t.TypeVar("T_teardown", bound=TeardownCallable)
T_error_handler = t.TypeVar("T_error_handler", bound=ErrorHandlerCallable)
T_callable = t.TypeVar("T_callable", bound=Callable[..., t.Any])
