"""Users as a whole across two nodes sharing Redis: `/user_disconnect` through one node ends
the user's connections on both (API.md §4.3)."""

from __future__ import annotations

from tests.e2e.apiclient import has_text, is_presence
from tests.multinode.helpers import text, unique


def test_user_disconnect_closes_4003_on_every_node(start_node, listeners):
    a, b = start_node(), start_node()
    room, alice, carol = unique("room"), unique("alice"), unique("carol")
    watcher = listeners(b, a.api.connect(carol, channels=[room], notify_presence=True))
    on_a = listeners(a, a.api.connect(alice, channels=[room]))
    on_b = listeners(b, b.api.connect(alice, channels=[room]))
    watcher.wait_for(is_presence(alice, "joined"), timeout=5)

    answer = b.api.ok("/user_disconnect", {"users": [alice], "reason": "banned"})

    assert answer == {"disconnected": {alice: 2}}
    for ws in (on_a, on_b):
        assert ws.wait_closed(timeout=5) == 4003
        assert ws.close_reason == "banned"
    watcher.wait_for(is_presence(alice, "parted"), timeout=5)
    a.api.publish(text(room, "carol stays"))
    watcher.wait_for(has_text("carol stays"), timeout=5)
    assert a.api.ok("/info", {"info": {"channels": [room]}})["channels"][room]["users"] == [carol]


def test_max_connections_per_user_holds_across_nodes(start_node):
    a, b = start_node(max_connections_per_user=2), start_node(max_connections_per_user=2)
    alice = unique("alice")
    a.api.connect(alice)
    b.api.connect(alice)

    for node in (a, b):
        refused = node.api.call("/connect", {"username": alice})
        assert refused.status == 429
        assert refused.json["limit"] == "max_connections_per_user"
    b.api.connect(unique("bob"))
