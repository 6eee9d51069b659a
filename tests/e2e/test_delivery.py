"""Message delivery through a real server: websocket frames, presence, private and direct
messages, catchup and long polling (reference §2, §3; API.md F6, F14, F17).

One server is shared by the module; every test uses its own users and channels.
"""

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.apiclient import ApiClient, has_text, is_presence, wait_for_log

SECRET = "e2e-delivery-secret"
# 0.7.1's keys, and `seq` (its position, added in 0.8)
FRAME_KEYS = {"channel", "uuid", "timestamp", "user", "message", "edited", "catchup", "type", "seq"}
NAIVE_UTC_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?$")


@pytest.fixture(scope="module")
def server(start_module_server):
    return start_module_server(settings={"secret": SECRET})


@pytest.fixture
def api(server):
    return ApiClient(server.base_url, SECRET)


def text_message(channel, text, user="sender", **extra):
    return {"channel": channel, "user": user, "message": {"text": text}, **extra}


def test_published_message_reaches_the_websocket(api, listen, names):
    room = names("room")
    conn_id = api.connect(names("alice"), channels=[room])
    ws = listen(conn_id)
    [accepted] = api.publish(text_message(room, "hello", user="bob"))

    message = ws.wait_for(has_text("hello"))

    assert set(message) == FRAME_KEYS
    assert message == {
        "channel": room,
        "uuid": accepted["uuid"],
        "timestamp": accepted["timestamp"],
        "user": "bob",
        "message": {"text": "hello"},
        "edited": None,
        "catchup": False,
        "type": "message",
        "seq": message["seq"],
    }
    assert isinstance(message["seq"], int) and message["seq"] > 0
    assert NAIVE_UTC_ISO.match(message["timestamp"]), message["timestamp"]
    text = next(raw for raw in ws.raw_texts if "hello" in raw)
    assert text.startswith("[") and text.endswith("]")
    assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def test_presence_joined_and_parted(api, listen, names):
    room, alice, bob = names("room"), names("alice"), names("bob")
    ws_alice = listen(api.connect(alice, channels=[room], notify_presence=True))
    bob_conn = api.connect(bob, channels=[room])
    joined = ws_alice.wait_for(is_presence(bob, "joined"))
    assert joined["channel"] == room
    assert joined["catchup"] is False

    ws_bob = listen(bob_conn)
    api.publish(text_message(room, "marker"))
    ws_bob.wait_for(has_text("marker"))
    assert [m for m in ws_bob.messages if m.get("type") == "presence"] == []

    assert api.disconnect(bob_conn).json is True
    parted = ws_alice.wait_for(is_presence(bob, "parted"), timeout=1.0)
    assert parted["channel"] == room
    assert parted["state"] is None


def test_pm_users_and_exclude_users_on_a_channel(api, listen, names):
    room = names("room")
    alice, bob, carol = names("alice"), names("bob"), names("carol")
    ws = {user: listen(api.connect(user, channels=[room])) for user in (alice, bob, carol)}

    api.publish(
        text_message(room, "for bob", pm_users=[bob]),
        text_message(room, "for carol", pm_users=[bob, carol], exclude_users=[bob]),
        text_message(room, "not alice", exclude_users=[alice]),
        text_message(room, "marker"),
    )

    for user in (alice, bob, carol):
        ws[user].wait_for(has_text("marker"))
    received = {user: [m["message"]["text"] for m in ws[user].messages] for user in ws}
    assert received[alice] == ["marker"]
    assert received[bob] == ["for bob", "not alice", "marker"]  # exclude wins over pm
    assert received[carol] == ["for carol", "not alice", "marker"]
    private = next(m for m in ws[bob].messages if m["message"]["text"] == "for bob")
    assert private["channel"] == room
    assert set(private) == FRAME_KEYS  # pm_users/exclude_users are not delivered


def test_direct_message_reaches_every_connection_of_the_user(api, listen, names):
    dave, erin = names("dave"), names("erin")
    dave_first = listen(api.connect(dave, channels=[names("dave-room")]))
    dave_second = listen(api.connect(dave))  # no channels at all
    erin_ws = listen(api.connect(erin, channels=[names("erin-room")]))

    api.publish(
        {"user": "system", "pm_users": [dave], "message": {"text": "psst"}},
        {"user": "system", "pm_users": [dave, erin], "message": {"text": "marker"}},
    )

    for ws in (dave_first, dave_second):
        message = ws.wait_for(has_text("psst"))
        assert message["channel"] is None
        assert message["type"] == "message"
        assert message["catchup"] is False
    erin_ws.wait_for(has_text("marker"))
    assert [m["message"]["text"] for m in erin_ws.messages] == ["marker"]


def test_messages_sent_before_the_socket_attaches_arrive_as_catchup(api, listen, names):
    room = names("room")
    conn_id = api.connect(names("alice"), channels=[room])
    api.publish(text_message(room, "early 1"), text_message(room, "early 2"))

    ws = listen(conn_id)
    api.publish(text_message(room, "live"))
    ws.wait_for(has_text("live"))

    assert [(m["message"]["text"], m["catchup"]) for m in ws.messages] == [
        ("early 1", True),
        ("early 2", True),
        ("live", False),
    ]
    assert all(set(m) == FRAME_KEYS for m in ws.messages)


def test_long_poll_receives_live_and_catchup_messages(server, api, names):
    room = names("room")
    conn_id = api.connect(names("alice"), channels=[room])
    waiting = f"long poll waiting: connection {conn_id}"

    with ThreadPoolExecutor(max_workers=1) as pool:
        poll = pool.submit(api.listen, conn_id)
        wait_for_log(server.log_text, waiting)
        api.publish(text_message(room, "while waiting"))
        first = poll.result(timeout=10)

    assert first.status == 200
    assert first.content_type.startswith("application/json")
    assert [(m["message"]["text"], m["catchup"]) for m in first.json] == [("while waiting", False)]
    assert set(first.json[0]) == FRAME_KEYS

    api.publish(text_message(room, "between polls"))
    second = api.listen(conn_id)
    assert second.status == 200
    assert second.content_type.startswith("application/json")
    assert [(m["message"]["text"], m["catchup"]) for m in second.json] == [("between polls", True)]


def test_disconnect_closes_the_socket_with_1000(api, listen, names):
    conn_id = api.connect(names("alice"), channels=[names("room")])
    ws = listen(conn_id)

    assert api.disconnect(conn_id).json is True

    assert ws.wait_closed(timeout=1.0) == 1000
    after = api.listen(conn_id)  # fix F17: the connection is gone for good
    assert after.status == 401
    assert after.json == {"conn_id": ["Unknown connection"]}


def test_disconnect_ends_a_pending_long_poll(server, api, names):
    conn_id = api.connect(names("alice"), channels=[names("room")])
    with ThreadPoolExecutor(max_workers=1) as pool:
        poll = pool.submit(api.listen, conn_id)
        wait_for_log(server.log_text, f"long poll waiting: connection {conn_id}")
        assert api.disconnect(conn_id).json is True
        ended = poll.result(timeout=2.0)  # well before wake_connections_after (5 s)

    assert ended.status == 401  # fix F17: the unknown-connection answer, not a 500
    assert ended.content_type.startswith("application/json")
    assert ended.json == {"conn_id": ["Unknown connection"]}
