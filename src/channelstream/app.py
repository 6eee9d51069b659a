"""Composition root: builds the Node and the Pyramid WSGI app from parsed Settings."""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.router import Router

from channelstream.settings import Settings


def make_app(settings: Settings) -> Router:
    """Build the WSGI application for one server process.

    TEMPORARY STUB: replaced by the real composition root (Node + views) in the core work.
    """
    config = Configurator(settings={"channelstream.settings": settings})
    return config.make_wsgi_app()
