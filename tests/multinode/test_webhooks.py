"""Webhooks in a Redis cluster (API.md §4.1, §4.5): real node processes, real Redis, and a
real HTTP receiver that verifies every signature (tests/webhook_receiver.py).

The events are replicated state, sent by the leader alone: changes made through either node
arrive once each, in cluster order; a `kill -9` of the sending node while a batch is in flight
loses nothing (the next leader sends the batch again, same ids) and ends the dead node's
connections with `node_lost`; a socket that moves to the other node within `presence_grace`
sends nothing.

Every wait is on the receiver (a request came), on a socket, or a bounded polling of an
endpoint for state that has no event (which node sends, a detach applied).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.apiclient import admin_cookie, raw_request
from tests.multinode.conftest import PRESENCE_TTL, ClusterNode
from tests.multinode.helpers import poll, unique
from tests.webhook_receiver import WebhookReceiver, as_json, unique_by_id, without_ids

WEBHOOK_SECRET = "multinode-webhook-secret"
PRESENCE_GRACE = 5  # the most allowed: a socket moving to the other node has time to spare
AWAY_SECONDS = 1.5  # how long that socket is away (less than PRESENCE_GRACE, with margin)
ADMIN_SETTINGS = {
    "admin_user": "admin",
    "admin_secret": "multinode-admin-secret",
    "cookie_secret": "multinode-cookie-secret",
}
# Waits: a leader change takes the lease (presence_ttl / 2), ending a dead node's connections
# its liveness key (presence_ttl) and the next chore (1 s); generous for a loaded machine.
NODE_LOST_TIMEOUT = PRESENCE_TTL * 4 + 10
SENDER_TIMEOUT = PRESENCE_TTL * 2 + 10


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """The web app's webhook endpoint (set up before, so torn down after, the nodes)."""
    receiver = WebhookReceiver(WEBHOOK_SECRET).start()
    yield receiver
    receiver.stop()


def webhook_settings(receiver: WebhookReceiver, **extra: Any) -> dict[str, Any]:
    return {
        "webhook_url": receiver.url,
        "webhook_secret": WEBHOOK_SECRET,
        "presence_grace": PRESENCE_GRACE,
        **extra,
    }


def event(name: str, **fields: str) -> dict[str, str]:
    """An event as `without_ids` shows it."""
    return {"name": name, **fields}


def joined(user: str, channel: str, online: bool = True, occupied: bool = False) -> list[dict]:
    """The events of a user's connection joining `channel` (API.md §4.5's order)."""
    return (
        ([event("user_online", user=user)] if online else [])
        + ([event("channel_occupied", channel=channel)] if occupied else [])
        + [event("member_added", channel=channel, user=user)]
    )


def metrics(node: ClusterNode) -> dict[str, float]:
    """The node's /metrics (a signed GET) as {sample name: value} (unlabelled samples)."""
    answer = node.api.call("/metrics", method="GET")
    assert answer.status == 200, answer.body[:300]
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(answer.body.decode())
        for sample in family.samples
        if not sample.labels
    }


def sending_nodes(nodes: list[ClusterNode]) -> list[ClusterNode]:
    return [node for node in nodes if metrics(node)["channelstream_webhook_sending"] == 1]


def the_sender(nodes: list[ClusterNode]) -> ClusterNode:
    """The one node that reports sending (once exactly one does)."""
    found = poll(
        lambda: (senders := sending_nodes(nodes)) and len(senders) == 1 and senders,
        SENDER_TIMEOUT,
        "exactly one node reporting channelstream_webhook_sending 1",
    )
    return found[0]


def assert_ids_unique(events: list[dict[str, Any]]) -> None:
    repeated = {i: n for i, n in Counter(e["id"] for e in events).items() if n > 1}
    assert not repeated, f"events delivered more than once: {repeated}\n{as_json(events)}"


