"""Composition root: builds the Node and the Pyramid WSGI app from parsed Settings."""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.router import Router

from channelstream.node import Node
from channelstream.settings import Settings


def configure(config: Configurator, settings: Settings, node: Node | None = None) -> Node:
    """Mount channelstream on a Configurator (its own app, or a host Pyramid app)."""
    node = node or Node(settings)
    config.registry.channelstream_settings = settings
    config.registry.channelstream_node = node
    config.include("channelstream.api")
    return node


def make_app(settings: Settings, node: Node | None = None) -> Router:
    """Build the WSGI application of one server process and start its Node's loops."""
    config = Configurator(settings={})
    node = configure(config, settings, node)
    config.include("channelstream.api.views.index")  # "/": only where the app is all ours
    app = config.make_wsgi_app()
    node.start()
    return app
