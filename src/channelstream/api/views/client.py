"""Endpoints browsers call directly: /ws, /sse, /listen and /disconnect. No signature needed:
knowing a conn_id is the credential, as in 0.7.1."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config, view_defaults

from channelstream.api.errors import error_response, json_response, log_refusal, printable
from channelstream.api.security import client_address
from channelstream.api.tween import origin_allowed
from channelstream.api.views import NodeView
from channelstream.core.errors import UnknownConnection
from channelstream.schemas import DisconnectBodySchema, ListenQuerySchema
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


@view_defaults(permission=NO_PERMISSION_REQUIRED)
class ClientViews(NodeView):
    def _peer(self) -> str:
        """The browser's address for log lines (X-Forwarded-For only via trusted_proxies),
        escaped: a hop is whatever the client put in the header."""
        return printable(client_address(self.request, self.node.settings.trusted_proxies))

    @view_config(route_name="ws")
    def websocket(self) -> Response:
        """Upgraded requests are served here until the socket closes. A missing or malformed
        conn_id is refused before the upgrade (the server's pre-start hook), landing here as
        plain HTTP: 422 (fix F13); so is a broken handshake: 400, or 426 for a version."""
        data = ListenQuerySchema.shared().load(dict(self.request.GET))
        ws = self.request.environ.get("wsgi.websocket")
        if ws is None:
            environ = self.request.environ
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
            data["conn_id"],
            origin_allowed=not (allowed and origin) or origin_allowed(origin or "", allowed),
            peer=self._peer(),
            frames=self.request.registry.channelstream_ws_frames,
        )
        return Response(status=200)

    @view_config(route_name="sse", request_method="GET")
    def sse(self) -> Response:
        """Server-sent events: a missing or malformed conn_id is a 422 before streaming; an
        unknown one gets `event: close` / `data: 4001` and the end of the stream."""
        data = ListenQuerySchema.shared().load(dict(self.request.GET))
        client_socket = self.request.environ.get(CLIENT_SOCKET_KEY)
        response = Response(
            app_iter=sse_stream(self.node, data["conn_id"], self._peer(), client_socket),
            status=200,
        )
        response.headers.update(SSE_HEADERS)
        return response

    @view_config(route_name="listen", request_method="GET")
    def listen(self) -> Response:
        data = ListenQuerySchema.shared().load(dict(self.request.GET))
        try:
            frames = long_poll(
                self.node, data["conn_id"], self.request.environ.get(CLIENT_SOCKET_KEY)
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
