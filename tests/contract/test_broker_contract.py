"""The broker contract (see `channelstream.broker.Broker`), for every broker.

Each test runs once per broker (`kind`: memory, redis). Tests that need two nodes of one
cluster, or a node joining late, run on Redis only: the memory broker is single-node by
design, and says so in the skip reason.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from channelstream.broker import BrokerUnavailable
from channelstream.broker.memory import AdminSessionTable, MemoryBroker
from channelstream.core.commands import Command, Publish
from tests.contract.conftest import (
    LATE_JOINER,
    MULTI_NODE,
    WAIT,
    BlockingRecorder,
    MakeBroker,
    Node,
    Recorder,
    join_loops,
    wait_until,
    wire,
)
from tests.redis_server import free_port

RICH_ARGS: dict[str, Any] = {
    "messages": [
        {
            "channel": "pub",
            "uuid": "5a3f3c2e-0000-4000-8000-000000000001",
            "user": "Zoë",
            "timestamp": "2026-01-01T12:30:15.123456",
            "message": {
                "text": 'héllo ✓ 👋 日本語 "quoted" back\\slash\nnew line\ttab',
                "nested": {"list": [1, 2.5, -3, True, False, None, "x", [], {}], "none": None},
            },
            "pm_users": [],
            "exclude_users": ["mallory"],
        }
    ],
    "big": 2**53 + 1,
    "negative": -0.5,
    "tiny": 1e-300,
    "zero": 0,
    "yes": True,
    "no": False,
    "nothing": None,
    "empty_list": [],
    "empty_text": "",
}


def run_in_threads(*targets: Callable[[], None]) -> None:
    """Run the targets at once, each in a thread; re-raise the first error any of them hit."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def run(target: Callable[[], None]) -> None:
        try:
            start.wait(WAIT)
            target()
        except BaseException as error:  # handed to the test thread below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert not any(thread.is_alive() for thread in threads), "a submitter hangs"
    if errors:
        raise errors[0]


def two_nodes(make_broker: MakeBroker) -> tuple[Node, Node]:
    return make_broker("node-a"), make_broker("node-b")


def the_leader(*nodes: Node) -> Node | None:
    leaders = [node for node in nodes if node.broker.is_leader()]
    return leaders[0] if len(leaders) == 1 else None


# ---------------------------------------------------------------------- commands arrive intact


def test_a_submitted_command_is_applied_exactly_once_and_intact(make_broker: MakeBroker) -> None:
    node = make_broker()
    sent = node.submit("publish", **RICH_ARGS)
    later = node.submit("publish", messages=[])

    assert node.recorder.wait_for_ids([sent.id, later.id])
    assert node.broker.wait_caught_up(WAIT)
    applied = [c for c in node.recorder.commands if c.id == sent.id]
    assert len(applied) == 1
    got = applied[0]
    assert (got.name, wire(got), got.now, got.origin, got.id) == (
        sent.name,
        wire(sent),
        sent.now,
        sent.origin,
        sent.id,
    )
    assert got == sent
    [carried] = wire(got)["messages"]
    assert type(carried["big"]) is int and type(carried["negative"]) is float


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 1, 1, 12, 0, 0, 1),
        datetime(2026, 1, 1, 12, 0, 0, 999999, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
    ids=["naive-utc-microseconds", "aware-utc", "aware-offset"],
)
def test_command_time_survives_the_round_trip(make_broker: MakeBroker, now: datetime) -> None:
    node = make_broker()
    sent = Command(Publish(messages=()), now, node.node_id)

    node.broker.submit(sent)

    assert node.recorder.wait_for_ids([sent.id])
    got = node.recorder.commands[-1]
    assert got.now == now
    assert got.now.utcoffset() == now.utcoffset()


def test_own_commands_come_back_to_the_submitter(make_broker: MakeBroker) -> None:
    node = make_broker()

    sent = node.submit("subscribe", conn_id="c1", channels=["room"])

    assert node.recorder.wait_for_ids([sent.id])
    assert [c.origin for c in node.recorder.commands] == [node.node_id]


# ---------------------------------------------------------------------- order


def test_commands_of_one_submitter_are_applied_in_submission_order(
    make_broker: MakeBroker,
) -> None:
    node = make_broker()

    sent = [node.submit(n=i) for i in range(100)]

    assert node.recorder.wait_for_ids([c.id for c in sent])
    assert node.recorder.ids == [c.id for c in sent]


