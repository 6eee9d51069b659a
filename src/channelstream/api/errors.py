"""One error envelope for every failed request (fix F5): JSON, always.

Shapes kept from 0.7.1 where clients may read them: 422 is marshmallow's field-error dict,
401 is `{"request": "Bad Signature"}`. Everything else is
`{"error": <stable code>, "message": <text>}` plus 0.7.1's `code`/`title` keys, and `limit`
(the setting) when a limit refused the request.

Every refused request logs exactly one line (`log_refusal`): the route, the client address,
the status and why. WARNING for limits (413, 422 max_channels_per_connection, 503
max_connections, 429 max_connections_per_user) and for security (401, 403); INFO for
malformed or invalid input (400, 404, 406, 415, 422). Unexpected errors (500) log at ERROR
with their stack trace.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from marshmallow import ValidationError
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPException, HTTPForbidden
from pyramid.request import Request
from pyramid.response import Response

from channelstream import encoding
from channelstream.api.security import client_address
from channelstream.broker import BrokerUnavailable
from channelstream.core.errors import (
    ConnectionOwnedByOther,
    TooManyChannels,
    TooManyConnections,
    TooManyUserConnections,
    UnknownConnection,
    UnknownUser,
)
from channelstream.exceptions import BadSignature, ChannelstreamException, TokenRefused
from channelstream.logs import escaped

log = logging.getLogger(__name__)

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    406: "https_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "invalid",
    426: "upgrade_required",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class BadRequestBody(ChannelstreamException):
    """The request body is not the JSON it should be (400)."""


class UnsupportedCharset(ChannelstreamException):
    """The request body is declared in a charset other than UTF-8 (415)."""


class PayloadTooLarge(ChannelstreamException):
    """The request body exceeds a limit (413): `limit` names the setting (max_message_size,
    max_json_depth or max_json_items)."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


# Limits the log lines of refusals (a path may be 8 KB of attacker's choosing).
LOGGED_TEXT_LENGTH = 200


def printable(text: str) -> str:
    """`text` for a log line: control and non-ASCII characters escaped, cut to a length."""
    return escaped(text, LOGGED_TEXT_LENGTH)


def route_of(request: Request) -> str:
    """`METHOD /pattern` of the matched route, else of the raw path."""
    route = request.matched_route
    path = route.pattern if route is not None else str(request.environ.get("PATH_INFO", ""))
    return printable(f"{request.method} {path}")


def log_refusal(request: Request, status: int, reason: str, *, warning: bool = False) -> None:
    """The one log line of a refused request: `refused POST /connect from 10.0.0.7: 413 ...`.

    The address is the caller as the security policy sees it (X-Forwarded-For only through
    trusted_proxies)."""
    settings = getattr(request.registry, "channelstream_settings", None)
    proxies = settings.trusted_proxies if settings is not None else ()
    log.log(
        logging.WARNING if warning else logging.INFO,
        "refused %s from %s: %d %s",
        route_of(request),
        printable(client_address(request, proxies)),
        status,
        printable(reason),
    )


def json_response(status: int, body: Any) -> Response:
    return Response(
        status=status,
        body=encoding.dumps(body).encode("utf-8"),
        content_type="application/json",
        charset="utf-8",
    )


def error_response(status: int, message: str, **extra: Any) -> Response:
    title = Response(status=status).status  # e.g. "404 Not Found"
    body = {
        "error": ERROR_CODES.get(status, "error"),
        "message": message,
        "code": title,
        "title": title.split(" ", 1)[1],
        **extra,
    }
    return json_response(status, body)


def validation_error_view(exc: ValidationError, request: Request) -> Response:
    messages = exc.messages
    fields = ", ".join(str(key) for key in messages) if isinstance(messages, dict) else "body"
    log_refusal(request, 422, f"invalid: {fields}")
    return json_response(422, messages)


