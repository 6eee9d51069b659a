"""What only the Redis broker has: an outage to survive, and keys that must not outlive it.

The memory broker has no network to lose and writes nothing outside its process.
"""

from __future__ import annotations

import gc
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from channelstream.broker import BrokerUnavailable
from channelstream.broker.redis import RedisBroker
from tests.contract.conftest import (
    PRESENCE_TTL,
    WAIT,
    MakeBroker,
    Node,
    Recorder,
    command,
    join_loops,
    wait_until,
)
from tests.redis_server import RedisProcess, free_port, unique_prefix

PROMPTLY = 5.0  # a bound on hanging, not a performance figure
RECOVERY = 15.0  # the read loop's backoff tops out at 5 s

pytestmark = pytest.mark.parametrize("kind", ["redis"])


def broker_at(url: str, node_id: str = "node") -> tuple[RedisBroker, Recorder]:
    return RedisBroker(url, node_id, prefix=unique_prefix(), presence_ttl=PRESENCE_TTL), Recorder()


def timed(action: Any) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        return action(), time.monotonic() - started
    except Exception as error:
        return error, time.monotonic() - started


# ---------------------------------------------------------------------- availability


def test_a_broker_without_redis_is_unavailable_and_fails_fast(kind: str) -> None:
    broker, recorder = broker_at(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    try:
        _, took = timed(lambda: broker.start(recorder.apply, recorder.restore))
        assert took < PROMPTLY

        assert broker.available is False
        error, took = timed(lambda: broker.submit(command()))
        assert isinstance(error, BrokerUnavailable), error
        assert took < PROMPTLY
        caught_up, took = timed(lambda: broker.wait_caught_up(WAIT))
        assert caught_up is False
        assert took < PROMPTLY
        assert broker.is_leader() is False
        assert broker.live_nodes({"some-node"}) == {"some-node"}  # unknown: not declared dead
        assert broker.stats()["available"] is False
        assert recorder.events == []
    finally:
        broker.stop()
        join_loops(broker)


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    """A private redis-server, stopped (for good) at teardown."""
    server = RedisProcess(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        # RedisProcess.start() leaves its log file object for the garbage collector to close
        # (tests/redis_server.py), which warns; collect those here, where the warning is moot
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


# (see `redis_process`: a collection during the test may close a RedisProcess log file)
@pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning")
def test_a_broker_comes_back_when_redis_does(kind: str, redis_process: RedisProcess) -> None:
    broker, recorder = broker_at(redis_process.url)
    try:
        broker.start(recorder.apply, recorder.restore)
        first = command(origin=broker.node_id, n=1)
        broker.submit(first)
        assert recorder.wait_for_ids([first.id])
        assert wait_until(broker.is_leader)

        redis_process.stop()

        assert wait_until(lambda: not broker.available)
        assert broker.is_leader() is False
        error, took = timed(lambda: broker.submit(command(origin=broker.node_id, n=2)))
        assert isinstance(error, BrokerUnavailable), error
        assert took < PROMPTLY

        redis_process.start()  # same port, empty

        assert wait_until(lambda: broker.available, timeout=RECOVERY)
        second = command(origin=broker.node_id, n=3)
        broker.submit(second)
        assert recorder.wait_for_ids([second.id], timeout=RECOVERY)
        assert recorder.ids == [first.id, second.id]  # the refused one never happened
        assert broker.wait_caught_up(WAIT)
        assert wait_until(broker.is_leader)
        assert broker.live_nodes({broker.node_id}) == {broker.node_id}
    finally:
        broker.stop()
        join_loops(broker)


# ---------------------------------------------------------------------- keys


def keys_under(client: Any, broker: Any) -> dict[str, int]:
    """Every key under the broker's prefix, with its TTL in milliseconds (-1: none)."""
    return {key.decode(): client.pttl(key) for key in client.scan_iter(match=f"{broker.prefix}:*")}


@pytest.mark.parametrize("with_snapshot", [False, True], ids=["no-snapshot", "snapshot"])
def test_a_stopped_cluster_leaves_only_keys_that_expire(
    make_broker: MakeBroker, redis_client: Any, with_snapshot: bool
) -> None:
    a, b = make_broker("node-a"), make_broker("node-b")
    sent = [a.submit(n=1), b.submit(n=2)]
    assert a.recorder.wait_for_ids([c.id for c in sent])
    assert wait_until(lambda: a.broker.is_leader() or b.broker.is_leader())
    if with_snapshot:
        a.broker.save_snapshot({"after": 2})

    for node in (a, b):
        node.broker.stop()
        assert not redis_client.exists(node.broker.node_key(node.node_id))  # type: ignore[attr-defined]
    for node in (a, b):
        join_loops(node.broker)

    keys = keys_under(redis_client, a.broker)
    assert f"{a.broker.prefix}:log" in keys  # type: ignore[attr-defined]
    assert not [key for key in keys if ":node:" in key or key.endswith(":leader")], keys
    assert all(ttl > 0 for ttl in keys.values()), keys


def test_a_crashed_node_leaves_only_keys_that_expire(
    make_broker: MakeBroker, redis_client: Any
) -> None:
    node = make_broker()
    sent = node.submit(n=1)
    assert node.recorder.wait_for_ids([sent.id])
    assert wait_until(node.broker.is_leader)

    node.broker._running = False  # type: ignore[attr-defined]  # dies without cleaning up

    keys = keys_under(redis_client, node.broker)
    assert node.broker.node_key(node.node_id) in keys  # type: ignore[attr-defined]
    assert f"{node.broker.leader_key}" in keys  # type: ignore[attr-defined]
    assert all(ttl > 0 for ttl in keys.values()), keys
    join_loops(node.broker)
    assert all(ttl > 0 for ttl in keys_under(redis_client, node.broker).values())


def test_a_stop_during_an_announcement_leaves_no_announcement_behind(
    make_broker: MakeBroker, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stop() deletes the node key and releases the lease; an announcement already under
    way when it does so must not write them back."""
    node = make_broker(start=False)
    broker: Any = node.broker
    pipeline = broker._client.pipeline
    announcing = threading.Event()

    def pipeline_held_until_stop(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is broker._announcer and not announcing.is_set():
            announcing.set()  # the first announcement: hold it until stop() has begun
            assert wait_until(lambda: not broker._running, timeout=WAIT, step=0.001)
        return pipeline(*args, **kwargs)

    monkeypatch.setattr(broker._client, "pipeline", pipeline_held_until_stop)
    broker.start(node.recorder.apply, node.recorder.restore)
    assert announcing.wait(WAIT)

    broker.stop()
    broker._announcer.join(WAIT)  # not the reader: keys expire while it ends its long read

    assert not redis_client.exists(broker.node_key(node.node_id))
    assert redis_client.get(broker.leader_key) is None
    assert broker.is_leader() is False


@pytest.mark.parametrize("presence_ttl", [1.0, 1.6, 2.6])
def test_a_node_key_lives_presence_ttl(
    make_broker: MakeBroker, redis_client: Any, presence_ttl: float
) -> None:
    node: Node = make_broker(presence_ttl=presence_ttl)
    key = node.broker.node_key(node.node_id)  # type: ignore[attr-defined]
    assert wait_until(lambda: bool(redis_client.exists(key)))

    ttl_ms = redis_client.pttl(key)

    assert presence_ttl * 1000 / 2 < ttl_ms <= presence_ttl * 1000


def test_many_submits_at_once_wait_for_a_connection_rather_than_fail(
    make_broker: MakeBroker,
) -> None:
    """A thousand websockets closing at once each submit a Detach: more submits at one time
    than the node's Redis connections must queue for one, not be taken for an outage."""
    node = make_broker()
    count = 300
    barrier = threading.Barrier(count)
    sent: list[Any] = []
    failures: list[BaseException] = []

    def submit() -> None:
        barrier.wait(WAIT)
        try:
            sent.append(node.submit(n=1))
        except BrokerUnavailable as error:
            failures.append(error)

    threads = [threading.Thread(target=submit) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)

    assert failures == []
    assert node.recorder.wait_for_ids([c.id for c in sent])
    assert node.broker.available
