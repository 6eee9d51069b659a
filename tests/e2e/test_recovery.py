"""Positions, recovery and presence_grace on a real server with real clients (API.md §4.2):
a client away past gc_conns_after recovers what it missed; past catchup_size it gets a gap;
a restarted memory broker is a new epoch; closed websockets, SSE streams and abandoned long
polls part within presence_grace (plus the one-second sweep); a re-attach joins again."""

from __future__ import annotations

import pytest

from channelstream.client import ChannelstreamClient
from tests.e2e.apiclient import ApiClient, has_text, is_presence
from tests.e2e.sseclient import SseListener

SECRET = "e2e-recovery-secret"
GC_CONNS_AFTER = 3
PRESENCE_GRACE = 1
WAKE = 1  # wake_connections_after: a long poll answers [] after this
SWEEP = 1  # the chores loop
PARTS_WITHIN = PRESENCE_GRACE + SWEEP + 3  # a generous bound for a loaded machine


@pytest.fixture(scope="module")
def server(start_module_server):
    return start_module_server(
        settings={
            "secret": SECRET,
            "gc_conns_after": GC_CONNS_AFTER,
            "presence_grace": PRESENCE_GRACE,
            "wake_connections_after": WAKE,
        }
    )


@pytest.fixture
def api(server):
    return ApiClient(server.base_url, SECRET)


@pytest.fixture
def client(server):
    with ChannelstreamClient(server.base_url, SECRET, timeout=5) as client:
        yield client


def text(n: int) -> dict[str, str]:
    return {"text": f"m{n}"}


def last_seq(messages: list[dict]) -> int:
    return max(m["seq"] for m in messages if "seq" in m)


def wait_gone(api: ApiClient, server, conn_id: str) -> None:
    """Wait until the server collected the connection (its GC logs the conn_ids it ended);
    probing with a listener would keep it alive."""

    def collected() -> bool:
        lines = server.log_text().splitlines()
        return any("connections ended" in line and conn_id in line for line in lines)

    api.wait_until(collected, timeout=GC_CONNS_AFTER + 6, what=f"{conn_id} collected")


def test_away_past_gc_conns_after_recover_gets_what_was_missed(api, server, client, listen, names):
    room, alice = names("room"), names("alice")
    answer = client.connect(alice, [room])
    ws = listen(answer["conn_id"])
    client.message("bob", text(1), channel=room)
    ws.wait_for(has_text("m1"))
    position = {"epoch": answer["epoch"], "seq": last_seq(ws.messages)}
    ws.close()
    for n in (2, 3):
        client.message("bob", text(n), channel=room)
    client.message("bob", text(4), pm_users=[alice])
    wait_gone(api, server, answer["conn_id"])

    again = client.connect(alice, [room], recover=position)
    back = listen(again["conn_id"])
    got = back.wait_for(has_text("m4"))

    assert again["recovered"] is True and again["epoch"] == answer["epoch"]
    assert [m["message"] for m in back.messages if m["type"] == "message"] == [
        text(2),
        text(3),
        text(4),
    ]
    assert got["catchup"] is True and got["seq"] > position["seq"]


def test_away_past_catchup_size_gets_a_gap_before_the_catchup(api, client, listen, names):
    room, alice = names("room"), names("alice")
    answer = client.connect(alice, [room], channel_configs={room: {"catchup_size": 2}})
    ws = listen(answer["conn_id"])
    client.message("bob", text(0), channel=room)
    ws.wait_for(has_text("m0"))
    position = {"epoch": answer["epoch"], "seq": last_seq(ws.messages)}
    ws.close()
    client.messages([{"channel": room, "user": "bob", "message": text(n)} for n in range(1, 6)])

    again = client.connect(alice, [room], recover=position)
    back = listen(again["conn_id"])
    back.wait_for(has_text("m5"))

    assert again["recovered"] is False
    gap, *rest = back.messages
    assert (gap["type"], gap["channel"], gap["seq"]) == ("gap", room, position["seq"])
    assert [m["message"] for m in rest] == [text(4), text(5)]
    # what history kept of the loss, from the gap's position
    lost = client.history(room, since_seq=gap["seq"])
    assert lost["messages"] == [] and lost["epoch"] == answer["epoch"]  # no store_history