def test_concurrent_submitters_each_keep_their_order(make_broker: MakeBroker) -> None:
    node = make_broker()
    sent: dict[str, list[Command]] = {"left": [], "right": []}

    def submitter(name: str) -> Callable[[], None]:
        def run() -> None:
            for i in range(50):
                sent[name].append(node.submit(submitter=name, n=i))

        return run

    run_in_threads(submitter("left"), submitter("right"))

    every_id = [c.id for commands in sent.values() for c in commands]
    assert node.recorder.wait_for_ids(every_id)
    applied = node.recorder.ids
    assert sorted(applied) == sorted(every_id)  # each exactly once
    for commands in sent.values():
        mine = {c.id for c in commands}
        assert [i for i in applied if i in mine] == [c.id for c in commands]


@MULTI_NODE
def test_two_nodes_apply_every_command_in_one_order(make_broker: MakeBroker) -> None:
    a, b = two_nodes(make_broker)
    sent: dict[str, list[Command]] = {a.node_id: [], b.node_id: []}

    def submitter(node: Node) -> Callable[[], None]:
        def run() -> None:
            for i in range(150):
                sent[node.node_id].append(node.submit(n=i))

        return run

    run_in_threads(submitter(a), submitter(b))

    every_id = [c.id for commands in sent.values() for c in commands]
    assert a.recorder.wait_for_ids(every_id)
    assert b.recorder.wait_for_ids(every_id)
    assert a.broker.wait_caught_up(WAIT) and b.broker.wait_caught_up(WAIT)
    assert a.recorder.ids == b.recorder.ids
    assert sorted(a.recorder.ids) == sorted(every_id)
    for commands in sent.values():
        mine = {c.id for c in commands}
        assert [i for i in a.recorder.ids if i in mine] == [c.id for c in commands]
    assert a.recorder.commands == b.recorder.commands  # same content too, not only ids


@MULTI_NODE
def test_a_stopped_broker_hands_over_no_more_commands(make_broker: MakeBroker) -> None:
    a, b = two_nodes(make_broker)
    first = b.submit(n=1)
    assert a.recorder.wait_for_ids([first.id])

    a.broker.stop()
    late = b.submit(n=2)  # a's reader is most likely blocked on the log right now

    assert b.recorder.wait_for_ids([late.id])
    join_loops(a.broker)
    assert a.recorder.ids == [first.id]


# ---------------------------------------------------------------------- catching up


def test_wait_caught_up_with_nothing_submitted_is_true_at_once(make_broker: MakeBroker) -> None:
    node = make_broker()
    started = time.monotonic()

    assert node.broker.wait_caught_up(WAIT) is True
    assert time.monotonic() - started < WAIT / 2


def test_wait_caught_up_covers_own_commands(make_broker: MakeBroker) -> None:
    node = make_broker()
    sent = [node.submit(n=i) for i in range(20)]

    assert node.broker.wait_caught_up(WAIT) is True

    assert {c.id for c in sent} <= set(node.recorder.ids)  # no waiting on the recorder


@MULTI_NODE
def test_wait_caught_up_covers_another_nodes_commands(make_broker: MakeBroker) -> None:
    a, b = two_nodes(make_broker)

    sent = [b.submit(n=i) for i in range(20)]

    assert a.broker.wait_caught_up(WAIT) is True
    assert {c.id for c in sent} <= set(a.recorder.ids)


@MULTI_NODE
def test_wait_caught_up_is_true_only_once_the_command_is_applied(
    make_broker: MakeBroker,
) -> None:
    slow_recorder = BlockingRecorder("slow")
    a = make_broker("node-a", recorder=slow_recorder)
    b = make_broker("node-b")
    try:
        slow = b.submit("slow")
        assert slow_recorder.applying.wait(WAIT)  # a has the command, but has not applied it yet

        assert a.broker.wait_caught_up(0.3) is False
        assert slow.id not in a.recorder.ids
    finally:
        slow_recorder.release.set()
    assert a.broker.wait_caught_up(WAIT) is True
    assert slow.id in a.recorder.ids


# ---------------------------------------------------------------------- leadership


def test_exactly_one_live_node_is_leader(make_broker: MakeBroker, kind: str) -> None:
    nodes = [make_broker() for _ in range(1 if kind == "memory" else 2)]

    assert wait_until(lambda: the_leader(*nodes) is not None)
    leader = the_leader(*nodes)
    pause = threading.Event()
    for _ in range(10):  # and it stays that way (lease renewals included)
        assert the_leader(*nodes) is leader
        pause.wait(0.1)


