"""`POST /user_disconnect` and the admin panel's `/admin/user_disconnect`: every connection of
the named users ends, their listeners close with 4003 and the reason."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from channelstream.close_codes import CloseCode
from channelstream.transport.frames import OPCODE_CLOSE
from channelstream.transport.sse import close_event
from channelstream.transport.websocket import close_reason
from tests.functional.conftest import ApiClient
from tests.functional.test_admin import SAME_ORIGIN, call
from tests.functional.test_websocket_listener import listen_on_socketpair


def test_every_connection_of_the_users_ends_and_the_counts_are_answered(
    client: ApiClient,
) -> None:
    alice = [client.connect("alice", channels=["room"])["conn_id"] for _ in range(2)]
    bob = client.connect("bob", channels=["room"])["conn_id"]

    body = client.post("/user_disconnect", {"users": ["alice", "nobody"], "reason": "x"}).json

    assert body == {"disconnected": {"alice": 2, "nobody": 0}}
    assert set(client.node.state.connections) == {bob}
    assert not set(alice) & set(client.node.state.connections)
    assert client.info()["channels"]["room"]["users"] == ["bob"]


def test_listeners_close_with_4003_and_the_reason_and_presence_parts(
    client: ApiClient,
) -> None:
    configs = {"room": {"notify_presence": True}}
    bob = client.connect("bob", channels=["room"], channel_configs=configs)["conn_id"]
    alice = client.connect("alice", channels=["room"])["conn_id"]
    outboxes = [client.node.attach(alice, kind) for kind in ("ws", "sse", "poll")]
    watcher = client.node.attach(bob, "ws")
    watcher.take()

    client.post("/user_disconnect", {"users": ["alice"], "reason": "logout"})

    assert [(o.close_code, o.close_reason) for o in outboxes] == [
        (CloseCode.USER_DISCONNECTED, "logout")
    ] * 3
    assert watcher.close_code is None
    text = watcher.take()
    assert text is not None and '"action":"parted"' in text and '"user":"alice"' in text
    assert client.get(f"/listen?conn_id={alice}", status=401).json == {
        "conn_id": ["Unknown connection"]
    }


def test_a_websocket_gets_the_reason_as_close_frame_text(client: ApiClient) -> None:
    conn_id, _, peer, _ = listen_on_socketpair(client)
    try:
        client.post("/user_disconnect", {"users": ["alice"], "reason": "logged out"})

        opcode, payload = peer.read_frame()
        assert opcode == OPCODE_CLOSE
        assert struct.unpack("!H", payload[:2])[0] == 4003
        assert payload[2:] == b"logged out"
        assert conn_id not in client.node.state.connections
    finally:
        peer.sock.close()


def test_the_sse_close_event_carries_the_reason_on_a_second_line() -> None:
    assert close_event(4003, "bye") == b"event: close\ndata: 4003\ndata: bye\n\n"
    assert close_event(4001) == b"event: close\ndata: 4001\n\n"


def test_a_long_reason_is_cut_to_123_bytes_on_a_character_boundary() -> None:
    reason = close_reason(CloseCode.USER_DISCONNECTED, "é" * 100)
    assert len(reason) == 122 and reason.decode() == "é" * 61
    assert close_reason(CloseCode.USER_DISCONNECTED, "") == b"user_disconnected"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "users"),
        ({"users": []}, "users"),
        ({"users": [""]}, "users"),
        ({"users": ["a"], "reason": "x" * 124}, "reason"),
        ({"users": ["a"], "reason": "two\nlines"}, "reason"),
    ],
)
def test_the_body_is_validated(client: ApiClient, body: dict[str, Any], field: str) -> None:
    response = client.post("/user_disconnect", body, status=422)
    assert list(response.json) == [field]


def test_it_needs_a_signature(client: ApiClient) -> None:
    client.call("POST", "/user_disconnect", {"users": ["a"]}, signed=False, status=403)


def test_the_admin_panel_disconnects_a_user(admin_client: ApiClient) -> None:
    admin_client.connect("dave", channels=["room"])

    response = call(
        admin_client,
        "POST",
        "/admin/user_disconnect",
        {"users": ["dave"]},
        signed=False,
        headers=SAME_ORIGIN,
    )

    assert response.json == {"disconnected": {"dave": 1}}
    assert admin_client.node.connections() == []


def test_the_admin_action_is_refused_from_another_origin(admin_client: ApiClient) -> None:
    admin_client.connect("dave", channels=["room"])

    call(
        admin_client,
        "POST",
        "/admin/user_disconnect",
        {"users": ["dave"]},
        signed=False,
        headers={"Origin": "http://evil.example"},
        status=403,
    )

    assert len(admin_client.node.connections()) == 1
