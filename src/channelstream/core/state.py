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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channelstream.core.errors import (
    ConnectionOwnedByOther,
    TooManyChannels,
    TooManyConnections,
    UnknownConnection,
    UnknownUser,
)
from channelstream.core.model import (
    Channel,
    ChannelConfig,
    ChannelConfigChanges,
    Connection,
    DeleteItem,
    Delivery,
    EditItem,
    Frame,
    PublishItem,
    StateValue,
    Stats,
    StoredFrame,
    Totals,
    User,
)

EDITABLE_KEYS = ("uuid", "timestamp", "user", "message", "edited")


@dataclass(frozen=True)
class Limits:
    max_channels_per_connection: int = 1000
    max_connections: int = 0  # 0: no limit


@dataclass(frozen=True)
class Catchup:
    """Frames a connection missed, oldest first, and the seq they bring it up to."""

    frames: list[Frame]
    seq: int


@dataclass
class Outcome:
    """What an operation asks the caller to send."""

    deliveries: list[Delivery] = field(default_factory=list)


@dataclass
class ConnectOutcome(Outcome):
    connection: Connection | None = None
    user: User | None = None


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
class GarbageOutcome(Outcome):
    connections: list[str] = field(default_factory=list)
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
        ids: IdSource = new_uuid,
    ) -> ConnectOutcome:
        """Create (or, for the same user, update in place) a connection and join channels."""
        wanted = sorted(set(channels))
        connection = self.connections.get(conn_id)
        if connection is not None and connection.username != username:
            raise ConnectionOwnedByOther(conn_id)
        if connection is None and 0 < self.limits.max_connections <= len(self.connections):
            raise TooManyConnections()
        current = set(connection.channels) if connection else set()
        self._check_channel_limit(current | set(wanted))

        user = self.users.get(username)
        if user is None:
            user = User(username=username, last_active=now, uuid=ids())
            self.users[username] = user
            self._merge_state(user, fresh_user_state or {})
        user.public_keys = list(state_public_keys)
        self._merge_state(user, user_state or {})
        user.last_active = now

        if connection is None:
            connection = Connection(
                conn_id=conn_id,
                username=username,
                created=now,
                last_active=now,
                cursor=self._seq,
            )
            self.connections[conn_id] = connection
            user.connections[conn_id] = None
        else:
            connection.last_active = now
        outcome = ConnectOutcome(connection=connection, user=user)
        for name in wanted:
            self._join(connection, name, (channel_configs or {}).get(name), now, outcome, ids)
        return outcome

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

    def disconnect(self, conn_id: str, now: datetime, ids: IdSource = new_uuid) -> Outcome | None:
        """Remove a connection at once (fix F17); None when it does not exist."""
        connection = self.connections.get(conn_id)
        if connection is None:
            return None
        outcome = Outcome()
        self._drop_connection(connection, now, outcome, ids)
        return outcome

    def get_connection(self, conn_id: str) -> Connection:
        connection = self.connections.get(conn_id)
        if connection is None:
            raise UnknownConnection(conn_id)
        return connection

    # ------------------------------------------------------------------ listeners

    def attach(self, conn_id: str, now: datetime, node: str = "local") -> Catchup:
        """A listener (socket, poll) on `node` attaches: count it and return what it missed."""
        connection = self.get_connection(conn_id)
        connection.listeners += 1
        connection.listeners_by_node[node] = connection.listeners_by_node.get(node, 0) + 1
        self.touch(conn_id, now)
        return Catchup(frames=self.catchup_frames(connection), seq=self._seq)

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
                self._drop_connection(connection, now, outcome, ids)
                outcome.connections.append(connection.conn_id)
        return outcome

    def totals(self) -> Totals:
        return Totals(
            connections=len(self.connections),
            channels=len(self.channels),
            users=len(self.users),
            users_connected=sum(1 for user in self.users.values() if user.connections),
            messages_in=self.stats.total_unique_messages,
            frames_out=self.stats.total_messages,
        )

    def connected_users(self) -> list[User]:
        """Users holding at least one connection, by name."""
        connected = (user for user in self.users.values() if user.connections)
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

    def catchup_frames(self, connection: Connection) -> list[Frame]:
        """Frames stored after the connection's cursor that it may see, oldest first.

        A channel's frames count only from when the connection joined it.
        """
        username = connection.username
        missed: list[StoredFrame] = []
        for name, joined_at in connection.channels.items():
            channel = self.channels.get(name)
            if channel is None:
                continue
            floor = max(connection.cursor, joined_at)
            missed.extend(
                stored
                for stored in channel.frames
                if stored.seq > floor and stored.visible_to(username)
            )
        user = self.users.get(username)
        if user is not None:
            missed.extend(stored for stored in user.frames if stored.seq > connection.cursor)
        missed.sort(key=lambda stored: stored.seq)
        return [{**stored.frame, "catchup": True} for stored in missed]

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
                    config=ChannelConfig().merged(changes),
                    last_active=now,
                )
            else:
                channel.config = channel.config.merged(changes)
                channel.last_active = now
                self._trim_history(channel)
        return list(configs)

    # ------------------------------------------------------------------ messages

    def publish(self, messages: Iterable[PublishItem], now: datetime) -> MessagesOutcome:
        """Route messages to channels or users. Items with no target are dropped (0.7.1)."""
        outcome = MessagesOutcome()
        for item in messages:
            channel_name = item.get("channel")
            pm_users = tuple(item.get("pm_users") or ())
            exclude_users = tuple(item.get("exclude_users") or ())
            if not channel_name and not pm_users:
                continue
            outcome.accepted.append({**item, "edited": None})
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
                    channel.history.append(StoredFrame(delivery.seq, frame, (), exclude_users))
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
        ids: IdSource = new_uuid,
    ) -> GarbageOutcome:
        """Remove what has been idle too long (fix F8). A listened-to connection never is."""
        outcome = GarbageOutcome()
        for connection in list(self.connections.values()):
            idle = (now - connection.last_active).total_seconds()
            if connection.listeners == 0 and idle > connections_after:
                self._drop_connection(connection, now, outcome, ids)
                outcome.connections.append(connection.conn_id)
        for user in list(self.users.values()):
            if not user.connections and (now - user.last_active).total_seconds() > users_after:
                del self.users[user.username]
                outcome.users.append(user.username)
        for channel in list(self.channels.values()):
            idle = (now - channel.last_active).total_seconds()
            if not channel.members and idle > channels_after:
                del self.channels[channel.name]
                outcome.channels.append(channel.name)
        return outcome

    # ------------------------------------------------------------------ read models

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
    ) -> bool:
        """Put a connection in a channel (created with `config` if new). False if already in."""
        channel = self.channels.get(name)
        if channel is None:
            channel = Channel(
                uuid=ids(),
                name=name,
                config=ChannelConfig().merged(config or ChannelConfigChanges()),
                last_active=now,
            )
            self.channels[name] = channel
        if name in connection.channels:
            return False
        channel.last_active = now
        connection.channels[name] = self._seq
        username = connection.username
        first_of_user = username not in channel.members
        channel.members.setdefault(username, {})[connection.conn_id] = None
        if first_of_user and channel.config.notify_presence:
            outcome.deliveries.append(self._presence(channel, username, "joined", now, ids))
        return True

    def _leave(
        self, connection: Connection, name: str, now: datetime, outcome: Outcome, ids: IdSource
    ) -> None:
        connection.channels.pop(name, None)
        channel = self.channels.get(name)
        if channel is None:
            return
        channel.last_active = now
        username = connection.username
        conns = channel.members.get(username)
        if conns is None:
            return
        conns.pop(connection.conn_id, None)
        if not conns:
            del channel.members[username]
            if channel.config.notify_presence:
                outcome.deliveries.append(self._presence(channel, username, "parted", now, ids))

    def _drop_connection(
        self, connection: Connection, now: datetime, outcome: Outcome, ids: IdSource
    ) -> None:
        for name in list(connection.channels):
            self._leave(connection, name, now, outcome, ids)
        user = self.users.get(connection.username)
        if user is not None:
            user.connections.pop(connection.conn_id, None)
            user.last_active = now
        self.connections.pop(connection.conn_id, None)

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
        stored = StoredFrame(self._next_seq(), frame, pm_users, exclude_users)
        if channel.config.store_frames:
            channel.frames.append(stored)
        recipients = tuple(
            conn_id
            for username, conns in channel.members.items()
            if stored.visible_to(username)
            for conn_id in conns
        )
        self.stats.total_messages += len(recipients)
        return Delivery(stored.seq, frame, recipients)

    def _emit_to_users(self, usernames: Iterable[str], frame: Frame, now: datetime) -> Delivery:
        """A direct message: every connection of each listed (known) user, whatever its channels."""
        seq = self._next_seq()
        recipients: list[str] = []
        for username in dict.fromkeys(usernames):
            user = self.users.get(username)
            if user is None:
                continue
            user.frames.append(StoredFrame(seq, frame))
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
    def _trim_history(channel: Channel) -> None:
        size = channel.config.history_size
        if len(channel.history) > size:
            channel.history = channel.history[len(channel.history) - size :]


def history_entry(stored: StoredFrame) -> dict[str, Any]:
    """A history item as 0.7.1 shows it: the message plus its delivery fields."""
    return {
        **stored.frame,
        "pm_users": list(stored.pm_users),
        "exclude_users": list(stored.exclude_users),
        "no_history": False,
    }
