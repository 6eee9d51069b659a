"""The admin panel: its page, its JSON, its disconnect action, and signing in and out.

As in 0.7.1, the admin pages accept the admin session cookie (set by `/admin/sign_in`) or a
signed API call; without either they redirect to the sign-in page (see `api.errors`).

The browser sends the cookie whatever page made the request (SameSite=Lax does not tell two
ports or subdomains of one site apart), so what changes state on the strength of the cookie
(disconnect, user disconnect, sign-out) takes only JSON, which another origin cannot send
without a CORS preflight, and only from this server's own origin. The sign-in form is checked
for its origin too (login CSRF). A signed call is a server, not a browser: it skips these checks.
"""

from __future__ import annotations

import hmac
import html
import math
from datetime import timedelta
from string import Template
from typing import Any

from marshmallow import fields
from pyramid.interfaces import ISecurityPolicy
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED, forget, remember
from pyramid.view import view_config, view_defaults

from channelstream import __version__
from channelstream.api.documented import (
    ADMIN_TAG,
    FORM,
    HTML,
    PAGES_TAG,
    answer,
    content,
    documented,
    html_page,
    request_body,
)
from channelstream.api.errors import (
    LocalRedirect,
    error_response,
    local_redirect,
    log_refusal,
    return_path,
)
from channelstream.api.openapi import ADMIN_EXAMPLE, BODY_ERRORS, CONN_ID, error_example
from channelstream.api.security import (
    ADMIN_PERMISSION,
    ChannelstreamSecurityPolicy,
    client_address,
    cross_origin_reason,
)
from channelstream.api.throttle import FailureThrottle
from channelstream.api.views import NodeView, dumped, package_text, page_response
from channelstream.node import Node
from channelstream.schemas import (
    AdminDisconnectResponseSchema,
    AdminInfoSchema,
    DisconnectBodySchema,
    ErrorSchema,
    SignInFormSchema,
    SignInReturnSchema,
    SignOutResponseSchema,
    UserDisconnectBodySchema,
    UserDisconnectResponseSchema,
)

PAGES = "channelstream"


def admin_info(node: Node) -> dict[str, Any]:
    """`/admin/admin.json`: 0.7.1's keys (reference §1.4.13) plus this server's figures."""
    channels = node.channels_info(None)["channels"]  # caught up with the cluster first
    totals = node.totals()
    uptime = node.clock() - node.started_at
    uptime_seconds = max(0, int(uptime.total_seconds()))
    return {
        "remembered_user_count": totals.users,
        "unique_user_count": totals.users_connected,
        "total_connections": totals.connections,
        "total_channels": totals.channels,
        "total_messages": totals.frames_out,
        "total_unique_messages": totals.messages_in,
        "channels": channels,
        "users": [
            {
                "user": user.username,
                "uuid": user.uuid,
                "state": user.public_state,
                "connections": list(user.connections),
            }
            for user in node.connected_users()
        ],
        "uptime": str(timedelta(seconds=uptime_seconds)),
        "version": __version__,
        "uptime_seconds": uptime_seconds,
        "started_at": node.started_at,
        "frames_dropped": node.frames_dropped,
        "listeners": node.listener_count(),
        "node_id": node.node_id,
        "broker": node.broker_stats(),
        "connections": [
            {
                "conn_id": connection.conn_id,
                "user": connection.username,
                "channels": sorted(connection.channels),
                "created": connection.created,
                "last_active": connection.last_active,
                "listeners": connection.listeners,
            }
            for connection in node.connections()
        ],
        "webhooks": webhooks_info(node),
    }


def webhooks_info(node: Node) -> dict[str, Any] | None:
    status = node.webhook_status()
    if status is None:
        return None
    counters = status.counters
    return {
        "url": status.url,
        "sending": status.sending,
        "queue_length": status.queue_length,
        "queue_max": status.queue_max,
        "overflowed": status.overflowed,
        "last_delivered_at": status.last_delivered_at,
        "events_sent": counters.events_sent,
        "events_dropped": counters.events_dropped,
        "last_error": counters.last_error,
        "last_error_at": counters.last_error_at,
    }


def refusal(request: Request, status: int, message: str) -> Response:
    log_refusal(request, status, message, warning=status != 400)
    return error_response(status, message)


def admin_action_refusal(request: Request) -> Response | None:
    """The 403 for a state change that may come from another origin's page; None to go on."""
    policy = request.registry.queryUtility(ISecurityPolicy)
    if isinstance(policy, ChannelstreamSecurityPolicy) and policy.signed_call(request):
        return None
    if request.content_type != "application/json":
        return refusal(request, 403, "Admin actions take a JSON body (application/json)")
    reason = cross_origin_reason(request, evidence_required=True)
    return refusal(request, 403, reason) if reason else None


