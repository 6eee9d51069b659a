"""The Node's façade: views, the admin panel and metrics read only its query methods, and
submit operations they built. These tests drive a real Node (memory broker) through them."""

from __future__ import annotations

from datetime import datetime

import gevent
import pytest

from channelstream.core.commands import (
    Command,
    Connect,
    SetChannelConfigs,
    Subscribe,
    Unsupported,
)
from channelstream.core.errors import UnknownConnection
from channelstream.core.model import Totals
from channelstream.node import BATCH_CHUNK, Node
from channelstream.settings import Settings

CONN_A = "8f8d4cc6-8a37-4b52-9a0a-0c1b4d1b2f01"
CONN_B = "8f8d4cc6-8a37-4b52-9a0a-0c1b4d1b2f02"
CONN_C = "8f8d4cc6-8a37-4b52-9a0a-0c1b4d1b2f03"


@pytest.fixture
def node():
    node = Node(Settings.from_sources({"secret": "s"}, environ={}))
    yield node
    node.stop()


def test_submit_returns_the_operations_own_result(node: Node) -> None:
    outcome = node.submit(Connect(username="zoe", conn_id=CONN_A, channels=("b", "a")))

    assert outcome.connection is not None and outcome.connection.conn_id == CONN_A
    assert sorted(outcome.connection.channels) == ["a", "b"]
    assert node.submit(SetChannelConfigs(configs={"c": {"store_history": True}})) == ["c"]


def test_submit_raises_the_cores_refusal(node: Node) -> None:
    with pytest.raises(UnknownConnection):
        node.submit(Subscribe(conn_id=CONN_B, channels=("a",)))


def test_the_queries_report_what_the_cluster_holds(node: Node) -> None:
    node.submit(Connect(username="zoe", conn_id=CONN_A, channels=("a",)))
    node.submit(Connect(username="adam", conn_id=CONN_B, channels=("a", "b")))
    node.submit(Connect(username="zoe", conn_id=CONN_C, channels=()))
    node.disconnect(CONN_B)  # adam stays remembered, without connections

    assert node.totals() == Totals(
        connections=2, channels=2, users=2, users_connected=1, messages_in=0, frames_out=0
    )
    assert [user.username for user in node.connected_users()] == ["zoe"]
    assert [c.conn_id for c in node.connections()] == [CONN_A, CONN_C]
    assert node.broker_stats()["broker"] == "memory"
    assert node.channels_info(["a"])["channels"]["a"]["users"] == ["zoe"]


def test_not_ready_reasons_in_order_of_weight(node: Node) -> None:
    assert node.not_ready_reason() is None and node.ready

    unreadable = Unsupported(wire_type="teleport", version=2, reason="unknown operation type")
    node.broker.submit(Command(unreadable, datetime(2026, 1, 1), origin="other-node"))
    assert node.not_ready_reason() == "unsupported command" and not node.ready
    assert node.totals().connections == 0  # nothing of it was applied

    node.begin_drain()
    assert node.not_ready_reason() == "draining"


def test_a_heartbeat_pass_reaches_every_listener_and_lets_others_run(node: Node) -> None:
    """Listeners beyond one slice all get `[]`; other greenlets run between the slices."""
    outboxes = []
    for index in range(2 * BATCH_CHUNK + 1):
        conn_id = f"8f8d4cc6-8a37-4b52-9a0a-{index:012d}"
        node.submit(Connect(username=f"u{index}", conn_id=conn_id, channels=()))
        outboxes.append(node.attach(conn_id, "ws"))
    polling = node.attach(outboxes[0].conn_id, "poll", heartbeats=False)
    seen_by_other: list[int] = []

    def other() -> None:  # counts the heartbeats out when it gets to run
        seen_by_other.append(sum(1 for o in outboxes if o.take() == "[]"))

    gevent.spawn(other)
    node.send_heartbeats()
    got = seen_by_other[0] + sum(1 for o in outboxes if o.take() == "[]")
    assert got == len(outboxes)  # each listener once, before or after the other greenlet ran
    assert 0 < seen_by_other[0] < len(outboxes)  # it ran in the middle of the pass
    assert polling.take() is None  # a long poll takes no heartbeats
