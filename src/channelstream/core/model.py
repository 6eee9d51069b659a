"""Plain data of the core: channels, users, connections and the frames they exchange.

Nothing here does I/O. Timestamps are naive UTC datetimes; every frame gets a sequence number
(`seq`) from the State, which orders frames and decides what a connection has yet to see.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

# A frame as it goes to a client: a JSON-ready dict (datetimes are encoded by the caller).
Frame = dict[str, Any]
StateValue = str | int | float | bool | None


class ChannelConfigChanges(TypedDict, total=False):
    """Channel settings to set: only the keys given change (fix F2)."""

    notify_presence: bool
    store_history: bool
    history_size: int
    broadcast_presence_with_user_lists: bool
    notify_state: bool
    store_frames: bool
    history_ttl: int
    catchup_size: int


class MessageRouting(TypedDict):
    """Where a /message item goes: a channel and/or users, minus some users."""

    channel: str | None
    pm_users: list[str]
    exclude_users: list[str]
    no_history: bool


class PublishItem(MessageRouting):
    """A message to send, as `POST /message` validated it. A key that is absent is absent
    from the frames too (0.7.1), so optional keys are NotRequired rather than None."""

    user: str
    message: NotRequired[dict[str, Any]]  # the payload: any JSON object
    uuid: str
    timestamp: str  # naive UTC ISO-8601: items cross the wire between nodes as JSON
    idempotency_key: NotRequired[str]  # a repeat within the window is answered, not sent


class EditItem(MessageRouting):
    """An edit of a sent message (`PATCH /message`): only the keys given change."""

    uuid: str
    user: NotRequired[str]
    message: NotRequired[dict[str, Any]]
    timestamp: NotRequired[str]
    edited: str


class DeleteItem(MessageRouting):
    """A sent message to remove (`DELETE /message`)."""

    uuid: str


CHANNEL_FRAMES_KEPT = 100  # default catchup_size: frames per channel kept (0.7.1's figure)
USER_FRAMES_KEPT = 50  # direct messages per user kept for catchup (0.7.1's figure)

# Keys of a stored message that only steer delivery; they never reach a client frame.
DELIVERY_KEYS = ("pm_users", "exclude_users", "no_history")


@dataclass(frozen=True)
class ChannelConfig:
    """Per-channel behaviour, as set by /connect, /subscribe or /channel_config."""

    notify_presence: bool = False
    store_history: bool = False
    history_size: int = 10
    broadcast_presence_with_user_lists: bool = False
    notify_state: bool = False
    store_frames: bool = True
    history_ttl: int = 0  # seconds a stored message (history and catchup) lives; 0: for ever
    catchup_size: int = CHANNEL_FRAMES_KEPT

    def merged(self, changes: ChannelConfigChanges) -> ChannelConfig:
        """A copy with only the given keys changed (fix F2: configs merge, never reset)."""
        return ChannelConfig(
            notify_presence=changes.get("notify_presence", self.notify_presence),
            store_history=changes.get("store_history", self.store_history),
            history_size=changes.get("history_size", self.history_size),
            broadcast_presence_with_user_lists=changes.get(
                "broadcast_presence_with_user_lists", self.broadcast_presence_with_user_lists
            ),
            notify_state=changes.get("notify_state", self.notify_state),
            store_frames=changes.get("store_frames", self.store_frames),
            history_ttl=changes.get("history_ttl", self.history_ttl),
            catchup_size=changes.get("catchup_size", self.catchup_size),
        )

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class StoredFrame:
    """A frame kept for catchup, with the routing that decides who may replay it."""

    seq: int
    frame: Frame  # shared with history for messages, so edits change both
    pm_users: tuple[str, ...] = ()
    exclude_users: tuple[str, ...] = ()
    stored_at: datetime | None = None  # when it was sent: history_ttl counts from here

    def visible_to(self, username: str) -> bool:
        if username in self.exclude_users:
            return False
        return not self.pm_users or username in self.pm_users


@dataclass
class Channel:
    name: str
    config: ChannelConfig
    last_active: datetime
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    long_name: str | None = None
    # username -> conn_ids of that user in this channel (insertion-ordered)
    members: dict[str, dict[str, None]] = field(default_factory=dict)
    history: list[StoredFrame] = field(default_factory=list)
    # catchup, at most config.catchup_size frames, oldest first
    frames: deque[StoredFrame] = field(default_factory=deque)
    # the newest seq of a frame sent here that catchup can no longer give (trimmed out of
    # catchup_size, expired, never stored): a client behind it gets a gap, not a silent hole
    lost_up_to: int = 0

    @property
    def total_connections(self) -> int:
        return sum(len(conns) for conns in self.members.values())


@dataclass
class User:
    username: str
    last_active: datetime
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    state: dict[str, StateValue] = field(default_factory=dict)
    public_keys: list[str] = field(default_factory=list)
    connections: dict[str, None] = field(default_factory=dict)
    frames: deque[StoredFrame] = field(default_factory=deque)  # at most USER_FRAMES_KEPT
    lost_up_to: int = 0  # as Channel.lost_up_to, for direct messages

    @property
    def public_state(self) -> dict[str, StateValue]:
        return {key: self.state[key] for key in self.public_keys if key in self.state}


@dataclass
class Connection:
    """One browser session of a user. Its listeners (sockets, polls) live outside the core.

    `cursor` is the seq up to which this connection has been served; catchup replays what
    came after it. Each channel remembers the seq at which the connection joined, so catchup
    never replays a channel's frames from before the subscription.

    `present`: its user counts as a member of its channels (presence, /info). A connection
    without a listener for `presence_grace` is absent until a listener attaches again; it
    keeps its channels and cursor, so it still catches up. `gap_everywhere`: it recovered
    from another epoch, so its first catchup starts with a gap on every channel.
    """

    conn_id: str
    username: str
    created: datetime
    last_active: datetime
    cursor: int
    channels: dict[str, int] = field(default_factory=dict)  # channel name -> seq at join
    listeners: int = 0
    listeners_by_node: dict[str, int] = field(default_factory=dict)  # node id -> listeners
    present: bool = True
    gap_everywhere: bool = False


class Position(TypedDict):
    """Where a client was: the last seq it saw, in the state of `epoch` (`recover`)."""

    epoch: str
    seq: int


@dataclass
class IdempotencyRecord:
    """The first message published with an idempotency key, answered to repeats until
    `expires`."""

    expires: datetime
    accepted: dict[str, Any]


@dataclass(frozen=True)
class Delivery:
    """One frame to send to some connections. The caller encodes `frame` once for all."""

    seq: int
    frame: Frame
    conn_ids: tuple[str, ...]


@dataclass
class Stats:
    total_messages: int = 0  # frames handed to connections (0.7.1: "All frames sent")
    total_unique_messages: int = 0  # messages accepted by /message


@dataclass(frozen=True)
class Totals:
    """How much the cluster holds now, and its message counters since it started."""

    connections: int
    channels: int
    users: int  # remembered, connected or not
    users_connected: int  # with at least one connection
    messages_in: int  # messages accepted by /message
    frames_out: int  # frames handed to connections


def utc_naive(moment: datetime) -> datetime:
    """Naive UTC, the only timestamp form the core stores and emits (fix F14)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
