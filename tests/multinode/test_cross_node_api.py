"""A connection made through one node is served and managed through any other: its socket
attaches elsewhere with the catchup, and /subscribe, /unsubscribe and /disconnect work through
a node that neither made it nor holds its socket."""

from __future__ import annotations

from tests.e2e.apiclient import has_text
from tests.multinode.helpers import is_marker, marker, text, texts_in, unique


def test_connect_on_one_node_attach_and_manage_on_another(start_node, listeners):
    a, b = start_node(), start_node()
    room, other_room = unique("room"), unique("other")
    user = unique("u")
    conn_id = a.api.connect(user, channels=[room])

    # Published before any socket is attached, through both nodes: catchup on B.
    a.api.publish(text(room, "before-1"))
    b.api.publish(text(room, "before-2"))
    ws = listeners(b, conn_id)
    ws.wait_for(has_text("before-2"), timeout=5)
    a.api.publish(text(room, "live"))
    ws.wait_for(has_text("live"), timeout=5)
    assert [(m["message"]["text"], m["catchup"]) for m in ws.messages] == [
        ("before-1", True),
        ("before-2", True),
        ("live", False),
    ]

    subscribed = b.api.ok("/subscribe", {"conn_id": conn_id, "channels": [other_room]})
    assert subscribed["subscribed_to"] == [other_room]
    assert sorted(subscribed["channels"]) == sorted([room, other_room])
    a.api.publish(text(other_room, "in other room"))
    ws.wait_for(has_text("in other room"), timeout=5)

    unsubscribed = b.api.ok("/unsubscribe", {"conn_id": conn_id, "channels": [room]})
    assert unsubscribed["channels"] == [other_room]
    a.api.publish(text(room, "after unsubscribe"))
    a.api.publish(marker(other_room))
    ws.wait_for(is_marker(other_room), timeout=5)
    assert "after unsubscribe" not in texts_in(ws.messages)
    info = a.api.ok("/info", {"info": {"channels": [room, other_room]}})
    assert info["channels"][room]["users"] == []
    assert info["channels"][other_room]["users"] == [user]

    # /disconnect through B (where the socket is) of a connection A made.
    result = b.api.disconnect(conn_id)
    assert (result.status, result.json) == (200, True)
    assert ws.wait_closed(timeout=5) == 1000
    assert (
        a.api.ok("/info", {"info": {"channels": [other_room]}})["channels"][other_room]["users"]
        == []
    )

    # And the other way round: made through B, socket on A, ended through B.
    second = b.api.connect(unique("v"), channels=[room])
    second_ws = listeners(a, second)
    result = b.api.disconnect(second)
    assert (result.status, result.json) == (200, True)
    assert second_ws.wait_closed(timeout=5) == 1000
    assert a.api.disconnect(second).json is False  # gone everywhere
