"""Serving `/ws` listeners: after the handshake, a websocket costs no greenlet of its own.

gevent-websocket does the HTTP upgrade. Once the listener is attached, the socket is taken
over from the WSGI handler (whose request then ends, freeing its greenlet, buffers and
request objects) and served by event-loop callbacks:

- frames for the client are written as they are pushed, with non-blocking sends straight from
  the delivering greenlet; only what the kernel does not take at once waits, and then the
  socket's write readiness resumes the writing, everything waiting sent as one JSON array;
- client bytes are read when the socket is readable and fed to the sans-I/O `FrameReader`:
  messages count as activity, pings get pongs (the latest only; bounded like frames), a close
  is answered, a message over `max_message_size` closes with 1009 before its payload is read.

An idle websocket is thus a socket, two event-loop watchers and a few small objects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import gevent
import gevent.monkey
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.websocket import WebSocket

from channelstream.broker import BrokerUnavailable
from channelstream.close_codes import CloseCode
from channelstream.core.errors import UnknownConnection
from channelstream.node import Node
from channelstream.transport.frames import (
    MAX_CONTROL_PAYLOAD,
    NO_STATUS,
    OPCODE_PONG,
    PROTOCOL_ERROR,
    CloseReceived,
    FrameReader,
    MessageReceived,
    MessageTooBig,
    PingReceived,
    ProtocolViolation,
    encode_close,
    encode_frame,
)
from channelstream.transport.outbox import Outbox

log = logging.getLogger(__name__)

# After a close is decided, how long a client that reads nothing (or never answers the close)
# may take before its TCP connection is cut.
CLOSE_GRACE_SECONDS = 5.0
READ_SIZE = 65536
HEARTBEAT_FRAME = encode_frame(b"[]")


class FrameCache:
    """The last frame built for a lone message. Every listener of a channel receives the
    same encoded text object for a message, so the websocket frame is built once for all."""

    def __init__(self) -> None:
        self._text: str | None = None
        self._frame = b""

    def frame_of(self, encoded: str) -> bytes:
        """The frame of one message: built once, for whichever listener asks first."""
        if encoded is not self._text:
            self._text = encoded
            self._frame = encode_frame(("[" + encoded + "]").encode("utf-8"))
        return self._frame

    def frame(self, parts: list[str]) -> bytes:
        if not parts:
            return HEARTBEAT_FRAME
        if len(parts) == 1:
            return self.frame_of(parts[0])
        return encode_frame(("[" + ",".join(parts) + "]").encode("utf-8"))


def close_reason(code: CloseCode, reason: str) -> bytes:
    """A close frame's reason text: `reason` if given, else the code's name; at most the
    123 bytes a control frame leaves it, cut on a character boundary (it must be UTF-8)."""
    text = (reason or code.name.lower()).encode()
    return text[: MAX_CONTROL_PAYLOAD - 2].decode(errors="ignore").encode()


def _close_upgraded(ws: WebSocket, code: CloseCode) -> None:
    """Close a socket gevent-websocket still serves (refusals before attaching)."""
    if not ws.closed:
        try:
            with gevent.Timeout(CLOSE_GRACE_SECONDS):
                ws.raw_write(encode_close(int(code), code.name.lower().encode()))
        except (WebSocketError, OSError, gevent.Timeout):
            pass
        ws.closed = True
    with contextlib.suppress(OSError, AttributeError):
        ws.handler.socket.shutdown(socket.SHUT_RDWR)


def _take_over(ws: WebSocket) -> tuple[socket.socket, bytes]:
    """A non-blocking socket of our own for the upgraded connection, and any client bytes the
    handler had already buffered. The WSGI handler then ends without touching the connection:
    its socket object is closed, our duplicate descriptor keeps the connection open.

    Neither library documents a way to do this: `ws.handler`, the handler's `socket` and
    `rfile`, and `ws.closed` suppressing the close frame are their private details, which
    `gevent_edge` checks before the server starts."""
    handler = ws.handler
    handler_socket = handler.socket
    handler_socket.settimeout(0.0)  # so peeking below returns what is there, never waits
    try:
        leftover = bytes(handler.rfile.peek(READ_SIZE))
    except OSError:
        leftover = b""
    fd = os.dup(handler_socket.fileno())
    raw = gevent.monkey.get_original("socket", "socket")(fileno=fd)
    raw.setblocking(False)
    with contextlib.suppress(OSError):
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ws.closed = True  # gevent-websocket sends no close frame of its own
    handler.socket = None  # pywsgi neither reads from nor closes the connection any more
    return raw, leftover


class WebSocketListener:
    """One attached websocket, driven by the event loop and by its outbox."""

    def __init__(
        self,
        sock: socket.socket,
        node: Node,
        outbox: Outbox,
        frames: FrameCache,
        peer: str,
    ) -> None:
        self.sock = sock
        self.node = node
        self.outbox = outbox
        self.frames = frames
        self.peer = peer
        self.reader = FrameReader(node.settings.max_message_size)
        loop = gevent.get_hub().loop
        self._read_watcher = loop.io(sock.fileno(), 1)
        self._write_watcher = loop.io(sock.fileno(), 2)
        self._grace_timer: Any = None
        self._pending = b""  # bytes handed to the socket but not yet taken by the kernel
        self._pending_taken = False  # they carry frames taken from the outbox
        # The pong for the latest ping, sent between frames. Only the latest is answered (RFC
        # 6455 5.5.3 allows it), so pings from a client that reads nothing queue nothing.
        self._pong: bytes | None = None
        # pings since a pong was last written: a client that keeps pinging without reading
        # is closed with 4002 like one that does not read its frames
        self._pings_unanswered = 0
        self._peer_close_code: int | None = None
        self._close_sent = False
        self._flushing = False
        self._flush_again = False
        self._finished = False

    def start(self, leftover: bytes) -> None:
        self.outbox.peer = self.peer
        self.outbox.notify = self.flush
        self.outbox.send_now = self.send_now
        self._read_watcher.start(self._guarded, self._on_readable)
        if leftover:
            self._consume(leftover)
        self.flush()

    # ------------------------------------------------------------------ reading

    def _guarded(self, action: Callable[[], None]) -> None:
        """Event-loop callbacks must not raise into the hub."""
        try:
            action()
        except Exception:
            log.exception("websocket of connection %s failed", self.outbox.conn_id)
            self._finish()

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if self._close_sent:  # closing: only waiting for the peer to go
            if not data:
                self._finish()
            return
        if not data:
            self.outbox.close(CloseCode.NORMAL)  # the peer went away without a close frame
            return
        self._consume(data)

    def _consume(self, data: bytes) -> None:
        conn_id = self.outbox.conn_id
        for event in self.reader.feed(data):
            if isinstance(event, MessageReceived):
                self.node.touch(conn_id)
            elif isinstance(event, PingReceived):
                self._on_ping(event.payload)
            elif isinstance(event, CloseReceived):
                self._peer_close_code = 1000 if event.code == NO_STATUS else event.code
                self.outbox.close(CloseCode.NORMAL)
            elif isinstance(event, MessageTooBig):
                limit = self.reader.max_message_size
                self._log_refusal(1009, f"max_message_size ({limit} bytes) exceeded")
                self.outbox.close(CloseCode.MESSAGE_TOO_BIG)
            elif isinstance(event, ProtocolViolation):
                self._log_refusal(PROTOCOL_ERROR, f"websocket protocol error ({event.reason})")
                self._peer_close_code = PROTOCOL_ERROR
                self.outbox.close(CloseCode.GOING_AWAY)

    def _on_ping(self, payload: bytes) -> None:
        """Answer the latest ping; a client that sends more than `max_queued_frames` pings
        while no pong could be written to it is not reading: closed with 4002."""
        if self.outbox.close_code is not None:
            return  # closing: the close frame is the last thing this client gets
        if self._pings_unanswered >= self.outbox.limit:
            self._log_refusal(
                int(CloseCode.TOO_SLOW),
                f"more than max_queued_frames ({self.outbox.limit}) pings while reading no pong",
            )
            self.outbox.close(CloseCode.TOO_SLOW)
            return
        self._pings_unanswered += 1
        self._pong = encode_frame(payload, OPCODE_PONG)
        self.flush()

    def _log_refusal(self, code: int, reason: str) -> None:
        """The one log line of a client closed for what it sent (as for refused requests)."""
        conn_id = self.outbox.conn_id
        log.warning(
            "refused GET /ws from %s: close %d %s (connection %s)",
            self.peer,
            code,
            reason,
            conn_id,
            extra={"conn_id": conn_id},
        )

    # ------------------------------------------------------------------ writing

    def send_now(self, seq: int, encoded: str) -> bool:
        """The delivery fast path (the outbox has nothing waiting): one non-blocking send of
        the message's shared frame. False leaves the frame to the outbox and `flush`."""
        if self._pending or self._pong or self._flushing or self._finished:
            return False
        frame = self.frames.frame_of(encoded)
        try:
            sent = self.sock.send(frame)
        except OSError:  # full (BlockingIOError) or gone: the queued path deals with it
            return False
        if sent == len(frame):
            self.outbox.sent_directly(seq)
        else:
            self.outbox.taken_directly(seq)
            self._pending = frame[sent:]
            self._pending_taken = True
            if not self._write_watcher.active:
                self._write_watcher.start(self._guarded, self.flush)
        return True

    def flush(self) -> None:
        """Write what is waiting, as far as the kernel takes it without blocking. Called by
        the outbox on every push, heartbeat and close, and when the socket is writable."""
        if self._finished:
            return
        if self._flushing:  # called back from inside (a failed send closing the outbox)
            self._flush_again = True
            return
        self._flushing = True
        try:
            self._flush_again = True
            while self._flush_again and not self._finished:
                self._flush_again = False
                self._write_all()
        finally:
            self._flushing = False

    def _write_all(self) -> None:
        outbox = self.outbox
        while not self._finished:
            if self._pending:
                if not self._send_pending():
                    return  # the kernel is full: the write watcher resumes
                continue
            if self._pending_taken:
                self._pending_taken = False
                outbox.confirm_sent()
            if self._pong is not None:
                self._pending, self._pong = self._pong, None
                self._pings_unanswered = 0
                continue
            if outbox.close_code is not None:
                if self._close_sent:
                    return
                self._start_closing(outbox.close_code)
                continue
            parts = outbox.take_parts()
            if parts is None:
                self._write_watcher.stop()
                return
            self._pending = self.frames.frame(parts)
            self._pending_taken = True

    def _send_pending(self) -> bool:
        """True once all pending bytes are in the kernel."""
        try:
            sent = self.sock.send(self._pending)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._pending = b""
            self._pending_taken = False
            self.outbox.close(CloseCode.GOING_AWAY)  # the peer is gone
            if self._close_sent or self.outbox.close_code is not None:
                self._finish()
            return False
        self._pending = self._pending[sent:]
        if self._pending:
            if not self._write_watcher.active:
                self._write_watcher.start(self._guarded, self.flush)
            return False
        return True

    def _start_closing(self, code: CloseCode) -> None:
        """Send the close frame (after any partly written frame), then half-close and wait
        for the peer to go, at most CLOSE_GRACE_SECONDS."""
        self._close_sent = True
        self._pong = None
        if self._peer_close_code is not None:
            frame = encode_close(self._peer_close_code)
        else:
            frame = encode_close(int(code), close_reason(code, self.outbox.close_reason))
        self._pending = frame
        self._grace_timer = gevent.get_hub().loop.timer(CLOSE_GRACE_SECONDS)
        self._grace_timer.start(self._finish)
        if self._send_pending():
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
            if self._peer_close_code is not None:
                self._finish()  # the peer closed first: nothing more to wait for

    # ------------------------------------------------------------------ ending

    def _finish(self) -> None:
        """Release the socket and the watchers; tell the node (in a greenlet: it may wait
        for the broker)."""
        if self._finished:
            return
        self._finished = True
        self._read_watcher.stop()
        self._write_watcher.stop()
        if self._grace_timer is not None:
            self._grace_timer.stop()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        outbox = self.outbox
        if outbox.close_code is None:
            outbox.close(CloseCode.GOING_AWAY)
        outbox.notify = None
        outbox.send_now = None
        gevent.spawn(self._detach)

    def _detach(self) -> None:
        conn_id = self.outbox.conn_id
        self.node.detach(self.outbox)
        log.info(
            "websocket closed: connection %s (code %s)",
            conn_id,
            int(self.outbox.close_code or 0),
            extra={"conn_id": conn_id},
        )


def serve_websocket(
    ws: WebSocket,
    node: Node,
    conn_id: str,
    origin_allowed: bool,
    peer: str,
    frames: FrameCache,
    position: bool = False,
) -> None:
    """Attach the upgraded socket to its connection and hand it to a `WebSocketListener`;
    returns at once (the listener lives on in the event loop). `position`: a `position`
    frame comes first (token connections, see `Node.attach`)."""
    if not origin_allowed:
        log.warning("websocket from %s refused: origin not allowed", peer)
        _close_upgraded(ws, CloseCode.ORIGIN_NOT_ALLOWED)
        return
    try:
        outbox = node.attach(conn_id, "ws", position=position)
    except UnknownConnection:
        log.info("websocket from %s for unknown connection %s: closing 4001", peer, conn_id)
        _close_upgraded(ws, CloseCode.UNKNOWN_CONNECTION)
        return
    except BrokerUnavailable:
        _close_upgraded(ws, CloseCode.TRY_AGAIN_LATER)
        return
    log.info("websocket opened: connection %s from %s", conn_id, peer, extra={"conn_id": conn_id})
    sock, leftover = _take_over(ws)
    WebSocketListener(sock, node, outbox, frames, peer).start(leftover)
