"""The load generator: lean websocket and HTTP clients on one epoll loop per worker process.

No gevent and no websocket library: non-blocking sockets, a hand-written websocket handshake and
the least frame handling the benchmarks need. Server frames are unmasked text frames holding JSON
arrays; most subscribers only count the messages in them (occurrences of the marker key every
benchmark message carries, counted over the raw byte stream, so frames need not even be
delimited); a sample of subscribers delimit frames and read the send timestamps for latency.

The parent process talks to each worker over a pipe: it sends a command, the worker answers when
the command's work is done, and between commands the worker keeps reading its sockets (server
heartbeats). Every worker is a separate process so that its CPU time can be read from /proc.
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import select
import signal
import socket
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

MARK = b'"bench_sent"'
MARK_TAIL = len(MARK) - 1
SENT_RE = re.compile(rb'"bench_sent":\s*([0-9.eE+-]+)')
EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
CONNECT_INFO = {"exclude_channels": [], "include_users": False, "include_history": False}
# a masked close frame with status 1000 (mask key 0, so the payload is the plain code)
TOKEN_TTL_SECONDS = 3600


def connection_token(username: str, channels: list[str]) -> str:
    """A connection token as a web app signs it (HS256 with the bench secret, which is shorter
    than PyJWT's recommended 32 bytes: its warning is silenced here)."""
    import jwt
    from servers import SECRET

    claims = {"sub": username, "channels": channels, "exp": int(time.time()) + TOKEN_TTL_SECONDS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode(claims, SECRET, algorithm="HS256")


CLOSE_FRAME = b"\x88\x82\x00\x00\x00\x00\x03\xe8"


class Loop:
    """A minimal epoll loop: file descriptors with handlers, and timers."""

    def __init__(self) -> None:
        self.poller = select.epoll()
        self.handlers: dict[int, Any] = {}
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def add(self, fd: int, mask: int, handler: Any) -> None:
        self.poller.register(fd, mask)
        self.handlers[fd] = handler

    def modify(self, fd: int, mask: int) -> None:
        self.poller.modify(fd, mask)

    def remove(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self.poller.unregister(fd)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self.timers, (time.monotonic() + delay, self._seq, callback))

    def run_once(self, max_wait: float = 0.5) -> None:
        timeout = max_wait
        if self.timers:
            timeout = min(timeout, max(0.0, self.timers[0][0] - time.monotonic()))
        handlers = self.handlers
        for fd, events in self.poller.poll(timeout):
            handler = handlers.get(fd)
            if handler is not None:
                handler.on_event(events)
        if self.timers:
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                heapq.heappop(self.timers)[2]()


class Counters:
    """What one worker received, shared by all its websockets."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.messages = 0
        self.first_receive = 0.0
        self.last_receive = 0.0
        self.latencies: list[float] = []


class WebSocket:
    """A websocket client connection; counts (or, when sampled, times) benchmark messages."""

    __slots__ = (
        "loop",
        "sock",
        "fd",
        "state",
        "path",
        "port",
        "buffer",
        "carry",
        "count",
        "sampled",
        "counters",
        "on_open",
        "on_close",
        "started",
        "tag",
    )

    def __init__(
        self,
        loop: Loop,
        port: int,
        path: str,
        counters: Counters,
        *,
        sampled: bool = False,
        on_open: Callable[[WebSocket], None] | None = None,
        on_close: Callable[[WebSocket, str], None] | None = None,
        tag: Any = None,
    ) -> None:
        self.loop = loop
        self.port = port
        self.path = path
        self.counters = counters
        self.sampled = sampled
        self.on_open = on_open
        self.on_close = on_close
        self.tag = tag
        self.buffer = b""
        self.carry = b""
        self.count = 0
        self.state = "connecting"
        self.started = time.monotonic()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fd = self.sock.fileno()
        error = self.sock.connect_ex(("127.0.0.1", port))
        if error not in (0, 115):  # EINPROGRESS
            self.sock.close()
            self.state = "closed"
            loop.call_later(0, lambda: self._notify_close(f"connect errno {error}"))
            return
        loop.add(self.fd, EPOLLOUT, self)

    def on_event(self, events: int) -> None:
        if self.state == "open":
            self._read()
        elif self.state == "closing":
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._finish_close()
        elif self.state == "connecting":
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self._fail(f"connect errno {error}")
                return
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            try:
                self.sock.send(request)  # a few hundred bytes: one send on a fresh socket
            except OSError as error:
                self._fail(f"handshake send: {error}")
                return
            self.state = "handshake"
            self.loop.modify(self.fd, EPOLLIN)
        elif self.state == "handshake":
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as error:
                self._fail(f"handshake recv: {error}")
                return
            if not data:
                self._fail("closed during handshake")
                return
            self.buffer += data
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self._fail("handshake refused: " + head.split(b"\r\n", 1)[0].decode(errors="?"))
                return
            self.buffer = b""
            self.state = "open"
            if self.on_open is not None:
                self.on_open(self)
            if rest:
                self._consume(rest)

    def _read(self) -> None:
        try:
            data = self.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError as error:
            self._fail(f"recv: {error}")
            return
        if not data:
            self._fail("closed by server")
            return
        self._consume(data)

    def _consume(self, data: bytes) -> None:
        if self.sampled:
            found = self._timestamps(data)
        else:
            found = data.count(MARK)
            if self.carry:  # a marker split over two reads
                found += (self.carry + data[:MARK_TAIL]).count(MARK)
            self.carry = data[-MARK_TAIL:] if len(data) >= MARK_TAIL else (self.carry + data)
        if found:
            counters = self.counters
            now = time.time()
            if not counters.first_receive:
                counters.first_receive = now
            counters.last_receive = now
            counters.messages += found
            self.count += found

    def _timestamps(self, data: bytes) -> int:
        """Delimit frames, read each message's send time; return the number of messages."""
        buffer = self.buffer + data if self.buffer else data
        position, size, found = 0, len(buffer), 0
        now = time.time()
        latencies = self.counters.latencies
        while size - position >= 2:
            length = buffer[position + 1] & 0x7F
            header = 2
            if length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 4], "big")
                header = 4
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 10], "big")
                header = 10
            end = position + header + length
            if end > size:
                break
            if buffer[position] & 0x0F in (0x1, 0x0):  # text or continuation
                for sent in SENT_RE.findall(buffer, position + header, end):
                    latencies.append(now - float(sent))
                    found += 1
            position = end
        self.buffer = buffer[position:]
        return found

    def close(self, graceful: bool = True) -> None:
        """Close from our side. Graceful: send a close frame and wait (at most 5 s) for the
        server to answer and close the TCP connection, as a browser does; else just close."""
        if self.state in ("closed", "closing"):
            if not graceful and self.state == "closing":
                self._finish_close()
            return
        if graceful and self.state == "open":
            try:
                self.sock.send(CLOSE_FRAME)
            except OSError:
                self._finish_close()
                return
            self.state = "closing"
            self.loop.call_later(5.0, self._finish_close)
            return
        self._finish_close()

    def _finish_close(self) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        self.loop.remove(self.fd)
        self.sock.close()

    def _fail(self, reason: str) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        self.loop.remove(self.fd)
        self.sock.close()
        self._notify_close(reason)

    def _notify_close(self, reason: str) -> None:
        if self.on_close is not None:
            self.on_close(self, reason)


