"""Serving one `/listen` long poll.

0.7.1's timing: wait up to `wake_connections_after` seconds for the first frames, then keep
collecting while more arrive within a quarter second of each other. Each poll is a listener
for its duration, so frames that arrive between polls are replayed by the next one as catchup.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from channelstream.close_codes import CloseCode
from channelstream.node import Node
from channelstream.transport.hangup import watch_for_hangup

log = logging.getLogger(__name__)

COLLECT_MORE_SECONDS = 0.25
COLLECT_AT_MOST_SECONDS = 1.0  # a steady stream must not keep a poll open for ever


def long_poll(
    node: Node,
    conn_id: str,
    client_socket: Any = None,
    position: bool = False,
    seen: tuple[str, int] | None = None,
) -> str | None:
    """A JSON array of the frames for this poll, or None if the connection ended meanwhile.

    `client_socket` (if known) is watched: a client that hangs up ends the poll at once, and
    what it had collected is left to the next poll's catchup.
    `position`: the poll starts with a `position` frame (see `Node.attach`).
    `seen`: the client's (epoch, seq): the poll is then served without attaching, where it
    can be (`Node.poll_listener`), so it writes nothing to the cluster's log.
    Raises UnknownConnection if there is no such connection.
    """
    outbox = None
    if seen is not None and not position:
        outbox = node.poll_listener(conn_id, *seen)
    attached = outbox is None
    if outbox is None:
        outbox = node.attach(conn_id, "poll", heartbeats=False, position=position)
    log.debug("long poll waiting: connection %s", conn_id)
    parts: list[str] = []
    hung_up = False

    def on_hangup() -> None:
        nonlocal hung_up
        hung_up = True
        outbox.close(CloseCode.GOING_AWAY)

    hangup = watch_for_hangup(client_socket, on_hangup) if client_socket is not None else None
    try:
        ready = outbox.wait(node.settings.wake_connections_after)
        deadline = time.monotonic() + COLLECT_AT_MOST_SECONDS
        while ready and outbox.close_code is None and time.monotonic() < deadline:
            text = outbox.take()
            if text and text != "[]":
                parts.append(text[1:-1])
            ready = outbox.wait(COLLECT_MORE_SECONDS)
        if not hung_up:
            outbox.confirm_sent()  # the response is built in this request: count it served
    finally:
        if hangup is not None:
            hangup.kill()
        if attached:
            node.detach(outbox)
        else:
            node.end_poll(outbox)
    if outbox.close_code == CloseCode.NORMAL:
        return None  # /disconnect ended the connection while we waited (fix F17)
    return "[" + ",".join(parts) + "]"
