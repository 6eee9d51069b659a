"""The operations' wire codec: every operation round-trips through JSON text; what a node
cannot read (another version, an unknown type or field, a value of the wrong kind, a missing
field) becomes `Unsupported`, never half an operation."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from channelstream.core.commands import (
    OPERATIONS,
    WIRE_VERSION,
    AcknowledgeWebhooks,
    Attach,
    CollectGarbage,
    Command,
    Connect,
    Delete,
    Detach,
    Disconnect,
    DisconnectUsers,
    Edit,
    ExpireConnection,
    ForgetNode,
    KeepPolling,
    Operation,
    Publish,
    SetChannelConfigs,
    SetUserState,
    StartEpoch,
    Subscribe,
    Unsubscribe,
    Unsupported,
    apply_command,
    from_wire,
    operation_of,
    to_wire,
)
from channelstream.core.state import State

EXAMPLES: list[Operation[Any]] = [
    Connect(
        username="Zoë",
        conn_id="c1",
        channels=("a", "b"),
        state_public_keys=("colour",),
        fresh_user_state={"colour": "red", "n": 1, "x": None},
        user_state={"ok": True, "f": 1.5},
        channel_configs={"a": {"store_history": True, "history_size": 3}},
    ),
    Subscribe(conn_id="c1", channels=("c",), channel_configs={"c": {"notify_presence": True}}),
    Unsubscribe(conn_id="c1", channels=("a",)),
    SetUserState(username="Zoë", user_state={"colour": "blue"}, state_public_keys=None),
    SetUserState(username="Zoë", user_state={}, state_public_keys=("colour", "n")),
    SetChannelConfigs(configs={"a": {"history_size": 5}}),
    Publish(messages=({"channel": "a", "user": "u", "message": {"t": "✓"}, "uuid": "m1"},)),
    Edit(edits=({"uuid": "m1", "channel": "a", "message": {"t": "edited"}},)),
    Delete(deletes=({"uuid": "m1", "channel": "a"},)),
    Disconnect(conn_id="c1"),
    Attach(conn_id="c1", node="n1", kind="sse"),
    Detach(conn_id="c1", served_up_to=7, node="n1"),
    CollectGarbage(connections_after=30.0, users_after=86400.0, channels_after=3600.5),
    ForgetNode(node="n2"),
    # added with positions, recovery, presence_grace and idempotent publish
    StartEpoch(),
    Connect(username="Zoë", conn_id="c2", channels=("a",), recover={"epoch": "e", "seq": 4}),
    Publish(
        messages=({"channel": "a", "user": "u", "uuid": "m2", "idempotency_key": "k"},),
        idempotency_window=60.0,
    ),
    CollectGarbage(
        connections_after=30.0, users_after=86400.0, channels_after=3600.5, presence_grace=3.0
    ),
    # added with users as a whole (issue 13)
    DisconnectUsers(usernames=("alice", "bob"), reason="logout"),
    ExpireConnection(conn_id="c1"),
    # added with webhooks (issue 12)
    AcknowledgeWebhooks(up_to=12, delivered=False),
    # added with long polls that carry their position (issue 16)
    KeepPolling(node="n1", conn_ids=("c1", "c2"), seen=(7, 0)),
]


def test_every_operation_of_the_closed_set_has_an_example() -> None:
    assert {type(example) for example in EXAMPLES} == set(OPERATIONS.values())


@pytest.mark.parametrize("operation", EXAMPLES, ids=lambda op: op.type)
def test_an_operation_round_trips_through_json_text(operation: Operation[Any]) -> None:
    wire = to_wire(operation)
    assert wire["v"] == WIRE_VERSION and wire["type"] == operation.type

    assert from_wire(json.loads(json.dumps(wire))) == operation


def wire_of(operation: Operation[Any], **changes: Any) -> dict[str, Any]:
    return {**to_wire(operation), **changes}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (wire_of(EXAMPLES[0], v=2), "operation version 2 (this node reads version 1)"),
        ({**wire_of(EXAMPLES[0]), "v": None}, "operation version None"),
        (wire_of(EXAMPLES[0], type="teleport"), "unknown operation type"),
        (wire_of(EXAMPLES[0], colour="red"), "unknown fields colour"),
        (wire_of(EXAMPLES[0], channels="a"), "expected a list, got str"),
        (wire_of(EXAMPLES[0], username=5), "expected str, got int"),
        (wire_of(EXAMPLES[11], served_up_to=True), "expected int, got bool"),
        (wire_of(EXAMPLES[12], users_after="soon"), "expected a number, got str"),
        (wire_of(EXAMPLES[1], channel_configs=[]), "expected an object, got list"),
        ({"v": 1, "type": "disconnect"}, "missing 1 required keyword-only argument"),
        (["not", "an", "object"], "not a JSON object"),
    ],
    ids=[
        "newer-version",
        "no-version",
        "unknown-type",
        "unknown-field",
        "list-as-text",
        "number-as-text",
        "bool-as-int",
        "text-as-number",
        "list-as-object",
        "missing-field",
        "not-an-object",
    ],
)
def test_what_cannot_be_read_is_unsupported_with_the_reason(data: Any, reason: str) -> None:
    operation = from_wire(data)

    assert isinstance(operation, Unsupported)
    assert reason in operation.reason


def test_an_unsupported_operation_is_never_applied() -> None:
    state = State()
    unsupported = from_wire(wire_of(EXAMPLES[0], v=2))
    command = Command(unsupported, datetime(2026, 1, 1), origin="n2")

    with pytest.raises(TypeError):
        apply_command(state, command)
    assert state.connections == {} and state.users == {}


def test_operation_of_names_what_is_wrong() -> None:
    assert operation_of("forget_node", {"node": "n2"}) == ForgetNode(node="n2")
    with pytest.raises(ValueError, match="unknown fields"):
        operation_of("forget_node", {"node": "n2", "why": "tired"})
