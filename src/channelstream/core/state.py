"""The sans-I/O state machine: every operation of the server API, decided in memory.

`State` knows nothing of HTTP, sockets, gevent or JSON. Each operation takes `now` and
returns what to deliver to whom (`Delivery`); the caller sends. No method yields, so under
gevent every operation is atomic: that is the whole greenlet-safety story.

Rules kept from Channelstream 0.7.1 (reference §3), with the fixes of API.md §2: history
size 0 keeps nothing (F1), configs merge (F2), /connect on a live conn_id updates it (F3),
private messages never enter history (F4), listened-to connections are never idle (F7),
connections, users and channels are collected (F8), /disconnect is final (F17).
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

from channelstream.core.errors import (
    ConnectionOwnedByOther,
    TooManyChannels,
    TooManyConnections,
    TooManyUserConnections,
    UnknownConnection,
    UnknownUser,
)
from channelstream.core.model import (
    USER_FRAMES_KEPT,
    Channel,
    ChannelConfig,
    ChannelConfigChanges,
    Connection,
    DeleteItem,
    Delivery,
    EditItem,
    Frame,
    IdempotencyRecord,
    Position,
    PublishItem,
    StateValue,
    Stats,
    StoredFrame,
    Totals,
    User,
)
from channelstream.core.webhooks import (
    REASON_DISCONNECT,
    REASON_GC,
    REASON_NODE_LOST,
    REASON_USER_DISCONNECT,
    WebhookEvent,
    WebhookQueue,
)

EDITABLE_KEYS = ("uuid", "timestamp", "user", "message", "edited")


@dataclass(frozen=True)
class Limits:
    """What the settings bound; every node of a cluster must have the same, since each
    replica decides with its own."""

    max_channels_per_connection: int = 1000
    max_connections: int = 0  # 0: no limit
    max_connections_per_user: int = 0  # 0: no limit
    # channel-name prefix (before the first ":") -> the config a new channel starts from
    channel_namespaces: Mapping[str, ChannelConfigChanges] = field(default_factory=dict)
    # the webhook events made (empty: webhooks are off) and how many may wait unsent
    webhook_events: frozenset[str] = frozenset()
    webhook_queue_max: int = 100_000

    def new_channel_config(self, name: str, changes: ChannelConfigChanges | None) -> ChannelConfig:
        """The config of a channel created now: its namespace's defaults, if its name has
        one, under the keys the request gave (API.md §4.5)."""
        prefix, colon, _ = name.partition(":")
        defaults = self.channel_namespaces.get(prefix) if colon else None
        return ChannelConfig().merged(defaults or {}).merged(changes or {})


@dataclass
class Outcome:
    """What an operation asks the caller to send."""

    deliveries: list[Delivery] = field(default_factory=list)


@dataclass
class Catchup(Outcome):
    """What an attaching listener gets first: gap frames, then the frames its connection
    missed, oldest first, and the seq they bring it up to. `deliveries`: presence frames for
    the others, when the connection was absent and joins again."""

    frames: list[Frame] = field(default_factory=list)
    seq: int = 0


@dataclass
class ConnectOutcome(Outcome):
    connection: Connection | None = None
    user: User | None = None
    # asked to recover: whether its first catchup will hold every frame missed (None: not asked)
    recovered: bool | None = None


@dataclass(frozen=True)
class HistoryPage:
    """A slice of a channel's history (`POST /history`), and whether more lies beyond it."""

    entries: list[dict[str, Any]]
    has_more: bool


@dataclass
class MembershipOutcome(Outcome):
    connection: Connection | None = None
    changed_channels: list[str] = field(default_factory=list)


@dataclass
class UserStateOutcome(Outcome):
    user: User | None = None
    changed: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class MessagesOutcome(Outcome):
    accepted: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class UsersDisconnectOutcome(Outcome):
    """`POST /user_disconnect`: the connections ended, by user (every user asked, [] if it
    had none)."""

    ended: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class GarbageOutcome(Outcome):
    connections: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # connections whose presence parted
    users: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)


# Makes the uuids of new users, channels and server-made frames. Replicas pass one derived
# from the command being applied (see `core.commands`), so every replica makes the same ones.
IdSource = Callable[[], str]


def new_uuid() -> str:
    return str(uuid.uuid4())


