"""The gevent WSGI server with websocket support, its signal handling and the pserve runner.

`serve` runs until SIGTERM or SIGINT, then drains within `shutdown_timeout` seconds: /ready
answers 503 while the server still accepts for `drain_grace` seconds (so a load balancer polling
/ready sees the node leave), then the server stops accepting, websockets and streams close with
1001 in batches, in-flight requests finish (or are cut at the deadline), the node stops and
`serve` returns.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote_to_bytes

from channelstream.exceptions import EXIT_BAD_CONFIG, ChannelstreamException
from channelstream.logs import CLIENT_ADDRESS_KEY, EscapingLoggerAdapter, escaped
from channelstream.transport.handshake import handshake_problem, upgrade_requested
from channelstream.transport.hangup import CLIENT_SOCKET_KEY

log = logging.getLogger(__name__)
access_log = logging.getLogger("channelstream.access")

SHUTDOWN_TIMEOUT = 10.0
REQUEST_TIMEOUT = 60.0
# Listeners closed per batch when stopping, and the pause between batches: 10,000 listeners
# close within 0.4 s, in-flight requests keep running meanwhile, and reconnecting clients
# reach the other nodes spread out rather than in one burst.
DRAIN_BATCH_SIZE = 500
DRAIN_BATCH_PAUSE = 0.02
# gevent's WSGIServer.stop kills the requests still running after its timeout and then waits
# up to one more second for them to die; keep that second inside shutdown_timeout.
KILL_GRACE = 1.0


class ListenError(ChannelstreamException):
    """The server cannot listen on its address; the message says what to change."""

    # What to do about the usual causes, by errno.
    ADVICE = {
        errno.EADDRINUSE: "address already in use (another server running? choose another "
        "port: CHANNELSTREAM_PORT or port in the ini)",
        errno.EACCES: "permission denied (ports below 1024 need privileges: choose another "
        "port: CHANNELSTREAM_PORT or port in the ini)",
        errno.EADDRNOTAVAIL: "this machine has no such address (check CHANNELSTREAM_HOST or "
        "host in the ini)",
    }

    @classmethod
    def from_os_error(cls, host: str, port: int, error: OSError) -> ListenError:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        reason = cls.ADVICE.get(error.errno or 0) or error.strerror or str(error)
        return cls(f"cannot listen on {address}: {reason}")


def upgrade_query(environ: Mapping[str, Any]) -> dict[str, list[str]]:
    """A `/ws` request's query parameters, as the two checks below read them."""
    return parse_qs(str(environ.get("QUERY_STRING") or ""), keep_blank_values=True)


def websocket_upgrade_refused(
    environ: Mapping[str, Any], query: dict[str, list[str]] | None = None
) -> bool:
    """True when a request must not be upgraded to a websocket: served as plain HTTP instead.

    Only `.../ws` with a UUID `conn_id`, or with a `token` and no `conn_id`, is upgraded (a
    token only once its connection is open: see `_pre_start_hook`). Any other path is never
    upgraded,
    whatever headers it came with: an upgraded request's response is thrown away, so an
    `/sse` stream served on one would stream into nothing and never notice its client leave.
    A `/ws` request with its `conn_id` missing or not a UUID, or with a broken handshake (see
    `transport.handshake`), goes to the app as plain HTTP, which answers with a JSON error
    (422, 400 or 426) instead of accepting a socket. Like Pyramid's
    `request.params`, the last of repeated `conn_id` parameters counts. `query`: the
    `upgrade_query` of `environ`, when the caller has it already.
    """
    path = str(environ.get("PATH_INFO") or "")
    if not path.endswith("/ws"):
        return True
    if query is None:
        query = upgrade_query(environ)
    values = query.get("conn_id")
    if not values:
        if not query.get("token"):
            return True
    else:
        if "token" in query:
            return True  # both: a 422
        try:
            uuid.UUID(values[-1])
        except ValueError:
            return True
    return upgrade_requested(environ) and handshake_problem(environ) is not None


