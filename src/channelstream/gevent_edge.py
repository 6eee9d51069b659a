"""The private details of gevent's WSGI server and gevent-websocket that channelstream relies
on, checked before the server starts.

gevent documents subclassing `WSGIHandler` and its `handle`, `get_environ`,
`read_requestline`, `handle_one_request` and `start_response`; `server.py` overrides those.
Three things have no documented hook: answering the requests gevent's parser refuses,
closing a connection instead of reading a refused body to its end, and taking an upgraded
socket away from the handler that accepted it. They lean on underscore names and undocumented
attributes, which any gevent release may change without notice; the server would then still
start, and misbehave quietly (a listener's socket closed under it, a huge body read to its
end). So `check_gevent_edge` refuses to start instead, naming each detail that moved.
`docs/architecture.md` lists them, and why.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from inspect import getattr_static
from types import SimpleNamespace
from typing import Any

from channelstream.exceptions import ChannelstreamException

# The versions the tests cover; setup.py pins the same (a test keeps the two equal).
TESTED_REQUIREMENTS = ("gevent>=26.9,<27", "gevent-websocket>=0.10.1,<0.11")
# gevent's exception for a broken chunked body; `api.body` lets it through by this name.
INVALID_CLIENT_INPUT = "_InvalidClientInput"
# Attributes server.py sets on gevent's WSGIServer for its handlers to read.
SERVER_ATTRIBUTES = ("pre_start_hook", "request_timeout", "idle_connections", "logger")
# The request line length from which gevent answers 414 (server.py's log lines say 8 KiB).
REQUEST_LINE_LIMIT = 8192
_PEER = ("192.0.2.1", 40000)


class GeventEdgeError(ChannelstreamException, RuntimeError):
    """The installed gevent or gevent-websocket lacks a detail channelstream relies on."""


@dataclass(frozen=True)
class GeventEdge:
    """What the details belong to: the `gevent.pywsgi` module (or a namespace with its
    names), the `WebSocketHandler` server.py subclasses and the `WebSocket` the views get.
    Tests pass stand-ins, so that gevent itself is never patched."""

    pywsgi: Any
    websocket_handler: Any
    websocket: Any

    @classmethod
    def installed(cls) -> GeventEdge:
        from gevent import pywsgi
        from geventwebsocket.handler import WebSocketHandler
        from geventwebsocket.websocket import WebSocket

        return cls(pywsgi, WebSocketHandler, WebSocket)


@dataclass(frozen=True)
class Detail:
    """One detail: its name where the tested versions define it, what channelstream does
    with it (completing "which channelstream ..."), and whether it still holds."""

    name: str
    use: str
    holds: Callable[[GeventEdge], bool]


class _ProbeSocket:
    """A client socket holding `data`, for probing a handler: it records every use of it
    other than `makefile`, which returns a buffered reader of `data`."""

    def __init__(self, data: bytes = b"") -> None:
        self.reader = io.BufferedReader(io.BytesIO(data))
        self.makefile_args: tuple[Any, ...] = ()
        self.used: list[str] = []

    def makefile(self, *args: Any) -> io.BufferedReader[io.BytesIO]:
        self.makefile_args = args
        return self.reader

    def __getattr__(self, name: str) -> Any:
        self.used.append(name)
        raise AttributeError(name)


class _SilentLogger:
    """Drops gevent-websocket's log calls during a probe."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def _handler(edge: GeventEdge, sock: _ProbeSocket, server: Any = None, **overrides: Any) -> Any:
    """A handler of a subclass of `edge.websocket_handler` with the methods `overrides`, on
    the probe socket `sock` (handlers are built as gevent builds them: socket, peer, server)."""
    probe_class = type("Probe", (edge.websocket_handler,), overrides)
    return probe_class(sock, _PEER, server if server is not None else SimpleNamespace())


def _method(owner: Any, name: str) -> bool:
    return callable(getattr(owner, name, None))


def _handler_attribute(name: str, edge: GeventEdge) -> bool:
    return hasattr(edge.websocket_handler, name)


def _client_error_hook(edge: GeventEdge) -> bool:
    """A request line gevent's parser refuses goes through `_handle_client_error`, whose
    (status, raw response) is the answer."""
    answer = ("400", b"")
    handler = _handler(
        edge, _ProbeSocket(b"NOT-HTTP\r\n\r\n"), _handle_client_error=lambda self, ex: answer
    )
    hook_there = _method(edge.websocket_handler, "_handle_client_error")
    return hook_there and handler.handle_one_request() is answer


