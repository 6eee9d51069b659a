"""State snapshots: a State as plain data and back (`channelstream.core.snapshot`).

A node joining a cluster starts from the snapshot the leader wrote (encoded as JSON) and then
applies the same commands as everyone else, so a restored State must answer exactly as the
original and go on changing exactly as it does. States are built through `apply_command`, as
a node builds them, with command ids fixed so that the uuids they derive are too.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from channelstream import encoding
from channelstream.core.commands import Applied, Command, apply_command, operation_of
from channelstream.core.errors import TooManyConnections
from channelstream.core.model import CHANNEL_FRAMES_KEPT, USER_FRAMES_KEPT
from channelstream.core.snapshot import state_from_data, state_to_data
from channelstream.core.state import Limits, State, history_entry

T0 = datetime(2026, 1, 1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Commands:
    """Builds commands the way a node does: JSON-safe args, a time, fixed ids."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.counter = itertools.count(1)

    def __call__(self, name: str, seconds: float = 0, **args: Any) -> Command:
        n = next(self.counter)
        operation = operation_of(name, args)
        return Command(operation, at(seconds), "node-1", id=f"{self.prefix}-{n:04d}")


def message(n: int, channel: str | None = None, **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "uuid": f"msg-{n:04d}",
        "user": "system",
        "timestamp": at(n / 1000).isoformat(),  # as Node._json_safe_items sends it
        "channel": channel,
        "message": {"text": f"message {n} ✓", "n": n, "tags": ["a", None, True, 1.5]},
        "pm_users": [],
        "exclude_users": [],
        "no_history": False,
    }
    item.update(fields)
    return item


def apply_all(state: State, commands: list[Command]) -> list[Applied]:
    return [apply_command(state, command) for command in commands]


def ok(state: State, command: Command) -> Applied:
    applied = apply_command(state, command)
    assert applied.error is None, applied.error
    return applied


def plain(value: Any) -> Any:
    """JSON-comparable: datetimes become the ISO strings they are encoded as."""
    return json.loads(encoding.dumps(value))


