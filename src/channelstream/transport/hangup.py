"""Noticing that an HTTP client went away while its listener waits (SSE streams, long polls).

A streaming or long-polling client sends nothing after its request, so its socket turning
readable means it closed or reset the connection. Without this watch a stream notices only
when a write fails (its next heartbeat), and a client that opens and drops streams in a loop
holds a descriptor and a listener for each of them until then.

The server's WSGI handler puts the client's socket in the environ under `CLIENT_SOCKET_KEY`;
served by another WSGI server (the app embedded elsewhere), there is no socket to watch and
the failed write remains the only sign.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import gevent

CLIENT_SOCKET_KEY = "channelstream.client_socket"


def watch_for_hangup(sock: Any, on_hangup: Callable[[], object]) -> gevent.Greenlet:
    """A greenlet that calls `on_hangup` once the client of `sock` (a gevent socket) closes
    or resets the connection. It only peeks, so it takes nothing from the stream; if the
    client sends bytes instead, it stops watching. Kill it (blocking) before the handler
    reads the socket again: a socket takes one waiting reader at a time."""

    def watch() -> None:
        while True:
            try:
                data = sock.recv(1, socket.MSG_PEEK)
            except TimeoutError:  # the socket's request_timeout: keep watching
                continue
            except OSError:
                data = b""
            if not data:
                on_hangup()
            return

    return gevent.spawn(watch)