def test_history_through_the_python_client(client, names):
    room = names("room")
    client.channel_config({room: {"store_history": True, "history_size": 10}})
    sent = [client.message("bob", text(n), channel=room) for n in range(3)]

    page = client.history(room, limit=2, reverse=True)

    assert [m["uuid"] for m in page["messages"]] == [sent[2]["uuid"], sent[1]["uuid"]]
    assert page["has_more"] is True


def test_a_restarted_memory_broker_is_a_new_epoch(start_server, listeners):
    from tests.e2e.apiclient import WsListener

    first = start_server(settings={"secret": SECRET})
    with ChannelstreamClient(first.base_url, SECRET, timeout=5) as client:
        old = client.connect("alice", ["room"])
    first.stop()
    second = start_server(settings={"secret": SECRET})
    with ChannelstreamClient(second.base_url, SECRET, timeout=5) as client:
        client.connect("bob", ["room"])
        client.message("bob", text(1), channel="room")
        new = client.connect("alice", ["room"], recover={"epoch": old["epoch"], "seq": 5})
    ws = WsListener.open(second.ws_url, new["conn_id"])
    listeners.append(ws)
    ws.wait_for(has_text("m1"))

    assert new["epoch"] != old["epoch"] and new["recovered"] is False
    gaps = [(m["channel"], m["seq"]) for m in ws.messages if m["type"] == "gap"]
    assert gaps == [("room", 0), (None, 0)]


# ---------------------------------------------------------------------------- presence_grace


def watched_room(api: ApiClient, listen, names):
    room, bob = names("room"), names("bob")
    watcher = listen(api.connect(bob, channels=[room], notify_presence=True))
    return room, watcher


def test_a_closed_websocket_parts_within_presence_grace_and_a_reattach_joins_again(
    api, listen, names
):
    room, watcher = watched_room(api, listen, names)
    alice = names("alice")
    conn_id = api.connect(alice, channels=[room])
    ws = listen(conn_id)
    watcher.wait_for(is_presence(alice, "joined"))

    ws.close()
    watcher.wait_for(is_presence(alice, "parted"), timeout=PARTS_WITHIN)
    assert api.info()["channels"][room]["users"] == [names("bob")]
    api.publish({"channel": room, "user": "bob", "message": {"text": "while parted"}})

    back = listen(conn_id)  # within gc_conns_after: the same connection
    missed = back.wait_for(has_text("while parted"))
    watcher.wait_for(is_presence(alice, "joined"))
    assert missed["catchup"] is True
    assert sorted(api.info()["channels"][room]["users"]) == sorted([alice, names("bob")])


def test_a_closed_sse_stream_parts_within_presence_grace(api, server, listen, names):
    room, watcher = watched_room(api, listen, names)
    alice = names("alice")
    stream = SseListener.open(server.base_url, api.connect(alice, channels=[room]))
    try:
        stream.next_event()
        watcher.wait_for(is_presence(alice, "joined"))
    finally:
        stream.close()

    watcher.wait_for(is_presence(alice, "parted"), timeout=PARTS_WITHIN)


def test_an_abandoned_long_poll_parts_within_presence_grace(api, listen, names):
    room, watcher = watched_room(api, listen, names)
    alice = names("alice")
    conn_id = api.connect(alice, channels=[room])
    watcher.wait_for(is_presence(alice, "joined"))
    assert api.listen(conn_id).status == 200  # one poll, answered [] after WAKE, then none

    watcher.wait_for(is_presence(alice, "parted"), timeout=PARTS_WITHIN)


def test_a_client_that_keeps_polling_stays_present(api, listen, names):
    room, watcher = watched_room(api, listen, names)
    alice = names("alice")
    conn_id = api.connect(alice, channels=[room])
    for _ in range(3 * (PRESENCE_GRACE + SWEEP)):  # polls of WAKE seconds, one after another
        assert api.listen(conn_id).status == 200

    watcher.sync()
    assert not [m for m in watcher.messages if is_presence(alice, "parted")(m)]
    assert alice in api.info()["channels"][room]["users"]