class HttpClient:
    """One keep-alive HTTP/1.1 connection; requests queue and go one at a time."""

    def __init__(self, loop: Loop, port: int, tokens: Callable[[str], str]) -> None:
        self.loop = loop
        self.port = port
        self.tokens = tokens
        self.sock: socket.socket | None = None
        self.fd = -1
        self.pending: deque[tuple[str, str, bytes, Callable[[int, bytes], None], int]] = deque()
        self.current: tuple[str, str, bytes, Callable[[int, bytes], None], int] | None = None
        self.out = b""
        self.inbuf = b""
        self.reused = False

    def request(
        self, method: str, path: str, payload: object, callback: Callable[[int, bytes], None]
    ) -> None:
        """Queue a signed JSON request; `callback(status, body)` gets the answer (status 0 on a
        transport error)."""
        body = json.dumps(payload).encode()
        self.pending.append((method, path, body, callback, 0))
        if self.current is None:
            self._next()

    def _next(self) -> None:
        if not self.pending:
            self.current = None
            return
        self.current = self.pending.popleft()
        method, path, body, _, _ = self.current
        self.out = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"x-channelstream-secret: {self.tokens(path)}\r\n\r\n"
        ).encode() + body
        self.inbuf = b""
        if self.sock is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setblocking(False)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.fd = self.sock.fileno()
            self.reused = False
            self.sock.connect_ex(("127.0.0.1", self.port))
            self.loop.add(self.fd, EPOLLOUT, self)
        else:
            self.reused = True
            self.loop.modify(self.fd, EPOLLOUT)

    def on_event(self, events: int) -> None:
        assert self.sock is not None
        if self.out:
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self._transport_error()
                return
            # No socket options of our own (no TCP_QUICKACK): the load generator calls as a
            # web app's HTTP client does, so a server whose answers wait on delayed ACKs
            # (Nagle) shows it here as its users would feel it.
            try:
                sent = self.sock.send(self.out)
            except BlockingIOError:
                return
            except OSError:
                self._transport_error()
                return
            self.out = self.out[sent:]
            if not self.out:
                self.loop.modify(self.fd, EPOLLIN)
            return
        try:
            data = self.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError:
            self._transport_error()
            return
        if not data:
            self._transport_error()
            return
        self.inbuf += data
        self._parse()

    def _parse(self) -> None:
        head, sep, rest = self.inbuf.partition(b"\r\n\r\n")
        if not sep:
            return
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if "content-length" in headers:
            length = int(headers["content-length"])
            if len(rest) < length:
                return
            body = rest[:length]
        elif headers.get("transfer-encoding") == "chunked":
            body_or_none = _dechunk(rest)
            if body_or_none is None:
                return
            body = body_or_none
        else:  # body until the server closes: handled in _transport_error
            return
        assert self.current is not None
        callback = self.current[3]
        if headers.get("connection") == "close":
            self._drop_socket()
        self.current = None
        self.inbuf = b""
        callback(status, body)
        if self.current is None:
            self._next()

    def _drop_socket(self) -> None:
        if self.sock is not None:
            self.loop.remove(self.fd)
            self.sock.close()
            self.sock = None

    def _transport_error(self) -> None:
        current, reused = self.current, self.reused
        self._drop_socket()
        if current is None:
            return
        method, path, body, callback, retries = current
        if reused and retries < 1 and not self.inbuf:
            # the server closed an idle keep-alive connection: try once more on a fresh one
            self.pending.appendleft((method, path, body, callback, retries + 1))
            self.current = None
            self._next()
            return
        self.current = None
        self.inbuf = b""
        callback(0, b"")
        if self.current is None:
            self._next()


