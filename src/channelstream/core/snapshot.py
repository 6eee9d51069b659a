"""A State as plain data and back: how a node joining a cluster starts from the others' state.

`state_to_data` gives nested dicts and lists (datetimes left as datetimes for the caller's
encoder); `state_from_data` accepts those, or the same with datetimes as ISO-8601 strings.
Message frames that history and catchup share, or that the users of one direct message
share, stay shared after a round trip, so an edit still changes every copy it changed before
(a frame is known by its seq: one seq, one frame). The restored state shares nothing with
`data`.
"""

from __future__ import annotations

import copy
from collections import deque
from datetime import datetime
from typing import Any

from channelstream.core.model import (
    Channel,
    ChannelConfig,
    Connection,
    IdempotencyRecord,
    StoredFrame,
    User,
)
from channelstream.core.state import State
from channelstream.core.webhooks import WebhookEvent


def _stored(stored: StoredFrame) -> dict[str, Any]:
    return {
        "seq": stored.seq,
        "frame": stored.frame,
        "pm_users": list(stored.pm_users),
        "exclude_users": list(stored.exclude_users),
        "stored_at": stored.stored_at,
    }


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


def state_to_data(state: State) -> dict[str, Any]:
    return {
        "seq": state.seq,
        "epoch": state.epoch,
        "collected_up_to": state.collected_up_to,
        "idempotency": [
            {"key": key, "expires": record.expires, "accepted": record.accepted}
            for key, record in state.idempotency.items()
        ],
        "webhooks": {
            "next_number": state.webhooks.next_number,
            "last_delivered_at": state.webhooks.last_delivered_at,
            "pending": [{"number": e.number, **e.body()} for e in state.webhooks.pending],
        },
        "stats": {
            "total_messages": state.stats.total_messages,
            "total_unique_messages": state.stats.total_unique_messages,
        },
        "channels": [
            {
                "name": c.name,
                "uuid": c.uuid,
                "long_name": c.long_name,
                "config": c.config.as_dict(),
                "last_active": c.last_active,
                "members": {user: list(conns) for user, conns in c.members.items()},
                "history": [_stored(s) for s in c.history],
                "frames": [_stored(s) for s in c.frames],
                "lost_up_to": c.lost_up_to,
            }
            for c in state.channels.values()
        ],
        "users": [
            {
                "username": u.username,
                "uuid": u.uuid,
                "state": u.state,
                "public_keys": u.public_keys,
                "last_active": u.last_active,
                "connections": list(u.connections),
                "frames": [_stored(s) for s in u.frames],
                "lost_up_to": u.lost_up_to,
            }
            for u in state.users.values()
        ],
        "connections": [
            {
                "conn_id": c.conn_id,
                "username": c.username,
                "created": c.created,
                "last_active": c.last_active,
                "cursor": c.cursor,
                "channels": c.channels,
                "listeners": c.listeners,
                "listeners_by_node": c.listeners_by_node,
                "present": c.present,
                "gap_everywhere": c.gap_everywhere,
            }
            for c in state.connections.values()
        ],
    }


def _restore_stored(data: dict[str, Any], shared: dict[int, dict[str, Any]]) -> StoredFrame:
    frame = shared.get(data["seq"])
    if frame is None:
        frame = shared[data["seq"]] = copy.deepcopy(data["frame"])
    return StoredFrame(
        data["seq"],
        frame,
        tuple(data["pm_users"]),
        tuple(data["exclude_users"]),
        _optional_time(data.get("stored_at")),
    )


def state_from_data(data: dict[str, Any], state: State) -> State:
    """Fill an empty `state` (built with the node's limits) from `data`. Keys added since
    0.1 (epoch, positions, presence) have defaults, so an older snapshot still loads."""
    state.channels.clear()
    state.users.clear()
    state.connections.clear()
    state._seq = int(data["seq"])
    state.epoch = str(data.get("epoch", ""))
    state.collected_up_to = int(data.get("collected_up_to", 0))
    state.idempotency = {
        item["key"]: IdempotencyRecord(_time(item["expires"]), copy.deepcopy(item["accepted"]))
        for item in data.get("idempotency", [])
    }
    webhooks = data.get("webhooks") or {}
    state.webhooks.pending.clear()
    for item in webhooks.get("pending", []):  # kept even over webhook_queue_max: never lost
        state.webhooks.pending.append(
            WebhookEvent(
                number=int(item["number"]),
                id=str(item["id"]),
                name=str(item["name"]),
                time=_time(item["time"]),
                user=item.get("user"),
                channel=item.get("channel"),
                conn_id=item.get("conn_id"),
                reason=item.get("reason"),
            )
        )
    state.webhooks.next_number = int(webhooks.get("next_number", 1))
    state.webhooks.last_delivered_at = _optional_time(webhooks.get("last_delivered_at"))
    state.stats.total_messages = data["stats"]["total_messages"]
    state.stats.total_unique_messages = data["stats"]["total_unique_messages"]
    shared: dict[int, dict[str, Any]] = {}  # seq -> frame, across channels and users
    for item in data["channels"]:
        frames = deque(_restore_stored(s, shared) for s in item["frames"])
        state.channels[item["name"]] = Channel(
            name=item["name"],
            uuid=item["uuid"],
            long_name=item["long_name"],
            config=ChannelConfig().merged(item["config"]),
            last_active=_time(item["last_active"]),
            members={user: dict.fromkeys(conns) for user, conns in item["members"].items()},
            history=[_restore_stored(s, shared) for s in item["history"]],
            frames=frames,
            lost_up_to=int(item.get("lost_up_to", 0)),
        )
    for item in data["users"]:
        state.users[item["username"]] = User(
            username=item["username"],
            uuid=item["uuid"],
            state=dict(item["state"]),
            public_keys=list(item["public_keys"]),
            last_active=_time(item["last_active"]),
            connections=dict.fromkeys(item["connections"]),
            frames=deque(_restore_stored(s, shared) for s in item["frames"]),
            lost_up_to=int(item.get("lost_up_to", 0)),
        )
    for item in data["connections"]:
        state.connections[item["conn_id"]] = Connection(
            conn_id=item["conn_id"],
            username=item["username"],
            created=_time(item["created"]),
            last_active=_time(item["last_active"]),
            cursor=int(item["cursor"]),
            channels={name: int(seq) for name, seq in item["channels"].items()},
            listeners=int(item["listeners"]),
            listeners_by_node={k: int(v) for k, v in item["listeners_by_node"].items()},
            present=bool(item.get("present", True)),
            gap_everywhere=bool(item.get("gap_everywhere", False)),
        )
    return state
