"""Hostile clients against a real server, over raw sockets: oversized, fragmented, binary and
garbage websocket frames; clients that never read; clients that connect and vanish; truncated,
chunked and oversized HTTP bodies; oversized headers. After each, another client's live
websocket still receives a message (docs/security.md lists the answers).
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import uuid

import pytest
import websocket

from channelstream.api.errors import ERROR_CODES
from channelstream.signature import sign
from tests.e2e.apiclient import ApiClient, WsListener, has_text, is_presence, wait_for_log
from tests.e2e.conftest import HOST

SECRET = "e2e-hostile-secret"
MAX_MESSAGE_SIZE = 4096
MAX_QUEUED_FRAMES = 10
GC_CONNS_AFTER = 2
SMALL_RCVBUF = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)]


@pytest.fixture(scope="module")
def server(start_module_server):
    return start_module_server(
        settings={
            "secret": SECRET,
            "max_message_size": MAX_MESSAGE_SIZE,
            "max_queued_frames": MAX_QUEUED_FRAMES,
            "gc_conns_after": GC_CONNS_AFTER,
        }
    )


@pytest.fixture
def api(server):
    return ApiClient(server.base_url, SECRET)


@pytest.fixture
def bystander(api, listen, names):
    """Someone else's live websocket on a channel of its own, and a check that it still
    receives: `bystander.still_receives()`."""
    room = names("bystander-room")
    ws = listen(api.connect(names("bystander"), channels=[room]))

    class Bystander:
        listener = ws

        @staticmethod
        def still_receives():
            text = f"still here {uuid.uuid4().hex[:6]}"
            api.publish({"channel": room, "user": "someone", "message": {"text": text}})
            ws.wait_for(has_text(text), timeout=5.0)

    return Bystander


class LogWindow:
    """The lines the server logs from now on."""

    def __init__(self, server):
        self.server = server
        self.start = len(server.log_text())

    def lines(self):
        return self.server.log_text()[self.start :].splitlines()

    def refusals(self):
        return [line for line in self.lines() if "refused " in line]


@pytest.fixture
def server_log(server):
    return LogWindow(server)


def masked_frame(opcode, payload, fin=True, declared_length=None):
    """A client frame built by hand (`declared_length` may lie about the payload's size)."""
    length = len(payload) if declared_length is None else declared_length
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_http_response(sock, timeout=10.0):
    """One HTTP response from a raw socket: (status, headers as a lower-cased dict, body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def raw_connection(server):
    return socket.create_connection((HOST, server.port), timeout=10.0)


def signed_request_head(path, extra_headers):
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {HOST}",
        f"x-channelstream-secret: {sign(SECRET, path)}",
        "Content-Type: application/json",
        *extra_headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ---------------------------------------------------------------------- websocket frames


def test_an_oversized_frame_is_closed_1009_logged_once_and_others_keep_receiving(
    api, listen, names, bystander, server_log
):
    conn_id = api.connect(names("mallory"))
    ws = listen(conn_id)

    ws.ws.send("x" * (MAX_MESSAGE_SIZE + 1))

    assert ws.wait_closed(timeout=5.0) == 1009
    bystander.still_receives()
    [line] = server_log.refusals()
    assert "WARNING" in line
    assert f"refused GET /ws from {HOST}: close 1009 max_message_size" in line
    assert conn_id in line


def test_a_frame_declaring_a_huge_length_is_closed_1009_before_its_payload(
    api, listen, names, bystander
):
    ws = listen(api.connect(names("mallory")))

    # a header announcing a terabyte, and not one byte of it
    ws.ws.sock.sendall(masked_frame(websocket.ABNF.OPCODE_TEXT, b"", declared_length=1 << 40))

    assert ws.wait_closed(timeout=5.0) == 1009
    bystander.still_receives()


def test_fragments_adding_up_past_the_limit_are_closed_1009(api, listen, names, bystander):
    ws = listen(api.connect(names("mallory")))
    piece = b"x" * (MAX_MESSAGE_SIZE // 2)

    ws.ws.sock.sendall(masked_frame(websocket.ABNF.OPCODE_TEXT, piece, fin=False))
    ws.ws.sock.sendall(masked_frame(websocket.ABNF.OPCODE_CONT, piece, fin=False))
    ws.ws.sock.sendall(masked_frame(websocket.ABNF.OPCODE_CONT, b"xx", fin=True))

    assert ws.wait_closed(timeout=5.0) == 1009
    bystander.still_receives()


@pytest.mark.parametrize(
    ("opcode", "payload"),
    [
        (websocket.ABNF.OPCODE_BINARY, bytes(range(256)) * 4),
        (websocket.ABNF.OPCODE_TEXT, b"\xff\xfe not UTF-8 \xc3\x28"),
        (websocket.ABNF.OPCODE_TEXT, b'{"type": "message", "truncated'),
        (websocket.ABNF.OPCODE_TEXT, b"[" * 2000 + b"]" * 2000),
        (websocket.ABNF.OPCODE_TEXT, json.dumps({"type": "subscribe", "channels": ["x"]}).encode()),
    ],
    ids=["binary", "invalid-utf8", "truncated-json", "deep-json", "json-command"],
)
def test_frames_are_never_parsed_so_binary_and_garbage_frames_are_ignored(
    api, listen, names, bystander, server_log, opcode, payload
):
    """Client frames only count as activity: their content is not read as JSON (so the JSON
    caps have nothing to apply to) and does not close the socket."""
    room = names("room")
    ws = listen(api.connect(names("mallory"), channels=[room]))

    ws.ws.sock.sendall(masked_frame(opcode, payload))
    ws.sync()  # the server read the frame before answering this ping

    api.publish({"channel": room, "user": "bob", "message": {"text": "still yours"}})
    ws.wait_for(has_text("still yours"))
    bystander.still_receives()
    assert server_log.refusals() == []


# ---------------------------------------------------------------------- clients that never read


def test_a_websocket_that_never_reads_is_closed_4002_while_others_keep_receiving(
    start_server, listeners
):
    server = start_server(settings={"secret": SECRET, "max_queued_frames": MAX_QUEUED_FRAMES})
    api = ApiClient(server.base_url, SECRET)
    room = "flood"
    slow_conn = api.connect("slowpoke", channels=[room])
    slow = WsListener.open(server.ws_url, slow_conn, sockopt=SMALL_RCVBUF)
    listeners.append(slow)
    reader = WsListener.open(server.ws_url, api.connect("reader", channels=[room]))
    listeners.append(reader)
    payload = "x" * 50_000

    for i in range(300):  # 15 MB; `slow` reads nothing meanwhile, `reader` reads it all
        api.publish({"channel": room, "user": "flooder", "message": {"i": i, "text": payload}})
        reader.wait_for(lambda m, i=i: m["message"]["i"] == i, timeout=5.0)

    assert slow.wait_closed(timeout=10.0) == 4002
    assert len(slow.messages) < 300
    warnings = [line for line in server.log_text().splitlines() if "with 4002" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and slow_conn in warnings[0]
    assert f"from {HOST} fell" in warnings[0]  # the client's address is named


# ---------------------------------------------------------------------- connect and vanish


@pytest.mark.parametrize(
    "vanishing",
    [
        b"",
        b"GET /hea",
        b"POST /connect HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{",
        b"GET /ws?conn_id=" + str(uuid.uuid4()).encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    ],
    ids=["nothing", "half-a-request-line", "half-a-body", "websocket-handshake"],
)
def test_clients_that_connect_and_vanish_leave_the_server_serving(server, bystander, vanishing):
    for _ in range(20):
        sock = raw_connection(server)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(vanishing)
        sock.close()  # a reset, not a goodbye

    bystander.still_receives()
    assert server.process.poll() is None


def test_a_websocket_that_vanishes_without_a_close_frame_is_detached_and_collected(
    api, server, names, listeners, bystander
):
    room, ghost, witness = names("room"), names("ghost"), names("witness")
    ghost_conn = api.connect(ghost, channels=[room], notify_presence=True)
    ghost_ws = WsListener.open(server.ws_url, ghost_conn)
    watcher = WsListener.open(server.ws_url, api.connect(witness, channels=[room]))
    listeners.extend([ghost_ws, watcher])

    ghost_ws.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ghost_ws.ws.sock.close()  # TCP reset: no close frame

    wait_for_log(server.log_text, f"websocket closed: connection {ghost_conn}")
    parted = watcher.wait_for(is_presence(ghost, "parted"), timeout=GC_CONNS_AFTER + 5)
    assert parted["channel"] == room
    bystander.still_receives()


def read_until_closed(sock):
    """Everything the server sends until it closes the connection (fails after 10 s)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_stalled_requests_are_closed_after_request_timeout(start_server, listeners):
    server = start_server(settings={"secret": SECRET, "request_timeout": "1"})
    api = ApiClient(server.base_url, SECRET)
    room = f"patient-{uuid.uuid4().hex[:6]}"
    patient = WsListener.open(server.ws_url, api.connect("patient", channels=[room]))
    listeners.append(patient)
    half_headers, half_body, idle = (raw_connection(server) for _ in range(3))
    with half_headers, half_body, idle:
        half_headers.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        half_body.sendall(signed_request_head("/connect", ["Content-Length: 100"]) + b'{"user')

        # closed, at most with a 400 (gevent's answer to headers cut short)
        for stalled in (half_headers, half_body):
            answer = read_until_closed(stalled)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert read_until_closed(idle) == b""  # an idle keep-alive connection: just closed
    # the websocket, idle for longer than request_timeout by now, is not affected
    api.publish({"channel": room, "user": "someone", "message": {"text": "still open"}})
    patient.wait_for(has_text("still open"), timeout=5.0)


def test_a_request_that_never_finishes_holds_only_its_own_connection(server, api, bystander):
    """Until `request_timeout` (60 s by default; see the test above), a client that stops
    half-way through its request keeps its connection, and only that."""
    stalled = [raw_connection(server) for _ in range(50)]
    for index, sock in enumerate(stalled):
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: x\r\n"
            if index % 2
            else signed_request_head("/connect", ["Content-Length: 100"]) + b'{"user'
        )

    bystander.still_receives()
    assert api.call("/health", method="GET").status == 200
    readable, _, _ = select.select(stalled, [], [], 0)
    assert readable == []  # none of them got an answer
    for sock in stalled:
        sock.close()


