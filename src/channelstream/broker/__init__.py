"""Brokers: where a cluster's commands are ordered.

Every change to the state is a `Command` (see `channelstream.core.commands`). A broker takes
the commands every node submits, puts them in one order, and hands each, in that order, to
every node's `apply` callback, so all nodes hold the same channels, connections, presence,
history, configs and user state. Each node delivers frames to its own listeners only, which
makes delivery exactly-once and ordered per channel across the cluster.

- `MemoryBroker` (the default): one process; `submit` applies at once. Single-node only.
- `RedisBroker`: the order is a Redis stream; node liveness, leadership, state snapshots and
  admin sessions live in Redis keys under `redis_prefix`, with TTLs.

Besides the command order, the broker keeps the open admin sessions (`AdminSessionStore`): a
cookie opened on one node must be a session on every node behind the load balancer, and a
sign-out on any node must end it on all of them.

The interface is small on purpose; the contract tests in `tests/contract/` run against both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from channelstream.core.commands import Command
from channelstream.exceptions import ChannelstreamException


class BrokerUnavailable(ChannelstreamException):
    """The broker cannot take commands right now (Redis unreachable): answer 503."""


class AdminSessionStore(Protocol):
    """The cluster's open admin sessions, by the random id the admin cookie carries.

    The cookie's signature says who signed in; this says the session is still open, which is
    what makes signing out revoke every copy of the cookie. Each call raises
    BrokerUnavailable when the store cannot be reached: the caller must not guess."""

    def open_admin_session(self, session_id: str, ttl: float) -> None:
        """Open a session on every node for `ttl` seconds (or until closed)."""

    def admin_session_is_open(self, session_id: str) -> bool:
        """Whether the session was opened, has not expired and was not closed, on any node."""

    def close_admin_session(self, session_id: str) -> bool:
        """End the session on every node; whether it was open."""


class Broker(AdminSessionStore, Protocol):
    node_id: str
    keeps_snapshots: bool  # whether the node should hand it snapshots (late joiners exist)

    def start(self, apply: Callable[[Command], None], restore: Callable[[Any], None]) -> None:
        """Begin handing commands to `apply`, in cluster order, own ones included.

        Before the first command, a broker that has a state snapshot calls `restore` with it.
        """

    def stop(self) -> None:
        """Stop handing commands over and release what this node holds (leadership, liveness)."""

    def submit(self, command: Command) -> None:
        """Append a command to the cluster order. Raises BrokerUnavailable.

        MemoryBroker applies it before returning; RedisBroker returns once Redis has it.
        """

    @property
    def available(self) -> bool:
        """False while the broker cannot be reached (what /ready reports)."""

    def wait_caught_up(self, timeout: float) -> bool:
        """Block until every command submitted anywhere before this call has been applied
        here (read-your-cluster's-writes). False on timeout."""

    def is_leader(self) -> bool:
        """True on exactly one live node: the one that runs cluster-wide chores (GC)."""

    def live_nodes(self, candidates: set[str]) -> set[str]:
        """Which of these node ids are alive (announced within `presence_ttl`)."""

    def has_snapshot(self) -> bool:
        """False when a node joining now would find no snapshot (the leader then writes one)."""

    def save_snapshot(self, snapshot: Any) -> None:
        """Store a state snapshot taken after the last applied command, so late joiners
        start from it and the command log can be trimmed."""

    def save_snapshot_of(self, take: Callable[[], Any]) -> bool:
        """`save_snapshot(take())`, taken now, without holding up this node while a large
        state is walked and encoded (RedisBroker: in a forked child, stored by a greenlet of
        its own). False, starting nothing, while the previous one is still being stored."""

    def stats(self) -> dict[str, Any]:
        """Figures for the admin panel and metrics."""


def build_broker(url: str, node_id: str, *, prefix: str, presence_ttl: float) -> Broker:
    """The broker a `broker` setting names: `memory` or `redis://host:port/db`."""
    if url == "memory":
        from channelstream.broker.memory import MemoryBroker

        return MemoryBroker(node_id)
    from channelstream.broker.redis import RedisBroker

    return RedisBroker(url, node_id, prefix=prefix, presence_ttl=presence_ttl)
