"""The OpenAPI 3.0 document of `/openapi.json`, built by apispec from `channelstream.schemas`.

Every request and response body is one of the marshmallow schemas the views load (or whose
shape they answer with), so the document cannot drift from the validation. This module only
adds what a schema cannot say: which route takes which schema, summaries, status codes and
one example per operation. The test suite checks that every route with a view is documented
here, that the document is valid OpenAPI 3.0, that the examples match their schemas, and (with
schemathesis, on a live server) that real answers match the document.

Version 3.0.3, not 3.1: the Swagger UI that `swagger-ui-bundle` ships (4.15) renders 3.0 only.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields
from pyramid.request import Request

from channelstream import __version__, schemas
from channelstream.api import ROUTES
from channelstream.api.security import TOKEN_HEADER
from channelstream.close_codes import CloseCode

OPENAPI_VERSION = "3.0.3"
JSON = "application/json"
HTML = "text/html"
FORM = "application/x-www-form-urlencoded"

API_TAG = "API"
CLIENT_TAG = "Client API"
ADMIN_TAG = "Admin API"
OPERATIONS_TAG = "Operations"
PAGES_TAG = "Pages"

Security = list[dict[str, list[str]]]
SIGNED: Security = [{"APIKeyHeader": []}]
ADMIN: Security = [{"AdminCookie": []}, {"APIKeyHeader": []}]
OPEN: Security = []

DESCRIPTION = f"""\
A websocket server driven by a signed JSON REST API (Channelstream 0.7.1 compatible).

**Server API** (tag `{API_TAG}`): called by your web app, never by browsers. Each call comes
from an address in `allow_posting_from` and carries an itsdangerous `TimestampSigner` token in
the `{TOKEN_HEADER}` header: the request path (e.g. `/connect`) signed with the server's
`secret`, at most 60 seconds old. In Python:
`TimestampSigner(secret).sign("/connect").decode()`. Tokens of the literal `channelstream`
(what 0.7 clients sign) are accepted while `legacy_signatures` is on.

**Client API** (tag `{CLIENT_TAG}`): what browsers call with the `conn_id` the web app handed
them: `/ws` (websocket), `/listen` (long polling) and `/disconnect`. No signature.

**Admin API** (tag `{ADMIN_TAG}`): the admin panel's data; needs the admin session cookie (sign
in at `/admin/sign_in`) or a signed call.

Errors are JSON: 422 carries marshmallow's field errors, 401 is `{{"request": "Bad Signature"}}`,
every other error is `{{"error", "message", "code", "title"}}`. With `enforce_https` on, any
request that did not come over https gets 406.

In the API explorer (`/api-explorer`), type the server secret in the box at the top: the page
signs each request it sends for the path it calls. The secret never leaves the browser.
"""

CLOSE_CODES = {
    CloseCode.NORMAL: "`/disconnect` was called for this connection: stop",
    CloseCode.GOING_AWAY: "the server is shutting down: reconnect with the same conn_id",
    CloseCode.ORIGIN_NOT_ALLOWED: "the page's Origin is not in `allow_cors`: stop",
    CloseCode.MESSAGE_TOO_BIG: "a client frame was larger than `max_message_size`",
    CloseCode.TRY_AGAIN_LATER: "the cluster broker (Redis) is unreachable: reconnect later",
    CloseCode.UNKNOWN_CONNECTION: "unknown conn_id: get a new one from the web app",
    CloseCode.TOO_SLOW: "too slow (`max_queued_frames` overflowed): reconnect and catch up",
}

WS_DESCRIPTION = (
    """\
The browser's connection: `new WebSocket("ws://host:port/ws?conn_id=...")` with the `conn_id`
that `/connect` returned to the web app. No signature: the conn_id is the credential.

After the upgrade the server sends text frames, each a JSON array of message objects (the
`Frame` schema): first the frames the connection missed (`catchup: true`), then live ones.
`[]` arrives every `heartbeat_interval` seconds as a heartbeat. What the client sends only
counts as activity. A missing or malformed `conn_id` is refused before the upgrade with 422;
a plain GET without an upgrade gets 400.

Close codes:

"""
    + "\n".join(f"- `{int(code)}`: {text}" for code, text in CLOSE_CODES.items())
    + "\n\nSwagger UI cannot open websockets; use a websocket client."
)

# --------------------------------------------------------------------------- examples

CONN_ID = "9a2f0c3e-7c1b-4a45-8f3e-2b1d6c5a4e10"
MESSAGE_UUID = "6c0a3f4e-1b2d-4c5e-8f9a-0b1c2d3e4f5a"
CHANNEL_UUID = "3f1e2d4c-5b6a-4798-8a7b-6c5d4e3f2a1b"
USER_UUID = "0e1d2c3b-4a59-4687-9a6b-5c4d3e2f1a0b"
NOW = "2026-11-27T18:29:03.766868"
LATER = "2026-11-27T18:30:12.004211"
SETTINGS_EXAMPLE = {
    "notify_presence": True,
    "store_history": True,
    "history_size": 10,
    "broadcast_presence_with_user_lists": False,
    "notify_state": False,
    "store_frames": True,
}
MESSAGE_EXAMPLE = {
    "user": "bob",
    "message": {"text": "hello"},
    "channel": "lobby",
    "pm_users": [],
    "exclude_users": [],
    "no_history": False,
    "uuid": MESSAGE_UUID,
    "timestamp": NOW,
    "edited": None,
}
HISTORY_ENTRY_EXAMPLE = {**MESSAGE_EXAMPLE, "catchup": False, "type": "message"}
FRAME_EXAMPLE = {
    key: value
    for key, value in HISTORY_ENTRY_EXAMPLE.items()
    if key not in ("pm_users", "exclude_users", "no_history")
}


def channel_example(history: bool = True, users: bool = True) -> dict[str, Any]:
    return {
        "uuid": CHANNEL_UUID,
        "name": "lobby",
        "long_name": None,
        "settings": SETTINGS_EXAMPLE,
        "history": [HISTORY_ENTRY_EXAMPLE] if history else [],
        "last_active": NOW,
        "total_connections": 1 if users else 0,
        "total_users": 1 if users else 0,
        "users": ["alice"] if users else [],
    }


CHANNELS_INFO_EXAMPLE = {
    "channels": {"lobby": channel_example()},
    "users": [{"user": "alice", "state": {"status": "online"}}],
}

# --------------------------------------------------------------------------- building blocks

# One server-sent event (what `text/event-stream` schemas describe: each event's fields).
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["close"], "description": "Only on the last event"},
        "data": {
            "type": "string",
            "description": "A JSON array of message objects (`Frame`); on `close`, the "
            "websocket close code",
        },
        "retry": {"type": "integer"},
    },
}


def json_body(schema: Any, example: Any, description: str = "") -> dict[str, Any]:
    """A JSON request or response: `schema` is a schema class, instance or raw OpenAPI dict."""
    body: dict[str, Any] = {"content": {JSON: {"schema": schema, "example": example}}}
    if description:
        body["description"] = description
    return body


def ok(schema: Any, example: Any, description: str = "Done") -> dict[str, Any]:
    return json_body(schema, example, description)


ERROR_RESPONSES: dict[str, dict[str, Any]] = {
    "BadRequest": json_body(
        schemas.ErrorSchema,
        {
            "error": "bad_request",
            "message": "Request body is not valid JSON: Expecting value: line 1 column 1",
            "code": "400 Bad Request",
            "title": "Bad Request",
        },
        "The body is not valid JSON",
    ),
    "BadSignature": json_body(
        schemas.BadSignatureSchema,
        {"request": "Bad Signature"},
        "The signature is invalid, expired or for another path",
    ),
    "Forbidden": json_body(
        schemas.ErrorSchema,
        {
            "error": "forbidden",
            "message": "Missing x-channelstream-secret signature",
            "code": "403 Forbidden",
            "title": "Forbidden",
        },
        "No signature, or the caller's address is not in allow_posting_from",
    ),
    "PayloadTooLarge": json_body(
        schemas.ErrorSchema,
        {
            "error": "payload_too_large",
            "message": "Request body exceeds max_message_size (1048576 bytes)",
            "code": "413 Request Entity Too Large",
            "title": "Request Entity Too Large",
            "limit": "max_message_size",
        },
        "The body is larger than max_message_size, nests deeper than max_json_depth, or has "
        "an array or object of more than max_json_items entries (`limit` names which)",
    ),
    "UnsupportedCharset": json_body(
        schemas.ErrorSchema,
        {
            "error": "unsupported_media_type",
            "message": "Request body must be JSON in UTF-8; charset 'utf-7' is not accepted",
            "code": "415 Unsupported Media Type",
            "title": "Unsupported Media Type",
        },
        "The body declares a charset other than UTF-8 (JSON is UTF-8, RFC 8259)",
    ),
    "ValidationFailed": json_body(
        schemas.ValidationErrorSchema,
        {"username": ["Missing data for required field."]},
        "The body does not match its schema (marshmallow's field errors)",
    ),
    "Unavailable": json_body(
        schemas.ErrorSchema,
        {
            "error": "unavailable",
            "message": "The cluster broker is unavailable: connection refused",
            "code": "503 Service Unavailable",
            "title": "Service Unavailable",
        },
        "The cluster broker is unreachable (or, on /connect, max_connections is reached)",
    ),
    "SignInRedirect": {
        "description": "Neither an admin session nor a signed call: redirected to the sign-in page",
        "headers": {"Location": {"schema": {"type": "string"}, "example": "/admin/sign_in"}},
    },
}

SIGNED_ERRORS = {
    "400": "BadRequest",
    "401": "BadSignature",
    "403": "Forbidden",
    "413": "PayloadTooLarge",
    "415": "UnsupportedCharset",
    "422": "ValidationFailed",
    "503": "Unavailable",
}
ADMIN_ERRORS = {"302": "SignInRedirect", "401": "BadSignature", "503": "Unavailable"}
# Admin state changes by the session cookie: JSON from the panel's own origin only.
CROSS_ORIGIN = json_body(
    schemas.ErrorSchema,
    {
        "error": "forbidden",
        "message": "Cross-origin request (Origin http://example.com)",
        "code": "403 Forbidden",
        "title": "Forbidden",
    },
    "With the admin cookie (not a signed call): not application/json, or not from this "
    "server's own origin (Origin, else Sec-Fetch-Site, else Referer)",
)


def signed(
    operation_id: str,
    summary: str,
    description: str,
    request: dict[str, Any] | None,
    response: dict[str, Any],
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [API_TAG],
        "summary": summary,
        "description": description,
        "security": SIGNED,
        "responses": {"200": response, **SIGNED_ERRORS},
    }
    if request is not None:
        operation["requestBody"] = {"required": True, **request}
    return operation


def html_page(operation_id: str, summary: str, tags: list[str], security: Any) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "The page", "content": {HTML: {"schema": {"type": "string"}}}}
    }
    if security:
        responses["302"] = "SignInRedirect"
    return {
        "operationId": operation_id,
        "tags": tags,
        "summary": summary,
        "security": security,
        "responses": responses,
    }


def query_parameters(schema: type[Schema] | Schema) -> list[dict[str, Any]]:
    return [{"in": "query", "schema": schema}]


# --------------------------------------------------------------------------- the operations


def operations(channel_config_body: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{route name: {method: operation}}: every route with a view (tests check it)."""
    info_get = signed(
        "info_get",
        "Every channel, with history and users",
        "`/info` answers any method; without a body it reports every channel in full.",
        None,
        ok(schemas.ChannelsInfoSchema, CHANNELS_INFO_EXAMPLE),
    )
    info_post = signed(
        "info",
        "Channels, shaped by an InfoResolution",
        "With a body, `info` is required; `info.channels` picks channels (unknown names are "
        "skipped), the other flags shape the answer. An empty body reports everything.",
        json_body(
            schemas.InfoBodySchema,
            {"info": {"channels": ["lobby"], "include_history": True, "include_users": True}},
        ),
        ok(schemas.ChannelsInfoSchema, CHANNELS_INFO_EXAMPLE),
    )
    info_post["requestBody"]["required"] = False
    disconnect_response = {
        "200": ok({"type": "boolean"}, True, "true if the connection existed (it is gone now)"),
        "400": "BadRequest",
        "413": "PayloadTooLarge",
        "415": "UnsupportedCharset",
        "422": "ValidationFailed",
        "503": "Unavailable",
    }
    return {
        "connect": {
            "post": signed(
                "connect",
                "Connect a user: get a conn_id for the browser",
                "Creates the user if needed (applying `fresh_user_state`), merges `user_state`, "
                "sets `state_public_keys` and subscribes the connection to `channels` (created "
                "with `channel_configs` if new). Reusing a live conn_id of the same user "
                "updates that connection in place; another user's conn_id is a 422.",
                json_body(
                    schemas.ConnectBodySchema,
                    {
                        "username": "alice",
                        "channels": ["lobby"],
                        "user_state": {"status": "online"},
                        "state_public_keys": ["status"],
                        "channel_configs": {"lobby": {"notify_presence": True}},
                    },
                ),
                ok(
                    schemas.ConnectResponseSchema,
                    {
                        "conn_id": CONN_ID,
                        "username": "alice",
                        "state": {"status": "online"},
                        "public_state": {"status": "online"},
                        "channels": ["lobby"],
                        "channels_info": CHANNELS_INFO_EXAMPLE,
                    },
                ),
            )
        },
        "subscribe": {
            "post": signed(
                "subscribe",
                "Subscribe a connection to more channels",
                "New channels are created with `channel_configs`; `subscribed_to` lists the "
                "channels newly joined. `conn_id` may also come from the query string.",
                json_body(schemas.SubscribeBodySchema, {"conn_id": CONN_ID, "channels": ["news"]}),
                ok(
                    schemas.SubscribeResponseSchema,
                    {
                        "channels": ["lobby", "news"],
                        "channels_info": CHANNELS_INFO_EXAMPLE,
                        "subscribed_to": ["news"],
                    },
                ),
            )
        },
        "unsubscribe": {
            "post": signed(
                "unsubscribe",
                "Unsubscribe a connection from channels",
                "Channels the connection is not in are ignored.",
                json_body(
                    schemas.UnsubscribeBodySchema, {"conn_id": CONN_ID, "channels": ["news"]}
                ),
                ok(
                    schemas.UnsubscribeResponseSchema,
                    {
                        "channels": ["lobby"],
                        "channels_info": CHANNELS_INFO_EXAMPLE,
                        "unsubscribed_from": ["news"],
                    },
                ),
            )
        },
        "user_state": {
            "post": signed(
                "user_state",
                "Change a user's state",
                "Merges `user_state`; `state_public_keys` (when given) replaces the public keys. "
                "Channels with `notify_state` get a `user_state_change` frame.",
                json_body(
                    schemas.UserStateBodySchema,
                    {"user": "alice", "user_state": {"status": "away"}},
                ),
                ok(
                    schemas.UserStateResponseSchema,
                    {
                        "user_state": {"status": "away"},
                        "changed_state": [{"key": "status", "value": "away"}],
                        "public_keys": ["status"],
                    },
                ),
            )
        },
        "message": {
            "post": signed(
                "message",
                "Send messages to channels or users",
                "The body is a list. Items with neither `channel` nor `pm_users` are dropped; "
                "a message to a channel that does not exist is accepted and goes nowhere.",
                json_body(
                    schemas.MessageBodySchema(many=True),
                    [{"channel": "lobby", "user": "bob", "message": {"text": "hello"}}],
                ),
                ok(schemas.MessageAcceptedSchema(many=True), [MESSAGE_EXAMPLE]),
            ),
            "patch": signed(
                "edit_messages",
                "Edit sent messages",
                "Changes the stored message (history, catchup) and sends a `message:edit` "
                "frame with the edit's own routing.",
                json_body(
                    schemas.MessageEditBodySchema(many=True),
                    [{"uuid": MESSAGE_UUID, "channel": "lobby", "message": {"text": "hi!"}}],
                ),
                ok(
                    schemas.MessageEditAcceptedSchema(many=True),
                    [
                        {
                            "uuid": MESSAGE_UUID,
                            "channel": "lobby",
                            "message": {"text": "hi!"},
                            "pm_users": [],
                            "exclude_users": [],
                            "no_history": False,
                            "edited": LATER,
                        }
                    ],
                ),
            ),
            "delete": signed(
                "messages_delete",
                "Delete sent messages",
                "Removes the message from history and catchup and sends `message:delete`.",
                json_body(
                    schemas.MessageDeleteBodySchema(many=True),
                    [{"uuid": MESSAGE_UUID, "channel": "lobby"}],
                ),
                ok(
                    schemas.MessageDeleteAcceptedSchema(many=True),
                    [
                        {
                            "uuid": MESSAGE_UUID,
                            "channel": "lobby",
                            "pm_users": [],
                            "exclude_users": [],
                            "no_history": False,
                        }
                    ],
                ),
            ),
        },
        "channel_config": {
            "post": signed(
                "channel_config",
                "Create channels or change their settings",
                "The body maps channel names to settings. Only the keys given change an "
                "existing channel. Every entry is checked before any is applied; the first "
                "invalid entry's errors are the 422 body.",
                json_body(channel_config_body, {"lobby": {"store_history": True}}),
                ok(
                    schemas.ChannelsInfoSchema,
                    {
                        "channels": {"lobby": channel_example(history=False, users=False)},
                        "users": [],
                    },
                ),
            )
        },
        "info": {"get": info_get, "post": info_post},
        "listen": {
            "get": {
                "operationId": "listen",
                "tags": [CLIENT_TAG],
                "summary": "Long poll for frames",
                "description": "Waits up to `wake_connections_after` seconds for frames and "
                "answers a JSON array of message objects (`[]` if none came). With `callback`, "
                "the answer is JSONP.",
                "security": OPEN,
                "parameters": query_parameters(schemas.ListenQuerySchema),
                "responses": {
                    "200": {
                        "description": "The frames that arrived",
                        "content": {
                            JSON: {
                                "schema": schemas.FrameSchema(many=True),
                                "example": [FRAME_EXAMPLE],
                            },
                            "application/javascript": {
                                "schema": {"type": "string"},
                                "example": "onFrames([])",
                            },
                        },
                    },
                    "401": json_body(
                        schemas.ValidationErrorSchema,
                        {"conn_id": ["Unknown connection"]},
                        "No such connection (or it ended)",
                    ),
                    "422": "ValidationFailed",
                    "503": "Unavailable",
                },
            }
        },
        "disconnect": {
            "get": {
                "operationId": "disconnect_get",
                "tags": [CLIENT_TAG],
                "summary": "End a connection (conn_id in the query)",
                "description": "Final: the connection's listeners close with 1000 and "
                "presence parts at once. Answers any method; only POST reads a body.",
                "security": OPEN,
                "parameters": query_parameters(schemas.DisconnectBodySchema),
                "responses": disconnect_response,
            },
            "post": {
                "operationId": "disconnect",
                "tags": [CLIENT_TAG],
                "summary": "End a connection (conn_id in the JSON body)",
                "description": "As the GET form; the body's conn_id wins over the query's.",
                "security": OPEN,
                "requestBody": json_body(schemas.DisconnectBodySchema, {"conn_id": CONN_ID}),
                "responses": disconnect_response,
            },
        },
        "ws": {
            "get": {
                "operationId": "websocket",
                "tags": [CLIENT_TAG],
                "summary": "Websocket: receive frames",
                "description": WS_DESCRIPTION,
                "security": OPEN,
                "parameters": query_parameters(schemas.ListenQuerySchema(only=("conn_id",))),
                "responses": {
                    "101": {"description": "Switching protocols: frames follow"},
                    "400": json_body(
                        schemas.ErrorSchema,
                        {
                            "error": "bad_request",
                            "message": "This endpoint needs a websocket upgrade request",
                            "code": "400 Bad Request",
                            "title": "Bad Request",
                        },
                        "Not a websocket upgrade request",
                    ),
                    "422": "ValidationFailed",
                },
            }
        },
        "sse": {
            "get": {
                "operationId": "server_sent_events",
                "tags": [CLIENT_TAG],
                "summary": "Server-sent events: receive frames",
                "description": "The websocket's frames as an event stream, for browsers' "
                "`EventSource`: each event's data is a JSON array of message objects (the "
                "`Frame` schema), `[]` every `heartbeat_interval` as a heartbeat. When the "
                "server ends the stream it first sends `event: close` with a websocket close "
                "code as data (4001: unknown connection, 1000: disconnected, 1001: shutting "
                "down, 4002: too slow).",
                "security": OPEN,
                "parameters": query_parameters(schemas.ListenQuerySchema(only=("conn_id",))),
                "responses": {
                    "200": {
                        "description": "The event stream",
                        "content": {
                            "text/event-stream": {
                                "schema": SSE_EVENT,
                                "example": "retry: 2000\n\ndata: []\n\n",
                            }
                        },
                    },
                    "422": "ValidationFailed",
                    "503": "Unavailable",
                },
            }
        },
        "health": {
            "get": {
                "operationId": "health",
                "tags": [OPERATIONS_TAG],
                "summary": "Liveness: the process serves HTTP",
                "security": OPEN,
                "responses": {"200": ok(schemas.StatusSchema, {"status": "ok"}, "Alive")},
            }
        },
        "ready": {
            "get": {
                "operationId": "ready",
                "tags": [OPERATIONS_TAG],
                "summary": "Readiness: the cluster broker is reachable and the server is not "
                "stopping",
                "security": OPEN,
                "responses": {
                    "200": ok(schemas.StatusSchema, {"status": "ready"}, "Ready"),
                    "503": json_body(
                        schemas.StatusSchema,
                        {"status": "unavailable", "reason": "broker unreachable"},
                        "The broker is unreachable (reason 'broker unreachable'), or the "
                        "server is stopping (reason 'draining')",
                    ),
                },
            }
        },
        "metrics": {
            "get": {
                "operationId": "metrics",
                "tags": [OPERATIONS_TAG],
                "summary": "Prometheus metrics",
                "description": "Prometheus text exposition format: listeners by transport, "
                "connections, channels, users, messages received, frames sent and dropped, "
                "slow-consumer disconnects, broker errors and a request latency histogram by "
                "route. For an admin session, a signed call, or an address in "
                "`metrics_allow_from` (no signature needed then).",
                "security": [*ADMIN, {}],
                "responses": {
                    "200": {
                        "description": "The metrics",
                        "content": {
                            "text/plain": {
                                "schema": {"type": "string"},
                                "example": "# TYPE channelstream_connections gauge\n"
                                "channelstream_connections 3.0\n",
                            }
                        },
                    },
                    "401": "BadSignature",
                    "403": "Forbidden",
                },
            }
        },
        "admin_json": {
            method: {
                "operationId": "admin_json" if method == "get" else "admin_json_post",
                "tags": [ADMIN_TAG],
                "summary": "Server figures, channels, users and connections",
                "description": "What the admin panel shows: Channelstream 0.7.1's keys plus "
                "this server's figures. GET or POST.",
                "security": ADMIN,
                "responses": {
                    "200": ok(schemas.AdminInfoSchema, admin_example(), "The figures"),
                    **ADMIN_ERRORS,
                },
            }
            for method in ("get", "post")
        },
        "admin_disconnect": {
            "post": {
                "operationId": "admin_disconnect",
                "tags": [ADMIN_TAG],
                "summary": "End a connection (the admin panel's button)",
                "description": "As `/disconnect`, for an admin: the connection's websockets "
                "close with 1000.",
                "security": ADMIN,
                "requestBody": {
                    "required": True,
                    **json_body(schemas.DisconnectBodySchema, {"conn_id": CONN_ID}),
                },
                "responses": {
                    "200": ok(
                        schemas.AdminDisconnectResponseSchema,
                        {"conn_id": CONN_ID, "disconnected": True},
                    ),
                    "400": "BadRequest",
                    "403": CROSS_ORIGIN,
                    "413": "PayloadTooLarge",
                    "415": "UnsupportedCharset",
                    "422": "ValidationFailed",
                    **ADMIN_ERRORS,
                },
            }
        },
        "openapi": {
            "get": {
                "operationId": "openapi",
                "tags": [OPERATIONS_TAG],
                "summary": "This document",
                "security": ADMIN,
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.0 document",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    },
                    "401": "BadSignature",
                    "403": "Forbidden",
                },
            }
        },
        "api_explorer": {
            "get": html_page("api_explorer", "The API explorer (Swagger UI)", [PAGES_TAG], ADMIN)
        },
        "admin": {"get": html_page("admin", "The admin panel", [PAGES_TAG], ADMIN)},
        "admin_sign_in": {
            "get": html_page("admin_sign_in_form", "The sign-in form", [PAGES_TAG], OPEN),
            "post": {
                "operationId": "admin_sign_in",
                "tags": [PAGES_TAG],
                "summary": "Sign in to the admin panel",
                "description": "The right `admin_user` and `admin_secret` set the session "
                "cookie and redirect to `/admin`. Wrong ones show the form again. After "
                "repeated failures from one address, its next attempts are refused with 429 "
                "and `Retry-After` until a back-off has passed (0.5 s doubling to 8 s, the "
                "first failure free), without the credentials being checked. A form from "
                "another origin (`Origin` header) is refused with 403.",
                "security": OPEN,
                "requestBody": {
                    "required": True,
                    "content": {FORM: {"schema": schemas.SignInFormSchema}},
                },
                "responses": {
                    "200": {
                        "description": "Wrong credentials: the form again",
                        "content": {HTML: {"schema": {"type": "string"}}},
                    },
                    "302": {
                        "description": "Signed in: redirected to /admin with the cookie set",
                        "headers": {
                            "Set-Cookie": {"schema": {"type": "string"}},
                            "Location": {"schema": {"type": "string"}, "example": "/admin"},
                        },
                    },
                    "400": json_body(
                        schemas.ErrorSchema,
                        {
                            "error": "bad_request",
                            "message": f"The sign-in form must be {FORM} in UTF-8",
                            "code": "400 Bad Request",
                            "title": "Bad Request",
                        },
                        f"Not a {FORM} body, or another charset than UTF-8",
                    ),
                    "403": CROSS_ORIGIN,
                    "429": {
                        "description": "Too many failed sign-ins from this address: the form "
                        "with the message, or the JSON envelope for a client that prefers JSON",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        "content": {
                            HTML: {"schema": {"type": "string"}},
                            **json_body(
                                schemas.ErrorSchema,
                                {
                                    "error": "too_many_requests",
                                    "message": "Too many failed sign-ins; try again in 2 s",
                                    "code": "429 Too Many Requests",
                                    "title": "Too Many Requests",
                                },
                            )["content"],
                        },
                    },
                },
            },
        },
        "admin_sign_out": {
            "post": {
                "operationId": "admin_sign_out",
                "tags": [PAGES_TAG],
                "summary": "Sign out",
                "description": "Ends the admin session on this server (the cookie is "
                "worthless afterwards) and clears the cookie. A JSON POST from the admin "
                "panel's own origin only; a GET is 404.",
                "security": OPEN,
                "requestBody": {"required": False, **json_body({"type": "object"}, {})},
                "responses": {
                    "200": ok(
                        {
                            "type": "object",
                            "properties": {"signed_out": {"type": "boolean"}},
                            "required": ["signed_out"],
                        },
                        {"signed_out": True},
                        "Signed out (`signed_out`: whether a session was open)",
                    ),
                    "403": CROSS_ORIGIN,
                },
            }
        },
    }


