"""The HTTP API: routes, the security policy, the error envelope and the view classes.

`config.include("channelstream.api")` expects `config.registry.channelstream_node` and
`config.registry.channelstream_settings` to be set (see `channelstream.app`).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from typing import Any

import swagger_ui_bundle
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPNotFound
from pyramid.renderers import JSON
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.static import static_view
from pyramid.tweens import EXCVIEW

from channelstream import encoding
from channelstream.api.metrics import Metrics
from channelstream.api.security import API_PERMISSION, ChannelstreamSecurityPolicy
from channelstream.api.throttle import FailureThrottle
from channelstream.settings import Settings
from channelstream.signature import build_checker
from channelstream.transport.websocket import FrameCache

ROUTES = {
    "connect": "/connect",
    "subscribe": "/subscribe",
    "unsubscribe": "/unsubscribe",
    "user_state": "/user_state",
    "user_disconnect": "/user_disconnect",
    "message": "/message",
    "channel_config": "/channel_config",
    "info": "/info",
    "history": "/history",
    "listen": "/listen",
    "disconnect": "/disconnect",
    "ws": "/ws",
    "sse": "/sse",
    "health": "/health",
    "ready": "/ready",
    "metrics": "/metrics",
    "openapi": "/openapi.json",
    "api_explorer": "/api-explorer",
    "admin": "/admin",
    "admin_json": "/admin/admin.json",
    "admin_disconnect": "/admin/disconnect",
    "admin_user_disconnect": "/admin/user_disconnect",
    "admin_sign_in": "/admin/sign_in",
    "admin_sign_out": "/admin/sign_out",
}
# Routes of channelstream as its own app only (`channelstream.app.make_app`): in a host Pyramid
# app, "/" is the host's. The OpenAPI document lists them where they are registered.
OWN_APP_ROUTES = {"index": "/"}
DOCUMENTED_ROUTES = {**ROUTES, **OWN_APP_ROUTES}
STATIC_MAX_AGE = 3600


class StaticFiles:
    """The files of one folder that pages load, served under one URL prefix; any other path
    (the folder's HTML pages, its Python, other demo files) is a 404. With `nosniff`, so a
    file is only ever what its extension says."""

    def __init__(self, folder: str, names: Iterable[str]) -> None:
        self.names = frozenset(names)
        self.serve = static_view(folder, cache_max_age=STATIC_MAX_AGE, use_subpath=True)

    def __call__(self, context: Any, request: Request) -> Response:
        if "/".join(request.subpath) not in self.names:
            raise HTTPNotFound()
        response: Response = self.serve(context, request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


# Static files (public, as 0.7.1's /static), no HTML: Swagger UI's own files from
# swagger-ui-bundle, the explorer's scripts (top-level static/apiexplorer/, installed as
# channelstream.apiexplorer), the admin panel's and the browser client from the package's
# static/ folder. Most specific first. The pages themselves are views with their CSP.
STATIC_VIEWS = {
    "static/swagger-ui": StaticFiles(
        str(swagger_ui_bundle.swagger_ui_path),
        [
            "swagger-ui-bundle.js",
            "swagger-ui-bundle.js.map",
            "swagger-ui.css",
            "swagger-ui.css.map",
            "favicon-32x32.png",
            "favicon-16x16.png",
        ],
    ),
    "static/apiexplorer": StaticFiles(
        str(resources.files("channelstream.apiexplorer")),
        ["explorer.js", "signer.js", "explorer.css"],
    ),
    "static": StaticFiles(
        str(resources.files("channelstream") / "static"),
        ["channelstream.js", "admin/admin.js", "admin/admin.css"],
    ),
}


def includeme(config: Configurator) -> None:
    settings: Settings = config.registry.channelstream_settings
    checker = build_checker(
        settings.secret,
        settings.signature_checker,
        validate_age=settings.validate_requests,
        legacy_signatures=settings.legacy_signatures,
    )
    config.set_security_policy(
        ChannelstreamSecurityPolicy(settings, checker, config.registry.channelstream_node.broker)
    )
    config.set_default_permission(API_PERMISSION)
    config.add_renderer("json", JSON(serializer=lambda value, **kw: encoding.dumps(value)))
    config.registry.channelstream_metrics = Metrics(config.registry.channelstream_node)
    config.registry.channelstream_ws_frames = FrameCache()
    config.add_tween("channelstream.api.tween.http_edge_tween_factory", over=EXCVIEW)
    config.registry.channelstream_sign_in_throttle = FailureThrottle()
    for name, pattern in ROUTES.items():
        config.add_route(name, pattern)
    for name, files in STATIC_VIEWS.items():
        config.add_route(f"__{name}/", f"/{name}/*subpath")
        config.add_view(
            files,
            route_name=f"__{name}/",
            request_method=("GET", "HEAD"),
            permission=NO_PERMISSION_REQUIRED,
        )
    config.include("channelstream.api.errors")
    config.scan("channelstream.api.views")
