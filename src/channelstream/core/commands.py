"""State changes as data: the unit a broker orders and every node applies.

Every change to the State goes through `apply_command`, so that a cluster of nodes, applying
the same commands in the same order, holds the same State (presence, history, configs, user
state, connections). A command carries the time it was made (`now`) and an id from which the
uuids the State makes while applying it are derived, so replicas agree on those too. Its
`args` are JSON-safe: a broker may send it over the network.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channelstream.core.errors import CoreError
from channelstream.core.state import Outcome, State

ID_NAMESPACE = uuid.UUID("6f1d6d3e-2a54-4a55-9c1b-5f0b8a7c0c11")


@dataclass(frozen=True)
class Command:
    name: str
    args: dict[str, Any]
    now: datetime
    origin: str  # id of the node that made it
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Applied:
    """The result of applying a command: what the State returned, or the CoreError it raised."""

    command: Command
    result: Any = None
    error: CoreError | None = None

    @property
    def deliveries(self) -> list[Any]:
        return self.result.deliveries if isinstance(self.result, Outcome) else []


def _connect(state: State, args: dict[str, Any], now: datetime) -> Any:
    return state.connect(
        args["username"],
        args["conn_id"],
        args["channels"],
        now,
        state_public_keys=args.get("state_public_keys", ()),
        fresh_user_state=args.get("fresh_user_state"),
        user_state=args.get("user_state"),
        channel_configs=args.get("channel_configs"),
    )


HANDLERS: dict[str, Callable[[State, dict[str, Any], datetime], Any]] = {
    "connect": _connect,
    "subscribe": lambda s, a, now: s.subscribe(
        a["conn_id"], a["channels"], now, a.get("channel_configs")
    ),
    "unsubscribe": lambda s, a, now: s.unsubscribe(a["conn_id"], a["channels"], now),
    "set_user_state": lambda s, a, now: s.set_user_state(
        a["username"], a["user_state"], now, a.get("state_public_keys")
    ),
    "set_channel_configs": lambda s, a, now: s.set_channel_configs(a["configs"], now),
    "publish": lambda s, a, now: s.publish(a["messages"], now),
    "edit": lambda s, a, now: s.edit(a["edits"], now),
    "delete": lambda s, a, now: s.delete(a["deletes"], now),
    "disconnect": lambda s, a, now: s.disconnect(a["conn_id"], now),
    "attach": lambda s, a, now: s.attach(a["conn_id"], now, node=a["node"]),
    "detach": lambda s, a, now: s.detach(a["conn_id"], a["served_up_to"], now, node=a["node"]),
    "collect_garbage": lambda s, a, now: s.collect_garbage(
        now,
        connections_after=a["connections_after"],
        users_after=a["users_after"],
        channels_after=a["channels_after"],
    ),
    "forget_node": lambda s, a, now: s.forget_node(a["node"], now),
}


def apply_command(state: State, command: Command) -> Applied:
    """Apply one command. A CoreError (unknown connection, limits...) changes nothing and is
    returned, not raised: on other replicas it is simply ignored."""
    handler = HANDLERS.get(command.name)
    if handler is None:
        raise ValueError(f"unknown command {command.name!r}")
    counter = iter(range(1 << 30))
    state.new_id = lambda: str(uuid.uuid5(ID_NAMESPACE, f"{command.id}/{next(counter)}"))
    try:
        return Applied(command, result=handler(state, command.args, command.now))
    except CoreError as error:
        return Applied(command, error=error)
