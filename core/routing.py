"""URL routing: the URL map, URL adapters per host, the static-route shortcut, ``url_for``.

Design note: matching runs once per request, inside ``RequestContext.push``, in whatever thread
or greenlet serves the request; nothing here is per-request state. Two caches are shared by all
requests and need no lock:

- URL adapters, keyed by (Host, server name and port, script root, scheme): a plain dict,
  written with a whole new adapter and cleared when it grows past a bound (clients choose the
  Host header). werkzeug's ``MapAdapter.match`` does not mutate the adapter.
- the static-route table: ``(path, method) -> rule`` for the rules a dict lookup matches exactly
  as werkzeug does, rebuilt when :class:`URLMap`'s change counter moves. A hit skips werkzeug's
  matcher and the adapter, unless the Host header is one werkzeug could reject (see
  :meth:`RoutingMixin.match_request`), so both kinds of route answer a bad Host alike.
"""

from __future__ import annotations

import typing as t
from urllib.parse import quote

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, MapAdapter, RequestRedirect, Rule

if t.TYPE_CHECKING:
    from .config import Config
    from .ctx import RequestContext
    from .wrappers import Request

__all__ = ["RoutingMixin", "URLMap"]

_MAX_CACHED_ADAPTERS = 64
_ANCHOR_SAFE = "%!#$&'()*+,/:;=?@"


class URLMap(Map):
    """A werkzeug ``Map`` that counts its changes, so the app can cache a static-route table."""

    version = 0

    def add(self, rulefactory: t.Any) -> None:
        super().add(rulefactory)
        self.version += 1


