"""State changes as data: the unit a broker orders and every node applies.

Every change to the State is one of a closed set of frozen, typed operations (`Connect`,
`Subscribe`, `Publish`, `Attach`, ...), each applying itself to the State. A cluster of nodes
applying the same operations in the same order holds the same State (presence, history,
configs, user state, connections).

A `Command` wraps an operation with what every replica needs to agree on: the time it was
made (`now`), the node that made it, and an id from which the uuids the State makes while
applying it are derived.

On the wire (between nodes) an operation is a JSON object derived from its fields, with a
version: `{"v": 1, "type": "connect", "username": ..., ...}`. A node that reads an operation
it does not understand (another version, an unknown type or field, a value of the wrong kind)
gets an `Unsupported` in its place: it applies nothing of it, and says why.
"""

from __future__ import annotations

import functools
import types
import typing
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar, Union

from channelstream.core.errors import CoreError
from channelstream.core.model import (
    ChannelConfigChanges,
    DeleteItem,
    EditItem,
    Position,
    PublishItem,
    StateValue,
)
from channelstream.core.state import (
    Catchup,
    ConnectOutcome,
    GarbageOutcome,
    IdSource,
    MembershipOutcome,
    MessagesOutcome,
    Outcome,
    State,
    UsersDisconnectOutcome,
    UserStateOutcome,
)
from channelstream.core.webhooks import REASON_EXPIRED

ID_NAMESPACE = uuid.UUID("6f1d6d3e-2a54-4a55-9c1b-5f0b8a7c0c11")
WIRE_VERSION = 1

Result = TypeVar("Result", covariant=True)
ChannelConfigs = dict[str, ChannelConfigChanges]
UserState = dict[str, StateValue]


