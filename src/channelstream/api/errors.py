"""One error envelope for every failed request (fix F5): JSON, always.

Shapes kept from 0.7.1 where clients may read them: 422 is marshmallow's field-error dict,
401 is `{"request": "Bad Signature"}`. Everything else is
`{"error": <stable code>, "message": <text>}` plus 0.7.1's `code`/`title` keys.
"""

from __future__ import annotations

import logging
from typing import Any

from marshmallow import ValidationError
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPException, HTTPForbidden, HTTPFound
from pyramid.request import Request
from pyramid.response import Response

from channelstream import encoding
from channelstream.broker import BrokerUnavailable
from channelstream.core.errors import (
    ConnectionOwnedByOther,
    TooManyChannels,
    TooManyConnections,
    UnknownConnection,
    UnknownUser,
)
from channelstream.exceptions import BadSignature

log = logging.getLogger(__name__)

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    406: "https_required",
    413: "payload_too_large",
    422: "invalid",
    500: "internal_error",
    503: "unavailable",
}


class BadRequestBody(Exception):
    """The request body is not the JSON it should be (400)."""


class PayloadTooLarge(Exception):
    """The request body exceeds max_message_size (413)."""


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
    return json_response(422, exc.messages)


def bad_request_view(exc: BadRequestBody, request: Request) -> Response:
    return error_response(400, str(exc))


def undecodable_request_view(exc: UnicodeDecodeError, request: Request) -> Response:
    """A path or query string that is not UTF-8 (webob decodes them lazily)."""
    return error_response(400, f"Request URL is not valid UTF-8: {exc.reason}")


def too_large_view(exc: PayloadTooLarge, request: Request) -> Response:
    return error_response(413, str(exc))


def bad_signature_view(exc: BadSignature, request: Request) -> Response:
    log.warning("bad API signature from %s on %s: %s", request.client_addr, request.path, exc)
    return json_response(401, {"request": "Bad Signature"})


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
    return error_response(exc.status_code, str(message))


# Pages where 0.7.1 answered "forbidden" with a redirect to the sign-in form (others: 403).
SIGN_IN_REDIRECT_ROUTES = frozenset({"admin", "admin_json", "admin_disconnect", "api_explorer"})


def forbidden_view(exc: HTTPForbidden, request: Request) -> Response:
    route = request.matched_route
    if route is not None and route.name in SIGN_IN_REDIRECT_ROUTES:
        return HTTPFound(location=request.route_url("admin_sign_in"))
    return http_exception_view(exc, request)


def unknown_connection_view(exc: UnknownConnection, request: Request) -> Response:
    return json_response(422, {"conn_id": ["Unknown connection"]})


def unknown_user_view(exc: UnknownUser, request: Request) -> Response:
    return json_response(422, {"user": ["Unknown user"]})


def foreign_connection_view(exc: ConnectionOwnedByOther, request: Request) -> Response:
    return json_response(422, {"conn_id": ["Connection belongs to another user"]})


def too_many_channels_view(exc: TooManyChannels, request: Request) -> Response:
    return json_response(422, {"channels": [str(exc)]})


def too_many_connections_view(exc: TooManyConnections, request: Request) -> Response:
    log.warning("refused a connection: max_connections reached")
    return error_response(503, "The server holds its maximum number of connections")


def broker_unavailable_view(exc: BrokerUnavailable, request: Request) -> Response:
    return error_response(503, f"The cluster broker is unavailable: {exc}")


def unexpected_error_view(exc: Exception, request: Request) -> Response:
    # the raw PATH_INFO: decoding it may be what failed
    log.exception("unexpected error on %s %r", request.method, request.environ.get("PATH_INFO"))
    return error_response(500, "Internal server error")


def includeme(config: Configurator) -> None:
    views: list[tuple[type, Any]] = [
        (ValidationError, validation_error_view),
        (BadRequestBody, bad_request_view),
        (UnicodeDecodeError, undecodable_request_view),
        (PayloadTooLarge, too_large_view),
        (BadSignature, bad_signature_view),
        (HTTPException, http_exception_view),
        (HTTPForbidden, forbidden_view),
        (UnknownConnection, unknown_connection_view),
        (UnknownUser, unknown_user_view),
        (ConnectionOwnedByOther, foreign_connection_view),
        (TooManyChannels, too_many_channels_view),
        (TooManyConnections, too_many_connections_view),
        (BrokerUnavailable, broker_unavailable_view),
        (Exception, unexpected_error_view),
    ]
    for context, view in views:
        config.add_exception_view(view, context=context)