@view_defaults(permission=ADMIN_PERMISSION)
class AdminViews(NodeView):
    @view_config(route_name="admin")
    @documented(
        "The admin panel", tag=PAGES_TAG, operation_id="admin", responses={"200": html_page()}
    )
    def panel(self) -> Response:
        return page_response(package_text(PAGES, "static/admin/index.html"))

    @view_config(route_name="admin_json", request_method=("GET", "POST"), renderer="json")
    @documented(
        "Server figures, channels, users and connections",
        tag=ADMIN_TAG,
        description="What the admin panel shows: Channelstream 0.7.1's keys plus this "
        "server's figures. GET or POST.",
        responses={"200": answer(AdminInfoSchema, ADMIN_EXAMPLE, "The figures")},
    )
    def admin_json(self) -> dict[str, Any]:
        return dumped(AdminInfoSchema, admin_info(self.node))

    @view_config(route_name="admin_disconnect", request_method="POST", renderer="json")
    @documented(
        "End a connection (the admin panel's button)",
        tag=ADMIN_TAG,
        operation_id="admin_disconnect",
        description="As `/disconnect`, for an admin: the connection's websockets close with 1000.",
        request=request_body(DisconnectBodySchema, {"conn_id": CONN_ID}),
        responses={
            "200": answer(
                AdminDisconnectResponseSchema, {"conn_id": CONN_ID, "disconnected": True}
            ),
            **BODY_ERRORS,
            "403": "CrossOrigin",
        },
    )
    def disconnect(self) -> Any:
        refused = admin_action_refusal(self.request)
        if refused is not None:
            return refused
        data = DisconnectBodySchema.shared().load(self.json_body())
        disconnected = self.node.disconnect(data["conn_id"])
        answer = {"conn_id": data["conn_id"], "disconnected": disconnected}
        return dumped(AdminDisconnectResponseSchema, answer)

    @view_config(route_name="admin_user_disconnect", request_method="POST", renderer="json")
    @documented(
        "End every connection of users (the admin panel's button)",
        tag=ADMIN_TAG,
        operation_id="admin_user_disconnect",
        description="As `/user_disconnect`, for an admin: the users' websockets close with 4003.",
        request=request_body(
            UserDisconnectBodySchema, {"users": ["alice"], "reason": "disconnected by an admin"}
        ),
        responses={
            "200": answer(UserDisconnectResponseSchema, {"disconnected": {"alice": 2}}),
            **BODY_ERRORS,
            "403": "CrossOrigin",
        },
    )
    def user_disconnect(self) -> Any:
        refused = admin_action_refusal(self.request)
        if refused is not None:
            return refused
        data = UserDisconnectBodySchema.shared().load(self.json_body())
        counts = self.node.disconnect_users(data["users"], data["reason"])
        return dumped(UserDisconnectResponseSchema, {"disconnected": counts})


def credentials_match(username: str, password: str, admin_user: str, admin_secret: str) -> bool:
    """Constant-time comparison of both values (whitespace-stripped, as 0.7.1 did). An empty
    admin_secret never matches."""
    user_ok = hmac.compare_digest(username.strip().encode(), admin_user.strip().encode())
    secret_ok = hmac.compare_digest(password.strip().encode(), admin_secret.strip().encode())
    return user_ok and secret_ok and bool(admin_secret.strip())


FORM_TYPE = "application/x-www-form-urlencoded"