class Operation(Generic[Result]):
    """Base of every operation: `type` names it on the wire; `apply` changes the State and
    returns what the request that submitted it answers with."""

    type: ClassVar[str]

    def apply(self, state: State, now: datetime, ids: IdSource) -> Result:
        """Change `state` at `now`; `ids` makes the uuids of what it creates."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Connect(Operation[ConnectOutcome]):
    type: ClassVar[str] = "connect"
    username: str
    conn_id: str
    channels: tuple[str, ...]
    state_public_keys: tuple[str, ...] = ()
    fresh_user_state: UserState = field(default_factory=dict)
    user_state: UserState = field(default_factory=dict)
    channel_configs: ChannelConfigs = field(default_factory=dict)
    recover: Position | None = None

    def apply(self, state: State, now: datetime, ids: IdSource) -> ConnectOutcome:
        return state.connect(
            self.username,
            self.conn_id,
            self.channels,
            now,
            state_public_keys=self.state_public_keys,
            fresh_user_state=self.fresh_user_state,
            user_state=self.user_state,
            channel_configs=self.channel_configs,
            recover=self.recover,
            ids=ids,
        )


@dataclass(frozen=True, kw_only=True)
class Subscribe(Operation[MembershipOutcome]):
    type: ClassVar[str] = "subscribe"
    conn_id: str
    channels: tuple[str, ...]
    channel_configs: ChannelConfigs = field(default_factory=dict)

    def apply(self, state: State, now: datetime, ids: IdSource) -> MembershipOutcome:
        return state.subscribe(self.conn_id, self.channels, now, self.channel_configs, ids)


@dataclass(frozen=True, kw_only=True)
class Unsubscribe(Operation[MembershipOutcome]):
    type: ClassVar[str] = "unsubscribe"
    conn_id: str
    channels: tuple[str, ...]

    def apply(self, state: State, now: datetime, ids: IdSource) -> MembershipOutcome:
        return state.unsubscribe(self.conn_id, self.channels, now, ids)


@dataclass(frozen=True, kw_only=True)
class SetUserState(Operation[UserStateOutcome]):
    type: ClassVar[str] = "set_user_state"
    username: str
    user_state: UserState
    state_public_keys: tuple[str, ...] | None = None

    def apply(self, state: State, now: datetime, ids: IdSource) -> UserStateOutcome:
        return state.set_user_state(
            self.username, self.user_state, now, self.state_public_keys, ids
        )


@dataclass(frozen=True, kw_only=True)
class SetChannelConfigs(Operation[list[str]]):
    type: ClassVar[str] = "set_channel_configs"
    configs: ChannelConfigs

    def apply(self, state: State, now: datetime, ids: IdSource) -> list[str]:
        return state.set_channel_configs(self.configs, now, ids)


@dataclass(frozen=True, kw_only=True)
class Publish(Operation[MessagesOutcome]):
    """`idempotency_window` travels with the command, so every replica keeps a key as long."""

    type: ClassVar[str] = "publish"
    messages: tuple[PublishItem, ...]
    idempotency_window: float = 300.0

    def apply(self, state: State, now: datetime, ids: IdSource) -> MessagesOutcome:
        return state.publish(self.messages, now, self.idempotency_window)


@dataclass(frozen=True, kw_only=True)
class Edit(Operation[MessagesOutcome]):
    type: ClassVar[str] = "edit"
    edits: tuple[EditItem, ...]

    def apply(self, state: State, now: datetime, ids: IdSource) -> MessagesOutcome:
        return state.edit(self.edits, now)


@dataclass(frozen=True, kw_only=True)
class Delete(Operation[MessagesOutcome]):
    type: ClassVar[str] = "delete"
    deletes: tuple[DeleteItem, ...]

    def apply(self, state: State, now: datetime, ids: IdSource) -> MessagesOutcome:
        return state.delete(self.deletes, now)


@dataclass(frozen=True, kw_only=True)
class Disconnect(Operation[Outcome | None]):
    type: ClassVar[str] = "disconnect"
    conn_id: str

    def apply(self, state: State, now: datetime, ids: IdSource) -> Outcome | None:
        return state.disconnect(self.conn_id, now, ids)


@dataclass(frozen=True, kw_only=True)
class ExpireConnection(Operation[Outcome | None]):
    """A connection token's `exp` passed: end its connection as `Disconnect` does, but each
    node closes its listeners with 4004 (get a fresh token), not 1000 (final)."""

    type: ClassVar[str] = "expire_connection"
    conn_id: str

    def apply(self, state: State, now: datetime, ids: IdSource) -> Outcome | None:
        return state.disconnect(self.conn_id, now, ids, reason=REASON_EXPIRED)


@dataclass(frozen=True, kw_only=True)
class DisconnectUsers(Operation[UsersDisconnectOutcome]):
    """End every connection of `usernames` on every node; `reason` travels with it, so each
    node closes its own listeners of those connections with 4003 and that text."""

    type: ClassVar[str] = "disconnect_users"
    usernames: tuple[str, ...]
    reason: str = ""

    def apply(self, state: State, now: datetime, ids: IdSource) -> UsersDisconnectOutcome:
        return state.disconnect_users(self.usernames, now, ids)


@dataclass(frozen=True, kw_only=True)
class Attach(Operation[Catchup]):
    """A listener of `kind` (ws, sse, poll) on `node` attaches to its connection; `kind` and
    `heartbeats` (whether it gets `[]` every heartbeat_interval) matter to that node only."""

    type: ClassVar[str] = "attach"
    conn_id: str
    node: str
    kind: str = "ws"
    heartbeats: bool = True

    def apply(self, state: State, now: datetime, ids: IdSource) -> Catchup:
        return state.attach(self.conn_id, now, node=self.node, ids=ids)


@dataclass(frozen=True, kw_only=True)
class Detach(Operation[None]):
    type: ClassVar[str] = "detach"
    conn_id: str
    served_up_to: int
    node: str

    def apply(self, state: State, now: datetime, ids: IdSource) -> None:
        state.detach(self.conn_id, self.served_up_to, now, node=self.node)


@dataclass(frozen=True, kw_only=True)
class KeepPolling(Operation[Outcome]):
    """Long polls `node` served from its replica since its last KeepPolling (see
    `State.catchup_from`): one command a second per node, however many polls, instead of an
    Attach and a Detach per poll. `seen[i]`: what the client of `conn_ids[i]` has seen."""

    type: ClassVar[str] = "keep_polling"
    node: str
    conn_ids: tuple[str, ...]
    seen: tuple[int, ...]

    def apply(self, state: State, now: datetime, ids: IdSource) -> Outcome:
        return state.keep_polling(self.conn_ids, self.seen, now, ids)


@dataclass(frozen=True, kw_only=True)
class CollectGarbage(Operation[GarbageOutcome]):
    type: ClassVar[str] = "collect_garbage"
    connections_after: float
    users_after: float
    channels_after: float
    presence_grace: float | None = None  # None: presence waits for the connection's end

    def apply(self, state: State, now: datetime, ids: IdSource) -> GarbageOutcome:
        return state.collect_garbage(
            now,
            connections_after=self.connections_after,
            users_after=self.users_after,
            channels_after=self.channels_after,
            presence_grace=self.presence_grace,
            ids=ids,
        )


@dataclass(frozen=True, kw_only=True)
class StartEpoch(Operation[str]):
    """Changes nothing itself: like any first command applied to an empty state, it names
    the state's epoch. A node submits it when asked for the epoch before any command."""

    type: ClassVar[str] = "start_epoch"

    def apply(self, state: State, now: datetime, ids: IdSource) -> str:
        return state.epoch