def token_of_upgrade(
    environ: Mapping[str, Any], query: dict[str, list[str]] | None = None
) -> str | None:
    """The `token` of a `/ws` upgrade that carries one (the last, as for `conn_id`)."""
    values = (upgrade_query(environ) if query is None else query).get("token")
    return values[-1] if values else None


# A query parameter's name and its "=". Names start after "?", after "&" or ";" (WebOb splits
# the query on both) or after whitespace (gevent splits the request line there); a value runs
# to the next "&", ";" or space, so a token cut by a stray control character is redacted whole.
_PARAMETER_NAME = re.compile(r"(?<=[?&;\s])([^?&;=\s]*)=")
_VALUE_END = re.compile(r"[&; ]")
REDACTED_PARAMETERS = frozenset({b"secret", b"token"})  # credentials a URL may carry
# The longest request line an access line shows, escaped (gevent refuses longer ones).
LOGGED_REQUEST_LINE_LENGTH = 8192


def redact_secrets(line: str) -> str:
    """`line` (a request line) with the value of each `secret` or `token` (a connection
    token) query parameter replaced by `[redacted]`: each parameter the server would read by
    those names once "+" and percent escapes are decoded (`?%73ecret=` too), repeated ones
    all."""
    if "?" not in line or ("secret" not in line and "token" not in line and "%" not in line):
        return line  # the usual line: none of its names can decode to `secret`
    parts: list[str] = []
    done = 0
    for match in _PARAMETER_NAME.finditer(line):
        start = match.end()
        if start <= done or unquote_to_bytes(match[1].replace("+", " ")) not in REDACTED_PARAMETERS:
            continue
        end = _VALUE_END.search(line, start)
        parts += [line[done:start], "[redacted]"]
        done = end.start() if end else len(line)
    return "".join(parts) + line[done:] if parts else line


def status_code(status: object) -> str:
    """The code of a gevent handler's `status` (b"200 OK", or "400" for a refused request)."""
    if isinstance(status, bytes):
        status = status.decode("latin-1")
    words = str(status or "").split(None, 1)
    return words[0] if words else "000"


def access_line(
    client: str,
    requestline: str,
    status: str,
    length: int,
    duration: float | None,
    now: datetime,
) -> str:
    """One access-log line, in gevent's layout: client, time, the request line with its
    `secret` values redacted, status, bytes sent and seconds taken. Every value is escaped
    (and `"` inside the quotes), so whatever a client sent, the line is one printable line."""
    request = escaped(redact_secrets(requestline), LOGGED_REQUEST_LINE_LENGTH)
    request = request.replace('"', '\\"')
    seconds = "-" if duration is None else f"{duration:.6f}"
    return (
        f"{escaped(client) or '-'} - - [{now.isoformat(' ', 'seconds')}] "
        f'"{request}" {escaped(status)} {length or "-"} {seconds}'
    )