# ---------------------------------------------------------------------- HTTP bodies and headers


def test_a_truncated_body_is_a_json_400_logged_once_without_a_traceback(
    server, bystander, server_log
):
    with raw_connection(server) as sock:
        sock.sendall(signed_request_head("/connect", ["Content-Length: 100"]) + b'{"username": "a"')
        sock.shutdown(socket.SHUT_WR)
        status, headers, body = read_http_response(sock)

    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["message"] == "Request body ended before its Content-Length (100 bytes)"
    [line] = server_log.refusals()
    assert f"refused POST /connect from {HOST}: 400 Request body ended" in line
    assert "Traceback" not in "\n".join(server_log.lines())
    bystander.still_receives()


def test_a_chunked_body_over_max_message_size_is_a_413(server, bystander, server_log):
    chunk = b"[" * 1000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2000))  # 2 MB

    with raw_connection(server) as sock:
        head = signed_request_head("/message", ["Transfer-Encoding: chunked", "Connection: close"])
        sock.sendall(head + chunks + b"0\r\n\r\n")
        status, _, body = read_http_response(sock)

    assert status == 413
    assert json.loads(body)["limit"] == "max_message_size"
    [line] = server_log.refusals()
    assert "WARNING" in line and "max_message_size" in line
    bystander.still_receives()