def _dechunk(data: bytes) -> bytes | None:
    out, position = [], 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(data[position:line_end].split(b";")[0], 16)
        start = line_end + 2
        if size == 0:
            return b"".join(out)
        if len(data) < start + size + 2:
            return None
        out.append(data[start : start + size])
        position = start + size + 2


# --- the worker process -------------------------------------------------------------------------


def commands(pipe: multiprocessing.connection.Connection, name: str) -> Iterator[dict[str, Any]]:
    """The arguments of each `name` command the parent sends a helper process, until it sends
    "exit" (answered) or goes away; any other command is a ValueError."""
    while True:
        try:
            command, arguments = pipe.recv()
        except EOFError:
            return
        if command == "exit":
            pipe.send(True)
            return
        if command != name:
            raise ValueError(command)
        yield arguments


class Worker:
    """Runs in a load-generator process: executes the parent's commands on its epoll loop."""

    def __init__(self, pipe: multiprocessing.connection.Connection, port: int, index: int) -> None:
        from servers import Tokens

        self.pipe = pipe
        self.port = port
        self.index = index
        self.tokens = Tokens()
        self.loop = Loop()
        self.loop.add(pipe.fileno(), EPOLLIN, self)
        self.counters = Counters()
        self.sockets: list[WebSocket] = []
        self.closed_by_server: dict[str, int] = {}
        self.running = True
        self.waiting: Callable[[], bool] | None = None

    def run(self) -> None:
        while self.running:
            self.loop.run_once(0.2)
            if self.waiting is not None:
                self.waiting()

    def on_event(self, events: int) -> None:
        try:
            command, arguments = self.pipe.recv()
        except EOFError:
            self.running = False
            return
        getattr(self, "do_" + command)(**arguments)

    def reply(self, value: object) -> None:
        self.pipe.send(value)

    def _socket_closed(self, ws: WebSocket, reason: str) -> None:
        key = reason.split(":")[0]
        self.closed_by_server[key] = self.closed_by_server.get(key, 0) + 1

    # -- open N websockets: /connect (signed) then /ws, `concurrency` at a time -----------------

    def do_open(
        self,
        count: int,
        concurrency: int,
        channels: list[str],
        sample_every: int = 0,
        prefix: str = "u",
        timeout: float = 600.0,
        via: str = "connect",
    ) -> None:
        """Reply with {"opened", "failed", "errors", "connect_ms", "attach_ms", "seconds"}.

        `via="token"`: no /connect; each websocket opens `/ws?token=<JWT>` (signed here, as a
        web app would sign it), one request instead of two (connect_ms is then 0)."""
        started = time.monotonic()
        result: dict[str, Any] = {
            "opened": 0,
            "failed": 0,
            "errors": {},
            "connect_ms": [],
            "attach_ms": [],
            "total_ms": [],
        }
        state = {"next": 0, "done": 0}
        first_index = len(self.sockets)

        def failed(reason: str) -> None:
            result["failed"] += 1
            key = reason[:80]
            result["errors"][key] = result["errors"].get(key, 0) + 1
            state["done"] += 1

        clients = [HttpClient(self.loop, self.port, self.tokens) for _ in range(concurrency)]

        def start(client: HttpClient) -> None:
            """Open the next websocket on this slot: /connect on its keep-alive client, /ws."""
            if state["next"] >= count:
                return
            number = first_index + state["next"]
            state["next"] += 1
            began = time.monotonic()
            body = {
                "username": f"{prefix}{self.index}-{number}",
                "channels": channels,
                "info": dict(CONNECT_INFO, exclude_channels=channels),
            }

            def attach(path: str, connected_at: float) -> None:
                sampled = bool(sample_every) and number % sample_every == 0

                def opened(ws: WebSocket) -> None:
                    now = time.monotonic()
                    result["opened"] += 1
                    result["connect_ms"].append(1000 * (connected_at - began))
                    result["attach_ms"].append(1000 * (now - connected_at))
                    result["total_ms"].append(1000 * (now - began))
                    self.sockets.append(ws)
                    ws.on_close = self._socket_closed
                    state["done"] += 1
                    start(client)

                def refused(ws: WebSocket, reason: str) -> None:
                    failed(f"/ws {reason}")
                    start(client)

                WebSocket(
                    self.loop,
                    self.port,
                    path,
                    self.counters,
                    sampled=sampled,
                    on_open=opened,
                    on_close=refused,
                )

            def connected(status: int, answer: bytes) -> None:
                if status != 200:
                    failed(f"/connect status {status} {answer[:60]!r}")
                    start(client)
                    return
                attach(f"/ws?conn_id={json.loads(answer)['conn_id']}", time.monotonic())

            if via == "token":
                attach(f"/ws?token={connection_token(body['username'], channels)}", began)
                return
            client.request("POST", "/connect", body, connected)

        for client in clients:
            start(client)
        self.reply_when_opened(clients, state, count, (started, timeout), result)

    # -- counting -------------------------------------------------------------------------------

    def do_reset(self) -> None:
        self.counters.reset()
        for ws in self.sockets:
            ws.count = 0
        self.reply(True)

    def do_wait(self, expected_per_socket: int, timeout: float, stall: float) -> None:
        """Reply when every socket got `expected_per_socket` messages, or on timeout, or when
        nothing arrived for `stall` seconds after the publisher finished (see do_publisher_done).
        """
        expected = expected_per_socket * len(self.sockets)
        deadline = time.monotonic() + timeout
        progress = {"messages": -1, "at": time.monotonic()}

        def check() -> bool:
            now = time.monotonic()
            counters = self.counters
            if counters.messages != progress["messages"]:
                progress["messages"], progress["at"] = counters.messages, now
            if counters.messages >= expected or now > deadline or now - progress["at"] > stall:
                self.waiting = None
                self.reply(self.report(expected_per_socket))
                return True
            return False

        self.waiting = check

    def reply_when_opened(
        self,
        clients: list[HttpClient],
        state: dict[str, int],
        count: int,
        window: tuple[float, float],
        result: dict[str, Any],
    ) -> None:
        """Answer the parent with `result` once `state["done"]` reaches `count` or `timeout`
        passed (`window`: started, timeout), dropping the HTTP clients that opened the
        websockets; `result["seconds"]` is the time since `started`."""
        started, timeout = window
        deadline = started + timeout

        def check() -> bool:
            if state["done"] >= count or time.monotonic() > deadline:
                self.waiting = None
                for client in clients:
                    client._drop_socket()
                result["seconds"] = time.monotonic() - started
                result["timed_out"] = state["done"] < count
                self.reply(result)
                return True
            return False

        self.waiting = check

    def do_report(self, expected_per_socket: int = 0) -> None:
        self.reply(self.report(expected_per_socket))

    def report(self, expected_per_socket: int) -> dict[str, Any]:
        open_sockets = sum(1 for ws in self.sockets if ws.state == "open")
        return {
            "messages": self.counters.messages,
            "expected": expected_per_socket * len(self.sockets),
            "sockets": len(self.sockets),
            "open": open_sockets,
            "short": sum(1 for ws in self.sockets if ws.count < expected_per_socket),
            "first_receive": self.counters.first_receive,
            "last_receive": self.counters.last_receive,
            "latencies": self.counters.latencies,
            "closed_by_server": dict(self.closed_by_server),
        }

    def do_close_all(self) -> None:
        for ws in self.sockets:
            ws.close(graceful=False)
        self.sockets = []
        self.reply(True)

    def do_exit(self) -> None:
        self.running = False
        self.reply(True)

    # -- churn (soak) ---------------------------------------------------------------------------

    def do_churn(
        self,
        rate: float,
        seconds: float,
        live: int,
        channels: int,
        users: int,
        report_every: float = 10.0,
    ) -> None:
        """Connect / subscribe / publish / disconnect, `rate` new connections a second, keeping
        about `live` connections open; the oldest goes when a new one is open, rotating over
        three ways to leave: close frame + /disconnect, close frame only (left to the server's
        GC), /disconnect only (the server closes the socket). Replies with running totals every
        `report_every` seconds ({"final": False, ...}) and at the end ({"final": True, ...}).
        """
        api = HttpClient(self.loop, self.port, self.tokens)
        totals: dict[str, Any] = {
            "cycles": 0,
            "opened": 0,
            "failed": 0,
            "api_errors": 0,
            "published": 0,
            "retired": 0,
            "received": 0,
            "errors": {},
        }
        queue: deque[WebSocket] = deque()
        started = time.monotonic()
        state = {"issued": 0, "in_flight": 0, "next_report": started + report_every}
        counter = Counters()

        def error(kind: str) -> None:
            totals["errors"][kind] = totals["errors"].get(kind, 0) + 1

        def api_done(status: int, body: bytes) -> None:
            if status != 200:
                totals["api_errors"] += 1
                error(f"api status {status}")

        def retire() -> None:
            ws = queue.popleft()
            conn_id = ws.tag
            mode = totals["retired"] % 3
            totals["retired"] += 1
            if mode in (0, 1):
                ws.close(graceful=True)
            else:
                ws.on_close = None  # the server will close it; if not, we do after 30 s
                self.loop.call_later(30.0, lambda: ws.close(graceful=False))
            if mode in (0, 2):
                api.request("POST", "/disconnect", {"conn_id": conn_id}, api_done)

        def cycle() -> None:
            number = state["issued"]
            state["issued"] += 1
            state["in_flight"] += 1
            channel = f"soak{number % channels}"
            other = f"soak{(number + 1) % channels}"
            body = {
                "username": f"soak{self.index}-{number % users}",
                "channels": [channel],
                "info": dict(CONNECT_INFO, exclude_channels=[channel]),
            }

            def connected(status: int, answer: bytes) -> None:
                if status != 200:
                    state["in_flight"] -= 1
                    totals["failed"] += 1
                    error(f"/connect status {status}")
                    return
                conn_id = json.loads(answer)["conn_id"]

                def opened(ws: WebSocket) -> None:
                    state["in_flight"] -= 1
                    totals["opened"] += 1
                    ws.on_close = lambda ws, reason: error("closed by server: " + reason)
                    queue.append(ws)
                    api.request(
                        "POST",
                        "/subscribe",
                        {"conn_id": conn_id, "channels": [other], "info": CONNECT_INFO},
                        api_done,
                    )
                    api.request(
                        "POST",
                        "/message",
                        [
                            {
                                "channel": channel,
                                "user": body["username"],
                                "message": {"bench_sent": time.time(), "n": number},
                            }
                        ],
                        api_done,
                    )
                    totals["published"] += 1
                    totals["cycles"] += 1
                    while len(queue) > live:
                        retire()

                def refused(ws: WebSocket, reason: str) -> None:
                    state["in_flight"] -= 1
                    totals["failed"] += 1
                    error(f"/ws {reason}")

                WebSocket(
                    self.loop,
                    self.port,
                    f"/ws?conn_id={conn_id}",
                    counter,
                    on_open=opened,
                    on_close=refused,
                    tag=conn_id,
                )

            api.request("POST", "/connect", body, connected)

        def check() -> bool:
            now = time.monotonic()
            due = int((now - started) * rate)
            # never let the backlog run away when the server is slower than `rate`
            while state["issued"] < due and state["in_flight"] < 50 and now - started < seconds:
                cycle()
            totals["received"] = counter.messages
            totals["live"] = len(queue)
            totals["backlog"] = len(api.pending) + state["in_flight"]
            if now >= state["next_report"]:
                state["next_report"] += report_every
                self.reply(dict(totals, final=False, seconds=now - started))
            if now - started >= seconds:
                self.waiting = None
                for ws in queue:
                    ws.on_close = None
                    ws.close(graceful=True)
                queue.clear()
                api._drop_socket()
                self.reply(dict(totals, final=True, seconds=now - started))
                return True
            return False

        self.waiting = check
        self.loop.call_later(0.01, lambda: None)


