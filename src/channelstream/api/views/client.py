"""Endpoints browsers call directly: /ws, /sse, /listen and /disconnect. No signature needed:
knowing a conn_id is the credential, as in 0.7.1."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config, view_defaults

from channelstream.api.documented import (
    CLIENT_TAG,
    Answer,
    answer,
    content,
    documented,
    request_body,
)
from channelstream.api.errors import error_response, json_response, log_refusal, printable
from channelstream.api.openapi import (
    BODY_ERRORS,
    CLOSE_CODE_LIST,
    CONN_ID,
    FRAME_EXAMPLE,
    error_example,
)
from channelstream.api.security import client_address
from channelstream.api.tokens import (
    TOKEN_CONN_ID_KEY,
    TOKEN_REFUSAL_KEY,
    open_connection,
    read_token,
)
from channelstream.api.tween import origin_allowed
from channelstream.api.views import NodeView
from channelstream.core.errors import UnknownConnection
from channelstream.schemas import (
    DisconnectBodySchema,
    ErrorSchema,
    FrameSchema,
    ListenQuerySchema,
    PollQuerySchema,
    ServerSentEventSchema,
    ValidationErrorSchema,
)
from channelstream.transport.handshake import (
    HandshakeProblem,
    handshake_problem,
    upgrade_requested,
)
from channelstream.transport.hangup import CLIENT_SOCKET_KEY
from channelstream.transport.longpoll import long_poll
from channelstream.transport.sse import HEADERS as SSE_HEADERS
from channelstream.transport.sse import sse_stream
from channelstream.transport.websocket import serve_websocket

UNKNOWN_CONNECTION = {"conn_id": ["Unknown connection"]}
BAD_TOKEN_MESSAGE = "Bad connection token: expired"
DISCONNECT_ANSWERS: dict[str, Answer] = {
    "200": answer(fields.Boolean(), True, "true if the connection existed (it is gone now)"),
    **BODY_ERRORS,
    "503": "Unavailable",
}


@view_defaults(permission=NO_PERMISSION_REQUIRED)
class ClientViews(NodeView):
    def _peer(self) -> str:
        """The browser's address for log lines (X-Forwarded-For only via trusted_proxies),
        escaped: a hop is whatever the client put in the header."""
        return printable(client_address(self.request, self.node.settings.trusted_proxies))

    def _conn_id(self, data: dict[str, Any]) -> tuple[str, bool]:
        """The listener's connection: its `conn_id`, or its token's (opened on first use; a
        refused token raises, answered with 401, 422, 413 or 429 before any streaming); and
        whether the listener starts with a `position` frame: a token's page never saw
        `/connect`'s epoch and seq (a long poll: only when its poll created the connection,
        or every poll would return at once)."""
        if "conn_id" in data:
            return str(data["conn_id"]), False
        return open_connection(self.node, data["token"])

    @view_config(route_name="ws")
    @documented(
        "Websocket: receive frames",
        tag=CLIENT_TAG,
        description=f"""\
The browser's connection: `new WebSocket("ws://host:port/ws?conn_id=...")` with the `conn_id`
that `/connect` returned to the web app. No signature: the conn_id is the credential.

Or `/ws?token=...` with a connection token (a JWT the web app signs with `secret`), and no
`/connect` call: the first use creates the connection as `/connect` would, the same token
re-attaches and catches up, and at the token's `exp` the socket closes with 4004. A bad,
expired or wrongly signed token is refused before the upgrade with 401; claims `/connect`
would refuse get its 422 or 413, and `conn_id` with `token` is a 422.

After the upgrade the server sends text frames, each a JSON array of message objects (the
`Frame` schema): first the frames the connection missed (`catchup: true`), then live ones.
`[]` arrives every `heartbeat_interval` seconds as a heartbeat. What the client sends only
counts as activity. A missing or malformed `conn_id` is refused before the upgrade with 422;
a plain GET without an upgrade gets 400.

Close codes:

{CLOSE_CODE_LIST}