@MULTI_NODE
def test_leadership_passes_on_within_the_lease_when_the_leader_stops(
    make_broker: MakeBroker,
) -> None:
    a, b = two_nodes(make_broker)
    assert wait_until(lambda: the_leader(a, b) is not None)
    leader = the_leader(a, b)
    other = b if leader is a else a

    leader.broker.stop()

    assert leader.broker.is_leader() is False
    lease = other.broker.lease_ms / 1000  # type: ignore[attr-defined]
    assert wait_until(other.broker.is_leader, timeout=lease + 1.0)


@MULTI_NODE
def test_leadership_passes_on_when_the_lease_of_a_crashed_leader_runs_out(
    make_broker: MakeBroker,
) -> None:
    a, b = two_nodes(make_broker)
    assert wait_until(lambda: the_leader(a, b) is not None)
    leader = the_leader(a, b)
    other = b if leader is a else a

    leader.broker._running = False  # type: ignore[attr-defined]  # loops end, nothing released
    join_loops(leader.broker)

    lease = other.broker.lease_ms / 1000  # type: ignore[attr-defined]
    assert wait_until(other.broker.is_leader, timeout=lease + 1.0)


# ---------------------------------------------------------------------- liveness


def test_a_started_node_is_alive_and_others_are_not(make_broker: MakeBroker) -> None:
    node = make_broker()

    assert wait_until(lambda: node.broker.live_nodes({node.node_id}) == {node.node_id})
    assert node.broker.live_nodes({node.node_id, "never-started"}) == {node.node_id}
    assert node.broker.live_nodes(set()) == set()


@MULTI_NODE
def test_a_stopped_node_is_dead_at_once(make_broker: MakeBroker) -> None:
    a, b = two_nodes(make_broker)
    both = {a.node_id, b.node_id}
    assert wait_until(lambda: a.broker.live_nodes(both) == both)

    b.broker.stop()

    assert a.broker.live_nodes(both) == {a.node_id}
    join_loops(b.broker)
    assert a.broker.live_nodes(both) == {a.node_id}  # its loops did not announce it again


@MULTI_NODE
def test_a_crashed_node_is_dead_within_presence_ttl(make_broker: MakeBroker) -> None:
    a, b = two_nodes(make_broker)
    both = {a.node_id, b.node_id}
    assert wait_until(lambda: a.broker.live_nodes(both) == both)

    b.broker._running = False  # type: ignore[attr-defined]  # loops end, nothing deleted
    crashed = time.monotonic()

    ttl = b.broker.presence_ttl  # type: ignore[attr-defined]
    assert wait_until(lambda: a.broker.live_nodes(both) == {a.node_id}, timeout=ttl + 2.0)
    assert time.monotonic() - crashed <= ttl + 2.0
    assert a.broker.live_nodes(both) == {a.node_id}


# ---------------------------------------------------------------------- snapshots


@LATE_JOINER
def test_a_late_node_applies_the_whole_log_when_there_is_no_snapshot(
    make_broker: MakeBroker,
) -> None:
    a = make_broker("node-a")
    sent = [a.submit(n=i) for i in range(5)]
    assert a.broker.wait_caught_up(WAIT)

    b = make_broker("node-b", start=False)
    b.broker.snapshot_wait = 0.5  # for a snapshot; no leader runs here to write one
    b.broker.start(b.recorder.apply, b.recorder.restore)

    assert b.recorder.wait_for_ids([c.id for c in sent])
    assert b.recorder.events == [("apply", c) for c in sent]


@LATE_JOINER
def test_a_late_node_waits_for_the_snapshot_a_log_without_one_is_missing(
    make_broker: MakeBroker,
) -> None:
    """After a Redis restart the log lacks its start: a joining node waits for the snapshot
    the leader writes when it finds none, instead of replaying a partial log."""
    a = make_broker("node-a")
    before = [a.submit(n=i) for i in range(3)]
    assert a.broker.wait_caught_up(WAIT)

    b = make_broker("node-b")
    a.broker.save_snapshot({"after": 2})
    later = a.submit(n=3)

    assert b.recorder.wait_for_ids([later.id])
    assert b.recorder.events == [("restore", {"after": 2}), ("apply", later)]
    assert before  # applied by a only; b starts from the snapshot