def admin_example() -> dict[str, Any]:
    return {
        "remembered_user_count": 1,
        "unique_user_count": 1,
        "total_connections": 1,
        "total_channels": 1,
        "total_messages": 3,
        "total_unique_messages": 1,
        "channels": {"lobby": channel_example()},
        "users": [
            {
                "user": "alice",
                "uuid": USER_UUID,
                "state": {"status": "online"},
                "connections": [CONN_ID],
            }
        ],
        "uptime": "2:03:04",
        "version": __version__,
        "uptime_seconds": 7384,
        "started_at": NOW,
        "frames_dropped": 0,
        "listeners": 1,
        "node_id": "5b0e6a0f0f2b4f4c9d2a8f1e3c7b9a10",
        "broker": {"broker": "memory", "commands_applied": 12},
        "connections": [
            {
                "conn_id": CONN_ID,
                "user": "alice",
                "channels": ["lobby"],
                "created": NOW,
                "last_active": LATER,
                "listeners": 1,
            }
        ],
    }


# --------------------------------------------------------------------------- the document

COMPONENT_SCHEMAS: tuple[type[Schema], ...] = (
    schemas.ChannelConfigSchema,
    schemas.InfoResolutionSchema,
    schemas.ConnectBodySchema,
    schemas.SubscribeBodySchema,
    schemas.UnsubscribeBodySchema,
    schemas.UserStateBodySchema,
    schemas.MessageBodySchema,
    schemas.MessageEditBodySchema,
    schemas.MessageDeleteBodySchema,
    schemas.InfoBodySchema,
    schemas.DisconnectBodySchema,
    schemas.ChannelSettingsSchema,
    schemas.HistoryEntrySchema,
    schemas.ChannelInfoSchema,
    schemas.UserStateEntrySchema,
    schemas.ChannelsInfoSchema,
    schemas.ConnectResponseSchema,
    schemas.SubscribeResponseSchema,
    schemas.UnsubscribeResponseSchema,
    schemas.StateChangeSchema,
    schemas.UserStateResponseSchema,
    schemas.MessageAcceptedSchema,
    schemas.MessageEditAcceptedSchema,
    schemas.MessageDeleteAcceptedSchema,
    schemas.FrameSchema,
    schemas.AdminUserSchema,
    schemas.AdminConnectionSchema,
    schemas.AdminInfoSchema,
    schemas.AdminDisconnectResponseSchema,
    schemas.StatusSchema,
    schemas.ErrorSchema,
    schemas.BadSignatureSchema,
    schemas.ValidationErrorSchema,
)


