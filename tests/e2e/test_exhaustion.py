"""Clients that try to exhaust a real server: streams opened and dropped in a loop (with or
without websocket upgrade headers) under a small descriptor limit, and a websocket that pings
nonstop while reading nothing. After each, the server's listeners and descriptors are back
where they were and another client is still served (docs/security.md, "Listeners")."""

from __future__ import annotations

import os
import resource
import socket
import threading
import time

import pytest
import websocket

from tests.e2e.apiclient import ApiClient, WsListener, has_text, http_request
from tests.e2e.conftest import HOST

SECRET = "e2e-exhaustion-secret"
# Far beyond this test's waits: a listener released within them was released because its
# client left, not by a heartbeat write failing or a long poll ending.
SLOW_TIMERS = {"heartbeat_interval": 600, "wake_connections_after": 600}
DESCRIPTOR_LIMIT = 256
CYCLES = 1000  # four times the descriptor limit
UPGRADE_HEADERS = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


@pytest.fixture(scope="module")
def server(start_module_server):
    server = start_module_server(
        settings={"secret": SECRET, "max_queued_frames": 10, "gc_conns_after": 600, **SLOW_TIMERS}
    )
    # as an operator's `ulimit -n 256` would: without the fixes, the loops below run it out
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT))
    return server


@pytest.fixture
def api(server):
    return ApiClient(server.base_url, SECRET)


def open_descriptors(server) -> int:
    return len(os.listdir(f"/proc/{server.pid}/fd"))


def listener_count(api) -> int:
    return int(api.ok("/admin/admin.json")["listeners"])


def wait_until(condition, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `condition` (an endpoint or /proc read) until true, failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


def assert_still_served(api, listen, names) -> None:
    """/health answers, /connect works and a fresh websocket receives a message."""
    assert http_request(api.base_url + "/health").status == 200
    room = names("room")
    ws = listen(api.connect(names("bystander"), channels=[room]))
    api.publish({"channel": room, "user": "someone", "message": {"text": "still here"}})
    ws.wait_for(has_text("still here"), timeout=5.0)


def read_response_head(sock: socket.socket) -> bytes:
    """The status line and headers of the answer (a stream's body never ends)."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(4096)):
        data += chunk
    return data


@pytest.mark.parametrize("upgrade", [True, False], ids=["upgrade-headers", "plain"])
@pytest.mark.parametrize("path", ["/sse", "/listen"])
def test_streams_opened_and_dropped_in_a_loop_release_everything(
    server, api, listen, names, path, upgrade
):
    conn_id = api.connect(names("looper"), channels=[names("room")])
    listeners_before = listener_count(api)
    descriptors_before = open_descriptors(server)
    head = f"GET {path}?conn_id={conn_id} HTTP/1.1\r\nHost: {HOST}\r\n"
    if upgrade:
        head += UPGRADE_HEADERS
    request = (head + "\r\n").encode()
    for _ in range(CYCLES):
        with socket.create_connection((HOST, server.port), timeout=10.0) as sock:
            sock.sendall(request)
            if path == "/sse":  # the stream has started (a long poll answers only later)
                assert read_response_head(sock).startswith(b"HTTP/1.1 200")

    wait_until(lambda: listener_count(api) == listeners_before, what="listeners released")
    wait_until(
        lambda: open_descriptors(server) <= descriptors_before + 5, what="descriptors released"
    )
    assert_still_served(api, listen, names)


def test_an_upgrade_request_to_sse_is_answered_as_a_plain_stream(server, api, names):
    """Only /ws is ever upgraded: the other paths answer as plain HTTP, whatever the headers."""
    conn_id = api.connect(names("alice"), channels=[names("room")])
    with socket.create_connection((HOST, server.port), timeout=10.0) as sock:
        sock.sendall(
            f"GET /sse?conn_id={conn_id} HTTP/1.1\r\nHost: {HOST}\r\n{UPGRADE_HEADERS}\r\n".encode()
        )
        head = read_response_head(sock)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"text/event-stream" in head and b"101" not in head.split(b"\r\n")[0]


def test_a_websocket_that_pings_nonstop_and_reads_nothing_is_closed_4002(
    server, api, listen, names
):
    conn_id = api.connect(names("pinger"), channels=[names("room")])
    pinger = WsListener.open(
        server.ws_url, conn_id, sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]
    )
    log_start = len(server.log_text())
    payload = b"p" * 125
    closed = False
    try:
        # Send pings without reading a byte, until the server gives up on this client (the
        # kernel buffers fill with pongs first; with max_queued_frames 10 it then takes 11).
        for sent in range(200_000):
            try:
                pinger.ws.ping(payload)
            except (OSError, websocket.WebSocketException):
                closed = True
                break
            if sent % 1000 == 999 and "close 4002" in server.log_text()[log_start:]:
                closed = True
                break
        assert closed, "the server kept answering pings that were never read"
        refusals = [
            line for line in server.log_text()[log_start:].splitlines() if "close 4002" in line
        ]
        assert len(refusals) == 1 and "WARNING" in refusals[0], refusals
        assert "pings while reading no pong" in refusals[0]
    finally:
        pinger.close()
    assert_still_served(api, listen, names)


def test_pongs_still_answer_a_client_that_reads(server, api, names):
    """The bound is on unread pongs: a client that reads gets a pong for every ping."""
    conn_id = api.connect(names("reader"), channels=[names("room")])
    with WsListener.open(server.ws_url, conn_id) as ws:
        for _ in range(50):  # far more than max_queued_frames
            ws.sync()  # a ping with a fresh token, answered by its pong
        assert ws.close_code is None


def test_a_large_batch_lets_another_callers_message_in_before_it_ends(start_server, names):
    """A batch of 9,999 messages is applied in chunks with pauses: a message another caller
    posts once the batch has begun lands among the batch's messages, not after all of them
    (one websocket on the channel sees the server's order)."""
    server = start_server(settings={"secret": SECRET, "max_queued_frames": 20_000})
    api = ApiClient(server.base_url, SECRET)
    room = names("room")
    reader = WsListener.open(server.ws_url, api.connect(names("reader"), channels=[room]))
    batch = [{"channel": room, "user": "bulk", "message": {"i": i}} for i in range(9999)]
    begun = threading.Event()
    order: list[object] = []

    def read_all() -> None:
        while len(order) < len(batch) + 1:
            for message in reader.next_frames(timeout=60):
                order.append(message["message"].get("i", "probe"))
                begun.set()

    thread = threading.Thread(target=read_all)
    thread.start()
    try:
        poster = threading.Thread(target=api.publish, args=batch)
        poster.start()
        assert begun.wait(timeout=60), "the batch never began"
        api.publish({"channel": room, "user": "other", "message": {"text": "probe"}})
        poster.join(timeout=60)
    finally:
        thread.join(timeout=60)
        reader.close()
    assert [item for item in order if item != "probe"] == list(range(9999))  # nothing lost
    assert order.index("probe") < len(batch)  # it did not wait for the whole batch