def describe(value: Any) -> Any:
    """Any result of apply_command as plain data (dataclasses, deques, errors included)."""
    if isinstance(value, BaseException):
        return {"error": type(value).__name__, "args": describe(list(value.args))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: describe(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): describe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | deque):
        return [describe(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def round_trip(state: State, into: State | None = None) -> State:
    """As a node does it: to data, encoded to JSON, decoded, into a fresh State."""
    data = json.loads(encoding.dumps(state_to_data(state)))
    return state_from_data(data, into if into is not None else State())


def build_state() -> State:
    """Channels with history, frames and configs; users with state, public keys and direct
    messages; connections with cursors, join seqs and listeners on several nodes."""
    state = State()
    cmd = Commands("build")
    ok(
        state,
        cmd(
            "set_channel_configs",
            configs={
                "room": {
                    "notify_presence": True,
                    "store_history": True,
                    "history_size": 5,
                    "broadcast_presence_with_user_lists": True,
                    "notify_state": True,
                },
                "quiet": {"store_frames": False, "store_history": True},
            },
        ),
    )
    ok(
        state,
        cmd(
            "connect",
            1,
            username="alice",
            conn_id="a1",
            channels=["room", "quiet"],
            state_public_keys=["status", "score"],
            fresh_user_state={"status": "new", "secret": "s3cr3t"},
            user_state={"status": "online", "score": 1.5, "flag": True, "nothing": None},
            channel_configs={},
        ),
    )
    ok(state, cmd("connect", 2, username="bob", conn_id="b1", channels=["room"]))
    ok(state, cmd("connect", 2, username="bob", conn_id="b2", channels=["lobby"]))
    ok(state, cmd("connect", 3, username="Zoë", conn_id="z1", channels=["room", "lobby"]))
    ok(state, cmd("connect", 3, username="carol", conn_id="c1", channels=[]))
    ok(state, cmd("disconnect", 3, conn_id="c1"))  # carol: a user without connections
    ok(state, cmd("attach", 4, conn_id="a1", node="node-1", kind="websocket"))
    ok(state, cmd("attach", 4, conn_id="a1", node="node-2", kind="sse"))
    ok(state, cmd("attach", 4, conn_id="b1", node="node-1", kind="poll"))
    ok(
        state,
        cmd(
            "publish",
            5,
            messages=[
                message(1, "room"),
                message(2, "room", pm_users=["bob"]),
                message(3, "room", exclude_users=["alice"]),
                message(4, "room", no_history=True),
                message(5, "quiet"),
                message(6, None, pm_users=["alice", "bob"]),
                message(7, None, pm_users=["Zoë"]),
            ],
        ),
    )
    ok(state, cmd("detach", 6, conn_id="b1", served_up_to=state.seq - 2, node="node-1"))
    ok(state, cmd("set_user_state", 7, username="alice", user_state={"status": "away"}))
    ok(state, cmd("subscribe", 8, conn_id="b2", channels=["room"], channel_configs={}))
    ok(state, cmd("publish", 9, messages=[message(n, "room") for n in range(8, 14)]))
    ok(state, cmd("publish", 10, messages=[message(n, "lobby") for n in range(14, 134)]))
    ok(
        state,
        cmd(
            "publish", 10, messages=[message(n, None, pm_users=["carol"]) for n in range(134, 190)]
        ),
    )
    ok(
        state,
        cmd("edit", 11, edits=[{"uuid": "msg-0010", "channel": "room", "message": "edited"}]),
    )
    ok(state, cmd("delete", 12, deletes=[{"uuid": "msg-0011", "channel": "room"}]))
    ok(state, cmd("unsubscribe", 13, conn_id="z1", channels=["lobby"]))
    return state


@pytest.fixture
def original() -> State:
    return build_state()


@pytest.fixture
def restored(original: State) -> State:
    return round_trip(original)


INFO_OPTIONS = [
    {},
    {"include_history": False},
    {"include_users": False},
    {"return_public_state": True},
    {"exclude_channels": ["room"]},
]


# ---------------------------------------------------------------------- the same answers


def test_the_built_state_has_everything_a_snapshot_must_carry(original: State) -> None:
    assert set(original.channels) == {"room", "quiet", "lobby"}
    room = original.channels["room"]
    assert room.history and room.frames and room.config.history_size == 5
    assert len(original.channels["lobby"].frames) == CHANNEL_FRAMES_KEPT
    assert len(original.users["carol"].frames) == USER_FRAMES_KEPT
    assert original.users["alice"].frames and original.users["alice"].public_keys
    assert "carol" in original.users and not original.users["carol"].connections
    assert original.connections["a1"].listeners_by_node == {"node-1": 1, "node-2": 1}
    assert original.connections["b1"].cursor > 0
    assert (
        original.connections["b2"].channels["room"] > original.connections["b2"].channels["lobby"]
    )


@pytest.mark.parametrize("options", INFO_OPTIONS, ids=lambda o: ",".join(o) or "defaults")
def test_channels_info_is_the_same(original: State, restored: State, options: Any) -> None:
    for names in (None, ["room", "lobby", "missing"], ["quiet"]):
        before = original.channels_info(names, **options)
        after = restored.channels_info(names, **options)
        assert plain(after) == plain(before)
    assert plain(restored.channels_info())["channels"]["room"]["history"]  # not vacuous


def test_every_connection_catches_up_the_same(original: State, restored: State) -> None:
    assert set(restored.connections) == set(original.connections)
    for conn_id, connection in original.connections.items():
        before = original.catchup_frames(connection)
        after = restored.catchup_frames(restored.connections[conn_id])
        assert plain(after) == plain(before), conn_id
    assert plain(restored.catchup_frames(restored.connections["b2"]))  # not vacuous


def test_seq_stats_and_listener_nodes_are_the_same(original: State, restored: State) -> None:
    assert restored.seq == original.seq > 0
    assert restored.stats == original.stats
    assert restored.stats.total_messages > 0 and restored.stats.total_unique_messages > 0
    assert restored.listener_nodes() == original.listener_nodes() == {"node-1", "node-2"}


def test_connections_keep_cursor_join_seqs_and_listeners(original: State, restored: State) -> None:
    for conn_id, before in original.connections.items():
        after = restored.connections[conn_id]
        assert after == before
        assert list(after.channels) == list(before.channels)  # join order too


def test_users_keep_state_public_keys_connections_and_direct_messages(
    original: State, restored: State
) -> None:
    assert list(restored.users) == list(original.users)
    for username, before in original.users.items():
        after = restored.users[username]
        assert (after.uuid, after.state, after.public_keys) == (
            before.uuid,
            before.state,
            before.public_keys,
        )
        assert after.public_state == before.public_state
        assert list(after.connections) == list(before.connections)
        assert after.last_active == before.last_active
        assert plain([dataclasses.asdict(s) for s in after.frames]) == plain(
            [dataclasses.asdict(s) for s in before.frames]
        )


def test_timestamps_come_back_as_datetimes_and_deques_keep_their_limits(
    restored: State,
) -> None:
    for connection in restored.connections.values():
        assert isinstance(connection.created, datetime)
        assert isinstance(connection.last_active, datetime)
    for channel in restored.channels.values():
        assert isinstance(channel.last_active, datetime)
        assert len(channel.frames) <= channel.config.catchup_size == CHANNEL_FRAMES_KEPT
    for user in restored.users.values():
        assert isinstance(user.last_active, datetime)
        assert len(user.frames) <= USER_FRAMES_KEPT


def test_a_restored_state_gives_the_same_data_again(original: State, restored: State) -> None:
    assert plain(state_to_data(restored)) == plain(state_to_data(original))


def test_an_empty_state_round_trips() -> None:
    restored = round_trip(State())

    assert plain(state_to_data(restored)) == plain(state_to_data(State()))
    assert restored.seq == 0 and restored.channels_info() == {"channels": {}, "users": []}


def test_restoring_replaces_whatever_the_state_held(original: State) -> None:
    target = build_state()
    ok(target, Commands("extra")("connect", username="mallory", conn_id="m1", channels=["x"]))

    restored = round_trip(original, into=target)

    assert restored is target
    assert "mallory" not in restored.users and "x" not in restored.channels
    assert plain(state_to_data(restored)) == plain(state_to_data(original))


def test_the_restored_state_keeps_the_limits_it_was_built_with(original: State) -> None:
    limited = round_trip(original, into=State(Limits(max_connections=len(original.connections))))

    applied = apply_command(
        limited, Commands("limit")("connect", username="dave", conn_id="d1", channels=[])
    )

    assert isinstance(applied.error, TooManyConnections)


# ---------------------------------------------------------------------- shared frames


def test_history_and_catchup_share_their_frames_after_a_restore(restored: State) -> None:
    room = restored.channels["room"]
    in_frames = {s.frame["uuid"]: s.frame for s in room.frames if s.frame["type"] == "message"}
    shared = [s for s in room.history if s.frame["uuid"] in in_frames]
    assert shared
    for stored in shared:
        assert stored.frame is in_frames[stored.frame["uuid"]]


def test_an_edit_after_a_restore_changes_history_and_catchup_alike(restored: State) -> None:
    ok(
        restored,
        Commands("after")(
            "edit",
            20,
            edits=[{"uuid": "msg-0012", "channel": "room", "message": {"text": "fixed"}}],
        ),
    )

    history = {
        e["uuid"]: e for e in restored.channels_info(["room"])["channels"]["room"]["history"]
    }
    assert history["msg-0012"]["message"] == {"text": "fixed"}
    catchup = [
        f
        for f in restored.catchup_frames(restored.connections["b2"])
        if f.get("uuid") == "msg-0012" and f["type"] == "message"
    ]
    assert [f["message"] for f in catchup] == [{"text": "fixed"}]


def test_a_direct_message_edited_for_one_user_changes_as_before_for_all(
    original: State, restored: State
) -> None:
    """One direct message to several users is one frame; a snapshot must not split it."""
    edit = Commands("after")(
        "edit",
        20,
        edits=[{"uuid": "msg-0006", "pm_users": ["alice"], "message": {"text": "fixed"}}],
    )
    ok(original, edit)
    ok(restored, edit)

    def bobs_copy(state: State) -> Any:
        return [
            s.frame["message"] for s in state.users["bob"].frames if s.frame["uuid"] == "msg-0006"
        ]

    assert bobs_copy(original) == [{"text": "fixed"}]  # one frame, shared by alice and bob
    assert bobs_copy(restored) == bobs_copy(original)


def test_a_state_restored_from_unencoded_data_shares_nothing_with_the_original(
    original: State,
) -> None:
    """state_from_data also takes state_to_data's output as is (no JSON in between)."""
    before = plain(state_to_data(original))
    copy = state_from_data(state_to_data(original), State())

    cmd = Commands("copy")
    ok(copy, cmd("edit", 20, edits=[{"uuid": "msg-0012", "channel": "room", "message": "x"}]))
    ok(copy, cmd("edit", 20, edits=[{"uuid": "msg-0006", "pm_users": ["alice"], "message": "x"}]))
    ok(copy, cmd("set_user_state", 20, username="alice", user_state={"status": "gone"}))
    ok(copy, cmd("subscribe", 20, conn_id="a1", channels=["lobby"]))
    ok(copy, cmd("attach", 20, conn_id="b2", node="node-9", kind="websocket"))

    assert plain(state_to_data(original)) == before


# ---------------------------------------------------------------------- the same future


def further_commands() -> Iterator[Command]:
    """A bit of everything a cluster does next, errors included."""
    cmd = Commands("next")
    yield cmd("publish", 30, messages=[message(n, "room") for n in range(300, 306)])
    yield cmd("publish", 30, messages=[message(306, None, pm_users=["alice", "bob", "ghost"])])
    yield cmd("edit", 31, edits=[{"uuid": "msg-0301", "channel": "room", "message": "e1"}])
    yield cmd("edit", 31, edits=[{"uuid": "msg-0006", "pm_users": ["bob"], "message": "e2"}])
    yield cmd("edit", 31, edits=[{"uuid": "msg-0005", "channel": "quiet", "edited": "2026"}])
    yield cmd("delete", 32, deletes=[{"uuid": "msg-0302", "channel": "room"}])
    yield cmd("delete", 32, deletes=[{"uuid": "msg-0007", "pm_users": ["Zoë"]}])
    yield cmd(
        "connect",
        33,
        username="dave",
        conn_id="d1",
        channels=["room", "brand-new"],
        channel_configs={"brand-new": {"notify_presence": True, "store_history": True}},
        state_public_keys=["mood"],
        fresh_user_state={"mood": "curious"},
        user_state={},
    )
    yield cmd("attach", 34, conn_id="d1", node="node-3", kind="websocket")
    yield cmd("attach", 34, conn_id="b1", node="node-1", kind="websocket")  # catches up
    yield cmd("subscribe", 35, conn_id="b2", channels=["quiet", "brand-new"])
    yield cmd("unsubscribe", 35, conn_id="a1", channels=["quiet", "not-in-it"])
    yield cmd("subscribe", 35, conn_id="nobody", channels=["room"])  # UnknownConnection
    yield cmd("set_user_state", 36, username="bob", user_state={"mood": "happy"})
    yield cmd(
        "set_user_state", 36, username="alice", user_state={"score": 2}, state_public_keys=["score"]
    )
    yield cmd("set_user_state", 36, username="ghost", user_state={"a": 1})  # UnknownUser
    yield cmd("set_channel_configs", 37, configs={"room": {"history_size": 2}, "fresh": {}})
    yield cmd("publish", 38, messages=[message(307, "brand-new"), message(308, "fresh")])
    yield cmd("detach", 39, conn_id="a1", served_up_to=0, node="node-1")
    yield cmd("forget_node", 40, node="node-2")  # a1's last listener: a1 ends
    yield cmd("disconnect", 41, conn_id="z1")
    yield cmd("disconnect", 41, conn_id="z1")  # already gone
    yield cmd(
        "collect_garbage",
        100,
        connections_after=30,
        users_after=60,
        channels_after=90,
    )
    yield cmd("connect", 101, username="alice", conn_id="a9", channels=["room"])


def test_further_commands_give_the_same_results_on_both(original: State, restored: State) -> None:
    commands = list(further_commands())

    before = apply_all(original, commands)
    after = apply_all(restored, commands)

    for command, expected, got in zip(commands, before, after, strict=True):
        assert plain(describe(got)) == plain(describe(expected)), command
    assert plain(state_to_data(restored)) == plain(state_to_data(original))
    assert [type(a.error).__name__ for a in before if a.error] == [
        "UnknownConnection",
        "UnknownUser",
    ]


def test_further_commands_make_the_same_uuids_on_both(original: State, restored: State) -> None:
    commands = list(further_commands())

    apply_all(original, commands)
    apply_all(restored, commands)

    for name in ("brand-new", "fresh"):
        assert restored.channels[name].uuid == original.channels[name].uuid
    assert restored.users["dave"].uuid == original.users["dave"].uuid
    frames_before = [s.frame["uuid"] for c in original.channels.values() for s in c.frames]
    frames_after = [s.frame["uuid"] for c in restored.channels.values() for s in c.frames]
    assert frames_after == frames_before


def test_a_second_round_trip_later_still_agrees(original: State, restored: State) -> None:
    commands = list(further_commands())
    half = len(commands) // 2
    apply_all(original, commands[:half])
    apply_all(restored, commands[:half])

    again = round_trip(restored)
    apply_all(original, commands[half:])
    results = apply_all(again, commands[half:])

    assert all(r.command.id == c.id for r, c in zip(results, commands[half:], strict=True))
    assert plain(state_to_data(again)) == plain(state_to_data(original))
    for conn_id, connection in original.connections.items():
        assert plain(again.catchup_frames(again.connections[conn_id])) == plain(
            original.catchup_frames(connection)
        )
    assert plain(history_entry(again.channels["room"].history[-1])) == plain(
        history_entry(original.channels["room"].history[-1])
    )