@LATE_JOINER
def test_a_late_node_restores_the_snapshot_then_applies_only_later_commands(
    make_broker: MakeBroker,
) -> None:
    a = make_broker("node-a")
    before = [a.submit(n=i) for i in range(3)]
    assert a.broker.wait_caught_up(WAIT)
    snapshot = {"seq": 3, "channels": [{"name": "Zoë's room", "frames": [1, 2.5, None, True]}]}
    a.broker.save_snapshot(snapshot)
    after = [a.submit(n=i) for i in range(3, 6)]

    b = make_broker("node-b")

    assert b.recorder.wait_for_ids([c.id for c in after])
    assert b.broker.wait_caught_up(WAIT)
    assert b.recorder.events == [("restore", snapshot)] + [("apply", c) for c in after]
    assert not {c.id for c in before} & set(b.recorder.ids)


@LATE_JOINER
def test_each_snapshot_trims_the_log_behind_the_previous_one(
    make_broker: MakeBroker, redis_client: Any
) -> None:
    from channelstream.broker.redis import decode_command

    a = make_broker("node-a")
    log_key = a.broker.log_key  # type: ignore[attr-defined]

    def logged() -> list[str]:
        return [decode_command(fields[b"c"]).id for _, fields in redis_client.xrange(log_key)]

    def submit_and_snapshot(n: int) -> Command:
        sent = a.submit(n=n)
        assert a.broker.wait_caught_up(WAIT)
        a.broker.save_snapshot({"after": n})
        return sent

    c0 = a.submit(n=0)
    c1 = submit_and_snapshot(1)
    assert logged() == [c0.id, c1.id]  # nothing behind a previous snapshot yet
    c2 = submit_and_snapshot(2)
    assert logged() == [c1.id, c2.id]  # what came before the first snapshot is gone
    c3 = submit_and_snapshot(3)
    assert logged() == [c2.id, c3.id]
    c4 = a.submit(n=4)

    b = make_broker("node-b")  # starts from the newest snapshot, needs nothing trimmed

    assert b.recorder.wait_for_ids([c4.id])
    assert b.recorder.events == [("restore", {"after": 3}), ("apply", c4)]


