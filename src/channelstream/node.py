"""The Node: the one object HTTP views and socket handlers call.

It owns the core `State`, the listeners' outboxes and the background loops (heartbeats and
garbage collection). Each public method runs one core operation with the current time, then
hands the resulting deliveries to the listeners, encoding each frame once for all of its
recipients. No method yields between those two steps, so the state is never seen half-updated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import gevent

from channelstream import encoding
from channelstream.close_codes import CloseCode
from channelstream.core.model import Delivery
from channelstream.core.state import (
    ConnectOutcome,
    Limits,
    MembershipOutcome,
    MessagesOutcome,
    Outcome,
    State,
    UserStateOutcome,
)
from channelstream.settings import Settings
from channelstream.transport.outbox import Outbox

log = logging.getLogger(__name__)

GC_INTERVAL_SECONDS = 1.0
OutcomeT = TypeVar("OutcomeT", bound=Outcome)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Node:
    """One server process's view of channels, users and connections."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.state = State(
            Limits(
                max_channels_per_connection=settings.max_channels_per_connection,
                max_connections=settings.max_connections,
            )
        )
        self.started_at = clock()
        self._outboxes: dict[str, list[Outbox]] = {}
        self._loops: list[gevent.Greenlet] = []
        self.frames_dropped = 0  # overflows: listeners closed for falling behind (4002)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the heartbeat and GC loops (they run once the gevent hub runs)."""
        if not self._loops:
            self._loops = [
                gevent.spawn(self._every, self.settings.heartbeat_interval, self.send_heartbeats),
                gevent.spawn(self._every, GC_INTERVAL_SECONDS, self.collect_garbage),
            ]

    def stop(self) -> None:
        """Stop the loops and close every listener with 1001 (going away)."""
        gevent.killall(self._loops)
        self._loops = []
        for outboxes in list(self._outboxes.values()):
            for outbox in outboxes:
                outbox.close(CloseCode.GOING_AWAY)

    @staticmethod
    def _every(interval: float, action: Callable[[], Any]) -> None:
        while True:
            gevent.sleep(interval)
            try:
                action()
            except Exception:  # a bug in one sweep must not stop the loop for good
                log.exception("background task %s failed", getattr(action, "__name__", action))

    # ------------------------------------------------------------------ API operations

    def connect(
        self, username: str, conn_id: str, channels: Iterable[str], **kwargs: Any
    ) -> ConnectOutcome:
        outcome = self.state.connect(username, conn_id, channels, self.clock(), **kwargs)
        return self._dispatch(outcome)

    def subscribe(
        self,
        conn_id: str,
        channels: Iterable[str],
        channel_configs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> MembershipOutcome:
        return self._dispatch(
            self.state.subscribe(conn_id, channels, self.clock(), channel_configs)
        )

    def unsubscribe(self, conn_id: str, channels: Iterable[str]) -> MembershipOutcome:
        return self._dispatch(self.state.unsubscribe(conn_id, channels, self.clock()))

    def set_user_state(
        self,
        username: str,
        user_state: Mapping[str, Any],
        state_public_keys: Iterable[str] | None = None,
    ) -> UserStateOutcome:
        outcome = self.state.set_user_state(username, user_state, self.clock(), state_public_keys)
        return self._dispatch(outcome)

    def set_channel_configs(self, configs: Mapping[str, Mapping[str, Any]]) -> list[str]:
        return self.state.set_channel_configs(configs, self.clock())

    def publish(self, messages: Iterable[Mapping[str, Any]]) -> MessagesOutcome:
        return self._dispatch(self.state.publish(messages, self.clock()))

    def edit(self, edits: Iterable[Mapping[str, Any]]) -> MessagesOutcome:
        return self._dispatch(self.state.edit(edits, self.clock()))

    def delete(self, deletes: Iterable[Mapping[str, Any]]) -> MessagesOutcome:
        return self._dispatch(self.state.delete(deletes, self.clock()))

    def disconnect(self, conn_id: str) -> bool:
        """End a connection now: presence goes out and its listeners close with 1000."""
        outcome = self.state.disconnect(conn_id, self.clock())
        if outcome is None:
            return False
        self._dispatch(outcome)
        for outbox in self._outboxes.pop(conn_id, []):
            outbox.close(CloseCode.NORMAL)
        log.info("connection %s disconnected", conn_id)
        return True

    # ------------------------------------------------------------------ listeners

    def attach(self, conn_id: str, kind: str) -> Outbox:
        """Register a listener; its outbox starts with the connection's catchup frames.

        Raises UnknownConnection.
        """
        catchup = self.state.attach(conn_id, self.clock())
        outbox = Outbox(conn_id, self.settings.max_queued_frames, catchup.seq, kind)
        if catchup.frames:
            outbox.push(catchup.seq, ",".join(encoding.dumps(f) for f in catchup.frames))
        self._outboxes.setdefault(conn_id, []).append(outbox)
        return outbox

    def detach(self, outbox: Outbox) -> None:
        outboxes = self._outboxes.get(outbox.conn_id)
        if outboxes and outbox in outboxes:
            outboxes.remove(outbox)
            if not outboxes:
                del self._outboxes[outbox.conn_id]
        self.state.detach(outbox.conn_id, outbox.served_up_to, self.clock())

    def touch(self, conn_id: str) -> bool:
        """Client activity (a frame from the socket, a poll) keeps the connection alive."""
        return self.state.touch(conn_id, self.clock())

    def send_heartbeats(self) -> None:
        """`[]` to every websocket and SSE listener (fix F7), whenever they attached."""
        for outboxes in self._outboxes.values():
            for outbox in outboxes:
                if outbox.kind != "poll":
                    outbox.push_heartbeat()

    def collect_garbage(self) -> None:
        outcome = self.state.collect_garbage(
            self.clock(),
            connections_after=self.settings.gc_conns_after,
            users_after=self.settings.gc_users_after,
            channels_after=self.settings.gc_channels_after,
        )
        self._dispatch(outcome)
        if outcome.connections or outcome.users or outcome.channels:
            log.info(
                "collected %d idle connections, %d users, %d channels",
                len(outcome.connections),
                len(outcome.users),
                len(outcome.channels),
            )

    def listener_count(self) -> int:
        return sum(len(outboxes) for outboxes in self._outboxes.values())

    # ------------------------------------------------------------------ delivery

    def _dispatch(self, outcome: OutcomeT) -> OutcomeT:
        for delivery in outcome.deliveries:
            self._deliver(delivery)
        return outcome

    def _deliver(self, delivery: Delivery) -> None:
        encoded: str | None = None
        for conn_id in delivery.conn_ids:
            for outbox in self._outboxes.get(conn_id, ()):
                if encoded is None:  # encode once per frame, only if someone listens
                    encoded = encoding.dumps(delivery.frame)
                if outbox.closed:
                    continue
                if not outbox.push(delivery.seq, encoded):
                    self.frames_dropped += 1
                    log.warning(
                        "connection %s fell %d frames behind: closing its %s listener with 4002",
                        conn_id,
                        outbox.limit,
                        outbox.kind,
                    )