def test_changes_through_both_nodes_arrive_once_each_in_cluster_order(
    receiver, start_node, listeners
):
    a = start_node(**webhook_settings(receiver))
    b = start_node(**webhook_settings(receiver))
    room, room2 = unique("room"), unique("room2")
    alice, bob, last = unique("alice"), unique("bob"), unique("last")

    alice_conn = a.api.connect(alice, [room])
    alice_ws = listeners(a, alice_conn)
    bob_conn = b.api.connect(bob, [room])
    bob_ws = listeners(b, bob_conn)
    b.api.ok("/subscribe", {"conn_id": alice_conn, "channels": [room2]})
    a.api.ok("/subscribe", {"conn_id": bob_conn, "channels": [room2]})
    assert b.api.disconnect(alice_conn).status == 200
    assert alice_ws.wait_closed(timeout=5) == 1000
    assert a.api.disconnect(bob_conn).status == 200
    assert bob_ws.wait_closed(timeout=5) == 1000
    # The last change: once its event is in, everything made before it has been sent.
    b.api.connect(last)

    expected = [
        *joined(alice, room, occupied=True),
        *joined(bob, room),
        *joined(alice, room2, online=False, occupied=True),
        *joined(bob, room2, online=False),
        event("member_removed", channel=room, user=alice),
        event("member_removed", channel=room2, user=alice),
        event("connection_closed", conn_id=alice_conn, user=alice, reason="disconnect"),
        event("user_offline", user=alice, reason="disconnect"),
        event("member_removed", channel=room, user=bob),
        event("channel_vacated", channel=room),
        event("member_removed", channel=room2, user=bob),
        event("channel_vacated", channel=room2),
        event("connection_closed", conn_id=bob_conn, user=bob, reason="disconnect"),
        event("user_offline", user=bob, reason="disconnect"),
        event("user_online", user=last),
    ]
    delivered = receiver.wait_for_events(
        lambda events: event("user_online", user=last) in without_ids(events)
    )
    assert without_ids(delivered) == expected, as_json(delivered)
    assert_ids_unique(delivered)
    assert not [batch for batch in receiver.batches if batch.forged]

    # One node sent all of it; the other sent nothing.
    sender = the_sender([a, b])
    other = b if sender is a else a
    poll(
        lambda: metrics(sender)["channelstream_webhook_events_sent_total"] == len(expected),
        10,
        f"the sender counting {len(expected)} events sent",
    )
    assert metrics(other)["channelstream_webhook_events_sent_total"] == 0
    assert metrics(other)["channelstream_webhook_sending"] == 0


def test_killing_the_sending_node_mid_batch_loses_no_event(receiver, start_node, listeners):
    # The hung request stays in flight (no timeout at the sender) until the kill.
    a = start_node(**webhook_settings(receiver, webhook_timeout=60))
    b = start_node(**webhook_settings(receiver, webhook_timeout=60))
    nodes = [a, b]
    room, room2 = unique("room"), unique("room2")
    only_on = {a.pid: unique("only-a"), b.pid: unique("only-b")}  # a socket on that node only
    both = unique("both")  # one socket on each node

    only_conn = {}
    for node in nodes:
        only_conn[node.pid] = node.api.connect(only_on[node.pid], [room])
        listeners(node, only_conn[node.pid])
    both_conn = {}
    for node in nodes:
        both_conn[node.pid] = node.api.connect(both, [room])
        listeners(node, both_conn[node.pid])
    setup = [
        *joined(only_on[a.pid], room, occupied=True),
        *joined(only_on[b.pid], room),
        *joined(both, room),
    ]
    receiver.wait_for_events(lambda events: len(events) >= len(setup))
    assert without_ids(receiver.delivered_events()) == setup, as_json(receiver.delivered_events())

    # A batch in flight: the receiver holds the request, the sender waits for its answer.
    receiver.hang()
    requests_before = len(receiver.batches)
    a.api.ok("/subscribe", {"conn_id": both_conn[b.pid], "channels": [room2]})
    b.api.ok("/subscribe", {"conn_id": both_conn[a.pid], "channels": [room2]})  # no event
    in_flight_batch = [event("channel_occupied", channel=room2), *joined(both, room2, False)]
    in_flight = receiver.wait_for_requests(requests_before + 1)[requests_before]
    assert without_ids(in_flight.events) == in_flight_batch, as_json(in_flight.events)
    assert in_flight.status == 0  # not answered yet

    # The node sending it (the leader) dies; the other one takes over.
    killed = the_sender(nodes)
    survivor = b if killed is a else a
    killed_at = time.time()
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.server.process.wait(timeout=10) == -signal.SIGKILL  # reaped: not stopped again
    receiver.release()  # answers the dead node's request: nobody reads it

    # The survivor sends the batch again, same ids, in a request made after the kill.
    in_flight_ids = {e["id"] for e in in_flight.events}

    def resent_ids() -> set[str]:
        return {
            e["id"]
            for batch in receiver.batches
            if batch.received_at > killed_at and 200 <= batch.status < 300
            for e in batch.events
        }

    receiver.wait_for(lambda: in_flight_ids <= resent_ids(), NODE_LOST_TIMEOUT)

    # The dead node's connections end: its own user goes offline, `both` stays online.
    lost_user = only_on[killed.pid]
    node_lost = [
        event("member_removed", channel=room, user=lost_user),
        event(
            "connection_closed", conn_id=only_conn[killed.pid], user=lost_user, reason="node_lost"
        ),
        event("user_offline", user=lost_user, reason="node_lost"),
        event("connection_closed", conn_id=both_conn[killed.pid], user=both, reason="node_lost"),
    ]
    expected = [*setup, *in_flight_batch, *node_lost]
    delivered = receiver.wait_for_events(
        lambda events: len(unique_by_id(events)) >= len(expected), NODE_LOST_TIMEOUT
    )
    kept = unique_by_id(delivered)
    assert without_ids(kept) == expected, as_json(delivered)
    assert {e["id"] for e in kept if e["id"] in in_flight_ids} == in_flight_ids
    # At least once, not more: the dead node's try and the survivor's.
    assert max(Counter(e["id"] for e in delivered).values()) <= 2, as_json(delivered)
    assert not [batch for batch in receiver.batches if batch.forged]

    assert the_sender([survivor]) is survivor
    assert "stopped announcing itself: ending its connections" in survivor.log_text()


