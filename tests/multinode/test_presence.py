"""Presence across nodes: one user joined through two nodes is one member of the channel, and
the connections of a node killed with SIGKILL end (their users part) within presence_ttl."""

from __future__ import annotations

import os
import signal
import time

from tests.e2e.apiclient import is_presence
from tests.multinode.conftest import PRESENCE_TTL
from tests.multinode.helpers import is_marker, marker, presence_of, unique

# The dead node's liveness key expires at most presence_ttl after its last announce; the
# leader looks every second. Margin for that sweep and for the frame to travel.
PARTED_MARGIN = 2.0


def room_info(node, room):
    """`/info` of one channel through `node`: (users of the channel, the whole channel dict)."""
    info = node.api.ok("/info", {"info": {"channels": [room]}})
    channel = info["channels"].get(room)
    return (channel["users"] if channel else None), info


def test_a_user_on_two_nodes_joins_and_parts_once(start_node, listeners):
    a, b = start_node(), start_node()
    room = unique("room")
    user = unique("u")
    config = {"channel_configs": {room: {"notify_presence": True}}}
    # An observer on each node.
    observer_names = sorted(unique(f"observer-{i}") for i in range(2))
    observers = [
        listeners(node, node.api.connect(name, [room], **config))
        for name, node in zip(observer_names, (a, b), strict=True)
    ]
    step = 0

    def settle(publisher):
        """Publish a marker and wait for every observer to see it: presence frames caused
        before it have all arrived."""
        nonlocal step
        step += 1
        publisher.api.publish(marker(room, f"step-{step}"))
        for ws in observers:
            ws.wait_for(is_marker(room, f"step-{step}"), timeout=10)

    def users_on_both_nodes(expected):
        users_a, info_a = room_info(a, room)
        users_b, info_b = room_info(b, room)
        assert users_a == expected, info_a
        assert info_b == info_a

    first = a.api.connect(user, [room], **config)
    first_ws = listeners(a, first)
    second = b.api.connect(user, [room], **config)
    second_ws = listeners(b, second)
    settle(b)
    for ws in observers:
        assert presence_of(ws.messages, user) == ["joined"]
    users_on_both_nodes(sorted([*observer_names, user]))

    # The first connection ends (through the other node): the user is still there.
    assert b.api.disconnect(first).status == 200
    assert first_ws.wait_closed(timeout=5) == 1000
    settle(a)
    for ws in observers:
        assert presence_of(ws.messages, user) == ["joined"]
    users_on_both_nodes(sorted([*observer_names, user]))

    # The second one ends (through the node its socket is not on): the user parts, once.
    assert a.api.disconnect(second).status == 200
    assert second_ws.wait_closed(timeout=5) == 1000
    for ws in observers:
        ws.wait_for(is_presence(user, "parted"), timeout=5)
    settle(b)
    for ws in observers:
        assert presence_of(ws.messages, user) == ["joined", "parted"]
    users_on_both_nodes(observer_names)


def test_killed_node_connections_part_within_presence_ttl(start_node, listeners):
    a = start_node()  # started first: the leader, which ends a dead node's connections
    b = start_node()
    room = unique("room")
    config = {"channel_configs": {room: {"notify_presence": True}}}
    observer_name, user, bystander = unique("observer"), unique("u"), unique("bystander")
    observer = listeners(a, a.api.connect(observer_name, [room], **config))
    listeners(a, a.api.connect(bystander, [room], **config))  # its socket is on A: stays
    user_conn = a.api.connect(user, [room], **config)
    user_ws = listeners(b, user_conn)
    observer.wait_for(is_presence(user, "joined"), timeout=5)

    killed_at = time.monotonic()
    os.kill(b.pid, signal.SIGKILL)
    assert b.server.process.wait(timeout=10) == -signal.SIGKILL  # reaped: not stopped again
    user_ws.close()

    observer.wait_for(is_presence(user, "parted"), timeout=PRESENCE_TTL + PARTED_MARGIN + 3)
    parted_after = time.monotonic() - killed_at
    print(f"parted {parted_after:.2f} s after SIGKILL (presence_ttl {PRESENCE_TTL} s)")
    assert parted_after <= PRESENCE_TTL + PARTED_MARGIN

    users, info = room_info(a, room)
    assert users == sorted([observer_name, bystander]), info
    assert presence_of(observer.messages, user) == ["joined", "parted"]
    assert presence_of(observer.messages, bystander) == ["joined"]
    assert "stopped announcing itself: ending its connections" in a.log_text()