@dataclass(frozen=True, kw_only=True)
class ForgetNode(Operation[GarbageOutcome]):
    """The cluster takes `node` for dead: its listeners are gone."""

    type: ClassVar[str] = "forget_node"
    node: str

    def apply(self, state: State, now: datetime, ids: IdSource) -> GarbageOutcome:
        return state.forget_node(self.node, now, ids)


@dataclass(frozen=True, kw_only=True)
class AcknowledgeWebhooks(Operation[int]):
    """The sending node is done with the webhook events numbered up to `up_to`: the
    receiver answered 2xx (`delivered`), or they were given up on after webhook_retry_for.
    Every replica drops them; the result is how many."""

    type: ClassVar[str] = "acknowledge_webhooks"
    up_to: int
    delivered: bool = True

    def apply(self, state: State, now: datetime, ids: IdSource) -> int:
        return state.acknowledge_webhooks(self.up_to, now, self.delivered)


@dataclass(frozen=True, kw_only=True)
class Unsupported(Operation[None]):
    """What a node read in place of an operation it does not understand: never applied."""

    type: ClassVar[str] = "unsupported"
    wire_type: str
    version: object
    reason: str

    def apply(self, state: State, now: datetime, ids: IdSource) -> None:
        raise TypeError(f"an unsupported operation is never applied: {self.reason}")


# The closed set, by wire name.
OPERATIONS: dict[str, type[Operation[Any]]] = {
    operation.type: operation
    for operation in (
        Connect,
        Subscribe,
        Unsubscribe,
        SetUserState,
        SetChannelConfigs,
        Publish,
        Edit,
        Delete,
        Disconnect,
        ExpireConnection,
        DisconnectUsers,
        Attach,
        Detach,
        KeepPolling,
        CollectGarbage,
        ForgetNode,
        StartEpoch,
        AcknowledgeWebhooks,
    )
}


@dataclass(frozen=True)
class Command:
    """One operation as the cluster orders it: when and where it was made, and its id."""

    operation: Operation[Any]
    now: datetime
    origin: str  # id of the node that made it
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def name(self) -> str:
        return self.operation.type


@dataclass
class Applied:
    """The result of applying a command: what the State returned, or the CoreError it raised."""

    command: Command
    result: Any = None
    error: CoreError | None = None

    @property
    def deliveries(self) -> list[Any]:
        return self.result.deliveries if isinstance(self.result, Outcome) else []


