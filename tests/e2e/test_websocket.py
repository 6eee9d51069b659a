"""The `/ws` endpoint's lifecycle against a real server: handshake refusals, close codes,
client frames, allowed origins, re-attaching and garbage collection (API.md F7, F8, F12, F13,
§3 close codes).
"""

import uuid

import pytest
import websocket

from tests.e2e.apiclient import ApiClient, WsListener, has_text, is_presence

SECRET = "e2e-websocket-secret"
MAX_MESSAGE_SIZE = 4096
GC_CONNS_AFTER = 2
GOOD_ORIGIN = "http://good.example"


@pytest.fixture(scope="module")
def server(start_module_server):
    """Short connection GC and a small frame limit; any origin (allow_cors empty)."""
    return start_module_server(
        settings={
            "secret": SECRET,
            "gc_conns_after": GC_CONNS_AFTER,
            "max_message_size": MAX_MESSAGE_SIZE,
        }
    )


@pytest.fixture
def api(server):
    return ApiClient(server.base_url, SECRET)


def test_unknown_conn_id_is_accepted_then_closed_with_4001(server, listen):
    ws = listen(str(uuid.uuid4()), sync=False)
    assert ws.ws.getstatus() == 101
    assert ws.wait_closed(timeout=2.0) == 4001
    assert ws.messages == []


@pytest.mark.parametrize("query", ["", "?conn_id=", "?conn_id=not-a-uuid", "?other=1"])
def test_missing_or_malformed_conn_id_fails_the_handshake_with_422(server, query):
    with pytest.raises(websocket.WebSocketBadStatusException) as error:
        websocket.create_connection(server.ws_url + query, timeout=5)
    assert error.value.status_code == 422


def test_oversized_client_frame_is_closed_with_1009(api, listen, names):
    ws = listen(api.connect(names("alice"), channels=[names("room")]))
    ws.ws.send("x" * (MAX_MESSAGE_SIZE + 1))
    assert ws.wait_closed(timeout=2.0) == 1009


def test_ordinary_client_frames_keep_the_socket_and_are_ignored(api, listen, names):
    room = names("room")
    ws = listen(api.connect(names("alice"), channels=[room]))
    ws.send_json({"type": "heartbeat"})
    ws.ws.send("x" * MAX_MESSAGE_SIZE)  # exactly the limit is fine
    ws.send_json({"type": "heartbeat"})
    ws.sync()  # the server read our frames before this pong

    api.publish({"channel": room, "user": "bob", "message": {"text": "still here"}})
    ws.wait_for(has_text("still here"))
    assert [m["message"] for m in ws.messages] == [{"text": "still here"}]


def test_closed_socket_can_reattach_then_the_connection_is_collected(api, listen, names):
    room, xavier, yvonne = names("room"), names("xavier"), names("yvonne")
    x_conn = api.connect(xavier, channels=[room], notify_presence=True)
    x_ws = listen(x_conn)
    y_ws = listen(api.connect(yvonne, channels=[room]))

    # The client closes its socket: the connection stays, and messages keep being stored.
    x_ws.close()
    api.publish({"channel": room, "user": "bob", "message": {"text": "while away"}})
    x_again = listen(x_conn)  # within gc_conns_after
    missed = x_again.wait_for(has_text("while away"))
    assert missed["catchup"] is True

    # Closed again and left alone: collected after gc_conns_after, and yvonne sees "parted".
    x_again.close()

    def xavier_gone():
        channel = api.info()["channels"].get(room)
        return channel is not None and channel["users"] == [yvonne]

    api.wait_until(xavier_gone, timeout=GC_CONNS_AFTER + 5, what=f"{xavier} collected")
    parted = y_ws.wait_for(is_presence(xavier, "parted"), timeout=2.0)
    assert parted["channel"] == room
    assert listen(x_conn, sync=False).wait_closed(timeout=2.0) == 4001

    # Yvonne's silent but open socket has outlived gc_conns_after: it is not collected (F7).
    api.publish({"channel": room, "user": "bob", "message": {"text": "yvonne?"}})
    assert y_ws.wait_for(has_text("yvonne?"))["catchup"] is False


@pytest.fixture(scope="module")
def cors_server(start_module_server):
    return start_module_server(settings={"secret": SECRET, "allow_cors": GOOD_ORIGIN})


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "http://good.example.evil.example", "https://good.example"]
)
def test_websocket_from_an_origin_not_allowed_is_closed_with_1008(cors_server, listeners, origin):
    api = ApiClient(cors_server.base_url, SECRET)
    conn_id = api.connect(f"alice-{uuid.uuid4().hex[:8]}", channels=["room"])
    ws = WsListener.open(cors_server.ws_url, conn_id, origin=origin, sync=False)
    listeners.append(ws)
    assert ws.wait_closed(timeout=2.0) == 1008


def test_websocket_from_an_allowed_origin_works(cors_server, listeners):
    api = ApiClient(cors_server.base_url, SECRET)
    room = f"room-{uuid.uuid4().hex[:8]}"
    conn_id = api.connect(f"alice-{uuid.uuid4().hex[:8]}", channels=[room])
    ws = WsListener.open(cors_server.ws_url, conn_id, origin=GOOD_ORIGIN)
    listeners.append(ws)
    api.publish({"channel": room, "user": "bob", "message": {"text": "welcome"}})
    assert ws.wait_for(has_text("welcome"))["catchup"] is False