class RoutingMixin:
    """The routing half of :class:`~core.app.App`: it owns ``url_map`` and matches requests
    against it. Not used on its own."""

    config: Config

    def __init__(self) -> None:
        super().__init__()
        self.url_map: Map = URLMap()
        self._adapters: dict[tuple[t.Any, ...], MapAdapter] = {}
        self._static_routes: tuple[Map, int, dict[tuple[str, str], Rule]] | None = None

    def create_url_adapter(self, request: Request | None) -> MapAdapter | None:
        """Return a ``MapAdapter`` for ``request``'s host, script root and scheme.

        Without a request, bind to ``SERVER_NAME`` (``None`` if it is not set). Adapters are
        cached per (host, script root, scheme); the cache is bounded, since clients choose the
        Host header.
        """
        config = self.config
        if request is None:
            server_name = config["SERVER_NAME"]
            if server_name is None:
                return None
            return self.url_map.bind(
                server_name,
                script_name=config["APPLICATION_ROOT"],
                url_scheme=config["PREFERRED_URL_SCHEME"],
            )
        environ = request.environ
        key = (
            environ.get("HTTP_HOST"),
            environ.get("SERVER_NAME"),
            environ.get("SERVER_PORT"),
            request.root_path,
            request.scheme,
        )
        rv = self._adapters.get(key)
        if rv is None:
            rv = self.url_map.bind(
                config["SERVER_NAME"] or request.host,
                script_name=request.root_path or "/",
                url_scheme=request.scheme,
            )
            if len(self._adapters) >= _MAX_CACHED_ADAPTERS:
                self._adapters.clear()
            self._adapters[key] = rv
        return rv

    def _static_route_table(self) -> dict[tuple[str, str], Rule] | None:
        """(path, method) -> rule for the rules a plain dict lookup matches exactly as werkzeug.

        Only rules without converters, defaults, redirects, host or subdomain parts qualify;
        a path with any other rule, or with two rules for one method, is left to werkzeug.
        werkzeug tries static rules before dynamic ones, so an exact static hit is its answer
        too. ``None`` when the map is not a :class:`URLMap` (no change counter to trust).
        """
        url_map = self.url_map
        version = getattr(url_map, "version", None)
        if version is None or url_map.host_matching:
            return None
        cached = self._static_routes
        if cached is not None and cached[0] is url_map and cached[1] == version:
            return cached[2]
        table: dict[tuple[str, str], Rule] = {}
        excluded: set[str] = set()
        for rule in url_map.iter_rules():
            if rule.arguments:
                continue
            if (
                rule.defaults
                or rule.redirect_to is not None
                or rule.subdomain
                or rule.host
                or rule.websocket
                or rule.build_only
                or rule.alias
                or rule.methods is None
            ):
                excluded.add(rule.rule)
                continue
            for method in rule.methods:
                key = (rule.rule, method)
                if key in table:
                    excluded.add(rule.rule)
                table[key] = rule
        table = {k: v for k, v in table.items() if k[0] not in excluded}
        self._static_routes = (url_map, version, table)
        return table

    def match_request(self, ctx: RequestContext) -> None:
        """Match ``ctx.request`` against the URL map; an HTTP error is kept for dispatch.

        A Host header werkzeug cannot bind an adapter to is a 400 on every rule, with or
        without URL parameters (unless ``SERVER_NAME`` is set: then the Host is not used).
        """
        request = ctx.request
        cached = self._static_routes
        url_map = self.url_map
        if (
            cached is not None and cached[0] is url_map and cached[1] == url_map.version  # type: ignore[attr-defined]
        ):
            static: dict[tuple[str, str], Rule] | None = cached[2]
        else:
            static = self._static_route_table()
        if static is not None:
            rule = static.get((request.path, request.method))
            if rule is not None:
                # Binding an adapter rejects a Host whose name has a label that is empty or over
                # 63 characters (werkzeug's BadHost, a 400). A Host under 64 characters with no
                # empty label always binds, so skip the adapter only for those; any other Host
                # takes werkzeug's path, which gives the same answer as for a dynamic rule.
                host = request.environ.get("HTTP_HOST")
                if host is None or (len(host) < 64 and ".." not in host and host[:1] != "."):
                    request.url_rule = rule
                    request.view_args = {}
                    return
        try:
            adapter = ctx.url_adapter
            try:
                rule, args = adapter.match(
                    request.path, request.method, return_rule=True, query_args="", websocket=False
                )
            except RequestRedirect:
                # Build the redirect again, now with the query string.
                rule, args = adapter.match(
                    request.path,
                    request.method,
                    return_rule=True,
                    query_args=request.query_string.decode("latin-1"),
                    websocket=False,
                )
            request.url_rule = rule
            request.view_args = t.cast("dict[str, t.Any]", args)
        except HTTPException as e:
            request.routing_exception = e

    def url_for(
        self,
        endpoint: str,
        *,
        _external: bool | None = None,
        _method: str | None = None,
        _scheme: str | None = None,
        _anchor: str | None = None,
        **values: t.Any,
    ) -> str:
        """Build a URL for ``endpoint``; see :func:`core.url_for`."""
        from . import storage as _storage

        ctx = _storage.request_slot.get(None)
        if ctx is not None and ctx.app is self:
            adapter: MapAdapter = ctx.url_adapter
            external = _scheme is not None if _external is None else _external
        else:
            app_adapter = self.create_url_adapter(None)
            if app_adapter is None:
                raise RuntimeError(
                    f"Cannot build a URL for {endpoint!r} outside a request: SERVER_NAME is not"
                    " set.\n\nOutside a request there is no Host to build the URL from.\n\n"
                    "Set app.config['SERVER_NAME'] (and APPLICATION_ROOT, PREFERRED_URL_SCHEME),"
                    " or call url_for() inside a request or test_request_context()."
                )
            adapter = app_adapter
            external = True if _external is None else _external
        if _scheme is not None:
            if not external:
                raise ValueError(
                    f"url_for({endpoint!r}, _scheme={_scheme!r}) needs _external=True: a scheme"
                    " only appears in an absolute URL."
                )
            adapter = self.url_map.bind(
                adapter.server_name, adapter.script_name, url_scheme=_scheme
            )
        rv = adapter.build(endpoint, values, method=_method, force_external=external)
        if _anchor is not None:
            rv = f"{rv}#{quote(_anchor, safe=_ANCHOR_SAFE)}"
        return rv
