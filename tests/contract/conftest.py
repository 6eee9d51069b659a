"""Broker contract fixtures: the same tests run against every broker.

- `kind`: the broker under test, `"memory"` or `"redis"` (a parametrised fixture; a test that
  only makes sense with several nodes re-parametrises it with `MULTI_NODE`).
- `make_broker(node_id=None, *, start=True, url=None, ...)`: builds a broker of that kind (Redis:
  on `redis_url`, under this test's `redis_prefix`, `presence_ttl=PRESENCE_TTL`), starts it
  with a `Recorder`'s `apply` and `restore`, and stops it at teardown. Returns a `Node`: the
  broker and its recorder.

These tests run without gevent monkey-patching: the Redis broker's loops are real threads,
so the recorder is thread-safe and every wait is a `threading.Condition`/`Event` wait with a
deadline.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import redis

from channelstream.broker import Broker
from channelstream.broker.memory import MemoryBroker
from channelstream.broker.redis import RedisBroker
from channelstream.core.commands import Command, Publish, operation_of, to_wire

PRESENCE_TTL = 1.0
WAIT = 10.0  # generous deadline for anything that should happen "soon"
THREAD_EXIT = 10.0  # how long a stopped broker's loops may take to end

SINGLE_NODE = (
    "MemoryBroker is single-node by design: there is no second node to share its order with"
)
NO_LATE_JOINERS = "MemoryBroker keeps nothing beyond its process: nobody starts from its snapshot"

# Re-parametrises `kind` for tests of what only a multi-node broker has: two nodes on one
# cluster (SINGLE_NODE) or a node joining late (NO_LATE_JOINERS). They run on Redis only;
# nothing is skipped.
MULTI_NODE = pytest.mark.parametrize("kind", ["redis"])
LATE_JOINER = pytest.mark.parametrize("kind", ["redis"])


def command(name: str = "publish", origin: str = "test", **args: Any) -> Command:
    """The operation `name` with `args` when they make one; otherwise a `Publish` carrying
    them as its one item, tagged with `name` (the contract is about carrying commands intact
    and in order, not about what they mean)."""
    try:
        operation = operation_of(name, args)
    except ValueError:
        operation = Publish(messages=({"tag": name, **args},))
    return Command(operation, datetime(2026, 1, 1, 12, 30, 15, 123456), origin)


def tag(command: Command) -> str:
    """The name a test gave `command` (see `command`)."""
    operation = command.operation
    if isinstance(operation, Publish) and len(operation.messages) == 1:
        return str(operation.messages[0].get("tag", command.name))
    return command.name


def wire(command: Command) -> dict[str, Any]:
    """The operation's fields as they travel."""
    return to_wire(command.operation)


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT, step: float = 0.02) -> bool:
    """Check `predicate` until it holds or `timeout` passes (for state outside our threads,
    such as Redis keys and leases). True if it held."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        if predicate():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        pause.wait(min(step, remaining))


class Recorder:
    """What a broker handed over, in order: `("restore", data)` and `("apply", command)`."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._changed = threading.Condition()

    def apply(self, command: Command) -> None:
        with self._changed:
            self.events.append(("apply", command))
            self._changed.notify_all()

    def restore(self, data: Any) -> None:
        with self._changed:
            self.events.append(("restore", data))
            self._changed.notify_all()

    @property
    def commands(self) -> list[Command]:
        with self._changed:
            return [item for kind, item in self.events if kind == "apply"]

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.commands]

    def wait_for(self, predicate: Callable[[list[Command]], bool], timeout: float = WAIT) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: predicate([item for kind, item in self.events if kind == "apply"]),
                timeout,
            )

    def wait_for_ids(self, ids: list[str], timeout: float = WAIT) -> bool:
        """Until every one of `ids` has been applied."""
        wanted = set(ids)
        return self.wait_for(lambda commands: wanted <= {c.id for c in commands}, timeout)


class BlockingRecorder(Recorder):
    """A Recorder that holds up applying the command named `blocking_name`: `applying` is
    set once it has it, and it goes on when `release` is set (or after WAIT)."""

    def __init__(self, blocking_name: str) -> None:
        super().__init__()
        self.blocking_name = blocking_name
        self.applying = threading.Event()
        self.release = threading.Event()

    def apply(self, command: Command) -> None:
        if tag(command) == self.blocking_name:
            self.applying.set()
            self.release.wait(WAIT)
        super().apply(command)


@dataclass
class Node:
    broker: Broker
    recorder: Recorder

    @property
    def node_id(self) -> str:
        return self.broker.node_id

    def submit(self, name: str = "publish", **args: Any) -> Command:
        cmd = command(name, origin=self.node_id, **args)
        self.broker.submit(cmd)
        return cmd


def join_loops(broker: Broker) -> None:
    """Wait for a stopped broker's loops (Redis: threads) to end."""
    for thread in getattr(broker, "_threads", ()):
        thread.join(THREAD_EXIT)
        assert not thread.is_alive(), f"{thread} still runs after stop()"


@pytest.fixture(params=["memory", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


MakeBroker = Callable[..., Node]


@pytest.fixture
def make_broker(kind: str, request: pytest.FixtureRequest) -> Iterator[MakeBroker]:
    built: list[Broker] = []
    prefix = url = None
    if kind == "redis":  # only Redis tests need (and may skip for want of) a Redis
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")

    def make(
        node_id: str | None = None,
        *,
        start: bool = True,
        recorder: Recorder | None = None,
        broker_url: str | None = None,
        presence_ttl: float = PRESENCE_TTL,
    ) -> Node:
        node_id = node_id or f"node-{uuid.uuid4().hex[:8]}"
        broker: Broker
        if kind == "memory":
            broker = MemoryBroker(node_id)
        else:
            assert url is not None and prefix is not None
            broker = RedisBroker(
                broker_url or url, node_id, prefix=prefix, presence_ttl=presence_ttl
            )
        built.append(broker)
        node = Node(broker, recorder or Recorder())
        if start:
            broker.start(node.recorder.apply, node.recorder.restore)
        return node

    yield make
    for broker in built:
        broker.stop()
    for broker in built:
        join_loops(broker)  # no loop may touch Redis once the prefix is deleted


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the test Redis, to look at the keys the brokers leave."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield client
    client.close()