def _over_long_request_line(edge: GeventEdge) -> bool:
    """A request line of 8 KiB is answered ("414", raw response) by `handle_one_request`."""
    line = b"GET /" + b"a" * REQUEST_LINE_LIMIT + b" HTTP/1.1\r\n\r\n"
    result = _handler(edge, _ProbeSocket(line)).handle_one_request()
    return isinstance(result, tuple) and result[0] == "414"


def _socket_released(edge: GeventEdge) -> bool:
    """The handler keeps its socket in `socket`; once that is None, `handle()` neither
    reads from nor closes the connection."""

    def release(self: Any) -> None:
        self.socket = None

    sock = _ProbeSocket()
    handler = _handler(edge, sock, handle_one_request=release)
    kept = handler.socket is sock
    handler.handle()
    return kept and not sock.used


def _buffered_rfile(edge: GeventEdge) -> bool:
    """`rfile` is the socket's buffered binary reader (`makefile("rb")`, not unbuffered),
    so it can be peeked for the bytes read past the request."""
    sock = _ProbeSocket()
    handler = _handler(edge, sock)
    mode, buffering = (*sock.makefile_args, -1)[:2]
    return handler.rfile is sock.reader and mode == "rb" and buffering != 0


def _peer_kept(edge: GeventEdge) -> bool:
    return bool(_handler(edge, _ProbeSocket()).client_address == _PEER)


def _discard_skipped(edge: GeventEdge) -> bool:
    """`Input._chunked_input_error` starts False, and once True the body left unread is
    not read to its end after the response."""
    body = io.BytesIO(b"x" * 64)
    request_input = edge.pywsgi.Input(body, 64)
    starts_false = request_input._chunked_input_error is False
    request_input._chunked_input_error = True
    request_input._discard()
    return starts_false and body.tell() == 0


def _invalid_client_input(edge: GeventEdge) -> bool:
    error_class = getattr(edge.pywsgi, INVALID_CLIENT_INPUT, None)
    return isinstance(error_class, type) and issubclass(error_class, OSError)


def _pre_start_hook(edge: GeventEdge) -> bool:
    """`run_application` asks `server.pre_start_hook(handler)` first; True serves the
    request as plain HTTP, never upgraded."""
    hook_calls: list[Any] = []
    app_calls: list[Any] = []

    def hook(handler: Any) -> bool:
        hook_calls.append(handler)
        return True

    def app(environ: Any, start_response: Any) -> list[bytes]:
        app_calls.append(environ)
        return []

    server = SimpleNamespace(pre_start_hook=hook, logger=_SilentLogger())
    handler = _handler(edge, _ProbeSocket(), server)
    handler.environ, handler.application = {}, app
    handler.run_application()
    return hook_calls == [handler] and len(app_calls) == 1


def _logger_property(edge: GeventEdge) -> bool:
    return isinstance(getattr_static(edge.websocket_handler, "logger", None), property)


def _server_attributes_free(edge: GeventEdge) -> bool:
    return not any(hasattr(edge.pywsgi.WSGIServer, name) for name in SERVER_ATTRIBUTES)


_ACCESS_LINE = "reads to write its access line"
_PYWSGI_HANDLER = "gevent.pywsgi.WSGIHandler"

