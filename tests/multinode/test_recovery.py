"""Positions across a Redis cluster: one epoch on every node, recover on another node than
the one the client left, an idempotency key published concurrently on two nodes delivered
once, and presence_grace parting a closed websocket for the observers of both nodes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.e2e.apiclient import is_presence
from tests.multinode.helpers import is_marker, marker, texts_in, unique

GC = {"gc_conns_after": 3, "presence_grace": 1}
PARTS_WITHIN = 1 + 1 + 4  # presence_grace, the leader's sweep, slack for a loaded machine


def test_every_node_has_the_same_epoch_and_recover_works_on_the_other_node(start_node, listeners):
    a, b = start_node(**GC), start_node(**GC)
    room, alice = unique("room"), unique("alice")
    left = a.api.ok("/connect", {"username": alice, "channels": [room]})
    ws = listeners(a, left["conn_id"])
    a.api.publish({"channel": room, "user": "bob", "message": {"text": "seen"}})
    seen = ws.wait_for(lambda m: m.get("message") == {"text": "seen"}, timeout=10)
    ws.close()
    b.api.publish({"channel": room, "user": "bob", "message": {"text": "missed"}})

    came_back = b.api.ok(
        "/connect",
        {
            "username": alice,
            "channels": [room],
            "recover": {"epoch": left["epoch"], "seq": seen["seq"]},
        },
    )
    back = listeners(b, came_back["conn_id"])
    b.api.publish(marker(room))
    back.wait_for(is_marker(room), timeout=10)

    assert came_back["epoch"] == left["epoch"] and came_back["recovered"] is True
    assert texts_in(back.messages, room) == ["missed"]
    history = a.api.ok("/history", {"channel": room})
    assert history["epoch"] == left["epoch"]


def test_one_idempotency_key_published_concurrently_on_two_nodes_is_delivered_once(
    start_node, listeners
):
    a, b = start_node(), start_node()
    room = unique("room")
    ws = listeners(a, a.api.connect(unique("alice"), [room]))
    items = [
        {
            "channel": room,
            "user": "bob",
            "message": {"text": f"from {name}"},
            "idempotency_key": "k",
        }
        for name in ("a", "b")
    ]

    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(lambda pair: pair[0].api.publish(pair[1]), zip((a, b), items, strict=True))
        )
    a.api.publish(marker(room))
    ws.wait_for(is_marker(room), timeout=10)

    [first], [second] = answers
    assert first == second  # both answered with the message applied first
    assert texts_in(ws.messages, room) == [first["message"]["text"]]


def test_a_closed_websocket_parts_for_the_observers_of_both_nodes(start_node, listeners):
    a, b = start_node(**GC), start_node(**GC)
    room, alice = unique("room"), unique("alice")
    config = {"channel_configs": {room: {"notify_presence": True}}}
    observers = [
        listeners(node, node.api.connect(unique("observer"), [room], **config)) for node in (a, b)
    ]
    conn_id = b.api.connect(alice, [room], **config)
    ws = listeners(b, conn_id)
    for observer in observers:
        observer.wait_for(is_presence(alice, "joined"), timeout=10)

    ws.close()
    for observer in observers:
        observer.wait_for(is_presence(alice, "parted"), timeout=PARTS_WITHIN)

    listeners(a, conn_id)  # re-attached on the other node, within gc_conns_after
    for observer in observers:
        observer.wait_for(is_presence(alice, "joined"), timeout=10)
