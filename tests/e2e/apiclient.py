"""Small clients for end-to-end tests: the signed server API over HTTP and a websocket listener.

    api = ApiClient(server.base_url, secret="s")
    conn_id = api.connect("alice", channels=["room"])
    with WsListener.open(server.ws_url, conn_id) as ws:
        api.publish({"channel": "room", "user": "bob", "message": {"text": "hi"}})
        message = ws.wait_for(has_text("hi"), timeout=5)

Nothing here sleeps in place of waiting for an event: every wait is a socket read with a
deadline, or, for state with no event to read (GC seen through `/info`, a long poll having
attached), polling of an endpoint or the server log with a deadline. A wait that runs out fails
the test with what was seen.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import websocket

from channelstream.signature import sign

SECRET_HEADER = "x-channelstream-secret"
HTTP_TIMEOUT = 15.0


@dataclass
class HttpResult:
    """One HTTP answer: status, headers, raw body and the body parsed as JSON (None if not)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    json: Any = None

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def http_request(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> HttpResult:
    """A plain HTTP request; `body` (if not None) is sent as JSON. Error statuses are returned,
    not raised."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, response_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, response_headers, raw = error.code, error.headers, error.read()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return HttpResult(status=status, headers=dict(response_headers.items()), body=raw, json=parsed)


@dataclass
class RawAnswer:
    """An answer read with nothing in between (no redirects followed, no cookies kept)."""

    status: int
    headers: dict[str, str]  # names lowercased
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> RawAnswer:
    """One request to 127.0.0.1:port on a new connection, headers as given (a `Host` there
    replaces the real one)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return RawAnswer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def admin_sign_in(port: int, user: str, password: str, **headers: str) -> RawAnswer:
    """The admin sign-in form, posted as a browser posts it."""
    body = urllib.parse.urlencode({"username": user, "password": password}).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    return raw_request(port, "POST", "/admin/sign_in", body, form)


def admin_cookie(port: int, user: str, password: str) -> str:
    """Sign in; the `auth_tkt=...` cookie pair of the session."""
    answer = admin_sign_in(port, user, password)
    assert answer.status == 302, answer.body
    return answer.headers["set-cookie"].split(";")[0]


class ApiClient:
    """The signed server API: each call is signed for its path with the server's secret."""

    def __init__(self, base_url: str, secret: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret = secret

    def call(
        self, path: str, body: Any = None, method: str = "POST", signed: bool = True
    ) -> HttpResult:
        """`method path` with a JSON body, signed with `sign(secret, path)` unless `signed` is
        False. Returns the status and parsed JSON whatever the status."""
        headers = {SECRET_HEADER: sign(self.secret, path.split("?")[0])} if signed else {}
        return http_request(self.base_url + path, method=method, body=body, headers=headers)

    def ok(self, path: str, body: Any = None, method: str = "POST") -> Any:
        """Like `call`, but fails unless the answer is 200; returns the parsed JSON."""
        result = self.call(path, body, method)
        assert result.status == 200, f"{method} {path} -> {result.status}: {result.body[:500]!r}"
        return result.json

    def connect(
        self, username: str, channels: Iterable[str] = (), notify_presence: bool = False, **extra
    ) -> str:
        """`POST /connect`; returns the new conn_id. `notify_presence` configures the channels
        this call creates."""
        body: dict[str, Any] = {"username": username, "channels": list(channels), **extra}
        if notify_presence:
            body.setdefault(
                "channel_configs", {name: {"notify_presence": True} for name in body["channels"]}
            )
        return self.ok("/connect", body)["conn_id"]

    def publish(self, *messages: Mapping[str, Any]) -> list[dict[str, Any]]:
        """`POST /message` with the given message objects; returns the accepted items."""
        return self.ok("/message", [dict(message) for message in messages])

    def disconnect(self, conn_id: str) -> HttpResult:
        """`POST /disconnect` (client endpoint: not signed)."""
        return self.call("/disconnect", {"conn_id": conn_id}, signed=False)

    def info(self) -> dict[str, Any]:
        """`POST /info` with no body: every channel with its users."""
        return self.ok("/info")

    def listen(
        self, conn_id: str, timeout: float = HTTP_TIMEOUT, position: tuple[str, int] | None = None
    ) -> HttpResult:
        """One long poll: `GET /listen?conn_id=...` (not signed); with `position` (epoch,
        seq), as channelstream.js polls."""
        query = f"conn_id={conn_id}"
        if position is not None:
            query += f"&epoch={position[0]}&seq={position[1]}"
        return http_request(f"{self.base_url}/listen?{query}", timeout=timeout)

    def wait_until(
        self, condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
    ) -> Any:
        """Call `condition` until it returns something truthy (returned); fail after `timeout`.

        For server state that has no event to wait on (e.g. GC seen through `/info`)."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            # paces the polling of an HTTP endpoint; not a wait for the event itself
            time.sleep(interval)


def summarize(messages: list[Any], limit: int = 2000) -> str:
    """`repr(messages)`, cut to `limit` characters (flood tests receive megabytes)."""
    text = repr(messages)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(messages)} messages)"


class ClosedByServer(AssertionError):
    """The socket closed while frames were expected."""

    def __init__(self, code: int | None, seen: list[Any]) -> None:
        super().__init__(f"websocket closed with code {code}; messages seen: {summarize(seen)}")
        self.code = code


@dataclass
class WsListener:
    """A websocket on `/ws?conn_id=...` that reads server frames (JSON arrays).

    `messages` keeps every message object received so far, in order, and `frames` every parsed
    array (heartbeats are `[]`)."""

    ws: websocket.WebSocket
    frames: list[list[Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    raw_texts: list[str] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""  # the server's close frame's reason text
    # frames read by `sync` that `next_frames` / `wait_for` have not handed out yet
    _pending: deque[list[Any]] = field(default_factory=deque)

    @classmethod
    def open(
        cls,
        ws_url: str,
        conn_id: str | None,
        timeout: float = 10.0,
        origin: str | None = None,
        sync: bool = True,
        **options: Any,
    ) -> WsListener:
        """Connect and, with `sync`, wait until the server has attached the socket (see `sync`).

        Handshake errors raise websocket.WebSocketBadStatusException. `options` go to
        `websocket.create_connection` (e.g. `sockopt`)."""
        url = ws_url if conn_id is None else f"{ws_url}?conn_id={conn_id}"
        if origin is not None:
            options["origin"] = origin
        listener = cls(websocket.create_connection(url, timeout=timeout, **options))
        if sync:
            try:
                listener.sync(timeout)
            except BaseException:
                listener.close()
                raise
        return listener

    def __enter__(self) -> WsListener:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close from the client side (a normal 1000 close) and drop the TCP connection."""
        with contextlib.suppress(OSError, websocket.WebSocketException):
            self.ws.close(timeout=1)

    def send_json(self, value: Any) -> None:
        self.ws.send(json.dumps(value))

    def _read_one(self, deadline: float, until_pong: bytes | None = None) -> list[Any] | None:
        """The next text frame, parsed; None if a close frame came (code kept in close_code),
        or, with `until_pong`, when the pong carrying that payload came.

        Raises TimeoutError when `deadline` passes first. Frames are read one by one (not with
        `recv_data`, which answers a close frame and may fail on a socket the server already
        shut down)."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.ws.settimeout(remaining)
            try:
                frame = self.ws.recv_frame()
            except (TimeoutError, websocket.WebSocketTimeoutException):
                raise TimeoutError from None
            except (OSError, websocket.WebSocketConnectionClosedException) as error:
                raise AssertionError(
                    f"connection dropped without a close frame ({error!r}); "
                    f"messages seen: {summarize(self.messages)}"
                ) from None
            except websocket.WebSocketException as error:  # e.g. a corrupted stream
                raise AssertionError(f"bad frame from the server: {str(error)[:300]}") from None
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                data = frame.data
                self.close_code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                self.close_reason = data[2:].decode("utf-8", errors="replace")
                return None
            if frame.opcode == websocket.ABNF.OPCODE_PING:
                with contextlib.suppress(OSError, websocket.WebSocketException):
                    self.ws.pong(frame.data)
                continue
            if frame.opcode == websocket.ABNF.OPCODE_PONG:
                if until_pong is not None and frame.data == until_pong:
                    return None
                continue
            if frame.opcode not in (
                websocket.ABNF.OPCODE_TEXT,
                websocket.ABNF.OPCODE_BINARY,
                websocket.ABNF.OPCODE_CONT,
            ):
                continue
            try:
                self.ws.cont_frame.validate(frame)
                self.ws.cont_frame.add(frame)
                if not self.ws.cont_frame.is_fire(frame):
                    continue  # more fragments to come
                opcode, whole = self.ws.cont_frame.extract(frame)
            except websocket.WebSocketException as error:  # e.g. a corrupted stream
                raise AssertionError(f"bad frame from the server: {str(error)[:300]}") from None
            assert opcode == websocket.ABNF.OPCODE_TEXT, f"server sent a non-text frame: {opcode}"
            text = whole.data.decode("utf-8")
            self.raw_texts.append(text)
            parsed = json.loads(text)
            assert isinstance(parsed, list), f"server frame is not a JSON array: {text[:200]}"
            self.frames.append(parsed)
            self.messages.extend(parsed)
            return parsed

    def sync(self, timeout: float = 5.0) -> None:
        """Ping and read until the server's pong: the server's reader runs only once the socket
        is attached to its connection, so afterwards live messages reach this socket. Frames
        that arrive meanwhile are kept."""
        token = uuid.uuid4().hex.encode()
        self.ws.ping(token)
        deadline = time.monotonic() + timeout
        try:
            while (frame := self._read_one(deadline, until_pong=token)) is not None:
                self._pending.append(frame)  # a server frame before the pong
        except TimeoutError:
            raise AssertionError(f"no pong within {timeout} s") from None
        if self.close_code is not None:
            raise ClosedByServer(self.close_code, self.messages)

    def next_frames(self, timeout: float = 5.0) -> list[Any]:
        """The next server frame as a parsed JSON array (`[]` is a heartbeat)."""
        if self._pending:
            return self._pending.popleft()
        try:
            frame = self._read_one(time.monotonic() + timeout)
        except TimeoutError:
            raise AssertionError(
                f"no frame within {timeout} s; messages seen: {summarize(self.messages)}"
            ) from None
        if frame is None:
            raise ClosedByServer(self.close_code, self.messages)
        return frame

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """Read frames until a message matching `predicate` arrives; return it.

        Messages read before it stay in `messages`. Fails with everything seen on timeout or
        close."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = self._pending.popleft() if self._pending else self._read_one(deadline)
            except TimeoutError:
                raise AssertionError(
                    f"no matching message within {timeout} s; "
                    f"messages seen: {summarize(self.messages)}"
                ) from None
            if frame is None:
                raise ClosedByServer(self.close_code, self.messages)
            for message in frame:
                if predicate(message):
                    return message

    def wait_closed(self, timeout: float = 5.0) -> int | None:
        """Read (and keep) frames until the server's close frame; return its status code."""
        deadline = time.monotonic() + timeout
        self._pending.clear()
        try:
            while self._read_one(deadline) is not None:
                pass
        except TimeoutError:
            raise AssertionError(
                f"socket not closed within {timeout} s; messages seen: {summarize(self.messages)}"
            ) from None
        return self.close_code


def has_text(text: str) -> Callable[[dict[str, Any]], bool]:
    """Predicate: a message whose `message` is `{"text": text}`."""
    return lambda message: message.get("message") == {"text": text}


def is_presence(user: str, action: str) -> Callable[[dict[str, Any]], bool]:
    """Predicate: a presence frame for `user` with `action` ("joined" or "parted")."""
    return lambda message: (
        message.get("type") == "presence"
        and message.get("user") == user
        and message.get("message", {}).get("action") == action
    )


def wait_for_log(log_text: Callable[[], str], needle: str, timeout: float = 5.0) -> None:
    """Wait until the server's log contains `needle` (for events with no other outward sign,
    e.g. a long poll having attached); fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while needle not in log_text():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{needle!r} not logged within {timeout} s")
        time.sleep(0.02)  # paces re-reading the log file