def _worker_main(pipe: multiprocessing.connection.Connection, port: int, index: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    Worker(pipe, port, index).run()


def _publisher_main(pipe: multiprocessing.connection.Connection, port: int, index: int) -> None:
    """A process that publishes through the signed API, one request at a time, on schedule."""
    from servers import Tokens

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    loop = Loop()
    client = HttpClient(loop, port, Tokens())
    for arguments in commands(pipe, "publish"):
        count, rate, channel = arguments["count"], arguments["rate"], arguments["channel"]
        padding = "x" * arguments.get("payload_bytes", 100)
        outcome = {"errors": 0, "answered": 0}
        durations: list[float] = []
        started = time.time()
        for number in range(count):
            delay = started + number / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            sent = time.time()

            def answered(
                status: int,
                body: bytes,
                sent: float = sent,
                outcome: dict[str, int] = outcome,
                durations: list[float] = durations,
            ) -> None:
                outcome["answered"] += 1
                durations.append(time.time() - sent)
                if status != 200:
                    outcome["errors"] += 1

            message = {"bench_sent": sent, "n": number, "p": padding}
            client.request(
                "POST",
                "/message",
                [{"channel": channel, "user": "bench", "message": message}],
                answered,
            )
            while outcome["answered"] <= number:
                loop.run_once(1.0)
        finished = time.time()
        durations.sort()
        pipe.send(
            {
                "published": count - outcome["errors"],
                "errors": outcome["errors"],
                "started": started,
                "finished": finished,
                "rate": count / max(1e-9, finished - started),
                "request_ms_p50": 1000 * durations[len(durations) // 2] if durations else 0.0,
            }
        )


class Process:
    """A load-generator process and the parent's end of its pipe."""

    def __init__(self, main: Callable[..., None], port: int, index: int, name: str) -> None:
        context = multiprocessing.get_context("fork")
        self.pipe, child = context.Pipe()
        self.name = name
        self.process = context.Process(target=main, args=(child, port, index), daemon=True)
        self.process.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def send(self, command: str, **arguments: Any) -> None:
        self.pipe.send((command, arguments))

    def receive(self, timeout: float | None = None) -> Any:
        if not self.pipe.poll(timeout):
            raise TimeoutError(f"{self.name}: no answer within {timeout} s")
        return self.pipe.recv()

    def call(self, command: str, answer_within: float | None = None, **arguments: Any) -> Any:
        self.send(command, **arguments)
        return self.receive(answer_within)

    def stop(self) -> None:
        """Ask it to exit, then terminate and kill by PID if it does not."""
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self.send("exit")
            self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.pipe.close()


class LoadGenerator:
    """`workers` worker processes (websockets) and optionally one publisher process."""

    def __init__(self, port: int, workers: int, publisher: bool = False, label: str = "") -> None:
        self.workers: list[Process] = []
        self.publisher: Process | None = None
        try:
            for index in range(workers):
                self.workers.append(Process(_worker_main, port, index, f"{label}worker{index}"))
            if publisher:
                self.publisher = Process(_publisher_main, port, 0, f"{label}publisher")
        except BaseException:
            self.stop()
            raise

    @property
    def processes(self) -> list[Process]:
        return self.workers + ([self.publisher] if self.publisher else [])

    @property
    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self.processes}

    def broadcast(
        self, command: str, answer_within: float | None = None, **arguments: Any
    ) -> list[Any]:
        for worker in self.workers:
            worker.send(command, **arguments)
        return [worker.receive(answer_within) for worker in self.workers]

    def publish_and_wait(
        self, count: int, rate: float, channel: str, max_drain: float, stall: float
    ) -> tuple[Any, list[Any]]:
        """The publisher sends `count` messages at `rate` to `channel` while every worker
        waits for them on each socket: (the publisher's report, the workers' reports)."""
        assert self.publisher is not None, "a LoadGenerator made with publisher=True"
        self.publisher.send("publish", count=count, rate=rate, channel=channel)
        for worker in self.workers:
            worker.send(
                "wait", expected_per_socket=count, timeout=count / rate + max_drain, stall=stall
            )
        published = self.publisher.receive(timeout=count / rate + max_drain + 600)
        reports = [w.receive(timeout=count / rate + max_drain + 60) for w in self.workers]
        return published, reports

    def open(
        self,
        total: int,
        concurrency: int,
        channels: list[str],
        sample_every: int = 0,
        timeout: float = 900.0,
        via: str = "connect",
    ) -> dict[str, Any]:
        """Open `total` websockets spread over the workers (`via` /connect + /ws, or a
        token: see `do_open`); merged results."""
        shares = [total // len(self.workers)] * len(self.workers)
        for index in range(total % len(self.workers)):
            shares[index] += 1
        per_worker = max(1, concurrency // len(self.workers))
        for worker, share in zip(self.workers, shares, strict=True):
            worker.send(
                "open",
                count=share,
                concurrency=per_worker,
                channels=channels,
                sample_every=sample_every,
                timeout=timeout,
                via=via,
            )
        results = [worker.receive(timeout + 60) for worker in self.workers]
        merged: dict[str, Any] = {"opened": 0, "failed": 0, "errors": {}, "timed_out": False}
        for key in ("connect_ms", "attach_ms", "total_ms"):
            merged[key] = [value for result in results for value in result[key]]
        for result in results:
            merged["opened"] += result["opened"]
            merged["failed"] += result["failed"]
            merged["timed_out"] |= result["timed_out"]
            for reason, number in result["errors"].items():
                merged["errors"][reason] = merged["errors"].get(reason, 0) + number
        merged["seconds"] = max(result["seconds"] for result in results)
        return merged

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