def test_a_huge_declared_body_is_refused_before_any_of_it_is_sent(server, bystander):
    with raw_connection(server) as sock:
        sock.sendall(signed_request_head("/message", ["Content-Length: 10000000000"]) + b"[")
        status, headers, body = read_http_response(sock)
        # the server does not wait for (and throw away) the 10 GB: it closes at once
        assert read_until_closed(sock) == b""

    assert status == 413
    assert headers.get("connection") == "close"
    assert json.loads(body)["limit"] == "max_message_size"
    bystander.still_receives()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-H: a\r\n" * 101 + b"\r\n", 400),
        (b"GET /health?" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ],
    ids=["header-line-over-64k", "over-100-headers", "request-line-over-8k", "tls-hello"],
)
def test_malformed_http_is_refused_by_the_http_server(
    server, bystander, server_log, request_bytes, status
):
    """gevent's HTTP parser refuses these before the app sees them; still the JSON error
    envelope, one WARNING line without a stack trace, and the connection closed."""
    with raw_connection(server) as sock:
        sock.sendall(request_bytes)
        answer_status, headers, body = read_http_response(sock)

    assert answer_status == status
    assert headers.get("connection") == "close"
    assert headers.get("content-type", "").startswith("application/json")
    answer = json.loads(body)
    assert answer["code"].startswith(str(status))
    assert answer["error"] == ERROR_CODES[status]  # a code of its own, never the fallback
    [line] = server_log.refusals()
    assert (
        f"WARNING [channelstream.server] refused a malformed request from {HOST}: {status}" in line
    )
    assert not any("Traceback" in line for line in server_log.lines())
    bystander.still_receives()


