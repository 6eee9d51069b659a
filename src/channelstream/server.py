"""The gevent WSGI server with websocket support, its signal handling and the pserve runner.

`serve` runs until SIGTERM or SIGINT, then stops accepting, stops the app's node (which closes
websockets with 1001), gives in-flight requests up to `shutdown_timeout` seconds and returns.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

log = logging.getLogger(__name__)
access_log = logging.getLogger("channelstream.access")

SHUTDOWN_TIMEOUT = 10.0


def websocket_upgrade_refused(environ: Mapping[str, Any]) -> bool:
    """True when a request for `.../ws` must not be upgraded to a websocket.

    That is when its `conn_id` query parameter is missing or not a UUID: the request then goes
    to the app as plain HTTP, which answers 422 with a JSON error instead of accepting a socket.
    Like Pyramid's `request.params`, the last of repeated `conn_id` parameters counts.
    """
    path = str(environ.get("PATH_INFO") or "")
    if not path.endswith("/ws"):
        return False
    query = parse_qs(str(environ.get("QUERY_STRING") or ""), keep_blank_values=True)
    values = query.get("conn_id")
    if not values:
        return True
    try:
        uuid.UUID(values[-1])
    except ValueError:
        return True
    return False


def _pre_start_hook(handler: Any) -> bool:
    """gevent-websocket calls this before upgrading; True means 'serve as plain HTTP'."""
    return websocket_upgrade_refused(handler.environ)


def _handler_class() -> type:
    """gevent-websocket's handler, with its access lines on the `channelstream.access` logger.

    (Its own debug lines stay on the `channelstream.websocket` logger.)
    """
    from geventwebsocket.handler import WebSocketHandler

    class AccessLoggingWebSocketHandler(WebSocketHandler):
        def log_request(self) -> None:
            if "101" not in str(self.status):  # upgraded sockets are not access-logged
                access_log.info(self.format_request())

        def read_requestline(self) -> str:
            """Wait for the next request of a keep-alive connection, as an idle handler
            that shutting down may close (see `IdleConnections`)."""
            idle: IdleConnections | None = getattr(self.server, "idle_connections", None)
            if idle is None:
                return str(super().read_requestline())
            if idle.closing:
                return ""  # no new request once shutting down: the connection closes
            idle.handlers.add(self)
            try:
                return str(super().read_requestline())
            finally:
                idle.handlers.discard(self)

    return AccessLoggingWebSocketHandler


class IdleConnections:
    """Keep-alive connections waiting for their next request.

    Pooling clients (such as `channelstream.client`) keep connections open between requests;
    without this, a graceful stop would wait `shutdown_timeout` seconds for them."""

    def __init__(self) -> None:
        self.handlers: set[Any] = set()
        self.closing = False

    def close_all(self) -> None:
        self.closing = True
        for handler in list(self.handlers):
            sock = getattr(handler, "socket", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # their read returns: the handler ends


def _stop_node(app: Any) -> None:
    node = getattr(getattr(app, "registry", None), "channelstream_node", None)
    stop = getattr(node, "stop", None)
    if callable(stop):
        try:
            stop()
        except Exception:
            log.exception("stopping the node failed")


def serve(
    app: Callable[..., Any],
    host: str,
    port: int,
    *,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
) -> None:
    """Serve `app` on host:port until SIGTERM/SIGINT, then shut down cleanly and return.

    The app starts its own node; this function only stops it (`app.registry.channelstream_node`,
    if present) after the server has stopped.
    """
    import gevent
    from gevent.event import Event
    from gevent.pool import Pool
    from gevent.pywsgi import WSGIServer

    server = WSGIServer(
        (host, port),
        app,
        handler_class=_handler_class(),
        spawn=Pool(),  # a pool, so that stop() can wait for in-flight requests
        log=access_log,
        error_log=logging.getLogger("channelstream.server.errors"),
    )
    server.pre_start_hook = _pre_start_hook
    idle_connections = IdleConnections()
    server.idle_connections = idle_connections
    # gevent-websocket's handler writes its debug lines to `server.logger`.
    server.logger = logging.getLogger("channelstream.websocket")

    stop_requested = Event()

    def request_stop(signum: int) -> None:
        log.info("%s received, shutting down", signal.Signals(signum).name)
        stop_requested.set()

    watchers = [
        gevent.signal_handler(signum, request_stop, signum)
        for signum in (signal.SIGTERM, signal.SIGINT)
    ]
    try:
        server.start()
        log.info("Serving on http://%s:%s", host, server.server_port)
        stop_requested.wait()
        server.close()  # stop accepting first,
        idle_connections.close_all()  # close keep-alive connections between requests,
        _stop_node(app)  # then close websockets with 1001 so their handlers finish,
        server.stop(timeout=shutdown_timeout)  # then wait for in-flight requests
        log.info("Server stopped")
    finally:
        for watcher in watchers:
            watcher.cancel()
        _stop_node(app)


def _ensure_gevent_patched() -> None:
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()


def paste_server_runner(
    wsgi_app: Callable[..., Any],
    global_conf: Mapping[str, Any],
    host: str = "0.0.0.0",
    port: int | str = 8000,
    **kwargs: Any,
) -> None:
    """`paste.server_runner` entry point: `[server:main] use = egg:channelstream` in pserve.

    PasteDeploy builds the app before calling this, so patching here is best effort; nothing
    the app builds should hold blocking sockets before serving starts.
    """
    _ensure_gevent_patched()
    from channelstream.settings import SettingsError, parse_port

    try:
        port_number = parse_port(port)
    except ValueError as error:
        raise SettingsError(f"invalid value for [server:main] 'port': {error}") from None
    if kwargs:
        log.warning("[server:main] ignores unknown keys: %s", ", ".join(sorted(kwargs)))
    serve(wsgi_app, str(host), port_number)