def bad_request_view(exc: BadRequestBody, request: Request) -> Response:
    log_refusal(request, 400, str(exc))
    return error_response(400, str(exc))


def undecodable_request_view(exc: UnicodeDecodeError, request: Request) -> Response:
    """A path or query string that is not UTF-8 (webob decodes them lazily)."""
    message = f"Request URL is not valid UTF-8: {exc.reason}"
    log_refusal(request, 400, message)
    return error_response(400, message)


def unsupported_charset_view(exc: UnsupportedCharset, request: Request) -> Response:
    log_refusal(request, 415, str(exc))
    return error_response(415, str(exc))


def too_large_view(exc: PayloadTooLarge, request: Request) -> Response:
    log_refusal(request, 413, str(exc), warning=True)
    return error_response(413, str(exc), limit=exc.limit)


def bad_signature_view(exc: BadSignature, request: Request) -> Response:
    log_refusal(request, 401, f"bad API signature: {exc}", warning=True)
    return json_response(401, {"request": "Bad Signature"})


def token_refused_view(exc: TokenRefused, request: Request) -> Response:
    """A connection token that cannot be trusted (see `api.tokens`)."""
    log_refusal(request, 401, f"bad connection token: {exc}", warning=True)
    return error_response(401, f"Bad connection token: {exc}")


def http_exception_view(exc: HTTPException, request: Request) -> Response:
    if exc.status_code < 400:
        return exc
    message = exc.explanation or exc.title
    if exc.status_code == 404:
        message = f"No such endpoint or method: {request.method} {request.path}"
    elif exc.detail:
        message = str(exc.detail)
    if exc.status_code == 403:
        reason = getattr(exc, "result", None)
        message = str(getattr(reason, "msg", None) or message)
    log_refusal(request, exc.status_code, str(message), warning=exc.status_code in (401, 403))
    return error_response(exc.status_code, str(message))


# Pages where 0.7.1 answered "forbidden" with a redirect to the sign-in form (others: 403).
SIGN_IN_REDIRECT_ROUTES = frozenset(
    {"admin", "admin_json", "admin_disconnect", "admin_user_disconnect", "api_explorer"}
)


