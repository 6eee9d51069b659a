"""Serving one `/ws` listener on a gevent-websocket socket.

Two greenlets per socket: this one reads client frames (their content is ignored; each counts
as activity), a writer drains the listener's outbox, sending everything waiting as one JSON
array. Client frames are read here rather than with `WebSocket.receive()` so that a frame's
declared size is checked against `max_message_size` before its payload is read (close 1009).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from typing import Any

import gevent
from gevent.lock import Semaphore
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.websocket import Header, WebSocket

from channelstream.broker import BrokerUnavailable
from channelstream.close_codes import CloseCode
from channelstream.core.errors import UnknownConnection
from channelstream.node import Node
from channelstream.transport.outbox import Outbox

log = logging.getLogger(__name__)

# After a close is decided, how long a writer stuck on a client that reads nothing may take
# to send the close frame before the TCP connection is cut.
CLOSE_GRACE_SECONDS = 5.0


class FrameTooLarge(Exception):
    pass


class PeerClosed(Exception):
    pass


def read_client_message(ws: WebSocket, limit: int) -> None:
    """Read one whole client message, answering pings; raise PeerClosed on close/EOF and
    FrameTooLarge before reading a payload that would exceed `limit` bytes."""
    total = 0
    while True:
        header = Header.decode_header(ws.stream)
        if header is None:
            raise PeerClosed()
        total += header.length
        if total > limit:
            raise FrameTooLarge()
        payload = ws.raw_read(header.length) if header.length else b""
        if len(payload) != header.length:
            raise PeerClosed()
        if header.mask:
            payload = header.unmask_payload(payload)
        if header.opcode == WebSocket.OPCODE_CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1000
            _send_close(ws, code if ws._is_valid_close_code(code) else 1002)
            raise PeerClosed()
        if header.opcode == WebSocket.OPCODE_PING:
            ws.send_frame(payload, WebSocket.OPCODE_PONG)
            total -= header.length
            continue
        if header.opcode == WebSocket.OPCODE_PONG:
            total -= header.length
            continue
        if header.fin:
            return


def _cut(ws: WebSocket) -> None:
    """Shut the TCP connection down so blocked reads and writes return."""
    with contextlib.suppress(OSError, AttributeError):
        ws.handler.socket.shutdown(socket.SHUT_RDWR)


def _send_close(ws: WebSocket, code: int, reason: bytes = b"") -> None:
    """Send a close frame with its status code and mark the socket closed.

    gevent-websocket 0.10's own close() garbles a bytes payload on Python 3 and never sends
    the status code, so the frame is built here."""
    if ws.closed or ws.raw_write is None:
        return
    payload = struct.pack("!H", code) + reason
    try:
        ws.raw_write(
            Header.encode_header(True, WebSocket.OPCODE_CLOSE, b"", len(payload), 0) + payload
        )
    finally:
        ws.closed = True


def _close(ws: WebSocket, code: CloseCode) -> None:
    if not ws.closed:
        try:
            with gevent.Timeout(CLOSE_GRACE_SECONDS):
                _send_close(ws, int(code), code.name.lower().encode())
        except (WebSocketError, OSError, gevent.Timeout):
            pass
    _cut(ws)


def _serialize_writes(ws: WebSocket) -> None:
    """Make the reader (pongs, close replies) and the writer take turns on the socket.

    Without this a pong sent while the writer is in the middle of a large frame lands inside
    that frame's payload and corrupts the stream."""
    lock = Semaphore()
    raw_write = ws.raw_write

    def write(data: bytes) -> None:
        with lock:
            raw_write(data)

    ws.raw_write = write


def _write_loop(ws: WebSocket, outbox: Outbox) -> None:
    try:
        while True:
            outbox.wait()
            if outbox.close_code is not None:
                _close(ws, outbox.close_code)
                return
            text = outbox.take()
            if text is not None:
                ws.send(text)
                outbox.confirm_sent()
    except (WebSocketError, OSError):
        outbox.close(CloseCode.GOING_AWAY)  # the peer is gone; nothing more to send


def serve_websocket(
    ws: WebSocket, node: Node, conn_id: str, origin_allowed: bool, peer: str
) -> None:
    """Attach the socket to its connection and serve it until either side closes."""
    if not origin_allowed:
        log.warning("websocket from %s refused: origin not allowed", peer)
        _close(ws, CloseCode.ORIGIN_NOT_ALLOWED)
        return
    try:
        outbox = node.attach(conn_id, "ws")
    except UnknownConnection:
        log.info("websocket from %s for unknown connection %s: closing 4001", peer, conn_id)
        _close(ws, CloseCode.UNKNOWN_CONNECTION)
        return
    except BrokerUnavailable:
        _close(ws, CloseCode.TRY_AGAIN_LATER)
        return
    log.info("websocket opened: connection %s from %s", conn_id, peer, extra={"conn_id": conn_id})
    _serialize_writes(ws)
    writer = gevent.spawn(_write_loop, ws, outbox)

    def cut_if_stuck() -> None:
        if not writer.dead:
            _cut(ws)

    def on_close(code: Any) -> None:
        gevent.spawn_later(CLOSE_GRACE_SECONDS * 2, cut_if_stuck)

    outbox.on_close = on_close
    limit = node.settings.max_message_size
    try:
        while outbox.close_code is None:
            read_client_message(ws, limit)
            node.touch(conn_id)
    except FrameTooLarge:
        log.warning("connection %s sent a frame over %d bytes: closing 1009", conn_id, limit)
        outbox.close(CloseCode.MESSAGE_TOO_BIG)
    except PeerClosed:
        outbox.close(CloseCode.NORMAL)
    except Exception as error:  # EOF, reset, protocol garbage, or the writer closed the socket
        log.debug("websocket of connection %s ended: %r", conn_id, error)
        outbox.close(CloseCode.GOING_AWAY)
    finally:
        writer.join(CLOSE_GRACE_SECONDS * 2 + 1)
        writer.kill()
        node.detach(outbox)
        log.info(
            "websocket closed: connection %s (code %s)",
            conn_id,
            int(outbox.close_code or 0),
            extra={"conn_id": conn_id},
        )
