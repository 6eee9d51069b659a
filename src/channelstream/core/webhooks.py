"""Webhook events as part of the replicated state: what happened, queued until acknowledged.

Events are made by the State in the same methods that make presence frames
(`State._add_member`, `_remove_member`, and where connections start and end), so a webhook
and a presence frame can never disagree. The queue of events not yet acknowledged is part of
the State, replicated like everything else: every node of a cluster holds the same events,
with the same ids (made by the command's `IdSource`), in the same order. One node sends them
(the leader) and, once the receiver answered 2xx, submits `AcknowledgeWebhooks`, which drops
them on every replica. A sender killed mid-batch has acknowledged nothing, so the next leader
sends the same events again (same ids): at least once, nothing lost.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Every event name, in the order API.md §4.1 lists them.
EVENT_NAMES = (
    "user_online",
    "user_offline",
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "connection_closed",
)

# Why a connection ended or a user went offline.
REASON_DISCONNECT = "disconnect"  # /disconnect (the web app, or its page through it)
REASON_GC = "gc"  # no listener: presence parts after presence_grace, the end after gc_conns_after
REASON_NODE_LOST = "node_lost"  # its node stopped announcing itself
REASON_USER_DISCONNECT = "user_disconnect"  # /user_disconnect
REASON_EXPIRED = "expired"  # its connection token's exp passed
REASONS = (
    REASON_DISCONNECT,
    REASON_GC,
    REASON_NODE_LOST,
    REASON_USER_DISCONNECT,
    REASON_EXPIRED,
)


@dataclass(frozen=True)
class WebhookEvent:
    """One event. `number` is its place in the cluster's queue (acknowledgements name it);
    `id` is what receivers deduplicate by."""

    number: int
    id: str
    name: str
    time: datetime  # naive UTC, the time of the command that made it
    user: str | None = None
    channel: str | None = None
    conn_id: str | None = None
    reason: str | None = None

    def body(self) -> dict[str, Any]:
        """The event as the webhook body lists it: id, name, time and its own fields."""
        item: dict[str, Any] = {"id": self.id, "name": self.name, "time": self.time}
        for key in ("channel", "conn_id", "user", "reason"):
            value = getattr(self, key)
            if value is not None:
                item[key] = value
        return item


class WebhookQueue:
    """The events not yet acknowledged, oldest first, at most `max_events`.

    `names`: the events wanted (empty: webhooks are off and no event is made). When full,
    new events are dropped and counted (`overflowed`): a receiver that is down never makes
    the state grow without bound, and the events kept stay in order."""

    def __init__(self, names: frozenset[str] = frozenset(), max_events: int = 100_000) -> None:
        self.names = names
        self.max_events = max_events
        self.pending: deque[WebhookEvent] = deque()
        self.next_number = 1
        self.queued = 0  # events made and kept, since this replica started
        self.overflowed = 0  # events made but dropped because the queue was full
        self.last_delivered_at: datetime | None = None

    def wants(self, name: str) -> bool:
        return name in self.names

    def add(self, event: WebhookEvent) -> None:
        if len(self.pending) >= self.max_events:
            self.overflowed += 1
            return
        self.pending.append(event)
        self.queued += 1
        self.next_number = event.number + 1

    def head(self, limit: int) -> list[WebhookEvent]:
        """The oldest `limit` events: the next batch to send."""
        batch: list[WebhookEvent] = []
        for event in self.pending:
            if len(batch) >= limit:
                break
            batch.append(event)
        return batch

    def acknowledge(self, up_to: int, now: datetime, delivered: bool) -> int:
        """Drop the events numbered up to `up_to` (delivered, or given up on); how many.
        Repeated or late acknowledgements drop nothing more."""
        dropped = 0
        while self.pending and self.pending[0].number <= up_to:
            self.pending.popleft()
            dropped += 1
        if delivered and dropped:
            self.last_delivered_at = now
        return dropped
