"""Serving one `/sse` listener: server-sent events on a streamed HTTP response.

The response body is a generator that gevent's WSGI server writes chunk by chunk. Each batch
of frames is one event whose data is the JSON array a websocket would get (`data: [...]`); a
heartbeat is `data: []` every `heartbeat_interval`. When the server ends the stream it first
sends `event: close` with the websocket close code as data (4001: unknown connection, get a
new conn_id; 1000: disconnected; 1001: shutting down; 4002: too slow; 4003: the user was
disconnected, the reason on a second data line), so a browser's
EventSource can tell a final close from a dropped connection.

A client that goes away is noticed at once when the server gives its socket (see
`transport.hangup`), else by the next write failing (a heartbeat at the latest); the
generator's `finally` then detaches the listener.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from typing import Any

import gevent

from channelstream.broker import BrokerUnavailable
from channelstream.close_codes import CloseCode
from channelstream.core.errors import UnknownConnection
from channelstream.exceptions import ChannelstreamException
from channelstream.node import Node
from channelstream.transport.hangup import watch_for_hangup

log = logging.getLogger(__name__)

# How long a client that reads nothing may keep a closed stream's writer blocked.
CLOSE_GRACE_SECONDS = 5.0
# Sent first: the browser's EventSource sees the stream open, and waits this long (ms)
# before its own automatic reconnect (clients that manage reconnects close it first).
STREAM_START = b"retry: 2000\n\n"

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


def data_event(frames: str) -> bytes:
    """One `message` event carrying a JSON array (compact JSON has no line breaks)."""
    return b"data: " + frames.encode("utf-8") + b"\n\n"


def close_event(code: int, reason: str = "") -> bytes:
    """`event: close` with the code as data; a reason (4003) follows on a second data line,
    so the event's data is `4003\n<reason>` and still parses as the code."""
    line = " ".join(reason.splitlines())
    extra = b"data: " + line.encode("utf-8") + b"\n" if line else b""
    return b"event: close\ndata: %d\n" % code + extra + b"\n"


class ClientTooSlow(ChannelstreamException, ConnectionResetError):
    """Raised into a writer stuck on a client that reads nothing (handled by the WSGI server
    like a reset connection)."""


def sse_stream(
    node: Node, conn_id: str, peer: str, client_socket: Any = None, position: bool = False
) -> Iterator[bytes]:
    """The body of one `/sse` response: attach, stream frames until either side ends it.
    `client_socket` (if known) is watched for the client hanging up; `position`: a
    `position` frame comes first (see `Node.attach`)."""
    try:
        outbox = node.attach(conn_id, "sse", position=position)
    except UnknownConnection:
        log.info("sse from %s for unknown connection %s: closing 4001", peer, conn_id)
        yield STREAM_START + close_event(CloseCode.UNKNOWN_CONNECTION)
        return
    except BrokerUnavailable:
        yield STREAM_START + close_event(CloseCode.TRY_AGAIN_LATER)
        return
    outbox.peer = peer
    log.info("sse opened: connection %s from %s", conn_id, peer, extra={"conn_id": conn_id})
    writer = gevent.getcurrent()
    finished = False

    def cut_if_stuck() -> None:
        if not finished and hasattr(writer, "kill"):
            writer.kill(ClientTooSlow(errno.ECONNRESET, "client reads nothing"), block=False)

    outbox.on_close = lambda code: gevent.spawn_later(CLOSE_GRACE_SECONDS, cut_if_stuck)
    hangup = None
    if client_socket is not None:
        hangup = watch_for_hangup(client_socket, lambda: outbox.close(CloseCode.GOING_AWAY))
    try:
        yield STREAM_START
        while True:
            outbox.wait()
            if outbox.close_code is not None:
                yield close_event(outbox.close_code, outbox.close_reason)
                return
            text = outbox.take()
            if text is not None:
                yield data_event(text)  # returns once the WSGI server has written it
                outbox.confirm_sent()
    finally:
        finished = True
        if hangup is not None:
            hangup.kill()
        if outbox.close_code is None:
            outbox.close(CloseCode.GOING_AWAY)  # the client went away (a write failed)
        node.detach(outbox)
        log.info(
            "sse closed: connection %s (code %s)",
            conn_id,
            int(outbox.close_code or 0),
            extra={"conn_id": conn_id},
        )
