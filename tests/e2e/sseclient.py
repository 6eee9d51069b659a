"""A server-sent events reader for end-to-end tests of `/sse`.

    with SseListener.open(server.base_url, conn_id) as sse:
        api.publish({"channel": "room", "user": "bob", "message": {"text": "hi"}})
        message = sse.wait_for(has_text("hi"))

Every wait is a socket read with a deadline; nothing sleeps.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class SseEvent:
    event: str  # "message" unless the server named it
    data: str


@dataclass
class SseListener:
    """One `GET /sse?conn_id=...` stream; `events` keeps every event read so far and
    `messages` every message object of the `message` events (JSON arrays)."""

    connection: http.client.HTTPConnection
    response: http.client.HTTPResponse
    events: list[SseEvent] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(
        cls, base_url: str, conn_id: str, timeout: float = 10.0, param: str = "conn_id"
    ) -> SseListener:
        """`param="token"` opens `/sse?token=...` with a connection token instead."""
        parts = urlsplit(base_url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        headers = {"Accept": "text/event-stream"}
        connection.request("GET", f"/sse?{param}={conn_id}", headers=headers)
        response = connection.getresponse()
        return cls(connection, response)

    def __enter__(self) -> SseListener:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Drop the TCP connection, as a browser tab that goes away does."""
        with contextlib.suppress(OSError):
            sock = self.connection.sock
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        self.connection.close()

    @property
    def status(self) -> int:
        return self.response.status

    def header(self, name: str) -> str:
        return self.response.getheader(name) or ""

    def next_event(self, timeout: float = 5.0) -> SseEvent | None:
        """The next event (comments and `retry:` lines skipped); None at the end of the stream.

        Raises AssertionError if none comes within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        name, data = "message", []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no event within {timeout} s; seen: {self.events!r}")
            assert self.connection.sock is not None
            self.connection.sock.settimeout(remaining)
            try:
                raw = self.response.readline()
            except TimeoutError:
                raise AssertionError(
                    f"no event within {timeout} s; seen: {self.events!r}"
                ) from None
            if not raw:
                return None
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == "":
                if data:
                    event = SseEvent(name, "\n".join(data))
                    self.events.append(event)
                    if event.event == "message":
                        parsed = json.loads(event.data)
                        assert isinstance(parsed, list), f"data is not a JSON array: {event.data}"
                        self.messages.extend(parsed)
                    return event
                name, data = "message", []
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """Read events until a message matching `predicate` arrives; return it."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(deadline - time.monotonic(), 0.001))
            if event is None or event.event == "close":
                raise AssertionError(f"stream ended ({event!r}); messages: {self.messages!r}")
            if event.event == "message":
                for message in json.loads(event.data):
                    if predicate(message):
                        return message

    def wait_closed(self, timeout: float = 5.0) -> int:
        """Read until the `close` event; return its code (the stream must end after it)."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(deadline - time.monotonic(), 0.001))
            assert event is not None, f"stream ended without a close event: {self.events!r}"
            if event.event == "close":
                assert self.next_event(max(deadline - time.monotonic(), 0.001)) is None
                return int(event.data)
