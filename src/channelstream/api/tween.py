"""The HTTP edge of every request: proxy headers, https enforcement, body size and CORS.

A tween above Pyramid's exception view, so error responses get CORS headers too (fix F12).
The body is read here, whole and bounded by max_message_size (see `api.body.buffer_body`),
before routing, security or any view can touch it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response

from channelstream.api.body import buffer_body
from channelstream.api.errors import BadRequestBody, PayloadTooLarge, error_response, log_refusal
from channelstream.api.security import _in_networks, _parse_ip, client_address
from channelstream.logs import CLIENT_ADDRESS_KEY
from channelstream.settings import Settings

ALLOW_METHODS = "GET, POST, OPTIONS, PUT, DELETE, PATCH"
ALLOW_HEADERS = (
    "Content-Type, Depth, User-Agent, X-File-Size, X-Requested-With, If-Modified-Since, "
    "X-File-Name, Cache-Control, Pragma, Origin, Connection, Referer, Cookie, "
    "X-Channelstream-Secret"
)


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """Exact match: `scheme://host[:port]` entries against the whole origin, bare-host
    entries (optionally `host:port`) against its host (fix F12: no substring matches)."""
    origin = origin.strip().rstrip("/").lower()
    try:
        parts = urlsplit(origin)
    except ValueError:  # e.g. "http://[::1": not an origin, so not an allowed one
        return False
    for entry in allowed:
        entry = entry.strip().rstrip("/").lower()
        if "://" in entry:
            if origin == entry:
                return True
        elif entry in (parts.hostname, parts.netloc):
            return True
    return False


# The CORS headers every answer gets, whatever its origin.
CORS_HEADERS = (
    ("XDomainRequestAllowed", "1"),
    ("Access-Control-Allow-Methods", ALLOW_METHODS),
    ("Access-Control-Allow-Headers", ALLOW_HEADERS),
    ("Access-Control-Max-Age", "86400"),
)
CORS_NAMES = frozenset(name.lower() for name, _ in CORS_HEADERS) | {"access-control-allow-origin"}


def add_cors_headers(request: Request, response: Response, allowed: tuple[str, ...]) -> None:
    """Set the CORS headers. An answer has none of them yet (the usual case): appended to
    its header list at once, which is what setting each would do, without a pass over the
    list per header."""
    headerlist = response.headerlist
    if not any(name.lower() in CORS_NAMES for name, _ in headerlist):
        headerlist.extend(CORS_HEADERS)
        if not allowed:
            headerlist.append(("Access-Control-Allow-Origin", "*"))
            return
        origin = request.environ.get("HTTP_ORIGIN")
        if origin and origin_allowed(origin, allowed):
            headerlist.append(("Access-Control-Allow-Origin", origin))
        headerlist.append(("Vary", "Origin"))
        return
    headers = response.headers
    headers["XDomainRequestAllowed"] = "1"
    headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
    headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    headers["Access-Control-Max-Age"] = "86400"
    if not allowed:
        headers["Access-Control-Allow-Origin"] = "*"
        return
    origin = request.headers.get("Origin")
    if origin and origin_allowed(origin, allowed):
        headers["Access-Control-Allow-Origin"] = origin
    headers.add("Vary", "Origin")


def apply_proxy_headers(request: Request, settings: Settings) -> None:
    """X-Script-Name and X-Scheme/X-Url-Scheme as 0.7.1 honoured them; X-Forwarded-Proto
    only from a trusted proxy."""
    environ = request.environ  # the headers read where WebOb's `request.headers` reads them
    script_name = environ.get("HTTP_X_SCRIPT_NAME")
    if script_name:
        script_name = "/" + script_name.strip("/")
        request.script_name = script_name
        if request.path_info.startswith(script_name + "/"):
            request.path_info = request.path_info[len(script_name) :]
    scheme = environ.get("HTTP_X_SCHEME") or environ.get("HTTP_X_URL_SCHEME")
    if (
        not scheme
        and settings.trusted_proxies
        and _in_networks(_parse_ip(environ.get("REMOTE_ADDR", "")), settings.trusted_proxies)
    ):
        scheme = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip()
    if scheme and scheme.lower() in ("http", "https"):
        request.scheme = scheme.lower()
    if settings.http_scheme:
        request.scheme = settings.http_scheme


# Streams: their "request" lasts as long as the listener, not a latency.
UNTIMED_ROUTES = frozenset({"ws", "sse"})


def http_edge_tween_factory(
    handler: Callable[[Request], Response], registry: Registry
) -> Callable[[Request], Response]:
    settings: Settings = registry.channelstream_settings
    latency = registry.channelstream_metrics.request_latency
    by_route: dict[str, Any] = {}  # the histogram's child per route name, looked up once

    def http_edge_tween(request: Request) -> Response:
        started = time.perf_counter()
        response = _http_edge(request)
        route = request.matched_route
        name = route.name if route is not None else "unmatched"
        if name not in UNTIMED_ROUTES:
            child = by_route.get(name)
            if child is None:
                child = by_route[name] = latency.labels(route=name)
            child.observe(time.perf_counter() - started)
        return response

    def _http_edge(request: Request) -> Response:
        request.environ[CLIENT_ADDRESS_KEY] = client_address(request, settings.trusted_proxies)
        try:
            apply_proxy_headers(request, settings)
        except UnicodeDecodeError:
            log_refusal(request, 400, "Request URL is not valid UTF-8")
            response = error_response(400, "Request URL is not valid UTF-8")
            add_cors_headers(request, response, settings.allow_cors)
            return response
        if request.method == "OPTIONS":
            response = Response(status=200, body=b"", content_type="text/plain")
        elif settings.enforce_https and request.scheme != "https":
            log_refusal(request, 406, "SSL is required")
            response = error_response(406, "SSL is required")
        else:
            try:
                buffer_body(request, settings.max_message_size)
            except PayloadTooLarge as error:
                log_refusal(request, 413, str(error), warning=True)
                response = error_response(413, str(error), limit=error.limit)
            except BadRequestBody as error:
                log_refusal(request, 400, str(error))
                response = error_response(400, str(error))
            else:
                response = handler(request)
        add_cors_headers(request, response, settings.allow_cors)
        return response

    return http_edge_tween
