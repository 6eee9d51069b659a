"""Whatever a client sends, every log line of a real server stays one printable line and shows
no API token: request lines and headers full of control characters, an X-Forwarded-For hop
from a trusted proxy, and `secret` query parameters spelt with percent escapes. Checked in both
log formats, reading the log as bytes and splitting it on "\\n" only (docs/security.md).
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.apiclient import wait_for_log
from tests.e2e.conftest import HOST

TOKEN = f"TOKEN{uuid.uuid4().hex}"
READ_TIMEOUT = 5.0

# Characters that split a line for some reader (str.splitlines, JavaScript, editors) or that a
# terminal acts on: C0 controls but tab, DEL, C1 controls (NEL among them), U+2028, U+2029,
# and bytes that are not UTF-8 (read back as lone surrogates).
FORBIDDEN = (
    {chr(code) for code in range(0x20) if chr(code) not in "\t\n"}
    | {chr(code) for code in range(0x7F, 0xA0)}
    | {"\u2028", "\u2029"}
    | {chr(code) for code in range(0xDC80, 0xDD00)}
)

# Raw pieces a client can put in a request line or a header value.
HOSTILE = {
    "esc": b"\x1b[2J\x1b]0;pwned\x07",
    "bare-cr": b"a\rb",
    "nul": b"a\x00b",
    "vt": b"a\x0bb",
    "ff": b"a\x0cb",
    "nel-utf8": "a\u0085b".encode(),
    "nel-byte": b"a\x85b",
    "line-separator": "a\u2028b".encode(),
    "paragraph-separator": "a\u2029b".encode(),
    "csi-byte": b"a\x9b31mb",
}


@pytest.fixture(scope="module", params=["text", "json"])
def server(request, start_module_server):
    """One server per log format; 127.0.0.1 (this test) is a trusted proxy."""
    return start_module_server(
        settings={
            "secret": "e2e-log-secret",
            "trusted_proxies": "127.0.0.1",
            "log_format": request.param,
        }
    )


class LogWindow:
    """What the server logs from now on, as bytes, and as lines split on "\\n" only."""

    def __init__(self, server) -> None:
        self.server = server
        self.start = server.log_path.stat().st_size

    def text(self) -> str:
        data = self.server.log_path.read_bytes()[self.start :]
        return data.decode("utf-8", errors="surrogateescape")

    def lines(self) -> list[str]:
        return [line for line in self.text().split("\n") if line]

    def messages(self) -> Iterator[str]:
        """The message of each line (a JSON line's `message`, else the whole line)."""
        for line in self.lines():
            yield json.loads(line)["message"] if line.startswith("{") else line

    def wait_for_access_line(self, path: str) -> None:
        wait_for_log(self.text, f"GET {path} HTTP/1.1", timeout=READ_TIMEOUT)

    def assert_clean(self) -> None:
        """Every line printable, one line for any reader, JSON lines valid; no token."""
        for line in self.lines():
            bad = sorted({char for char in line if char in FORBIDDEN})
            assert not bad, f"raw {bad!r} in log line {line!r}"
            if line.startswith("{"):
                assert isinstance(json.loads(line), dict), line
        assert TOKEN not in self.text()


def exchange(server, data: bytes) -> bytes:
    """Send `data` on a new connection and read until the server closes it."""
    with socket.create_connection((HOST, server.port), timeout=READ_TIMEOUT) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def request(target: bytes, *headers: bytes) -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: " + HOST.encode(), b"Connection: close"]
    return b"\r\n".join([*lines, *headers]) + b"\r\n\r\n"


def websocket_upgrade(*headers: bytes, version: bytes = b"13", key: bytes | None = None) -> bytes:
    target = f"/ws?conn_id={uuid.uuid4()}".encode()
    return request(
        target,
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + (key if key is not None else b"dGhlIHNhbXBsZSBub25jZQ=="),
        b"Sec-WebSocket-Version: " + version,
        *headers,
    )


def finish(server, window: LogWindow) -> None:
    """Wait until everything sent before is logged (one more request, logged after them)."""
    marker = f"/log-marker-{uuid.uuid4().hex}"
    exchange(server, request(marker.encode()))
    window.wait_for_access_line(marker)


@pytest.mark.parametrize("piece", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_request_line_with_control_characters_is_logged_escaped_on_one_line(server, piece):
    window = LogWindow(server)
    for target in (b"/info?q=" + piece, b"/no-such-page/" + piece, b"/" + piece + b"?x=1"):
        assert exchange(server, request(target)).startswith(b"HTTP/1.1 4")
    finish(server, window)
    window.assert_clean()
    access = [message for message in window.messages() if '"GET /no-such-page/' in message]
    assert access, window.lines()  # the lines are there, escaped, not dropped


@pytest.mark.parametrize("piece", HOSTILE.values(), ids=HOSTILE.keys())
def test_an_x_forwarded_for_hop_from_a_trusted_proxy_is_logged_escaped(server, piece):
    window = LogWindow(server)
    hop = b"X-Forwarded-For: 203.0.113.9" + piece + b", 127.0.0.1"
    assert exchange(server, request(b"/no-such-page", hop)).startswith(b"HTTP/1.1 404")
    assert exchange(server, request(f"/sse?conn_id={uuid.uuid4()}".encode(), hop))
    assert exchange(server, websocket_upgrade(hop)).startswith(b"HTTP/1.1 101")
    finish(server, window)
    window.assert_clean()
    messages = list(window.messages())
    for needle in ("refused GET /no-such-page from 203.0.113.9", "sse from 203.0.113.9"):
        assert any(needle in message for message in messages), (needle, window.lines())
    assert any("websocket from 203.0.113.9" in message for message in messages), messages


@pytest.mark.parametrize("piece", HOSTILE.values(), ids=HOSTILE.keys())
def test_websocket_handshakes_with_hostile_headers_are_refused_and_logged_clean(server, piece):
    """The server checks the handshake before gevent-websocket (which quotes the headers in
    its log lines): a version or key holding such characters is refused in a line of ours."""
    window = LogWindow(server)
    assert exchange(server, websocket_upgrade(version=b"13" + piece)).startswith(b"HTTP/1.1 426")
    quads = -sum(chr(byte).isalnum() for byte in piece) % 4
    answer = exchange(server, websocket_upgrade(key=b"QUJD" + piece + b"A" * quads))
    if b"\r" not in piece:  # the header parser ends a line at a bare CR
        assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    finish(server, window)
    window.assert_clean()
    messages = list(window.messages())
    assert any("426 Sec-WebSocket-Version must be 13" in message for message in messages)


@pytest.mark.parametrize(
    ("query", "logged"),
    [
        ("secret={token}", "secret=[redacted]"),
        ("%73ecret={token}", "%73ecret=[redacted]"),
        ("a=1&%73%65cret={token}", "a=1&%73%65cret=[redacted]"),
        ("sec%72e%74={token}", "sec%72e%74=[redacted]"),
        ("%73%65%63%72%65%74={token}", "%73%65%63%72%65%74=[redacted]"),
        ("a=1;secret={token}", "a=1;secret=[redacted]"),
        ("secret=x&secret={token}", "secret=[redacted]&secret=[redacted]"),
        ("secret={token}=more", "secret=[redacted]"),
    ],
)
def test_a_token_in_the_query_is_redacted_by_its_decoded_name(server, query, logged):
    window = LogWindow(server)
    target = "/info?" + query.format(token=TOKEN)
    assert exchange(server, request(target.encode())).startswith(b"HTTP/1.1 401")
    finish(server, window)
    window.assert_clean()
    line = f'"GET /info?{logged} HTTP/1.1"'
    assert any(line in message for message in window.messages()), window.lines()


@pytest.mark.parametrize("piece", [b"\r", b"\t", b"\x0b", b"\x85", b"\x1c"])
def test_a_token_cut_by_a_control_character_is_redacted_whole(server, piece):
    """The request line is malformed (gevent splits it at the character) and refused; the
    token the client meant is still not logged, neither half of it."""
    window = LogWindow(server)
    head, tail = TOKEN[:12], TOKEN[12:]
    target = f"/info?secret={head}".encode() + piece + tail.encode()
    assert exchange(server, request(target)).startswith(b"HTTP/1.1 400")
    finish(server, window)
    window.assert_clean()
    assert head not in window.text()
    assert tail not in window.text()
