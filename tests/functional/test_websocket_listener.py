"""The greenlet-free websocket listener against a real socket pair: partial writes, ordering,
backpressure, pongs between frames, and the close handshake."""

from __future__ import annotations

import fcntl
import json
import socket
import struct
import termios
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.socket
import pytest

from channelstream.close_codes import CloseCode
from channelstream.transport.frames import OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG, OPCODE_TEXT
from channelstream.transport.websocket import FrameCache, WebSocketListener
from tests.functional.conftest import ApiClient

WAIT = 5.0


class Peer:
    """The client end: reads server frames, sends masked client frames."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buffer = b""

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed by the server")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        with gevent.Timeout(WAIT):
            first, second = self._read_exactly(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read_exactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read_exactly(8))[0]
            return first & 0x0F, self._read_exactly(length)

    def read_messages(self, count: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < count:
            opcode, payload = self.read_frame()
            assert opcode == OPCODE_TEXT
            messages.extend(json.loads(payload))
        return messages

    def send(self, opcode: int, payload: bytes) -> None:
        mask = b"\x01\x02\x03\x04"
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def read_until_closed(self) -> bytes:
        received = self.buffer
        with gevent.Timeout(WAIT):
            while chunk := self.sock.recv(65536):
                received += chunk
        return received


def listen_on_socketpair(client: ApiClient) -> tuple[str, Any, Peer, socket.socket]:
    """A connection in channel `room` with a listener on one end of a socket pair with small
    buffers (backpressure comes quickly): (conn_id, outbox, the client's Peer, server end)."""
    conn_id = client.connect("alice", channels=["room"])["conn_id"]
    server_end, client_end = socket.socketpair()
    for end in (server_end, client_end):
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server_end.setblocking(False)
    outbox = client.node.attach(conn_id, "ws")
    WebSocketListener(server_end, client.node, outbox, FrameCache(), "peer").start(b"")
    return conn_id, outbox, Peer(gevent.socket.socket(fileno=client_end.detach())), server_end


@pytest.fixture
def attached(client: ApiClient) -> Iterator[tuple[ApiClient, str, Any, Peer]]:
    """A connection in channel `room` with a listener on one end of a socket pair."""
    conn_id, outbox, peer, _ = listen_on_socketpair(client)
    yield client, conn_id, outbox, peer
    peer.sock.close()


def publish(client: ApiClient, count: int, size: int = 0) -> None:
    for index in range(count):
        client.publish(
            {"channel": "room", "user": "bob", "message": {"i": index, "pad": "x" * size}}
        )


def test_frames_arrive_in_order_and_count_as_served(attached):
    client, _, outbox, peer = attached
    publish(client, 5)
    messages = peer.read_messages(5)
    assert [m["message"]["i"] for m in messages] == [0, 1, 2, 3, 4]
    assert outbox.served_up_to == client.node.state.seq


def test_a_backlog_waits_for_the_reader_and_is_sent_in_order(attached):
    client, _, outbox, peer = attached
    publish(client, 40, size=2000)  # far more than the socket buffers hold
    assert outbox.served_up_to < client.node.state.seq  # not all of it is out yet
    messages = peer.read_messages(40)
    assert [m["message"]["i"] for m in messages] == list(range(40))
    assert outbox.served_up_to == client.node.state.seq


def test_the_messages_of_one_call_reach_a_listener_as_one_frame(attached):
    client, _, outbox, peer = attached
    client.publish(*({"channel": "room", "user": "bob", "message": {"i": i}} for i in range(10)))
    opcode, payload = peer.read_frame()
    assert opcode == OPCODE_TEXT
    assert [m["message"]["i"] for m in json.loads(payload)] == list(range(10))
    assert outbox.served_up_to == client.node.state.seq


def test_each_listener_of_one_call_gets_only_its_frames_in_one_frame(client):
    _, _, alice, _ = listen_on_socketpair(client)
    carol_id = client.connect("carol", channels=["room"])["conn_id"]
    server_end, client_end = socket.socketpair()
    server_end.setblocking(False)
    carol_outbox = client.node.attach(carol_id, "ws")
    WebSocketListener(server_end, client.node, carol_outbox, FrameCache(), "peer").start(b"")
    carol = Peer(gevent.socket.socket(fileno=client_end.detach()))
    client.publish(
        {"channel": "room", "user": "bob", "message": {"i": 0}},
        {"channel": "room", "user": "bob", "message": {"i": 1}, "pm_users": ["carol"]},
        {"channel": "room", "user": "bob", "message": {"i": 2}, "exclude_users": ["carol"]},
        {"channel": "room", "user": "bob", "message": {"i": 3}},
    )
    _, payload = alice.read_frame()
    assert [m["message"]["i"] for m in json.loads(payload)] == [0, 2, 3]
    _, payload = carol.read_frame()
    assert [m["message"]["i"] for m in json.loads(payload)] == [0, 1, 3]
    alice.sock.close()
    carol.sock.close()


def test_a_ping_is_answered_after_the_frame_being_written(attached):
    client, _, _, peer = attached
    publish(client, 3, size=6000)  # the first frame cannot be written whole at once
    peer.send(OPCODE_PING, b"are you there")
    frames = [peer.read_frame() for _ in range(2)]
    while frames[-1][0] != OPCODE_PONG:
        frames.append(peer.read_frame())
    assert frames[-1] == (OPCODE_PONG, b"are you there")
    for opcode, payload in frames[:-1]:  # whole frames before it, none cut by the pong
        assert opcode == OPCODE_TEXT
        json.loads(payload)


def test_a_client_close_is_answered_and_the_listener_detached(attached):
    client, conn_id, outbox, peer = attached
    peer.send(OPCODE_CLOSE, struct.pack("!H", 4000))
    opcode, payload = peer.read_frame()
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (OPCODE_CLOSE, 4000)
    assert peer.read_until_closed() == b""
    with gevent.Timeout(WAIT):
        while client.node.listener_count():
            gevent.sleep(0.01)
    assert outbox.close_code == 1000
    assert conn_id in client.node.state.connections  # the connection stays for a re-attach


def test_a_server_close_sends_the_code_then_ends(attached):
    client, _, outbox, peer = attached
    outbox.close(CloseCode.TOO_SLOW)
    opcode, payload = peer.read_frame()
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (OPCODE_CLOSE, 4002)
    peer.sock.close()  # the client goes: the listener is released
    with gevent.Timeout(WAIT):
        while client.node.listener_count():
            gevent.sleep(0.01)


def wait_until(condition: Any) -> None:
    with gevent.Timeout(WAIT):
        while not condition():
            gevent.sleep(0.01)


def unread(sock: socket.socket) -> int:
    """Bytes received by `sock` that nobody has read yet."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


@pytest.fixture
def stuck(make_client: Any) -> Iterator[tuple[ApiClient, Any, Peer, socket.socket]]:
    """A listener (max_queued_frames 20) whose socket is full: the client reads nothing."""
    client = make_client(max_queued_frames=20)
    _, outbox, peer, server_end = listen_on_socketpair(client)
    publish(client, 10, size=6000)  # far more than the socket buffers hold
    yield client, outbox, peer, server_end
    peer.sock.close()


def test_pings_while_the_client_reads_nothing_get_one_pong_for_the_latest(stuck):
    client, outbox, peer, server_end = stuck
    for index in range(20):
        peer.send(OPCODE_PING, b"ping %d" % index)
    wait_until(lambda: unread(server_end) == 0)  # the server has read every ping
    frames = [peer.read_frame()]
    while frames[-1][0] != OPCODE_PONG:
        frames.append(peer.read_frame())
    assert frames[-1] == (OPCODE_PONG, b"ping 19")  # the earlier ones were never queued
    received = sum(len(json.loads(payload)) for _, payload in frames[:-1])
    peer.read_messages(10 - received)  # the rest of the backlog, and no other pong
    publish(client, 1)
    assert peer.read_messages(1)[0]["message"]["i"] == 0
    assert outbox.close_code is None


def test_a_client_that_pings_nonstop_and_reads_nothing_is_closed_4002(stuck):
    _, outbox, peer, server_end = stuck
    for _ in range(20):  # max_queued_frames pings: still within the limit
        peer.send(OPCODE_PING, b"x" * 125)
    wait_until(lambda: unread(server_end) == 0)
    assert outbox.close_code is None
    peer.send(OPCODE_PING, b"x" * 125)  # one more
    wait_until(lambda: outbox.close_code is not None)
    assert outbox.close_code == CloseCode.TOO_SLOW


def test_max_queued_frames_counts_frames_however_they_were_pushed(make_client: Any) -> None:
    """A reader that reads nothing gets 4002 once more than max_queued_frames frames wait, be
    they pushed one by one or a call's messages together."""
    client = make_client(max_queued_frames=20)
    _, outbox, peer, _ = listen_on_socketpair(client)
    publish(client, 10, size=6000)  # fills the socket buffers; the rest waits in the outbox
    waiting = len(outbox)
    assert 0 < waiting < 20
    batch = [{"channel": "room", "user": "bob", "message": {"i": i}} for i in range(20 - waiting)]
    client.publish(*batch)  # exactly up to the limit, in one push
    assert len(outbox) == 20 and outbox.close_code is None
    client.publish({"channel": "room", "user": "bob", "message": {"i": "over"}})
    assert outbox.close_code == CloseCode.TOO_SLOW
    assert outbox.discarded == 20
    assert client.node.frames_discarded == 21
    peer.sock.close()