@view_defaults(route_name="admin_sign_in", permission=NO_PERMISSION_REQUIRED)
class SignInViews(NodeView):
    def form(
        self, username: str = "", error: str = "", status: int = 200, came_from: str = ""
    ) -> Response:
        page = Template(package_text(PAGES, "static/admin/sign_in.html")).substitute(
            username=html.escape(username),
            error=html.escape(error),
            error_hidden="" if error else "hidden",
            came_from=html.escape(return_path(came_from) or ""),
        )
        return page_response(page, status)

    @view_config(request_method="GET")
    @documented(
        "The sign-in form",
        tag=PAGES_TAG,
        operation_id="admin_sign_in_form",
        query=SignInReturnSchema,
        responses={"200": html_page()},
    )
    def show(self) -> Response:
        query = SignInReturnSchema.shared().load(dict(self.request.GET))
        return self.form(came_from=query["came_from"])

    @view_config(request_method="POST")
    @documented(
        "Sign in to the admin panel",
        tag=PAGES_TAG,
        operation_id="admin_sign_in",
        description="The right `admin_user` and `admin_secret` set the session cookie and "
        "redirect to `came_from` when it is a path of this server (the page that sent the "
        "browser to the form), else to `/admin`. Wrong ones show the form again. After "
        "repeated failures from one address, its next attempts are refused with 429 and "
        "`Retry-After` until a back-off has passed (0.5 s doubling to 8 s, the first failure "
        "free), without the credentials being checked. A form from another origin (`Origin` "
        "header) is refused with 403.",
        request=request_body(SignInFormSchema, media_type=FORM),
        responses={
            "200": html_page("Wrong credentials: the form again"),
            "302": {
                "description": "Signed in: redirected to `came_from` or /admin with the cookie set",
                "headers": {
                    "Set-Cookie": {"schema": {"type": "string"}},
                    "Location": {"schema": {"type": "string"}, "example": "/admin"},
                },
            },
            "400": answer(
                ErrorSchema,
                error_example(
                    400, "bad_request", "Bad Request", f"The sign-in form must be {FORM} in UTF-8"
                ),
                f"Not a {FORM} body, or another charset than UTF-8",
            ),
            "403": "CrossOrigin",
            "429": {
                "description": "Too many failed sign-ins from this address: the form with the "
                "message, or the JSON envelope for a client that prefers JSON",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                "content": {
                    **content(fields.String(), media_type=HTML),
                    **content(
                        ErrorSchema,
                        error_example(
                            429,
                            "too_many_requests",
                            "Too Many Requests",
                            "Too many failed sign-ins; try again in 2 s",
                        ),
                    ),
                },
            },
            "503": "Unavailable",
        },
    )
    def sign_in(self) -> Response:
        """Checked in this order, each refusal before any work of the next: the origin, the
        form's type and charset (webob reads UTF-8 forms only), the throttle (no credentials
        are compared while an address is refused), the credentials."""
        request = self.request
        reason = cross_origin_reason(request, evidence_required=False)
        if reason:
            return refusal(request, 403, reason)
        charset = (request.charset or "utf-8").lower().replace("_", "-")
        if request.content_type != FORM_TYPE or charset not in ("utf-8", "utf8"):
            return refusal(request, 400, f"The sign-in form must be {FORM_TYPE} in UTF-8")
        data = SignInFormSchema.shared().load(dict(request.POST))
        settings = self.node.settings
        throttle: FailureThrottle = request.registry.channelstream_sign_in_throttle
        address = client_address(request, settings.trusted_proxies)
        wait = throttle.retry_after(address)
        if wait > 0:
            return self.too_many_failures(data["username"], data["came_from"], math.ceil(wait))
        if credentials_match(
            data["username"], data["password"], settings.admin_user, settings.admin_secret
        ):
            throttle.succeeded(address)
            session = remember(request, settings.admin_user)
            back = return_path(data["came_from"])
            return (
                LocalRedirect(back, session) if back else local_redirect(request, "admin", session)
            )
        throttle.failed(address)
        return self.form(data["username"], "Wrong user name or password.", 200, data["came_from"])

    def too_many_failures(self, username: str, came_from: str, seconds: int) -> Response:
        """429 with Retry-After: the form with the message for a browser, the JSON envelope
        for a client that prefers JSON."""
        message = f"Too many failed sign-ins; try again in {seconds} s"
        log_refusal(self.request, 429, message, warning=True)
        offers = self.request.accept.acceptable_offers(["text/html", "application/json"])
        if offers and offers[0][0] == "application/json":
            response = error_response(429, message)
        else:
            response = self.form(username, message, 429, came_from)
        response.headers["Retry-After"] = str(seconds)
        return response


@view_config(
    route_name="admin_sign_out",
    request_method="POST",
    permission=NO_PERMISSION_REQUIRED,
    renderer="json",
)
@documented(
    "Sign out",
    tag=PAGES_TAG,
    operation_id="admin_sign_out",
    description="Ends the admin session on this server (the cookie is worthless afterwards) "
    "and clears the cookie. A JSON POST from the admin panel's own origin only; a GET is 404.",
    request=request_body(fields.Dict(), {}, required=False),
    responses={
        "200": answer(
            SignOutResponseSchema,
            {"signed_out": True},
            "Signed out (`signed_out`: whether a session was open)",
        ),
        "403": "CrossOrigin",
        "503": "Unavailable",
    },
)
def sign_out(request: Request) -> Any:
    """POST only (a GET is the usual 404 for a wrong method): end the session on every node
    (it lives in the broker), clear the cookie. `signed_out` says whether one was open."""
    refused = admin_action_refusal(request)
    if refused is not None:
        return refused
    signed_in = request.authenticated_userid is not None
    request.response.headerlist.extend(forget(request))
    return dumped(SignOutResponseSchema, {"signed_out": signed_in})