def test_a_socket_moving_to_the_other_node_within_presence_grace_sends_nothing(
    receiver, start_node, listeners
):
    a = start_node(**webhook_settings(receiver, **ADMIN_SETTINGS))
    b = start_node(**webhook_settings(receiver, **ADMIN_SETTINGS))
    cookie = admin_cookie(
        b.server.port, ADMIN_SETTINGS["admin_user"], ADMIN_SETTINGS["admin_secret"]
    )
    room = unique("room")
    roamer, control = unique("roamer"), unique("control")

    roamer_conn = a.api.connect(roamer, [room])
    roamer_on_a = listeners(a, roamer_conn)
    control_ws = listeners(a, b.api.connect(control, [room]))
    setup = [*joined(roamer, room, occupied=True), *joined(control, room)]
    receiver.wait_for_events(lambda events: len(events) >= len(setup))

    def cluster_listeners(conn_id: str) -> int | None:
        answer = raw_request(
            b.server.port, "GET", "/admin/admin.json", headers={"Cookie": cookie}, timeout=10
        )
        assert answer.status == 200, answer.body[:300]
        found = [c for c in answer.json["connections"] if c["conn_id"] == conn_id]
        return found[0]["listeners"] if found else None

    # The roamer's socket drops (no close frame) on A; the cluster sees it without listener.
    roamer_on_a.ws.shutdown()
    poll(lambda: cluster_listeners(roamer_conn) == 0, 10, "the roamer's socket detached")
    # The client is away for a while (a reload on a slow line): the scenario itself, not a
    # wait for something to happen. Longer than the leader's GC round (1 s), so presence is
    # looked at while the connection has no listener; well within presence_grace.
    time.sleep(AWAY_SECONDS)
    # It comes back on B.
    listeners(b, roamer_conn)
    assert cluster_listeners(roamer_conn) == 1

    # The control's socket drops later and never comes back: its user goes offline after
    # presence_grace. Had the roamer been offline for as long, its events would come first.
    control_ws.ws.shutdown()
    offline_control = event("user_offline", user=control, reason="gc")
    receiver.wait_for_events(
        lambda events: offline_control in without_ids(events), PRESENCE_GRACE + 15
    )
    assert b.api.disconnect(roamer_conn).status == 200
    offline_roamer = event("user_offline", user=roamer, reason="disconnect")
    delivered = receiver.wait_for_events(lambda events: offline_roamer in without_ids(events))

    assert without_ids(delivered) == [
        *setup,
        event("member_removed", channel=room, user=control),
        offline_control,
        event("member_removed", channel=room, user=roamer),
        event("channel_vacated", channel=room),
        event("connection_closed", conn_id=roamer_conn, user=roamer, reason="disconnect"),
        offline_roamer,
    ], as_json(delivered)
    assert_ids_unique(delivered)
