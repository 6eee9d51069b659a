"""The admin panel: its page, its JSON, its disconnect action, and signing in and out.

As in 0.7.1, the admin pages accept the admin session cookie (set by `/admin/sign_in`) or a
signed API call; without either they redirect to the sign-in page (see `api.errors`).
"""

from __future__ import annotations

import hmac
import html
from datetime import timedelta
from string import Template
from typing import Any

from pyramid.httpexceptions import HTTPFound
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED, forget, remember
from pyramid.view import view_config, view_defaults

from channelstream import __version__
from channelstream.api.security import ADMIN_PERMISSION, client_address
from channelstream.api.throttle import FailureThrottle
from channelstream.api.views import NodeView, package_text, page_response
from channelstream.node import Node
from channelstream.schemas import DisconnectBodySchema, SignInFormSchema

PAGES = "channelstream"


def admin_info(node: Node) -> dict[str, Any]:
    """`/admin/admin.json`: 0.7.1's keys (reference §1.4.13) plus this server's figures."""
    node.sync()
    state = node.state
    connected = sorted(
        (user for user in state.users.values() if user.connections), key=lambda u: u.username
    )
    uptime = node.clock() - node.started_at
    uptime_seconds = max(0, int(uptime.total_seconds()))
    connections = sorted(state.connections.values(), key=lambda c: (c.username, c.created))
    return {
        "remembered_user_count": len(state.users),
        "unique_user_count": len(connected),
        "total_connections": len(state.connections),
        "total_channels": len(state.channels),
        "total_messages": state.stats.total_messages,
        "total_unique_messages": state.stats.total_unique_messages,
        "channels": state.channels_info(None)["channels"],
        "users": [
            {
                "user": user.username,
                "uuid": user.uuid,
                "state": user.public_state,
                "connections": list(user.connections),
            }
            for user in connected
        ],
        "uptime": str(timedelta(seconds=uptime_seconds)),
        "version": __version__,
        "uptime_seconds": uptime_seconds,
        "started_at": node.started_at,
        "frames_dropped": node.frames_dropped,
        "listeners": node.listener_count(),
        "node_id": node.node_id,
        "broker": node.broker.stats(),
        "connections": [
            {
                "conn_id": connection.conn_id,
                "user": connection.username,
                "channels": sorted(connection.channels),
                "created": connection.created,
                "last_active": connection.last_active,
                "listeners": connection.listeners,
            }
            for connection in connections
        ],
    }


@view_defaults(permission=ADMIN_PERMISSION)
class AdminViews(NodeView):
    @view_config(route_name="admin")
    def panel(self) -> Response:
        return page_response(package_text(PAGES, "static/admin/index.html"))

    @view_config(route_name="admin_json", request_method=("GET", "POST"), renderer="json")
    def admin_json(self) -> dict[str, Any]:
        return admin_info(self.node)

    @view_config(route_name="admin_disconnect", request_method="POST", renderer="json")
    def disconnect(self) -> dict[str, Any]:
        data = DisconnectBodySchema.shared().load(self.json_body())
        return {"conn_id": data["conn_id"], "disconnected": self.node.disconnect(data["conn_id"])}


def credentials_match(username: str, password: str, admin_user: str, admin_secret: str) -> bool:
    """Constant-time comparison of both values (whitespace-stripped, as 0.7.1 did). An empty
    admin_secret never matches."""
    user_ok = hmac.compare_digest(username.strip().encode(), admin_user.strip().encode())
    secret_ok = hmac.compare_digest(password.strip().encode(), admin_secret.strip().encode())
    return user_ok and secret_ok and bool(admin_secret.strip())


@view_defaults(route_name="admin_sign_in", permission=NO_PERMISSION_REQUIRED)
class SignInViews(NodeView):
    def form(self, username: str = "", error: str = "") -> Response:
        page = Template(package_text(PAGES, "static/admin/sign_in.html")).substitute(
            username=html.escape(username),
            error=html.escape(error),
            error_hidden="" if error else "hidden",
        )
        return page_response(page)

    @view_config(request_method="GET")
    def show(self) -> Response:
        return self.form()

    @view_config(request_method="POST")
    def sign_in(self) -> Response:
        data = SignInFormSchema.shared().load(dict(self.request.POST))
        settings = self.node.settings
        throttle: FailureThrottle = self.request.registry.channelstream_sign_in_throttle
        address = client_address(self.request, settings.trusted_proxies)
        if throttle.attempt(
            address,
            lambda: credentials_match(
                data["username"], data["password"], settings.admin_user, settings.admin_secret
            ),
        ):
            headers = remember(self.request, settings.admin_user)
            return HTTPFound(location=self.request.route_url("admin"), headers=headers)
        return self.form(data["username"], "Wrong user name or password.")


@view_config(route_name="admin_sign_out", permission=NO_PERMISSION_REQUIRED)
def sign_out(request: Any) -> Response:
    return HTTPFound(location=request.route_url("admin_sign_in"), headers=forget(request))
