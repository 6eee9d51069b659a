"""A real webhook receiver for the tests: an HTTP server on a free loopback port, in a thread.

It verifies every request's signature with `channelstream.webhook_signature.verify_webhook`
(a request that fails is recorded as forged and answered 400), records what it received and
answered, and can be told to misbehave: answer another status, hang (hold each request until
released), or go down (stop listening) and come back up on the same port.

    receiver = WebhookReceiver(secret="s").start()
    server = start_server(webhook_url=receiver.url, webhook_secret="s")
    ...
    events = receiver.wait_for_events(lambda events: len(events) >= 3)

Waits are on a condition with a timeout, never sleeps.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from channelstream.exceptions import WebhookSignatureError
from channelstream.webhook_signature import SIGNATURE_HEADER, verify_webhook

WAIT_TIMEOUT = 20.0
HANG_LIMIT = 120.0  # a hung request is answered at the latest after this long


@dataclass
class ReceivedBatch:
    """One request as the receiver saw it."""

    events: list[dict[str, Any]]
    body: bytes
    signature: str | None
    received_at: float  # time.time()
    status: int = 0  # what the receiver answered (0: no answer, the request was dropped)
    forged: str | None = None  # why the signature check failed, if it did


class WebhookReceiver:
    def __init__(self, secret: str, port: int = 0) -> None:
        self.secret = secret
        self.port = port or _free_port()
        self.batches: list[ReceivedBatch] = []
        self.status = 204  # what to answer next
        self._hanging = threading.Event()  # set: requests wait for `release`
        self._released = threading.Event()
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    # ------------------------------------------------------------------ up and down

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        open_connections = self._connections

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request: Any, client_address: Any) -> None:
                open_connections.add(request)
                super().process_request(request, client_address)

            def shutdown_request(self, request: Any) -> None:
                open_connections.discard(request)
                super().shutdown_request(request)

        server = Server(("127.0.0.1", self.port), Handler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Go down: stop listening (connections to the port are refused until `start`
        again) and cut the kept-alive connections a sender pooled."""
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for connection in list(self._connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._connections.clear()

    # ------------------------------------------------------------------ behaviour

    def answer(self, status: int) -> None:
        self.status = status

    def hang(self) -> None:
        """Hold every request from now on until `release` (the sender's timeout ends it)."""
        self._released.clear()
        self._hanging.set()

    def release(self) -> None:
        self._hanging.clear()
        self._released.set()

    # ------------------------------------------------------------------ what came

    def delivered_events(self) -> list[dict[str, Any]]:
        """The events of every request answered 2xx, in the order they came."""
        with self._changed:
            return [e for b in self.batches if 200 <= b.status < 300 for e in b.events]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT_TIMEOUT) -> None:
        """Wait until `predicate()` holds (checked at each request); AssertionError if not."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"webhook receiver: condition not met within {timeout} s; got "
                        f"{[(b.status, [e['name'] for e in b.events]) for b in self.batches]}"
                    )
                self._changed.wait(remaining)

    def wait_for_events(
        self, enough: Callable[[list[dict[str, Any]]], bool], timeout: float = WAIT_TIMEOUT
    ) -> list[dict[str, Any]]:
        """The delivered events, once `enough(events)` holds."""
        self.wait_for(lambda: enough(self.delivered_events()), timeout)
        return self.delivered_events()

    def wait_for_requests(self, count: int, timeout: float = WAIT_TIMEOUT) -> list[ReceivedBatch]:
        self.wait_for(lambda: len(self.batches) >= count, timeout)
        return list(self.batches)

    # ------------------------------------------------------------------ the handler

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        signature = handler.headers.get(SIGNATURE_HEADER)
        batch = ReceivedBatch(events=[], body=body, signature=signature, received_at=time.time())
        try:
            batch.events = verify_webhook(self.secret, body, signature)
        except WebhookSignatureError as error:
            batch.forged = str(error)
        with self._changed:
            self.batches.append(batch)
            self._changed.notify_all()
        if self._hanging.is_set():
            self._released.wait(HANG_LIMIT)
        status = 400 if batch.forged else self.status
        try:
            handler.send_response(status)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        except OSError:
            status = 0  # the sender gave up waiting and closed the connection
        with self._changed:
            batch.status = status
            self._changed.notify_all()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def event_names(events: list[dict[str, Any]]) -> list[str]:
    return [event["name"] for event in events]


def without_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events as the tests compare them: name and fields, no id or time."""
    return [{k: v for k, v in e.items() if k not in ("id", "time")} for e in events]


def unique_by_id(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events with repeats (same id) left out, first copy kept: what a receiver keeps."""
    seen: set[str] = set()
    kept = []
    for event in events:
        if event["id"] not in seen:
            seen.add(event["id"])
            kept.append(event)
    return kept


def as_json(events: list[dict[str, Any]]) -> str:
    return json.dumps(without_ids(events), indent=1)