@LATE_JOINER
def test_a_node_that_cannot_read_the_snapshot_at_start_restores_it_later(
    make_broker: MakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis unreachable when a node starts (say it starts before Redis does): once Redis
    answers, the node must start from the snapshot, not from a log trimmed behind it."""
    import redis

    a = make_broker("node-a")
    sent = []
    for n in range(3):
        sent.append(a.submit(n=n))
        assert a.broker.wait_caught_up(WAIT)
        a.broker.save_snapshot({"after": n})  # the third trims the first command
    last = a.submit(n=3)

    b = make_broker("node-b", start=False)
    client = b.broker._client  # type: ignore[attr-defined]
    get = client.get
    calls = iter(range(1 << 30))

    def get_failing_once(key: str) -> Any:
        if next(calls) == 0:
            raise redis.ConnectionError("Redis is not up yet")
        return get(key)

    monkeypatch.setattr(client, "get", get_failing_once)
    b.broker.start(b.recorder.apply, b.recorder.restore)

    assert b.recorder.wait_for_ids([last.id])
    assert b.recorder.events == [("restore", {"after": 2}), ("apply", last)]


@LATE_JOINER
def test_a_node_left_behind_the_trimmed_log_does_not_miss_commands(
    make_broker: MakeBroker,
) -> None:
    stalled_recorder = BlockingRecorder("stall")
    a = make_broker("node-a")
    b = make_broker("node-b", recorder=stalled_recorder)
    try:
        stall = a.submit("stall")
        assert stalled_recorder.applying.wait(WAIT)  # b is stuck on it; a goes on
        sent = []
        for n in range(3):
            sent.append(a.submit(n=n))
            assert a.broker.wait_caught_up(WAIT)
            a.broker.save_snapshot({"after": n})  # the third trims stall and sent[0]
    finally:
        stalled_recorder.release.set()
    last = a.submit(n=3)
    assert b.recorder.wait_for_ids([last.id])

    after_stall = b.recorder.events[b.recorder.events.index(("apply", stall)) + 1 :]
    assert ("apply", sent[0]) in after_stall or ("restore", {"after": 2}) in after_stall


def test_saving_a_snapshot_keeps_the_node_applying(make_broker: MakeBroker) -> None:
    node = make_broker()
    first = node.submit(n=1)
    assert node.broker.wait_caught_up(WAIT)

    node.broker.save_snapshot({"after": 1})
    second = node.submit(n=2)

    assert node.recorder.wait_for_ids([second.id])
    assert node.recorder.events == [("apply", first), ("apply", second)]


# ---------------------------------------------------------------------- admin sessions

SESSION_TTL = 3600.0  # a session that outlives any test
SHORT_TTL = 0.5


def session_id() -> str:
    return "s" + uuid.uuid4().hex


def test_an_admin_session_is_open_from_open_until_close(make_broker: MakeBroker) -> None:
    broker = make_broker().broker
    opened, other = session_id(), session_id()
    assert broker.admin_session_is_open(opened) is False

    broker.open_admin_session(opened, SESSION_TTL)
    broker.open_admin_session(other, SESSION_TTL)

    assert broker.admin_session_is_open(opened) is True
    assert broker.close_admin_session(opened) is True
    assert broker.admin_session_is_open(opened) is False
    assert broker.close_admin_session(opened) is False  # was no longer open
    assert broker.admin_session_is_open(other) is True  # closing one leaves the others


def test_an_admin_session_ends_after_its_ttl(make_broker: MakeBroker) -> None:
    broker = make_broker().broker
    short, long = session_id(), session_id()
    broker.open_admin_session(long, SESSION_TTL)
    broker.open_admin_session(short, SHORT_TTL)
    opened = time.monotonic()

    assert wait_until(lambda: not broker.admin_session_is_open(short))

    assert time.monotonic() - opened >= SHORT_TTL * 0.9  # not before its time
    assert broker.close_admin_session(short) is False
    assert broker.admin_session_is_open(long) is True


@MULTI_NODE
def test_an_admin_session_is_open_on_every_node_and_closed_on_all_by_any(
    make_broker: MakeBroker,
) -> None:
    a, b = two_nodes(make_broker)
    first, second = session_id(), session_id()

    a.broker.open_admin_session(first, SESSION_TTL)
    b.broker.open_admin_session(second, SESSION_TTL)

    assert a.broker.admin_session_is_open(second) and b.broker.admin_session_is_open(first)
    assert b.broker.close_admin_session(first) is True
    assert a.broker.close_admin_session(second) is True
    for broker in (a.broker, b.broker):
        assert not broker.admin_session_is_open(first)
        assert not broker.admin_session_is_open(second)


# Only a broker with a network can be unreachable (the memory broker never fails).
@pytest.mark.parametrize("kind", ["redis"])
def test_admin_sessions_of_an_unreachable_broker_raise_broker_unavailable(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(broker_url=f"redis://127.0.0.1:{free_port()}/0").broker  # no Redis
    calls: list[Callable[[], Any]] = [
        lambda: broker.open_admin_session(session_id(), SESSION_TTL),
        lambda: broker.admin_session_is_open(session_id()),
        lambda: broker.close_admin_session(session_id()),
    ]

    for call in calls:
        with pytest.raises(BrokerUnavailable):
            call()
    assert broker.available is False


def test_memory_admin_sessions_are_bounded_oldest_first() -> None:
    clock = [100.0]
    table = AdminSessionTable(max_sessions=3, clock=lambda: clock[0])
    for name in ("s1", "s2", "s3", "s4"):
        table.open(name, 10.0)
        clock[0] += 1.0

    assert len(table) == 3
    assert [table.is_open(name) for name in ("s1", "s2", "s3", "s4")] == [
        False,
        True,
        True,
        True,
    ]
    clock[0] = 112.0  # s2 ended (opened at 101), s3 ends at 112, s4 at 113
    assert len(table) == 1
    assert table.is_open("s4") and not table.is_open("s3")
    clock[0] = 113.0
    assert len(table) == 0


# ---------------------------------------------------------------------- health and figures


def test_a_started_broker_is_available(make_broker: MakeBroker) -> None:
    node = make_broker()

    assert wait_until(lambda: node.broker.available)


def test_stats_name_the_broker_and_count_applied_commands(
    make_broker: MakeBroker, kind: str
) -> None:
    node = make_broker()
    sent = [node.submit(n=i) for i in range(3)]
    assert node.recorder.wait_for_ids([c.id for c in sent])
    assert node.broker.wait_caught_up(WAIT)

    stats = node.broker.stats()

    assert stats["broker"] == kind
    assert stats["commands_applied"] == 3


def test_memory_broker_is_one_live_leader_that_never_fails() -> None:
    recorder = Recorder()
    broker = MemoryBroker("solo")
    broker.start(recorder.apply, recorder.restore)

    assert broker.available and broker.is_leader()
    assert broker.live_nodes({"solo", "other"}) == {"solo"}
    broker.save_snapshot({"ignored": True})
    assert recorder.events == []  # nobody is restored in-process
