"""Webhook events in the core: which state change makes which events, with which reasons, in
which order; the bounded queue, acknowledgements, snapshots. (That events and presence frames
never disagree, for any sequence of operations, is checked in test_core_properties.py.)"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from typing import Any

from channelstream import encoding
from channelstream.core.commands import Command, apply_command, operation_of
from channelstream.core.snapshot import state_from_data, state_to_data
from channelstream.core.state import Limits, State
from channelstream.core.webhooks import EVENT_NAMES

T0 = datetime(2026, 1, 1)
GRACE, CONNS_AFTER = 3.0, 30.0


class Cluster:
    """One State with webhooks on, driven by commands as a node drives it."""

    def __init__(self, **limits: Any) -> None:
        events = limits.pop("webhook_events", frozenset(EVENT_NAMES))
        self.state = State(Limits(webhook_events=events, **limits))
        self.now = T0
        self.ids = itertools.count(1)
        self.seen = 0  # events already returned by `events`

    def run(self, name: str, **args: Any) -> Any:
        command = Command(operation_of(name, args), self.now, "n1", id=f"c{next(self.ids)}")
        applied = apply_command(self.state, command)
        assert applied.error is None, applied.error
        return applied.result

    def later(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def gc(self) -> Any:
        return self.run(
            "collect_garbage",
            connections_after=CONNS_AFTER,
            users_after=3600.0,
            channels_after=3600.0,
            presence_grace=GRACE,
        )

    def events(self) -> list[tuple[Any, ...]]:
        """The events made since the last call: (name, its fields...)."""
        new = list(self.state.webhooks.pending)[self.seen :]
        self.seen += len(new)
        return [
            (e.name, *(v for v in (e.channel, e.conn_id, e.user, e.reason) if v is not None))
            for e in new
        ]


def connect(cluster: Cluster, user: str, conn_id: str, channels: list[str]) -> None:
    cluster.run("connect", username=user, conn_id=conn_id, channels=channels)


def test_a_first_connection_brings_the_user_online_then_the_channels() -> None:
    cluster = Cluster()
    connect(cluster, "alice", "c1", ["a", "b"])
    assert cluster.events() == [
        ("user_online", "alice"),
        ("channel_occupied", "a"),
        ("member_added", "a", "alice"),
        ("channel_occupied", "b"),
        ("member_added", "b", "alice"),
    ]
    connect(cluster, "alice", "c2", ["a"])  # a second connection, a channel she is in
    assert cluster.events() == []
    connect(cluster, "bob", "c3", ["a"])  # a second member: no channel event
    assert cluster.events() == [("user_online", "bob"), ("member_added", "a", "bob")]


def test_subscribe_and_unsubscribe() -> None:
    cluster = Cluster()
    connect(cluster, "alice", "c1", [])
    cluster.events()
    cluster.run("subscribe", conn_id="c1", channels=["a"])
    assert cluster.events() == [("channel_occupied", "a"), ("member_added", "a", "alice")]
    cluster.run("unsubscribe", conn_id="c1", channels=["a"])
    assert cluster.events() == [("member_removed", "a", "alice"), ("channel_vacated", "a")]


def test_disconnecting_the_last_connection_leaves_in_order() -> None:
    cluster = Cluster()
    connect(cluster, "alice", "c1", ["a"])
    connect(cluster, "alice", "c2", ["a", "b"])
    connect(cluster, "bob", "c3", ["b"])
    cluster.events()
    cluster.run("disconnect", conn_id="c1")  # she is still in "a" through c2
    assert cluster.events() == [("connection_closed", "c1", "alice", "disconnect")]
    cluster.run("disconnect", conn_id="c2")
    assert cluster.events() == [
        ("member_removed", "a", "alice"),
        ("channel_vacated", "a"),
        ("member_removed", "b", "alice"),  # bob stays: "b" is not vacated
        ("connection_closed", "c2", "alice", "disconnect"),
        ("user_offline", "alice", "disconnect"),
    ]


def test_presence_parts_after_the_grace_and_the_connection_ends_later() -> None:
    cluster = Cluster()
    connect(cluster, "alice", "c1", ["a"])
    cluster.run("attach", conn_id="c1", node="n1")
    cluster.run("detach", conn_id="c1", served_up_to=0, node="n1")
    cluster.events()
    cluster.later(GRACE - 1)
    cluster.gc()
    assert cluster.events() == []  # within the grace: a reload sends nothing
    cluster.later(2)
    cluster.gc()
    assert cluster.events() == [
        ("member_removed", "a", "alice"),
        ("channel_vacated", "a"),
        ("user_offline", "alice", "gc"),
    ]
    cluster.later(CONNS_AFTER)
    cluster.gc()
    assert cluster.events() == [("connection_closed", "c1", "alice", "gc")]


def test_a_listener_coming_back_after_the_grace_brings_the_user_back() -> None:
    cluster = Cluster()
    connect(cluster, "alice", "c1", ["a"])
    cluster.later(GRACE + 1)
    cluster.gc()
    cluster.events()
    cluster.run("attach", conn_id="c1", node="n1")
    assert cluster.events() == [
        ("user_online", "alice"),
        ("channel_occupied", "a"),
        ("member_added", "a", "alice"),
    ]


def test_a_connection_gone_while_absent_only_closes() -> None:
    cluster = Cluster()
    connect(cluster, "alice", "c1", ["a"])
    cluster.later(GRACE + 1)
    cluster.gc()
    cluster.events()
    cluster.run("disconnect", conn_id="c1")
    assert cluster.events() == [("connection_closed", "c1", "alice", "disconnect")]


def test_user_disconnect_expiry_and_a_lost_node_give_their_reasons() -> None:
    cluster = Cluster()
    connect(cluster, "alice", "c1", [])
    connect(cluster, "bob", "c2", [])
    connect(cluster, "carol", "c3", [])
    cluster.run("attach", conn_id="c3", node="n2")
    cluster.events()
    cluster.run("disconnect_users", usernames=["alice"], reason="banned")
    assert cluster.events() == [
        ("connection_closed", "c1", "alice", "user_disconnect"),
        ("user_offline", "alice", "user_disconnect"),
    ]
    cluster.run("expire_connection", conn_id="c2")
    assert cluster.events() == [
        ("connection_closed", "c2", "bob", "expired"),
        ("user_offline", "bob", "expired"),
    ]
    cluster.run("forget_node", node="n2")
    assert cluster.events() == [
        ("connection_closed", "c3", "carol", "node_lost"),
        ("user_offline", "carol", "node_lost"),
    ]


def test_webhook_events_picks_the_events_made() -> None:
    cluster = Cluster(webhook_events=frozenset({"user_online", "connection_closed"}))
    connect(cluster, "alice", "c1", ["a"])
    cluster.run("disconnect", conn_id="c1")
    assert cluster.events() == [
        ("user_online", "alice"),
        ("connection_closed", "c1", "alice", "disconnect"),
    ]


def test_webhooks_off_make_no_events() -> None:
    state = State()
    command = Command(
        operation_of("connect", {"username": "a", "conn_id": "c", "channels": []}), T0, "n1"
    )
    apply_command(state, command)
    assert not state.webhooks.pending


def test_a_full_queue_drops_new_events_and_counts_them() -> None:
    cluster = Cluster(webhook_queue_max=3)
    connect(cluster, "alice", "c1", ["a", "b"])  # 5 events
    queue = cluster.state.webhooks
    assert [e.name for e in queue.pending] == ["user_online", "channel_occupied", "member_added"]
    assert (queue.queued, queue.overflowed) == (3, 2)
    assert [e.number for e in queue.pending] == [1, 2, 3]


def test_acknowledging_drops_up_to_a_number_on_every_replica() -> None:
    cluster = Cluster()
    connect(cluster, "alice", "c1", ["a"])
    queue = cluster.state.webhooks
    assert cluster.run("acknowledge_webhooks", up_to=2, delivered=True) == 2
    assert [e.number for e in queue.pending] == [3]
    assert queue.last_delivered_at == T0
    assert cluster.run("acknowledge_webhooks", up_to=2, delivered=True) == 0  # a late repeat
    cluster.later(5)
    assert cluster.run("acknowledge_webhooks", up_to=3, delivered=False) == 1  # given up
    assert queue.last_delivered_at == T0 and not queue.pending
    connect(cluster, "bob", "c2", [])
    assert [e.number for e in queue.pending] == [4]  # numbers go on


def test_ids_are_the_same_on_every_replica_and_unique() -> None:
    first, second = Cluster(), Cluster()
    for cluster in (first, second):
        connect(cluster, "alice", "c1", ["a", "b"])
        cluster.run("disconnect", conn_id="c1")
    ids = [e.id for e in first.state.webhooks.pending]
    assert ids == [e.id for e in second.state.webhooks.pending]
    assert len(set(ids)) == len(ids)


def test_a_snapshot_keeps_the_queue_and_the_numbering() -> None:
    cluster = Cluster()
    connect(cluster, "alice", "c1", ["a"])
    cluster.run("acknowledge_webhooks", up_to=1, delivered=True)
    data = json.loads(encoding.dumps(state_to_data(cluster.state)))  # as Redis holds it
    restored = state_from_data(data, State(cluster.state.limits))
    assert [e.body() for e in restored.webhooks.pending] == [
        e.body() for e in cluster.state.webhooks.pending
    ]
    assert restored.webhooks.next_number == cluster.state.webhooks.next_number
    assert restored.webhooks.last_delivered_at == T0
    cluster.state = restored
    connect(cluster, "bob", "c2", [])
    assert cluster.state.webhooks.pending[-1].number == 4


def test_an_older_snapshot_without_webhooks_loads() -> None:
    cluster = Cluster()
    data = state_to_data(cluster.state)
    del data["webhooks"]
    restored = state_from_data(data, State(cluster.state.limits))
    assert not restored.webhooks.pending and restored.webhooks.next_number == 1


def test_the_body_of_an_event_has_only_its_fields() -> None:
    cluster = Cluster()
    connect(cluster, "alice", "c1", ["a"])
    cluster.run("disconnect", conn_id="c1")
    bodies = [e.body() for e in cluster.state.webhooks.pending]
    assert set(bodies[0]) == {"id", "name", "time", "user"}
    assert set(bodies[1]) == {"id", "name", "time", "channel"}
    assert set(bodies[2]) == {"id", "name", "time", "channel", "user"}
    closed = next(b for b in bodies if b["name"] == "connection_closed")
    assert set(closed) == {"id", "name", "time", "conn_id", "user", "reason"}
    assert json.loads(encoding.dumps(closed))["time"] == "2026-01-01T00:00:00"