def apply_command(state: State, command: Command) -> Applied:
    """Apply one command. A CoreError (unknown connection, limits...) changes nothing and is
    returned, not raised: on other replicas it is simply ignored."""
    if isinstance(command.operation, Unsupported):
        raise TypeError(f"unsupported operation: {command.operation.reason}")
    counter = iter(range(1 << 30))
    if not state.epoch:  # the first command of an empty state: the same on every replica
        state.epoch = str(uuid.uuid5(ID_NAMESPACE, f"{command.id}/epoch"))

    def ids() -> str:
        """The n-th uuid made while applying this command: the same on every replica."""
        return str(uuid.uuid5(ID_NAMESPACE, f"{command.id}/{next(counter)}"))

    try:
        return Applied(command, result=command.operation.apply(state, command.now, ids))
    except CoreError as error:
        return Applied(command, error=error)


# ---------------------------------------------------------------------------------- the wire


def to_wire(operation: Operation[Any]) -> dict[str, Any]:
    """The JSON object of an operation: version, type, and its fields (tuples as lists)."""
    data: dict[str, Any] = {"v": WIRE_VERSION, "type": operation.type}
    for item in fields(operation):  # type: ignore[arg-type]
        value = getattr(operation, item.name)
        data[item.name] = list(value) if isinstance(value, tuple) else value
    return data


@functools.cache
def _field_types(wire_type: str) -> dict[str, Any]:
    """The field types of the operation class `wire_type` names, resolved once: resolving
    them for every command read was a third of what following the cluster cost."""
    return typing.get_type_hints(OPERATIONS[wire_type])


def from_wire(data: object) -> Operation[Any]:
    """The operation a JSON object describes, or `Unsupported` saying why it cannot be read
    (never half of one: every field is checked before anything is built)."""
    if not isinstance(data, Mapping):
        return Unsupported(wire_type="?", version=None, reason="not a JSON object")
    wire_type, version = str(data.get("type", "?")), data.get("v")
    if version != WIRE_VERSION:
        return Unsupported(
            wire_type=wire_type,
            version=version,
            reason=f"operation version {version!r} (this node reads version {WIRE_VERSION})",
        )
    operation = OPERATIONS.get(wire_type)
    if operation is None:
        return Unsupported(wire_type=wire_type, version=version, reason="unknown operation type")
    hints = _field_types(wire_type)
    known = {item.name: item for item in fields(operation)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known) - {"v", "type"})
    if unknown:
        return Unsupported(
            wire_type=wire_type, version=version, reason=f"unknown fields {', '.join(unknown)}"
        )
    values: dict[str, Any] = {}
    try:
        for name in known:
            if name in data:
                values[name] = _from_json(hints[name], data[name])
        return operation(**values)
    except (TypeError, ValueError) as error:
        return Unsupported(wire_type=wire_type, version=version, reason=str(error))


def _from_json(hint: Any, value: Any) -> Any:
    """`value` (parsed JSON) as the field type `hint` wants it; ValueError if it is not one."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        wanted = [option for option in options if option is not type(None)]
        return _from_json(wanted[0], value)
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        item_hint = typing.get_args(hint)[0]
        return tuple(_from_json(item_hint, item) for item in value)
    if origin is dict or hint is dict or typing.is_typeddict(hint):
        if not isinstance(value, dict):
            raise ValueError(f"expected an object, got {type(value).__name__}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {type(value).__name__}")
        return float(value)
    if hint in (str, int, bool) and type(value) is not hint:
        raise ValueError(f"expected {hint.__name__}, got {type(value).__name__}")
    return value


def operation_of(name: str, args: Mapping[str, Any]) -> Operation[Any]:
    """The operation named `name` with these fields, as JSON gives them (for tests and
    tools that describe operations as data); ValueError if it is not one."""
    operation = from_wire({"v": WIRE_VERSION, "type": name, **args})
    if isinstance(operation, Unsupported):
        raise ValueError(f"not a {name} operation: {operation.reason}")
    return operation