@pytest.mark.parametrize(
    ("cut_body", "json_message"),
    [
        (b'10\r\n{"username": ', "Request body ended before its last chunk"),
        (b'10\r\n{"username": "a"}\r\n', None),
    ],
    ids=["inside-a-chunk", "before-the-next-chunk-size"],
)
def test_a_chunked_body_cut_off_is_a_400(server, bystander, cut_body, json_message):
    """Cut inside a chunk, the app sees the body end early (JSON 400); cut where a chunk size
    line should be, gevent finds the framing broken and answers an empty 400 itself."""
    with raw_connection(server) as sock:
        sock.sendall(signed_request_head("/connect", ["Transfer-Encoding: chunked"]) + cut_body)
        sock.shutdown(socket.SHUT_WR)
        status, headers, body = read_http_response(sock)

    assert status == 400
    if json_message is None:  # gevent's parser: the envelope with a generic message
        assert json.loads(body)["message"] == "Malformed HTTP request"
        assert headers.get("connection") == "close"
    else:
        assert json.loads(body)["message"] == json_message
    bystander.still_receives()


@pytest.mark.parametrize(
    "frame",
    [
        masked_frame(0x3, b"x"),  # a reserved opcode
        masked_frame(websocket.ABNF.OPCODE_PING, b"x" * 126),  # a control frame over 125 bytes
        masked_frame(websocket.ABNF.OPCODE_CONT, b"x"),  # a continuation with nothing to continue
    ],
    ids=["reserved-opcode", "long-ping", "stray-continuation"],
)
def test_a_protocol_violation_is_closed_1002_logged_once_and_others_keep_receiving(
    api, listen, names, bystander, server_log, frame
):
    conn_id = api.connect(names("mallory"))
    ws = listen(conn_id)

    ws.ws.sock.sendall(frame)

    assert ws.wait_closed(timeout=5.0) == 1002
    bystander.still_receives()
    [line] = server_log.refusals()
    assert f"refused GET /ws from {HOST}: close 1002 websocket protocol error" in line
    assert conn_id in line


# ---------------------------------------------------------------------- broken handshakes


@pytest.mark.parametrize(
    ("protocol", "version", "key", "status"),
    [
        ("HTTP/1.1", "13", "abc", 400),  # not base64 of 16 bytes
        ("HTTP/1.1", "13", "dGhlIHNhbXBsZSBub25jZQ", 400),  # padding missing
        ("HTTP/1.1", "13", "\u00e9\u00e9", 400),  # not ASCII
        ("HTTP/1.1", "13", "", 400),
        ("HTTP/1.1", "99", "dGhlIHNhbXBsZSBub25jZQ==", 426),
        ("HTTP/1.1", None, "dGhlIHNhbXBsZSBub25jZQ==", 426),
        ("HTTP/1.0", "13", "dGhlIHNhbXBsZSBub25jZQ==", 400),
    ],
    ids=[
        "short-key",
        "unpadded-key",
        "non-ascii-key",
        "empty-key",
        "version-99",
        "no-version",
        "http-1.0",
    ],
)
def test_a_broken_websocket_handshake_is_a_json_error_without_a_traceback(
    server, api, names, bystander, protocol, version, key, status
):
    conn_id = api.connect(names("alice"))
    lines = [
        f"GET /ws?conn_id={conn_id} {protocol}",
        f"Host: {HOST}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
    ]
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    log_start = len(server.log_text())
    with raw_connection(server) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        answer, headers, body = read_http_response(sock)
    assert answer == status
    assert json.loads(body)["error"] in ("bad_request", "upgrade_required")
    if status == 426:
        assert headers["sec-websocket-version"] == "13"
    assert "Traceback" not in server.log_text()[log_start:]
    bystander.still_receives()
