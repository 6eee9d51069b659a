"""`GET /sse` against a real server: the same JSON arrays as `/ws` in `data:` events,
heartbeats, catchup on attach, and the close/expiry rules of `/ws` (API.md §3)."""

import socket
import uuid

import pytest

from tests.e2e.apiclient import (
    ApiClient,
    WsListener,
    has_text,
    http_request,
    is_presence,
    wait_for_log,
)
from tests.e2e.sseclient import SseListener

SECRET = "e2e-sse-secret"
GC_CONNS_AFTER = 2
HEARTBEAT_INTERVAL = 1


@pytest.fixture(scope="module")
def server(start_module_server):
    return start_module_server(
        settings={
            "secret": SECRET,
            "gc_conns_after": GC_CONNS_AFTER,
            "heartbeat_interval": HEARTBEAT_INTERVAL,
        }
    )


@pytest.fixture
def api(server):
    return ApiClient(server.base_url, SECRET)


@pytest.fixture
def streams(server):
    opened = []

    def open_stream(conn_id):
        stream = SseListener.open(server.base_url, conn_id)
        opened.append(stream)
        return stream

    yield open_stream
    for stream in opened:
        stream.close()


def test_stream_headers_and_a_message_as_a_json_array(api, streams, names):
    room = names("room")
    sse = streams(api.connect(names("alice"), channels=[room]))
    assert sse.status == 200
    assert sse.header("Content-Type").startswith("text/event-stream")
    assert sse.header("Cache-Control") == "no-cache"
    assert sse.header("X-Accel-Buffering") == "no"
    assert sse.header("Access-Control-Allow-Origin") == "*"
    api.publish({"channel": room, "user": "bob", "message": {"text": "hello"}})
    message = sse.wait_for(has_text("hello"))
    assert message["type"] == "message"
    assert message["channel"] == room
    assert message["user"] == "bob"
    assert message["catchup"] is False


def test_messages_sent_before_attaching_arrive_as_catchup(api, streams, names):
    room = names("room")
    conn_id = api.connect(names("alice"), channels=[room])
    api.publish({"channel": room, "user": "bob", "message": {"text": "early"}})
    sse = streams(conn_id)
    assert sse.wait_for(has_text("early"))["catchup"] is True


def test_heartbeats_are_empty_arrays_and_keep_the_connection(api, streams, names):
    room = names("room")
    sse = streams(api.connect(names("alice"), channels=[room]))
    heartbeats = 0
    # more than gc_conns_after seconds of heartbeats: a listened connection is never collected
    while heartbeats < GC_CONNS_AFTER / HEARTBEAT_INTERVAL + 2:
        event = sse.next_event(timeout=HEARTBEAT_INTERVAL * 3)
        assert event is not None and event.event == "message"
        if event.data == "[]":
            heartbeats += 1
    api.publish({"channel": room, "user": "bob", "message": {"text": "still here"}})
    sse.wait_for(has_text("still here"))


def test_unknown_conn_id_gets_a_close_event_4001_and_the_stream_ends(streams):
    sse = streams(str(uuid.uuid4()))
    assert sse.status == 200
    assert sse.wait_closed() == 4001


@pytest.mark.parametrize("query", ["", "?conn_id=", "?conn_id=not-a-uuid"])
def test_missing_or_malformed_conn_id_is_422_json_before_streaming(server, query):
    result = http_request(server.base_url + "/sse" + query)
    assert result.status == 422
    assert result.content_type.startswith("application/json")
    assert "conn_id" in result.json


def test_disconnect_closes_the_stream_with_1000(api, streams, names):
    conn_id = api.connect(names("alice"), channels=[names("room")])
    sse = streams(conn_id)
    sse.next_event()  # attached: the first heartbeat arrived
    assert api.disconnect(conn_id).json is True
    assert sse.wait_closed() == 1000


def test_a_client_that_goes_away_is_detached_and_its_connection_collected(
    api, server, streams, names
):
    room = names("room")
    alice, bob = names("alice"), names("bob")
    bob_conn = api.connect(bob, channels=[room], notify_presence=True)
    watcher = WsListener.open(server.ws_url, bob_conn)
    try:
        sse = streams(api.connect(alice, channels=[room], notify_presence=True))
        watcher.wait_for(is_presence(alice, "joined"))
        sse.next_event()
        sse.close()
        # the next heartbeat write fails, the listener is detached, and GC parts alice
        watcher.wait_for(is_presence(alice, "parted"), timeout=GC_CONNS_AFTER + 5)
    finally:
        watcher.close()


def test_reattaching_catches_up_on_what_was_missed(api, server, streams, names):
    room = names("room")
    conn_id = api.connect(names("alice"), channels=[room])
    first = streams(conn_id)
    api.publish({"channel": room, "user": "bob", "message": {"text": "one"}})
    first.wait_for(has_text("one"))
    first.close()
    # noticed at the next heartbeat write; until then "one" is not known to be served
    wait_for_log(server.log_text, f"sse closed: connection {conn_id}", timeout=5)
    api.publish({"channel": room, "user": "bob", "message": {"text": "two"}})
    second = streams(conn_id)
    assert second.wait_for(has_text("two"))["catchup"] is True
    assert not any(m.get("message") == {"text": "one"} for m in second.messages)


def test_server_shutdown_closes_streams_with_1001(start_server):
    server = start_server(settings={"secret": SECRET})
    api = ApiClient(server.base_url, SECRET)
    sse = SseListener.open(server.base_url, api.connect("alice", channels=["room"]))
    try:
        api.publish({"channel": "room", "user": "bob", "message": {"text": "hi"}})
        sse.wait_for(has_text("hi"))
        server.process.terminate()
        assert sse.wait_closed(timeout=10) == 1001
    finally:
        sse.close()


def test_a_stream_that_is_not_read_is_closed_4002_and_cut(start_server):
    """A client that stops reading: frames pile up, the listener is closed with 4002 (too
    slow), and the writer stuck on the full socket is cut after the grace period."""
    server = start_server(settings={"secret": SECRET, "max_queued_frames": 5})
    api = ApiClient(server.base_url, SECRET)
    conn_id = api.connect("alice", channels=["room"])
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET /sse?conn_id={conn_id} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        wait_for_log(server.log_text, f"sse opened: connection {conn_id}")
        big = "x" * 500_000
        for n in range(40):  # far more than the socket buffers hold
            api.publish({"channel": "room", "user": "bob", "message": {"n": n, "pad": big}})
        wait_for_log(server.log_text, f"sse closed: connection {conn_id} (code 4002)", timeout=15)