Swagger UI cannot open websockets; use a websocket client.""",
        query=ListenQuerySchema(only=("conn_id", "token")),
        responses={
            "101": {"description": "Switching protocols: frames follow"},
            "401": answer(
                ErrorSchema,
                error_example(401, "unauthorized", "Unauthorized", BAD_TOKEN_MESSAGE),
                "A bad, expired or wrongly signed connection token",
            ),
            "400": answer(
                ErrorSchema,
                error_example(
                    400,
                    "bad_request",
                    "Bad Request",
                    "This endpoint needs a websocket upgrade request",
                ),
                "Not a websocket upgrade request",
            ),
            "422": "ValidationFailed",
        },
    )
    def websocket(self) -> Response:
        """Upgraded requests are served here until the socket closes. A missing or malformed
        conn_id is refused before the upgrade (the server's pre-start hook), landing here as
        plain HTTP: 422 (fix F13); so is a broken handshake: 400, or 426 for a version."""
        data = ListenQuerySchema.lean_load(dict(self.request.GET))
        environ = self.request.environ
        ws = environ.get("wsgi.websocket")
        if ws is None:
            refusal = environ.get(TOKEN_REFUSAL_KEY)
            if refusal is not None:
                raise refusal  # left by the pre-start hook, which opens a token's connection
            if "token" in data:
                read_token(data["token"], self.node.settings)  # a bad token: 401 first
            problem = handshake_problem(environ) if upgrade_requested(environ) else None
            if problem is None:
                problem = HandshakeProblem(400, "This endpoint needs a websocket upgrade request")
            log_refusal(self.request, problem.status, problem.message)
            response = error_response(problem.status, problem.message)
            if problem.status == 426:
                response.headers["Sec-WebSocket-Version"] = "13"
            return response
        allowed = self.node.settings.allow_cors
        origin = self.request.headers.get("Origin")
        serve_websocket(
            ws,
            self.node,
            environ.get(TOKEN_CONN_ID_KEY) or self._conn_id(data)[0],
            origin_allowed=not (allowed and origin) or origin_allowed(origin or "", allowed),
            peer=self._peer(),
            frames=self.request.registry.channelstream_ws_frames,
            position="token" in data,
        )
        return Response(status=200)

    @view_config(route_name="sse", request_method="GET")
    @documented(
        "Server-sent events: receive frames",
        tag=CLIENT_TAG,
        operation_id="server_sent_events",
        description="The websocket's frames as an event stream, for browsers' `EventSource`: "
        "each event's data is a JSON array of message objects (the `Frame` schema), `[]` every "
        "`heartbeat_interval` as a heartbeat. When the server ends the stream it first sends "
        "`event: close` with a websocket close code as data (4001: unknown connection, 1000: "
        "disconnected, 1001: shutting down, 4002: too slow, 4003: user disconnected, 4004: "
        "token expired). With `token` instead of `conn_id`, a connection token opens (or "
        "re-attaches to) its connection as on `/ws`; a bad one is a 401 before streaming.",
        query=ListenQuerySchema(only=("conn_id", "token")),
        responses={
            "401": answer(
                ErrorSchema,
                error_example(401, "unauthorized", "Unauthorized", BAD_TOKEN_MESSAGE),
                "A bad, expired or wrongly signed connection token",
            ),
            "200": answer(
                ServerSentEventSchema,
                "retry: 2000\n\ndata: []\n\n",
                "The event stream",
                "text/event-stream",
            ),
            "422": "ValidationFailed",
            "503": "Unavailable",
        },
    )
    def sse(self) -> Response:
        """Server-sent events: a missing or malformed conn_id is a 422 before streaming; an
        unknown one gets `event: close` / `data: 4001` and the end of the stream."""
        data = ListenQuerySchema.lean_load(dict(self.request.GET))
        conn_id, _ = self._conn_id(data)
        client_socket = self.request.environ.get(CLIENT_SOCKET_KEY)
        response = Response(
            app_iter=sse_stream(
                self.node, conn_id, self._peer(), client_socket, position="token" in data
            ),
            status=200,
        )
        response.headers.update(SSE_HEADERS)
        return response

    @view_config(route_name="listen", request_method="GET")
    @documented(
        "Long poll for frames",
        tag=CLIENT_TAG,
        description="Waits up to `wake_connections_after` seconds for frames and answers a "
        "JSON array of message objects (`[]` if none came). With `callback`, the answer is "
        "JSONP. With `token` instead of `conn_id`, a connection token opens (or re-attaches "
        "to) its connection as on `/ws`; once the token expires its poll ends and later ones "
        "get 401.",
        query=PollQuerySchema,
        responses={
            "200": {
                "description": "The frames that arrived",
                "content": {
                    **content(FrameSchema(many=True), [FRAME_EXAMPLE]),
                    **content(fields.String(), "onFrames([])", "application/javascript"),
                },
            },
            "401": {
                "description": "No such connection (or it ended), or a bad, expired or "
                "wrongly signed connection token",
                "content": {
                    "application/json": {
                        "schema": {"anyOf": [ValidationErrorSchema, ErrorSchema]},
                        "example": UNKNOWN_CONNECTION,
                    }
                },
            },
            "422": "ValidationFailed",
            "503": "Unavailable",
        },
    )
    def listen(self) -> Response:
        data = PollQuerySchema.lean_load(dict(self.request.GET))
        conn_id, position = self._conn_id(data)
        seen = (data["epoch"], data["seq"]) if "epoch" in data else None
        try:
            frames = long_poll(
                self.node,
                conn_id,
                self.request.environ.get(CLIENT_SOCKET_KEY),
                position,
                seen,
            )
        except UnknownConnection:
            frames = None
        if frames is None:
            log_refusal(self.request, 401, "unknown connection")
            return json_response(401, UNKNOWN_CONNECTION)
        callback = data.get("callback")
        if callback:
            return Response(
                body=f"{callback}({frames})".encode(),
                content_type="application/javascript",
                charset="utf-8",
            )
        return Response(
            body=frames.encode("utf-8"), content_type="application/json", charset="utf-8"
        )

    @view_config(route_name="disconnect", renderer="json")
    @documented(
        "End a connection (conn_id in the query)",
        tag=CLIENT_TAG,
        method="GET",
        operation_id="disconnect_get",
        description="Final: the connection's listeners close with 1000 and presence parts at "
        "once. Answers any method; only POST reads a body.",
        query=DisconnectBodySchema,
        responses=DISCONNECT_ANSWERS,
    )
    @documented(
        "End a connection (conn_id in the JSON body)",
        tag=CLIENT_TAG,
        method="POST",
        description="As the GET form; the body's conn_id wins over the query's.",
        request=request_body(DisconnectBodySchema, {"conn_id": CONN_ID}, required=False),
        responses=DISCONNECT_ANSWERS,
    )
    def disconnect(self) -> Any:
        """GET reads the query; POST reads the JSON body (the 0.7 JS client also keeps the
        conn_id in the query). True if the connection existed. A missing conn_id reads as
        null, giving 0.7.1's `{"conn_id": ["Field may not be null."]}`."""
        source: Any = dict(self.request.GET)
        if self.request.method == "POST":
            body = self.json_body(default={})
            if isinstance(body, dict) and body.get("conn_id") is not None:
                source = body
            elif not isinstance(body, dict):
                raise ValidationError({"_schema": ["Invalid input type."]})
        data = DisconnectBodySchema.shared().load({"conn_id": source.get("conn_id")})
        return self.node.disconnect(data["conn_id"])