def _custom_field_openapi(self: Any, field: fields.Field, **kwargs: Any) -> dict[str, Any]:
    """Fields that carry their own OpenAPI description (`openapi` class attribute)."""
    return dict(getattr(field, "openapi", None) or {})


def schema_name(schema: Any) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__.removesuffix("Schema")


def build_document(routes: Mapping[str, str]) -> dict[str, Any]:
    """The document for the routes `{name: pattern}` (paths as the app mounts them, without any
    route prefix; the caller sets `servers`)."""
    plugin = MarshmallowPlugin(schema_name_resolver=schema_name)
    spec = APISpec(
        title="Channelstream API",
        version=__version__,
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": DESCRIPTION},
        tags=[
            {"name": API_TAG, "description": "Signed calls from your web app"},
            {"name": CLIENT_TAG, "description": "What browsers call with a conn_id"},
            {"name": ADMIN_TAG, "description": "Admin session or signed call"},
            {"name": OPERATIONS_TAG, "description": "Health checks and this document"},
            {"name": PAGES_TAG, "description": "HTML pages for people"},
        ],
    )
    assert plugin.converter is not None
    plugin.converter.add_attribute_function(_custom_field_openapi)
    spec.components.security_scheme(
        "APIKeyHeader",
        {
            "type": "apiKey",
            "in": "header",
            "name": TOKEN_HEADER,
            "description": "An itsdangerous TimestampSigner token of the request path, signed "
            "with the server's secret (at most 60 s old).",
        },
    )
    spec.components.security_scheme(
        "AdminCookie",
        {
            "type": "apiKey",
            "in": "cookie",
            "name": "auth_tkt",
            "description": "The admin session, set by signing in at /admin/sign_in.",
        },
    )
    for schema in COMPONENT_SCHEMAS:
        spec.components.schema(schema_name(schema), schema=schema)
    for name, response in ERROR_RESPONSES.items():
        spec.components.response(name, copy.deepcopy(response))
    channel_config_body = plugin.converter.field2property(schemas.channel_config_map())
    for route, methods in operations(channel_config_body).items():
        if route in routes:  # a host may mount fewer routes; every path is a real one
            spec.path(path=routes[route], operations=copy.deepcopy(methods))
    return spec.to_dict()


def document_for(request: Request) -> dict[str, Any]:
    """The document as this request sees the API: `servers` is where the routes are mounted
    (the host app's route prefix and script name included)."""
    registry = request.registry
    document = getattr(registry, "channelstream_openapi", None)
    if document is None:
        document = registry.channelstream_openapi = build_document(ROUTES)
    base = request.route_path("connect").removesuffix(ROUTES["connect"])
    return {**document, "servers": [{"url": base or "/"}]}
