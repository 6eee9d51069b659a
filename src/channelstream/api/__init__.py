"""The HTTP API: routes, the security policy, the error envelope and the view classes.

`config.include("channelstream.api")` expects `config.registry.channelstream_node` and
`config.registry.channelstream_settings` to be set (see `channelstream.app`).
"""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.renderers import JSON
from pyramid.tweens import EXCVIEW

from channelstream import encoding
from channelstream.api.security import API_PERMISSION, ChannelstreamSecurityPolicy
from channelstream.settings import Settings
from channelstream.signature import build_checker

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
    "health": "/health",
    "ready": "/ready",
}


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
    config.add_tween("channelstream.api.tween.http_edge_tween_factory", over=EXCVIEW)
    for name, pattern in ROUTES.items():
        config.add_route(name, pattern)
    config.include("channelstream.api.errors")
    config.scan("channelstream.api.views")