def raw_error_response(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 response with the JSON error envelope, closing the connection: for
    requests refused before the app sees them (gevent's parser, not Pyramid, answers those)."""
    from channelstream.api.errors import error_response

    response = error_response(status, message)
    head = [f"HTTP/1.1 {response.status}"]
    head += [f"{name}: {value}" for name, value in response.headerlist]
    head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body


def _pre_start_hook(handler: Any) -> bool:
    """gevent-websocket calls this before upgrading; True means 'serve as plain HTTP'.
    A token's connection is opened here, so that a refused token (401), bad claims (422,
    413) or a limit are answered in JSON before the upgrade, never as a close code."""
    environ = handler.environ
    if not str(environ.get("PATH_INFO") or "").endswith("/ws"):
        return True  # most requests: no query to read
    query = upgrade_query(environ)
    if websocket_upgrade_refused(environ, query):
        return True
    token = token_of_upgrade(environ, query)
    node = _app_node(getattr(handler, "application", None))
    if token is None or node is None:
        return False
    from channelstream.api.tokens import prepare_upgrade

    return not prepare_upgrade(node, environ, token)


def _handler_class() -> type:
    """gevent-websocket's handler, with its access lines on the `channelstream.access` logger.

    (Its own debug lines stay on the `channelstream.websocket` logger.) Some overrides below
    have no documented hook to use; `gevent_edge` checks those details before serving.
    """
    from geventwebsocket.handler import WebSocketHandler

    class AccessLoggingWebSocketHandler(WebSocketHandler):
        def handle(self) -> None:
            """Serve the connection's requests, none of its reads or writes stalling longer
            than `request_timeout` (a timed-out read or write ends the connection).

            With TCP_NODELAY: gevent writes an answer's headers and body as two segments, and
            Nagle's algorithm would hold the second until the client's delayed ACK, 40 ms on
            every call of a kept-alive connection (a web app's pooled HTTP client)."""
            timeout = getattr(self.server, "request_timeout", 0.0)
            if timeout:
                self.socket.settimeout(timeout)
            with contextlib.suppress(OSError):  # not TCP (a Unix socket): nothing to turn off
                self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().handle()

        def get_environ(self) -> dict[str, Any]:
            """The WSGI environ, with the client's socket for listeners that watch for the
            client hanging up (see `transport.hangup`)."""
            environ: dict[str, Any] = super().get_environ()
            environ[CLIENT_SOCKET_KEY] = self.socket
            return environ

        # gevent's HTTP parser refuses malformed requests itself; these three hooks give
        # those refusals the JSON error envelope and one WARNING line (gevent's own: an empty
        # body, and an ERROR line with a stack trace for some).

        def _refused(self, status: int, reason: str) -> None:
            peer = self.client_address
            address = peer[0] if isinstance(peer, tuple) else str(peer)
            log.warning("refused a malformed request from %s: %d %s", address, status, reason)

        def _handle_client_error(self, ex: BaseException) -> tuple[str, bytes]:
            from channelstream.api.errors import printable

            message = getattr(ex, "formatted_message", "") or str(ex) or repr(ex)
            reason = printable(redact_secrets(message))  # gevent's may quote the request line
            self._refused(400, reason)
            return "400", raw_error_response(400, "Malformed HTTP request")

        def _send_error_response_if_possible(self, error_code: int) -> None:
            if error_code != 400 or self.response_length:
                super()._send_error_response_if_possible(error_code)
                return
            from channelstream.api.errors import error_response

            response = error_response(400, "Malformed HTTP request")
            try:
                self.start_response(
                    response.status, [*response.headerlist, ("Connection", "close")]
                )
                self.write(response.body)
            except OSError:
                self.close_connection = True

        def handle_one_request(self) -> Any:
            result = super().handle_one_request()
            if isinstance(result, tuple) and result[0] == "414":
                self._refused(414, "request line over 8 KiB")
                return "414", raw_error_response(414, "Request line too long")
            return result

        def start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
            if status.startswith("413"):
                # A body over the limit is not read to its end (gevent would, to reuse the
                # connection): the connection closes after the answer instead.
                self.close_connection = True
                wsgi_input = getattr(self, "wsgi_input", None)
                if wsgi_input is not None:
                    wsgi_input._chunked_input_error = True  # gevent's "do not discard" flag
                headers = [*headers, ("Connection", "close")]
            return super().start_response(status, headers, exc_info)

        def log_request(self) -> None:
            """The request's access line (none for an upgraded websocket), made from the
            handler attributes gevent documents rather than its `format_request`."""
            status = status_code(self.status)
            if status == "101" or not access_log.isEnabledFor(logging.INFO):
                return
            peer = self.client_address
            client = peer[0] if isinstance(peer, tuple) else str(peer or "")
            # the app resolved X-Forwarded-For of a trusted proxy (absent: refused earlier)
            client = (self.environ or {}).get(CLIENT_ADDRESS_KEY) or client
            duration = self.time_finish - self.time_start if self.time_finish else None
            line = self.requestline or ""
            length = self.response_length
            access_log.info(access_line(client, line, status, length, duration, datetime.now()))

        @property
        def logger(self) -> EscapingLoggerAdapter:
            """gevent-websocket's logger (`server.logger`), its messages escaped: some quote
            the client's handshake headers. Made once per connection: gevent-websocket reads
            it half a dozen times for each websocket request, mostly for DEBUG lines."""
            adapter: EscapingLoggerAdapter | None = self.__dict__.get("_channelstream_logger")
            if adapter is None:
                target = getattr(self.server, "logger", None)
                adapter = EscapingLoggerAdapter(
                    target or logging.getLogger("channelstream.websocket")
                )
                self.__dict__["_channelstream_logger"] = adapter
            return adapter

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


def _app_node(app: Any) -> Any:
    """The app's `Node` (None for a foreign WSGI app)."""
    return getattr(getattr(app, "registry", None), "channelstream_node", None)


def _stop_node(app: Any) -> None:
    stop = getattr(_app_node(app), "stop", None)
    if callable(stop):
        try:
            stop()
        except Exception:
            log.exception("stopping the node failed")


def _drain(
    server: Any,
    pool: Any,
    app: Any,
    idle_connections: IdleConnections,
    timeout: float,
    grace: float,
    grace_cut: Any,
) -> None:
    """Stop serving within `timeout` seconds, closing what is open in an orderly way.

    First, for `grace` seconds (or until `grace_cut`, an Event, is set), everything is served
    as before but /ready answers 503: a load balancer that polls it takes the node out while
    it still answers. `pool` is the server's request pool, passed in rather than read from
    gevent's undocumented `server.pool`."""
    import gevent

    deadline = time.monotonic() + timeout
    node = _app_node(app)
    if node is not None:
        node.begin_drain()  # /ready: 503 from now on
        if grace > 0:
            log.info("draining: still serving for %.1f s (drain_grace) before closing", grace)
            grace_cut.wait(grace)
    server.close()  # stop accepting
    log.info("draining: no longer accepting connections")
    idle_connections.close_all()  # keep-alive connections between requests
    if node is not None:
        listeners = node.listener_count()
        batches = node.close_listeners(DRAIN_BATCH_SIZE, DRAIN_BATCH_PAUSE)
        log.info("closed %d listeners with 1001 in %d batches", listeners, batches)
        # Websockets are served outside the request pool: wait for their close handshakes
        # (each gives its client up to 5 s) so no close frame is lost when the process ends.
        while node.listener_count() and time.monotonic() < deadline - KILL_GRACE:
            gevent.sleep(DRAIN_BATCH_PAUSE)
    if len(pool):
        log.info("waiting up to %.1f s for %d requests", deadline - time.monotonic(), len(pool))
    server.stop(timeout=max(deadline - time.monotonic() - KILL_GRACE, 0.0))
    if len(pool):
        log.warning("%d requests were cut off at shutdown_timeout", len(pool))


def serve(
    app: Callable[..., Any],
    host: str,
    port: int,
    *,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    request_timeout: float = REQUEST_TIMEOUT,
    drain_grace: float = 0.0,
    listener: socket.socket | None = None,
) -> None:
    """Serve `app` on host:port until SIGTERM/SIGINT, then drain (see `_drain`) and return.

    `listener`: a listening socket to serve instead of binding host:port (a worker's, made by
    the supervisor: see `channelstream.workers`); host and port then only name it in logs.

    The app starts its own node; this function only stops it (`app.registry.channelstream_node`,
    if present) after the server has stopped, or when it cannot listen. Raises ListenError
    when the address cannot be bound (in use, not allowed), GeventEdgeError, before anything
    is served, when gevent or gevent-websocket changed a private detail the handler relies on.
    A second signal during the drain grace ends the grace early.
    """
    import gevent
    from gevent.event import Event
    from gevent.pool import Pool
    from gevent.pywsgi import WSGIServer

    from channelstream.gevent_edge import GeventEdgeError, check_gevent_edge

    try:
        check_gevent_edge()
    except GeventEdgeError:
        _stop_node(app)
        raise
    pool = Pool()  # a pool, so that stop() can wait for in-flight requests
    server = WSGIServer(
        listener if listener is not None else (host, port),
        app,
        handler_class=_handler_class(),
        spawn=pool,
        log=access_log,
        error_log=logging.getLogger("channelstream.server.errors"),
    )
    server.pre_start_hook = _pre_start_hook
    server.request_timeout = request_timeout
    idle_connections = IdleConnections()
    server.idle_connections = idle_connections
    # gevent-websocket's handler writes its debug lines to `server.logger`.
    server.logger = logging.getLogger("channelstream.websocket")

    stop_requested = Event()
    grace_cut = Event()

    def request_stop(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop_requested.is_set():
            log.info("%s received again: ending the drain grace", name)
            grace_cut.set()
            return
        log.info("%s received, shutting down", name)
        stop_requested.set()

    watchers = [
        gevent.signal_handler(signum, request_stop, signum)
        for signum in (signal.SIGTERM, signal.SIGINT)
    ]
    try:
        try:
            server.start()
        except OSError as error:
            raise ListenError.from_os_error(host, port, error) from None
        log.info("Serving on http://%s:%s", host, server.server_port)
        stop_requested.wait()
        _drain(server, pool, app, idle_connections, shutdown_timeout, drain_grace, grace_cut)
        log.info("Server stopped")
    finally:
        for watcher in watchers:
            watcher.cancel()
        _stop_node(app)


def _ensure_gevent_patched() -> None:
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()


def _end_pserve(error: Exception) -> NoReturn:
    """End the process as the console script does: one line on stderr, exit status 2.

    pserve catches a SystemExit raised by its server runner and exits 0 ("Exiting ... (-v to
    see traceback)"), so the process ends here, once the node has stopped (`serve` stops it
    whatever happens) and the output is flushed."""
    print(f"channelstream: {error}", file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_BAD_CONFIG)


def paste_server_runner(
    wsgi_app: Callable[..., Any],
    global_conf: Mapping[str, Any],
    host: str = "0.0.0.0",
    port: int | str = 8000,
    **kwargs: Any,
) -> None:
    """`paste.server_runner` entry point: `[server:main] use = egg:channelstream` in pserve.

    It binds [server:main]'s host and port, overridden by CHANNELSTREAM_HOST and
    CHANNELSTREAM_PORT as every setting is. A bad value or an address it cannot listen on
    ends the process as the console script ends: one line on stderr, exit status 2.
    PasteDeploy builds the app before calling this, so patching here is best effort; nothing
    the app builds should hold blocking sockets before serving starts.
    """
    _ensure_gevent_patched()
    from channelstream.settings import SettingsError, SettingsSource, listen_address

    where = global_conf.get("__file__")
    name = f"config file {where}" if where else "server settings"
    given = {"host": host, "port": port}
    origins = {key: f"{name} ([server:main] {key})" for key in given}
    settings = getattr(getattr(wsgi_app, "registry", None), "channelstream_settings", None)
    try:
        bound_host, bound_port = listen_address(
            SettingsSource(name, given, origins), environ=os.environ
        )
    except SettingsError as error:
        _stop_node(wsgi_app)
        _end_pserve(error)
    if kwargs:
        log.warning("[server:main] ignores unknown keys: %s", ", ".join(sorted(kwargs)))
    workers = getattr(settings, "workers", 1)
    if workers > 1:
        log.warning(
            "workers = %d is ignored under pserve, which serves one process: start worker "
            "mode with `channelstream -i FILE`",
            workers,
        )
    try:
        serve(
            wsgi_app,
            bound_host,
            bound_port,
            shutdown_timeout=getattr(settings, "shutdown_timeout", SHUTDOWN_TIMEOUT),
            request_timeout=getattr(settings, "request_timeout", REQUEST_TIMEOUT),
            drain_grace=getattr(settings, "drain_grace", 0.0),
        )
    except ListenError as error:
        _end_pserve(error)
