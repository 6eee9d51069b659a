"""channelstream: a websocket server that web applications drive through a signed JSON API."""

__version__ = "0.8.0.dev0"