class State:
    """All channels, users and connections of one server, and the rules that tie them."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, User] = {}
        self.connections: dict[str, Connection] = {}
        self.stats = Stats()
        self._seq = 0
        # names this state's life: set by the first command applied to an empty state (see
        # core.commands.apply_command), so replicas agree; a seq means something only in it
        self.epoch = ""
        # "<scope>\n<key>" -> the first message published with that idempotency key
        self.idempotency: dict[str, IdempotencyRecord] = {}
        # the newest seq a collected channel or user held: one made anew under that name may
        # have lost frames a recovering client missed, so it starts with lost_up_to there
        self.collected_up_to = 0
        # webhook events not yet acknowledged by the node that sends them (core.webhooks)
        self.webhooks = WebhookQueue(self.limits.webhook_events, self.limits.webhook_queue_max)

    # ------------------------------------------------------------------ connections

    def connect(
        self,
        username: str,
        conn_id: str,
        channels: Iterable[str],
        now: datetime,
        *,
        state_public_keys: Iterable[str] = (),
        fresh_user_state: Mapping[str, StateValue] | None = None,
        user_state: Mapping[str, StateValue] | None = None,
        channel_configs: Mapping[str, ChannelConfigChanges] | None = None,
        recover: Position | None = None,
        ids: IdSource = new_uuid,
    ) -> ConnectOutcome:
        """Create (or, for the same user, update in place) a connection and join channels.

        `recover`: a new connection starts at that position instead of now, so its first
        catchup replays what the client missed (from 0, after gaps, if the epoch differs)."""
        wanted = sorted(set(channels))
        connection = self.connections.get(conn_id)
        if connection is not None and connection.username != username:
            raise ConnectionOwnedByOther(conn_id)
        if connection is None:
            self.check_new_connection(username)
        current = set(connection.channels) if connection else set()
        self._check_channel_limit(current | set(wanted))

        user = self.users.get(username)
        if user is None:
            user = User(
                username=username, last_active=now, uuid=ids(), lost_up_to=self.collected_up_to
            )
            self.users[username] = user
            self._merge_state(user, fresh_user_state or {})
        user.public_keys = list(state_public_keys)
        self._merge_state(user, user_state or {})
        user.last_active = now

        if connection is None:
            if not self._user_present(username):
                self._event("user_online", now, ids, user=username)
            connection = Connection(
                conn_id=conn_id,
                username=username,
                created=now,
                last_active=now,
                cursor=self._seq,
            )
            if recover is not None and recover["epoch"] == self.epoch:
                connection.cursor = max(0, min(recover["seq"], self._seq))
            elif recover is not None:
                connection.gap_everywhere = True
            self.connections[conn_id] = connection
            user.connections[conn_id] = None
        else:
            connection.last_active = now
        outcome = ConnectOutcome(connection=connection, user=user)
        for name in wanted:
            config = (channel_configs or {}).get(name)
            self._join(connection, name, config, now, outcome, ids, joined_at=connection.cursor)
        if recover is not None:
            outcome.recovered = not self._gaps(connection)
        return outcome

    def check_new_connection(self, username: str) -> None:
        """Raise if one more connection (of `username`) is over a limit: TooManyConnections
        (max_connections), TooManyUserConnections (max_connections_per_user). Updating or
        re-attaching an existing connection never counts as a new one."""
        if 0 < self.limits.max_connections <= len(self.connections):
            raise TooManyConnections()
        per_user = self.limits.max_connections_per_user
        user = self.users.get(username)
        if per_user > 0 and user is not None and len(user.connections) >= per_user:
            raise TooManyUserConnections(per_user)

    def subscribe(
        self,
        conn_id: str,
        channels: Iterable[str],
        now: datetime,
        channel_configs: Mapping[str, ChannelConfigChanges] | None = None,
        ids: IdSource = new_uuid,
    ) -> MembershipOutcome:
        connection = self.get_connection(conn_id)
        wanted = sorted(set(channels))
        self._check_channel_limit(set(connection.channels) | set(wanted))
        outcome = MembershipOutcome(connection=connection)
        for name in wanted:
            config = (channel_configs or {}).get(name)
            if self._join(connection, name, config, now, outcome, ids):
                outcome.changed_channels.append(name)
        connection.last_active = now
        return outcome

    def unsubscribe(
        self, conn_id: str, channels: Iterable[str], now: datetime, ids: IdSource = new_uuid
    ) -> MembershipOutcome:
        """Leave channels; names the connection is not in are ignored (as in 0.7.1)."""
        connection = self.get_connection(conn_id)
        outcome = MembershipOutcome(connection=connection)
        for name in sorted(set(channels)):
            if name in connection.channels:
                self._leave(connection, name, now, outcome, ids)
                outcome.changed_channels.append(name)
        connection.last_active = now
        return outcome

    def disconnect(
        self,
        conn_id: str,
        now: datetime,
        ids: IdSource = new_uuid,
        reason: str = REASON_DISCONNECT,
    ) -> Outcome | None:
        """Remove a connection at once (fix F17); None when it does not exist. `reason`:
        what the webhook events say ended it."""
        connection = self.connections.get(conn_id)
        if connection is None:
            return None
        outcome = Outcome()
        self._drop_connection(connection, now, outcome, ids, reason)
        return outcome

    def disconnect_users(
        self, usernames: Iterable[str], now: datetime, ids: IdSource = new_uuid
    ) -> UsersDisconnectOutcome:
        """End every connection of these users at once (presence parts now); final, as
        `disconnect` is. Unknown users, or users without connections, end none."""
        outcome = UsersDisconnectOutcome()
        for username in dict.fromkeys(usernames):
            user = self.users.get(username)
            conn_ids = list(user.connections) if user is not None else []
            for conn_id in conn_ids:
                connection = self.connections[conn_id]
                self._drop_connection(connection, now, outcome, ids, REASON_USER_DISCONNECT)
            outcome.ended[username] = conn_ids
        return outcome

    def get_connection(self, conn_id: str) -> Connection:
        connection = self.connections.get(conn_id)
        if connection is None:
            raise UnknownConnection(conn_id)
        return connection

    # ------------------------------------------------------------------ listeners

    def attach(
        self, conn_id: str, now: datetime, node: str = "local", ids: IdSource = new_uuid
    ) -> Catchup:
        """A listener (socket, poll) on `node` attaches: count it, make the connection present
        again if it was absent, and return what it missed (gaps first)."""
        connection = self.get_connection(conn_id)
        connection.listeners += 1
        connection.listeners_by_node[node] = connection.listeners_by_node.get(node, 0) + 1
        self.touch(conn_id, now)
        outcome = Catchup()
        if not connection.present:
            self._make_present(connection, now, outcome, ids)
        for name in connection.channels:
            channel = self.channels.get(name)
            if channel is not None:
                self._expire(channel, now)
        outcome.frames = self.catchup_frames(connection)
        outcome.seq = self._seq
        connection.gap_everywhere = False
        return outcome

    def catchup_from(self, conn_id: str, seen: int) -> Catchup | None:
        """What a long poll whose client has seen everything up to `seq` `seen` (in this
        epoch) gets first, without attaching: reads only, so a node can serve it from its
        replica without a command. None when only an Attach can serve it: the connection is
        unknown here or absent (presence must change), recovers from another epoch, the
        client saw more than this replica holds, or a channel's frames expire
        (`history_ttl`: expiry is a change)."""
        connection = self.connections.get(conn_id)
        if (
            connection is None
            or not connection.present
            or connection.gap_everywhere
            or not 0 <= seen <= self._seq
        ):
            return None
        for name in connection.channels:
            channel = self.channels.get(name)
            if channel is not None and channel.config.history_ttl > 0:
                return None
        return Catchup(frames=self.catchup_frames(connection, seen), seq=self._seq)

    def keep_polling(
        self, conn_ids: Sequence[str], seen: Sequence[int], now: datetime, ids: IdSource = new_uuid
    ) -> Outcome:
        """Connections a node served long polls for without attaching (`catchup_from`), with
        what each client has seen: they were active (kept from garbage collection and
        present, as an attached poll keeps them) and their catchup position moves up to
        what the client has, for a listener that attaches later."""
        outcome = Outcome()
        for conn_id, position in zip(conn_ids, seen, strict=False):  # the same on every replica
            connection = self.connections.get(conn_id)
            if connection is None:
                continue  # ended meanwhile
            self.touch(conn_id, now)
            if connection.listeners == 0 and not connection.gap_everywhere:
                connection.cursor = max(connection.cursor, min(position, self._seq))
            if not connection.present:
                self._make_present(connection, now, outcome, ids)
        return outcome

    def detach(self, conn_id: str, served_up_to: int, now: datetime, node: str = "local") -> None:
        """A listener went away having sent the client everything up to `served_up_to`."""
        connection = self.connections.get(conn_id)
        if connection is None or connection.listeners_by_node.get(node, 0) < 1:
            return  # e.g. a detach re-sent after its node was forgotten: nothing to undo
        connection.listeners = max(0, connection.listeners - 1)
        left_on_node = connection.listeners_by_node.get(node, 0) - 1
        if left_on_node > 0:
            connection.listeners_by_node[node] = left_on_node
        else:
            connection.listeners_by_node.pop(node, None)
        if connection.listeners == 0:
            connection.cursor = served_up_to
        self.touch(conn_id, now)

    def forget_node(self, node: str, now: datetime, ids: IdSource = new_uuid) -> GarbageOutcome:
        """A node died: its listeners are gone, and connections it alone listened to end now
        (presence parts) rather than wait for their clients to come back."""
        outcome = GarbageOutcome()
        for connection in list(self.connections.values()):
            lost = connection.listeners_by_node.pop(node, 0)
            if not lost:
                continue
            connection.listeners = max(0, connection.listeners - lost)
            if connection.listeners == 0:
                self._drop_connection(connection, now, outcome, ids, REASON_NODE_LOST)
                outcome.connections.append(connection.conn_id)
        return outcome

    def totals(self) -> Totals:
        return Totals(
            connections=len(self.connections),
            channels=len(self.channels),
            users=len(self.users),
            users_connected=len(self.connected_users()),
            messages_in=self.stats.total_unique_messages,
            frames_out=self.stats.total_messages,
        )

    def connected_users(self) -> list[User]:
        """Users holding at least one present connection, by name."""
        connected = (
            user
            for user in self.users.values()
            if any(self.connections[conn_id].present for conn_id in user.connections)
        )
        return sorted(connected, key=lambda user: user.username)

    def connections_by_user(self) -> list[Connection]:
        """Every connection, by user name, then age."""
        return sorted(self.connections.values(), key=lambda c: (c.username, c.created))

    def listener_nodes(self) -> set[str]:
        """Ids of the nodes that hold listeners of some connection."""
        return {node for c in self.connections.values() for node in c.listeners_by_node}

    def touch(self, conn_id: str, now: datetime) -> bool:
        """Activity on a connection (client frame, poll, heartbeat sent) keeps it and its user."""
        connection = self.connections.get(conn_id)
        if connection is None:
            return False
        connection.last_active = now
        self.users[connection.username].last_active = now
        return True

    def catchup_frames(self, connection: Connection, seen: int | None = None) -> list[Frame]:
        """A gap frame for every channel (and the direct messages) where frames it missed are
        gone, then the frames stored after its position that it may see, oldest first.

        A channel's frames count only from when the connection joined it. `seen`: the
        position its client says it has (else the connection's cursor).
        """
        username = connection.username
        missed: list[StoredFrame] = []
        for name in connection.channels:
            channel = self.channels.get(name)
            if channel is not None:
                floor = self._floor(connection, name, seen)
                missed.extend(
                    stored
                    for stored in channel.frames
                    if stored.seq > floor and stored.visible_to(username)
                )
        user = self.users.get(username)
        if user is not None:
            floor = self._floor(connection, None, seen)
            missed.extend(stored for stored in user.frames if stored.seq > floor)
        missed.sort(key=lambda stored: stored.seq)
        gaps = [
            {"type": "gap", "channel": name, "seq": seq, "catchup": True}
            for name, seq in self._gaps(connection, seen)
        ]
        return gaps + [{**stored.frame, "catchup": True} for stored in missed]

    def _floor(
        self, connection: Connection, channel_name: str | None, seen: int | None = None
    ) -> int:
        """The connection's position on a channel (None: its direct messages): what it has
        seen (`seen`, the client's word, else its cursor), or joined after; 0 when it came
        from another epoch."""
        if connection.gap_everywhere:
            return 0
        cursor = connection.cursor if seen is None else seen
        if channel_name is None:
            return cursor
        return max(cursor, connection.channels[channel_name])

    def _gaps(
        self, connection: Connection, seen: int | None = None
    ) -> list[tuple[str | None, int]]:
        """(channel, position) where the connection missed frames catchup can no longer give;
        channel None for its direct messages. A gap's seq is the client's position there:
        frames after it and before the catchup that follows were lost (`/history` with
        `since_seq` = that seq gets what history kept of them)."""
        gaps: list[tuple[str | None, int]] = []
        for name in sorted(connection.channels):
            channel = self.channels.get(name)
            floor = self._floor(connection, name, seen)
            if connection.gap_everywhere or (channel is not None and channel.lost_up_to > floor):
                gaps.append((name, floor))
        user = self.users.get(connection.username)
        floor = self._floor(connection, None, seen)
        if connection.gap_everywhere or (user is not None and user.lost_up_to > floor):
            gaps.append((None, floor))
        return gaps

    # ------------------------------------------------------------------ users

    def set_user_state(
        self,
        username: str,
        user_state: Mapping[str, StateValue],
        now: datetime,
        state_public_keys: Iterable[str] | None = None,
        ids: IdSource = new_uuid,
    ) -> UserStateOutcome:
        """Merge state; tell channels with notify_state when any key changed."""
        user = self.users.get(username)
        if user is None:
            raise UnknownUser(username)
        changed = self._merge_state(user, user_state)
        if state_public_keys is not None:
            user.public_keys = list(state_public_keys)
        user.last_active = now
        outcome = UserStateOutcome(user=user, changed=changed)
        if changed:
            public_changed = [item for item in changed if item["key"] in user.public_keys]
            for name in self.channels_of_user(user):
                channel = self.channels[name]
                if not channel.config.notify_state:
                    continue
                frame = {
                    "uuid": ids(),
                    "type": "user_state_change",
                    "user": username,
                    "timestamp": now,
                    "catchup": False,
                    "channel": name,
                    "message": {"state": user.public_state, "changed": public_changed},
                }
                outcome.deliveries.append(self._emit_to_channel(channel, frame, now))
        return outcome

    def channels_of_user(self, user: User) -> list[str]:
        names: set[str] = set()
        for conn_id in user.connections:
            names.update(self.connections[conn_id].channels)
        return sorted(names)

    @staticmethod
    def _merge_state(user: User, changes: Mapping[str, StateValue]) -> list[dict[str, Any]]:
        """Write keys whose value differs; null on a missing key is a no-op (0.7.1 rules)."""
        changed = []
        for key, value in changes.items():
            if key not in user.state and value is None:
                continue
            old = user.state.get(key)
            if key in user.state and type(old) is type(value) and old == value:
                continue
            user.state[key] = value
            changed.append({"key": key, "value": value})
        return changed

    # ------------------------------------------------------------------ channels

    def set_channel_configs(
        self, configs: Mapping[str, ChannelConfigChanges], now: datetime, ids: IdSource = new_uuid
    ) -> list[str]:
        """Create channels or merge the given keys into their configs (fix F2)."""
        for name, changes in configs.items():
            channel = self.channels.get(name)
            if channel is None:
                self.channels[name] = Channel(
                    uuid=ids(),
                    name=name,
                    config=self.limits.new_channel_config(name, changes),
                    last_active=now,
                    lost_up_to=self.collected_up_to,
                )
            else:
                channel.config = channel.config.merged(changes)
                channel.last_active = now
                self._trim_history(channel)
                # a channel that stops keeping frames drops those it kept: a frame lost
                # later must never sit behind a frame catchup still gives (a gap covers
                # only what comes before the catchup that follows it)
                keeps = channel.config.store_frames and channel.config.catchup_size > 0
                self._trim_frames(
                    channel.frames, channel.config.catchup_size if keeps else 0, channel
                )
                self._expire(channel, now)
        return list(configs)

    # ------------------------------------------------------------------ messages

    def publish(
        self,
        messages: Iterable[PublishItem],
        now: datetime,
        idempotency_window: float = 300.0,
    ) -> MessagesOutcome:
        """Route messages to channels or users. Items with no target are dropped (0.7.1).

        An item whose `idempotency_key` was published to the same channel (or the same
        direct users) within `idempotency_window` seconds is answered with that first
        message and not sent again."""
        outcome = MessagesOutcome()
        self._expire_idempotency(now)
        for item in messages:
            channel_name = item.get("channel")
            pm_users = tuple(item.get("pm_users") or ())
            exclude_users = tuple(item.get("exclude_users") or ())
            if not channel_name and not pm_users:
                continue
            key = item.get("idempotency_key")
            scoped_key = idempotency_scope(channel_name, pm_users, key) if key else None
            if scoped_key is not None:
                first = self.idempotency.get(scoped_key)
                if first is not None:
                    outcome.accepted.append(first.accepted)
                    continue
            accepted = {**item, "edited": None}
            outcome.accepted.append(accepted)
            if scoped_key is not None:
                expires = now + timedelta(seconds=idempotency_window)
                self.idempotency[scoped_key] = IdempotencyRecord(expires, accepted)
            self.stats.total_unique_messages += 1
            frame: Frame = {
                "channel": channel_name or None,
                "uuid": item["uuid"],
                "timestamp": item["timestamp"],
                "user": item["user"],
            }
            if "message" in item:
                frame["message"] = item["message"]
            frame.update({"edited": None, "catchup": False, "type": "message"})
            if channel_name:
                channel = self.channels.get(channel_name)
                if channel is None:
                    continue  # accepted but delivered nowhere; /message never creates channels
                delivery = self._emit_to_channel(channel, frame, now, pm_users, exclude_users)
                if (
                    channel.config.store_history
                    and not item.get("no_history")
                    and not pm_users
                    and channel.config.history_size > 0
                ):
                    # shares `frame` with the catchup copy, so an edit changes both
                    channel.history.append(
                        StoredFrame(delivery.seq, frame, (), exclude_users, stored_at=now)
                    )
                    self._trim_history(channel)
            else:
                delivery = self._emit_to_users(pm_users, frame, now)
            outcome.deliveries.append(delivery)
        return outcome

    def edit(self, edits: Iterable[EditItem], now: datetime) -> MessagesOutcome:
        """Change stored messages and broadcast `message:edit` with the edit's own routing."""
        outcome = MessagesOutcome()
        for item in edits:
            outcome.accepted.append(dict(item))
            changes = {key: value for key, value in item.items() if key in EDITABLE_KEYS}
            channel_name = item.get("channel")
            frame: Frame = {"channel": channel_name or None, "uuid": item["uuid"]}
            for key in ("message", "user", "timestamp"):
                if key in item:
                    frame[key] = item[key]
            frame.update({"edited": item.get("edited"), "type": "message:edit"})
            pm_users = tuple(item.get("pm_users") or ())
            if channel_name:
                channel = self.channels.get(channel_name)
                if channel is None:
                    continue
                stored = self._find_message(channel, item["uuid"])
                if stored is not None:
                    stored.frame.update(changes)
                outcome.deliveries.append(
                    self._emit_to_channel(
                        channel, frame, now, pm_users, tuple(item.get("exclude_users") or ())
                    )
                )
            elif pm_users:
                for username in pm_users:
                    user = self.users.get(username)
                    for stored in user.frames if user else ():
                        if (
                            stored.frame.get("type") == "message"
                            and stored.frame["uuid"] == item["uuid"]
                        ):
                            stored.frame.update(changes)
                outcome.deliveries.append(self._emit_to_users(pm_users, frame, now))
        return outcome

    def delete(self, deletes: Iterable[DeleteItem], now: datetime) -> MessagesOutcome:
        """Remove stored messages and broadcast `message:delete`."""
        outcome = MessagesOutcome()
        for item in deletes:
            outcome.accepted.append(dict(item))
            channel_name = item.get("channel")
            message_uuid = item["uuid"]
            frame: Frame = {
                "channel": channel_name or None,
                "uuid": message_uuid,
                "type": "message:delete",
            }
            pm_users = tuple(item.get("pm_users") or ())
            if channel_name:
                channel = self.channels.get(channel_name)
                if channel is None:
                    continue
                channel.history = [s for s in channel.history if s.frame["uuid"] != message_uuid]
                self._remove_message_frame(channel.frames, message_uuid)
                outcome.deliveries.append(
                    self._emit_to_channel(
                        channel, frame, now, pm_users, tuple(item.get("exclude_users") or ())
                    )
                )
            elif pm_users:
                for username in pm_users:
                    user = self.users.get(username)
                    if user is not None:
                        self._remove_message_frame(user.frames, message_uuid)
                outcome.deliveries.append(self._emit_to_users(pm_users, frame, now))
        return outcome

    # ------------------------------------------------------------------ garbage collection

    def collect_garbage(
        self,
        now: datetime,
        *,
        connections_after: float,
        users_after: float,
        channels_after: float,
        presence_grace: float | None = None,
        ids: IdSource = new_uuid,
    ) -> GarbageOutcome:
        """Remove what has been idle too long (fix F8). A listened-to connection never is.

        A connection without a listener for `presence_grace` seconds (None: never) becomes
        absent: its user parts where no other present connection of theirs remains. Expired
        history, catchup frames and idempotency keys go too."""
        outcome = GarbageOutcome()
        # Runs every second on every replica, over everything: cutoffs are computed once and
        # compared, and what is listened to or connected is passed over first.
        conn_cutoff = _cutoff(now, connections_after)
        grace_cutoff = None if presence_grace is None else _cutoff(now, presence_grace)
        unlistened = [c for c in self.connections.values() if not c.listeners]
        for connection in unlistened:
            if connection.last_active < conn_cutoff:
                self._drop_connection(connection, now, outcome, ids, REASON_GC)
                outcome.connections.append(connection.conn_id)
            elif (
                grace_cutoff is not None
                and connection.present
                and connection.last_active < grace_cutoff
            ):
                self._make_absent(connection, now, outcome, ids)
                outcome.absent.append(connection.conn_id)
        user_cutoff = _cutoff(now, users_after)
        idle_users = [
            u for u in self.users.values() if not u.connections and u.last_active < user_cutoff
        ]
        for user in idle_users:
            self._forget(user)
            del self.users[user.username]
            outcome.users.append(user.username)
        channel_cutoff = _cutoff(now, channels_after)
        idle_channels = [
            c for c in self.channels.values() if not c.members and c.last_active < channel_cutoff
        ]
        if idle_channels:  # rare: only then is it worth finding the channels still subscribed
            in_use = {name for c in self.connections.values() for name in c.channels}
            for channel in idle_channels:
                if channel.name not in in_use:
                    self._forget(channel)
                    del self.channels[channel.name]
                    outcome.channels.append(channel.name)
        for channel in self.channels.values():
            if channel.config.history_ttl > 0:
                self._expire(channel, now)
        self._expire_idempotency(now)
        return outcome

    # ------------------------------------------------------------------ read models

    def history(
        self,
        channel_name: str,
        now: datetime,
        *,
        since_seq: int = 0,
        limit: int = 100,
        reverse: bool = False,
        username: str | None = None,
    ) -> HistoryPage:
        """The channel's stored messages with a seq above `since_seq`, oldest first (newest
        first if `reverse`), at most `limit`; with `username`, only those that user may see.
        An unknown channel has none. Reads only: what expired is skipped, not removed."""
        channel = self.channels.get(channel_name)
        if channel is None:
            return HistoryPage([], False)
        oldest_kept = self._oldest_kept(channel, now)
        selected = [
            stored
            for stored in channel.history
            if stored.seq > since_seq
            and not _older(stored, oldest_kept)
            and (username is None or stored.visible_to(username))
        ]
        if reverse:
            selected.reverse()
        return HistoryPage([history_entry(s) for s in selected[:limit]], len(selected) > limit)

    def channel_info(
        self,
        channel: Channel,
        *,
        include_history: bool = True,
        include_users: bool = True,
    ) -> dict[str, Any]:
        return {
            "uuid": channel.uuid,
            "name": channel.name,
            "long_name": channel.long_name,
            "settings": channel.config.as_dict(),
            "history": [history_entry(s) for s in channel.history] if include_history else [],
            "last_active": channel.last_active,
            "total_connections": channel.total_connections,
            "total_users": len(channel.members) if include_users else 0,
            "users": sorted(channel.members) if include_users else [],
        }

    def channels_info(
        self,
        names: Iterable[str] | None = None,
        *,
        include_history: bool = True,
        include_users: bool = True,
        exclude_channels: Iterable[str] = (),
        return_public_state: bool = False,
    ) -> dict[str, Any]:
        """The `{"channels": {...}, "users": [...]}` block of /info, /connect and friends."""
        excluded = set(exclude_channels)
        selected = sorted(self.channels) if names is None else list(dict.fromkeys(names))
        channels: dict[str, Any] = {}
        usernames: set[str] = set()
        for name in selected:
            channel = self.channels.get(name)
            if channel is None or name in excluded:
                continue
            channels[name] = self.channel_info(
                channel, include_history=include_history, include_users=include_users
            )
            if include_users:
                usernames.update(channel.members)
        users = []
        for username in sorted(usernames):
            user = self.users[username]
            state = user.public_state if return_public_state else dict(user.state)
            users.append({"user": username, "state": state})
        return {"channels": channels, "users": users}

    # ------------------------------------------------------------------ internals

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @property
    def seq(self) -> int:
        """The seq of the newest frame; what a listener attached now has seen."""
        return self._seq

    def _check_channel_limit(self, channels: set[str]) -> None:
        if len(channels) > self.limits.max_channels_per_connection:
            raise TooManyChannels(self.limits.max_channels_per_connection)

    def _join(
        self,
        connection: Connection,
        name: str,
        config: ChannelConfigChanges | None,
        now: datetime,
        outcome: Outcome,
        ids: IdSource,
        joined_at: int | None = None,
    ) -> bool:
        """Put a connection in a channel (created with `config` if new). False if already in.
        Catchup counts the channel's frames from `joined_at` (default: now). An absent
        connection joins the channel's members only once a listener attaches."""
        channel = self.channels.get(name)
        if channel is None:
            channel = Channel(
                uuid=ids(),
                name=name,
                config=self.limits.new_channel_config(name, config),
                last_active=now,
                lost_up_to=self.collected_up_to,
            )
            self.channels[name] = channel
        if name in connection.channels:
            return False
        channel.last_active = now
        connection.channels[name] = self._seq if joined_at is None else joined_at
        if not connection.present:
            return True
        self._add_member(channel, connection, now, outcome, ids)
        return True

    def _add_member(
        self,
        channel: Channel,
        connection: Connection,
        now: datetime,
        outcome: Outcome,
        ids: IdSource,
    ) -> None:
        """Count the connection among the channel's members; "joined" if its user was not."""
        username = connection.username
        first_of_user = username not in channel.members
        if not channel.members:
            self._event("channel_occupied", now, ids, channel=channel.name)
        channel.members.setdefault(username, {})[connection.conn_id] = None
        if first_of_user:
            self._event("member_added", now, ids, channel=channel.name, user=username)
        if first_of_user and channel.config.notify_presence:
            outcome.deliveries.append(self._presence(channel, username, "joined", now, ids))

    def _leave(
        self, connection: Connection, name: str, now: datetime, outcome: Outcome, ids: IdSource
    ) -> None:
        connection.channels.pop(name, None)
        channel = self.channels.get(name)
        if channel is None:
            return
        channel.last_active = now
        self._remove_member(channel, connection, now, outcome, ids)

    def _remove_member(
        self,
        channel: Channel,
        connection: Connection,
        now: datetime,
        outcome: Outcome,
        ids: IdSource,
    ) -> None:
        """No longer count the connection among the members; "parted" if it was its user's
        last there."""
        username = connection.username
        conns = channel.members.get(username)
        if conns is None:
            return
        conns.pop(connection.conn_id, None)
        if not conns:
            del channel.members[username]
            self._event("member_removed", now, ids, channel=channel.name, user=username)
            if channel.config.notify_presence:
                outcome.deliveries.append(self._presence(channel, username, "parted", now, ids))
            if not channel.members:
                self._event("channel_vacated", now, ids, channel=channel.name)

    def _make_absent(
        self, connection: Connection, now: datetime, outcome: Outcome, ids: IdSource
    ) -> None:
        """Its user parts wherever this was their last present connection; the connection
        keeps its channels and cursor for a later re-attach."""
        connection.present = False
        for name in connection.channels:
            channel = self.channels.get(name)
            if channel is not None:
                self._remove_member(channel, connection, now, outcome, ids)
        if not self._user_present(connection.username):
            self._event("user_offline", now, ids, user=connection.username, reason=REASON_GC)

    def _make_present(
        self, connection: Connection, now: datetime, outcome: Outcome, ids: IdSource
    ) -> None:
        if not self._user_present(connection.username):
            self._event("user_online", now, ids, user=connection.username)
        connection.present = True
        for name in connection.channels:
            channel = self.channels.get(name)
            if channel is not None:
                channel.last_active = now
                self._add_member(channel, connection, now, outcome, ids)

    def _drop_connection(
        self, connection: Connection, now: datetime, outcome: Outcome, ids: IdSource, reason: str
    ) -> None:
        """End a connection: it leaves its channels, then `connection_closed`, then
        `user_offline` if it was its user's last present one (API.md §4.5's order)."""
        username = connection.username
        for name in list(connection.channels):
            self._leave(connection, name, now, outcome, ids)
        user = self.users.get(username)
        if user is not None:
            user.connections.pop(connection.conn_id, None)
            user.last_active = now
        self.connections.pop(connection.conn_id, None)
        conn_id = connection.conn_id
        self._event("connection_closed", now, ids, conn_id=conn_id, user=username, reason=reason)
        if connection.present and not self._user_present(username):
            self._event("user_offline", now, ids, user=username, reason=reason)

    def _user_present(self, username: str) -> bool:
        """Whether the user holds a present connection: online, for webhooks."""
        user = self.users.get(username)
        return user is not None and any(
            self.connections[conn_id].present for conn_id in user.connections
        )

    def _event(
        self,
        name: str,
        now: datetime,
        ids: IdSource,
        *,
        user: str | None = None,
        channel: str | None = None,
        conn_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Queue a webhook event, if webhooks want it (see core.webhooks)."""
        queue = self.webhooks
        if not queue.wants(name):
            return
        event = WebhookEvent(queue.next_number, ids(), name, now, user, channel, conn_id, reason)
        queue.add(event)

    def acknowledge_webhooks(self, up_to: int, now: datetime, delivered: bool) -> int:
        """The sender is done with the events numbered up to `up_to` (the receiver took
        them, or they were given up on): drop them on this replica; how many."""
        return self.webhooks.acknowledge(up_to, now, delivered)

    def _presence(
        self, channel: Channel, username: str, action: str, now: datetime, ids: IdSource
    ) -> Delivery:
        users: list[dict[str, Any]] = []
        if channel.config.broadcast_presence_with_user_lists:
            users = [
                {"user": member, "state": self.users[member].public_state}
                for member in sorted(channel.members)
            ]
        user = self.users[username]
        frame = {
            "uuid": ids(),
            "type": "presence",
            "user": username,
            "users": users,
            "timestamp": now,
            "channel": channel.name,
            "message": {"action": action},
            "state": user.public_state if action == "joined" else None,
            "catchup": False,
        }
        return self._emit_to_channel(channel, frame, now, exclude_users=(username,))

    def _emit_to_channel(
        self,
        channel: Channel,
        frame: Frame,
        now: datetime,
        pm_users: tuple[str, ...] = (),
        exclude_users: tuple[str, ...] = (),
    ) -> Delivery:
        """Store the frame for catchup (if the channel keeps frames) and address it.

        Every frame sent to a channel is channel activity, as in 0.7.1's add_message (so a
        channel apps still publish to is not collected under fix F8). exclude_users wins
        over pm_users.
        """
        channel.last_active = now
        stored = StoredFrame(self._next_seq(), frame, pm_users, exclude_users, stored_at=now)
        frame["seq"] = stored.seq
        self._expire(channel, now)
        if channel.config.store_frames and channel.config.catchup_size > 0:
            channel.frames.append(stored)
            self._trim_frames(channel.frames, channel.config.catchup_size, channel)
        else:
            channel.lost_up_to = stored.seq
        if pm_users or exclude_users:
            recipients = tuple(
                conn_id
                for username, conns in channel.members.items()
                if stored.visible_to(username)
                for conn_id in conns
            )
        else:  # everyone: the common case, without a per-member check
            recipients = tuple(chain.from_iterable(channel.members.values()))
        self.stats.total_messages += len(recipients)
        return Delivery(stored.seq, frame, recipients)

    def _emit_to_users(self, usernames: Iterable[str], frame: Frame, now: datetime) -> Delivery:
        """A direct message: every connection of each listed (known) user, whatever its channels."""
        seq = self._next_seq()
        frame["seq"] = seq
        recipients: list[str] = []
        for username in dict.fromkeys(usernames):
            user = self.users.get(username)
            if user is None:  # a user made later under this name may be a recovering client
                self.collected_up_to = seq
                continue
            user.frames.append(StoredFrame(seq, frame, stored_at=now))
            self._trim_frames(user.frames, USER_FRAMES_KEPT, user)
            user.last_active = now
            recipients.extend(user.connections)
        self.stats.total_messages += len(recipients)
        return Delivery(seq, frame, tuple(recipients))

    @staticmethod
    def _find_message(channel: Channel, message_uuid: str) -> StoredFrame | None:
        for stored in channel.history:
            if stored.frame["uuid"] == message_uuid:
                return stored
        for stored in channel.frames:
            if stored.frame.get("type") == "message" and stored.frame["uuid"] == message_uuid:
                return stored
        return None

    @staticmethod
    def _remove_message_frame(frames: Any, message_uuid: str) -> None:
        for stored in frames:
            if stored.frame.get("type") == "message" and stored.frame["uuid"] == message_uuid:
                frames.remove(stored)
                return

    @staticmethod
    def _trim_frames(frames: deque[StoredFrame], size: int, owner: Channel | User) -> None:
        """Keep the newest `size` frames; what goes is lost to catchup (a gap from now on)."""
        while len(frames) > size:
            owner.lost_up_to = max(owner.lost_up_to, frames.popleft().seq)

    @staticmethod
    def _oldest_kept(channel: Channel, now: datetime) -> datetime | None:
        """Frames stored before this time have expired (None: history_ttl 0, none do)."""
        ttl = channel.config.history_ttl
        return now - timedelta(seconds=ttl) if ttl > 0 else None

    def _expire(self, channel: Channel, now: datetime) -> None:
        """Drop history and catchup frames older than the channel's history_ttl."""
        oldest_kept = self._oldest_kept(channel, now)
        if oldest_kept is None:
            return
        while channel.frames and _older(channel.frames[0], oldest_kept):
            channel.lost_up_to = max(channel.lost_up_to, channel.frames.popleft().seq)
        if channel.history and _older(channel.history[0], oldest_kept):
            channel.history = [s for s in channel.history if not _older(s, oldest_kept)]

    def _forget(self, owner: Channel | User) -> None:
        newest = owner.frames[-1].seq if owner.frames else 0
        self.collected_up_to = max(self.collected_up_to, owner.lost_up_to, newest)

    def _expire_idempotency(self, now: datetime) -> None:
        """Forget keys past their window (kept in the order they came, so from the front)."""
        keys = self.idempotency
        while keys:
            scoped_key = next(iter(keys))
            if keys[scoped_key].expires > now:
                break
            del keys[scoped_key]

    @staticmethod
    def _trim_history(channel: Channel) -> None:
        size = channel.config.history_size
        if len(channel.history) > size:
            channel.history = channel.history[len(channel.history) - size :]


def _cutoff(now: datetime, seconds: float) -> datetime:
    """What was last active before this is idle for more than `seconds` (no overflow for
    the very long times a setting may give)."""
    try:
        return now - timedelta(seconds=seconds)
    except OverflowError:
        return datetime.min


def _older(stored: StoredFrame, oldest_kept: datetime | None) -> bool:
    return (
        oldest_kept is not None and stored.stored_at is not None and stored.stored_at < oldest_kept
    )


def idempotency_scope(channel: str | None, pm_users: Iterable[str], key: str) -> str:
    """Where an idempotency key counts: its channel, else its set of direct users."""
    scope = f"channel:{channel}" if channel else "users:" + ",".join(sorted(set(pm_users)))
    return f"{scope}\n{key}"


def history_entry(stored: StoredFrame) -> dict[str, Any]:
    """A history item as 0.7.1 shows it: the message plus its delivery fields."""
    return {
        **stored.frame,
        "pm_users": list(stored.pm_users),
        "exclude_users": list(stored.exclude_users),
        "no_history": False,
    }