class LocalRedirect(Response):
    """A 302 to a path of this server, its Location sent as given: WebOb would complete a
    relative Location with the request's Host header, which the client chooses."""

    def __init__(self, path: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(status=302, body=b"", content_type="text/plain")
        self.location = path
        self.headerlist.extend(headers)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response(self.status, self.headerlist)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else self.app_iter


def local_redirect(
    request: Request,
    route_name: str,
    headers: Iterable[tuple[str, str]] = (),
    query: Mapping[str, str] | None = None,
) -> Response:
    """Redirect to a route of this app by its path (script name and route prefix included),
    never by a URL built from the Host header. Leading slashes and backslashes of the path are
    collapsed and other unsafe characters quoted, so an odd X-Script-Name cannot turn it into
    `//elsewhere`."""
    path = request.route_path(route_name)
    location = "/" + quote(path.lstrip("/\\\t "), safe="/%:@!$&'()*+,;=-._~")
    return LocalRedirect(location + (f"?{urlencode(query)}" if query else ""), headers)


# A path of this site, as a browser may be sent back to it after signing in: one "/" then URL
# characters only (RFC 3986 path and query), so no scheme, no host, no `//` or `/\`, no
# backslash, whitespace or control character a browser could read as another site.
RETURN_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*")
RETURN_PATH_MAX_LENGTH = 2000
RETURN_TO = "came_from"  # the sign-in form's field (and query parameter) for it


def return_path(value: str | None) -> str | None:
    """`value` if it is a local path to send the browser back to after signing in, else None
    (never an open redirect: only what RETURN_PATH accepts)."""
    if value and len(value) <= RETURN_PATH_MAX_LENGTH and RETURN_PATH.fullmatch(value):
        return value
    return None


# Pages the sign-in form sends the browser back to; after signing in from anywhere else (the
# admin panel, its JSON) the browser lands on the admin panel.
RETURN_AFTER_SIGN_IN_ROUTES = frozenset({"api_explorer"})


def sign_in_redirect(request: Request, route_name: str) -> Response:
    """To the sign-in form; from a page of RETURN_AFTER_SIGN_IN_ROUTES, with `came_from` so the
    form sends the browser back to it (its path as the browser asked for it: script name and
    route prefix included)."""
    back = None
    if route_name in RETURN_AFTER_SIGN_IN_ROUTES and request.method in ("GET", "HEAD"):
        back = return_path(request.path_qs)
    return local_redirect(request, "admin_sign_in", query={RETURN_TO: back} if back else None)


def forbidden_view(exc: HTTPForbidden, request: Request) -> Response:
    route = request.matched_route
    if route is not None and route.name in SIGN_IN_REDIRECT_ROUTES:
        return sign_in_redirect(request, route.name)
    return http_exception_view(exc, request)


def unknown_connection_view(exc: UnknownConnection, request: Request) -> Response:
    log_refusal(request, 422, "unknown connection")
    return json_response(422, {"conn_id": ["Unknown connection"]})


def unknown_user_view(exc: UnknownUser, request: Request) -> Response:
    log_refusal(request, 422, "unknown user")
    return json_response(422, {"user": ["Unknown user"]})


def foreign_connection_view(exc: ConnectionOwnedByOther, request: Request) -> Response:
    log_refusal(request, 422, "conn_id belongs to another user")
    return json_response(422, {"conn_id": ["Connection belongs to another user"]})


def too_many_channels_view(exc: TooManyChannels, request: Request) -> Response:
    log_refusal(request, 422, f"max_channels_per_connection ({exc.limit}) reached", warning=True)
    return json_response(422, {"channels": [str(exc)]})


def too_many_connections_view(exc: TooManyConnections, request: Request) -> Response:
    limit = request.registry.channelstream_settings.max_connections
    log_refusal(request, 503, f"max_connections ({limit}) reached", warning=True)
    return error_response(
        503, "The server holds its maximum number of connections", limit="max_connections"
    )


def too_many_user_connections_view(exc: TooManyUserConnections, request: Request) -> Response:
    log_refusal(request, 429, f"max_connections_per_user ({exc.limit}) reached", warning=True)
    return error_response(429, str(exc), limit="max_connections_per_user")


def broker_unavailable_view(exc: BrokerUnavailable, request: Request) -> Response:
    message = f"The cluster broker is unavailable: {exc}"
    log_refusal(request, 503, message, warning=True)
    return error_response(503, message)


def unexpected_error_view(exc: Exception, request: Request) -> Response:
    # the raw PATH_INFO: decoding it may be what failed
    log.exception(
        "unexpected error on %s %r", printable(request.method), request.environ.get("PATH_INFO")
    )
    return error_response(500, "Internal server error")


def includeme(config: Configurator) -> None:
    views: list[tuple[type, Any]] = [
        (ValidationError, validation_error_view),
        (BadRequestBody, bad_request_view),
        (UnicodeDecodeError, undecodable_request_view),
        (PayloadTooLarge, too_large_view),
        (UnsupportedCharset, unsupported_charset_view),
        (BadSignature, bad_signature_view),
        (TokenRefused, token_refused_view),
        (HTTPException, http_exception_view),
        (HTTPForbidden, forbidden_view),
        (UnknownConnection, unknown_connection_view),
        (UnknownUser, unknown_user_view),
        (ConnectionOwnedByOther, foreign_connection_view),
        (TooManyChannels, too_many_channels_view),
        (TooManyConnections, too_many_connections_view),
        (TooManyUserConnections, too_many_user_connections_view),
        (BrokerUnavailable, broker_unavailable_view),
        (Exception, unexpected_error_view),
    ]
    for context, view in views:
        config.add_exception_view(view, context=context)
