"""The HTTP API: routes, the security policy, the error envelope and the view classes.

`config.include("channelstream.api")` expects `config.registry.channelstream_node` and
`config.registry.channelstream_settings` to be set (see `channelstream.app`).
"""

from __future__ import annotations

from importlib import resources

import swagger_ui_bundle
from pyramid.config import Configurator
from pyramid.renderers import JSON
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
    "message": "/message",
    "channel_config": "/channel_config",
    "info": "/info",
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
    "admin_sign_in": "/admin/sign_in",
    "admin_sign_out": "/admin/sign_out",
}
# Static files (public, as 0.7.1's /static): Swagger UI's own files from swagger-ui-bundle, the
# explorer's page script (top-level static/apiexplorer/, installed as channelstream.apiexplorer)
# and the package's static/ folder (admin panel). Most specific first.
STATIC_VIEWS = {
    "static/swagger-ui": str(swagger_ui_bundle.swagger_ui_path),
    "static/apiexplorer": str(resources.files("channelstream.apiexplorer")),
    "static": str(resources.files("channelstream") / "static"),
}
STATIC_MAX_AGE = 3600


def includeme(config: Configurator) -> None:
    settings: Settings = config.registry.channelstream_settings
    checker = build_checker(
        settings.secret,
        settings.signature_checker,
        validate_age=settings.validate_requests,
        legacy_signatures=settings.legacy_signatures,
    )
    config.set_security_policy(ChannelstreamSecurityPolicy(settings, checker))
    config.set_default_permission(API_PERMISSION)
    config.add_renderer("json", JSON(serializer=lambda value, **kw: encoding.dumps(value)))
    config.registry.channelstream_metrics = Metrics(config.registry.channelstream_node)
    config.registry.channelstream_ws_frames = FrameCache()
    config.add_tween("channelstream.api.tween.http_edge_tween_factory", over=EXCVIEW)
    config.registry.channelstream_sign_in_throttle = FailureThrottle()
    for name, pattern in ROUTES.items():
        config.add_route(name, pattern)
    for name, path in STATIC_VIEWS.items():
        config.add_static_view(name, path, cache_max_age=STATIC_MAX_AGE)
    config.include("channelstream.api.errors")
    config.scan("channelstream.api.views")