DETAILS: tuple[Detail, ...] = (
    Detail(
        f"{_PYWSGI_HANDLER}._handle_client_error",
        "overrides to answer requests gevent's parser refuses (and broken chunked bodies) "
        "with the JSON error envelope and one WARNING line",
        _client_error_hook,
    ),
    Detail(
        f"{_PYWSGI_HANDLER}._send_error_response_if_possible",
        "overrides to give the 400 after a broken chunked body the JSON error envelope",
        lambda edge: _method(edge.websocket_handler, "_send_error_response_if_possible"),
    ),
    Detail(
        f"{_PYWSGI_HANDLER}.handle_one_request ('414' from 8 KiB)",
        "recognises in the answer to an over-long request line, to give it the JSON error envelope",
        _over_long_request_line,
    ),
    Detail(
        f"gevent.pywsgi.{INVALID_CLIENT_INPUT}",
        "lets through the body reader (by this name, an OSError) so that gevent answers a "
        "broken chunked body with 400 and closes the connection",
        _invalid_client_input,
    ),
    Detail(
        "gevent.pywsgi.Input._chunked_input_error",
        "sets on a 413 so that gevent closes the connection instead of reading the refused "
        "body to its end",
        _discard_skipped,
    ),
    Detail(
        f"{_PYWSGI_HANDLER}.wsgi_input",
        "reads in start_response to reach the request's Input on a 413",
        partial(_handler_attribute, "wsgi_input"),
    ),
    Detail(
        f"{_PYWSGI_HANDLER}.socket",
        "reads for request_timeout and idle keep-alive connections, and sets to None when it "
        "takes an upgraded websocket over, so that gevent neither reads from nor closes it",
        _socket_released,
    ),
    Detail(
        f"{_PYWSGI_HANDLER}.rfile",
        "peeks when it takes a websocket over, for client bytes already read past the handshake",
        _buffered_rfile,
    ),
    Detail(
        f"{_PYWSGI_HANDLER}.client_address",
        f"{_ACCESS_LINE} and refusal lines",
        _peer_kept,
    ),
    *(
        Detail(f"{_PYWSGI_HANDLER}.{name}", use, partial(_handler_attribute, name))
        for name, use in (
            ("requestline", _ACCESS_LINE),
            ("status", _ACCESS_LINE),
            ("response_length", f"{_ACCESS_LINE}, and to tell whether a 400 can still be sent"),
            ("time_start", _ACCESS_LINE),
            ("time_finish", _ACCESS_LINE),
            ("close_connection", "sets to close the connection after a refused body"),
            ("environ", "reads in the pre-start hook to decide whether to upgrade"),
        )
    ),
    Detail(
        "gevent.pywsgi.WSGIServer (names left free)",
        "uses to carry " + ", ".join(SERVER_ATTRIBUTES) + " to its handlers (names gevent "
        "must not use itself)",
        _server_attributes_free,
    ),
    Detail(
        "geventwebsocket.handler.WebSocketHandler (server.pre_start_hook)",
        "sets so that only /ws requests with a valid conn_id and handshake are ever upgraded",
        _pre_start_hook,
    ),
    Detail(
        "geventwebsocket.handler.WebSocketHandler.logger",
        "overrides (a property) to escape the client's headers quoted in gevent-websocket's "
        "log lines",
        _logger_property,
    ),
    Detail(
        "geventwebsocket.websocket.WebSocket.handler",
        "follows to the handler (its socket and rfile) when it takes a websocket over",
        lambda edge: hasattr(edge.websocket, "handler"),
    ),
    Detail(
        "geventwebsocket.websocket.WebSocket.raw_write",
        "calls to send its own close frame to a websocket refused before it is attached",
        lambda edge: hasattr(edge.websocket, "raw_write"),
    ),
    Detail(
        "geventwebsocket.websocket.WebSocket.closed",
        "sets so that gevent-websocket sends no close frame of its own after a take-over",
        lambda edge: hasattr(edge.websocket, "closed"),
    ),
)


def moved_details(edge: GeventEdge) -> list[Detail]:
    """The details that no longer hold for `edge`; a probe that fails counts as moved."""
    moved = []
    for detail in DETAILS:
        try:
            holds = detail.holds(edge)
        except Exception:
            holds = False
        if not holds:
            moved.append(detail)
    return moved


def installed_versions() -> str:
    """ "gevent X with gevent-websocket Y", as installed."""
    found = []
    for name in ("gevent", "gevent-websocket"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (version unknown)")
    return " with ".join(found)


def refusal_message(moved: list[Detail], versions: str) -> str:
    lines = [f"channelstream cannot start: {versions} moved or changed what it relies on:"]
    lines += [f"  {detail.name}, which channelstream {detail.use}" for detail in moved]
    lines.append(
        f"Use {' and '.join(TESTED_REQUIREMENTS)}, the versions its tests cover "
        "(docs/architecture.md lists these details)."
    )
    return "\n".join(lines)


def check_gevent_edge(edge: GeventEdge | None = None) -> None:
    """Raise GeventEdgeError naming every detail of `edge` (the installed gevent and
    gevent-websocket by default) that moved. Pure probes, no I/O: call it before serving."""
    moved = moved_details(edge or GeventEdge.installed())
    if moved:
        raise GeventEdgeError(refusal_message(moved, installed_versions()))
