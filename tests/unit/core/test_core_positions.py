"""Positions, recovery, presence_grace, /history and idempotent publish in the core."""

from __future__ import annotations

from datetime import timedelta

from channelstream.core.commands import Command, Connect, StartEpoch, apply_command
from channelstream.core.snapshot import state_from_data, state_to_data
from channelstream.core.state import State

NOTIFY = {"room": {"notify_presence": True}}
GC = {"connections_after": 30, "users_after": 600, "channels_after": 600}


def presence(outcome):
    return [(d.frame["user"], d.frame["message"]["action"]) for d in outcome.deliveries]


# ---------------------------------------------------------------------------- epoch


def test_the_first_command_of_an_empty_state_names_the_epoch_alike_on_every_replica(now):
    one, two = State(), State()
    command = Command(StartEpoch(), now, "n1")

    assert apply_command(one, command).result == apply_command(two, command).result != ""
    apply_command(one, Command(Connect(username="a", conn_id="c", channels=()), now, "n1"))
    assert one.epoch == two.epoch  # later commands keep it
    assert State().epoch == ""  # a new state has none until a command names it


def test_the_epoch_survives_a_snapshot(state, now):
    apply_command(state, Command(StartEpoch(), now, "n1"))

    assert state_from_data(state_to_data(state), State()).epoch == state.epoch


# ---------------------------------------------------------------------------- recover


def test_recover_replays_what_was_missed_after_the_position(state, now, message):
    state.epoch = "e1"
    state.connect("alice", "a1", ["room"], now)
    first = message("room")
    state.publish([first], now)
    position = state.seq
    missed = [message("room"), message(None, pm_users=["alice"])]
    state.publish(missed, now)
    state.disconnect("a1", now)

    outcome = state.connect("alice", "a2", ["room"], now, recover={"epoch": "e1", "seq": position})
    frames = state.attach("a2", now).frames

    assert outcome.recovered is True
    assert [f["uuid"] for f in frames] == [m["uuid"] for m in missed]
    assert all(f["catchup"] and f["seq"] > position for f in frames)


def test_recover_past_catchup_size_answers_false_and_sends_a_gap_first(state, now, message):
    state.epoch = "e1"
    state.connect("alice", "a1", ["room"], now, channel_configs={"room": {"catchup_size": 2}})
    position = state.seq
    items = [message("room") for _ in range(5)]
    state.publish(items, now)
    state.disconnect("a1", now)

    outcome = state.connect("alice", "a2", ["room"], now, recover={"epoch": "e1", "seq": position})
    frames = state.attach("a2", now).frames

    assert outcome.recovered is False
    assert frames[0] == {"type": "gap", "channel": "room", "seq": position, "catchup": True}
    assert [f["uuid"] for f in frames[1:]] == [i["uuid"] for i in items[-2:]]


def test_recover_from_another_epoch_gaps_every_channel_and_replays_from_zero(state, now, message):
    state.epoch = "new"
    state.connect("bob", "b1", ["room"], now)
    kept = message("room")
    state.publish([kept], now)

    outcome = state.connect("alice", "a1", ["room"], now, recover={"epoch": "old", "seq": 900})
    frames = state.attach("a1", now).frames

    assert outcome.recovered is False
    assert [(f["type"], f["channel"], f["seq"]) for f in frames[:2]] == [
        ("gap", "room", 0),
        ("gap", None, 0),
    ]
    assert [f.get("uuid") for f in frames[2:]] == [kept["uuid"]]
    assert state.attach("a1", now).frames == []  # told once


def test_without_recover_there_is_no_recovered_answer(state, now):
    assert state.connect("alice", "a1", ["room"], now).recovered is None


def test_history_ttl_expires_catchup_and_history_and_a_late_client_gets_a_gap(state, now, message):
    configs = {"room": {"history_ttl": 60, "store_history": True}}
    state.connect("alice", "a1", ["room"], now, channel_configs=configs)
    state.attach("a1", now)
    state.detach("a1", state.seq, now)
    position = state.seq
    state.publish([message("room")], now)
    later = now + timedelta(seconds=61)

    frames = state.attach("a1", later).frames

    assert frames == [{"type": "gap", "channel": "room", "seq": position, "catchup": True}]
    assert state.history("room", later).entries == []


# ---------------------------------------------------------------------------- presence_grace


def test_a_connection_without_listener_for_presence_grace_parts_and_joins_again(
    state, now, message
):
    state.connect("bob", "b1", ["room"], now, channel_configs=NOTIFY)
    state.attach("b1", now)
    state.connect("alice", "a1", ["room"], now)
    state.attach("a1", now)
    state.detach("a1", state.seq, now)

    soon = state.collect_garbage(now + timedelta(seconds=2), presence_grace=3, **GC)
    gone = state.collect_garbage(now + timedelta(seconds=4), presence_grace=3, **GC)

    assert presence(soon) == [] and soon.absent == []
    assert presence(gone) == [("alice", "parted")] and gone.absent == ["a1"]
    assert state.channels_info()["channels"]["room"]["users"] == ["bob"]
    assert [u.username for u in state.connected_users()] == ["bob"]
    assert "a1" in state.connections  # kept for a re-attach until gc_conns_after
    missed = message("room")
    state.publish([missed], now + timedelta(seconds=5))

    back = state.attach("a1", now + timedelta(seconds=6))

    assert presence(back) == [("alice", "joined")]
    assert [f["uuid"] for f in back.frames if f["type"] == "message"] == [missed["uuid"]]
    assert state.channels_info()["channels"]["room"]["users"] == ["alice", "bob"]


def test_another_present_connection_keeps_the_user_in(state, now):
    state.connect("bob", "b1", ["room"], now, channel_configs=NOTIFY)
    state.connect("alice", "a1", ["room"], now)
    state.connect("alice", "a2", ["room"], now)
    state.attach("a2", now)

    outcome = state.collect_garbage(now + timedelta(seconds=4), presence_grace=3, **GC)

    assert ("alice", "parted") not in presence(outcome)
    assert "alice" in state.channels["room"].members


def test_an_absent_connection_keeps_its_channel_from_being_collected(state, now):
    state.connect("alice", "a1", ["room"], now)
    later = now + timedelta(seconds=20)

    state.collect_garbage(
        later, presence_grace=3, connections_after=30, users_after=9, channels_after=5
    )

    assert "room" in state.channels


# ---------------------------------------------------------------------------- /history


def test_history_pages_by_seq_and_filters_by_user(state, now, message):
    state.connect(
        "alice",
        "a1",
        ["room"],
        now,
        channel_configs={"room": {"store_history": True, "history_size": 50}},
    )
    items = [message("room") for _ in range(5)]
    items.append(message("room", exclude_users=["bob"]))
    state.publish(items, now)
    seqs = [e["seq"] for e in state.history("room", now, limit=100).entries]

    page = state.history("room", now, since_seq=seqs[1], limit=2)
    newest = state.history("room", now, since_seq=seqs[1], limit=2, reverse=True)
    for_bob = state.history("room", now, username="bob")

    assert [e["seq"] for e in page.entries] == seqs[2:4] and page.has_more
    assert [e["seq"] for e in newest.entries] == [seqs[5], seqs[4]] and newest.has_more
    assert len(for_bob.entries) == 5 and not for_bob.has_more
    assert state.history("nowhere", now).entries == []


# ---------------------------------------------------------------------------- idempotency


def test_a_repeated_idempotency_key_is_answered_with_the_first_message_and_not_sent(
    state, now, message
):
    state.connect("alice", "a1", ["room", "hall"], now)
    first = {**message("room"), "idempotency_key": "k1"}
    again = {**message("room"), "idempotency_key": "k1"}
    elsewhere = {**message("hall"), "idempotency_key": "k1"}

    one = state.publish([first], now, idempotency_window=300)
    two = state.publish([again, elsewhere], now + timedelta(seconds=10), idempotency_window=300)
    late = state.publish([again], now + timedelta(seconds=400), idempotency_window=300)

    assert len(one.deliveries) == 1
    assert two.accepted[0]["uuid"] == first["uuid"] and two.accepted[1]["uuid"] == elsewhere["uuid"]
    assert len(two.deliveries) == 1  # only the other channel's
    assert late.accepted[0]["uuid"] == again["uuid"] and len(late.deliveries) == 1  # expired
    assert state.stats.total_unique_messages == 3


def test_idempotency_keys_survive_a_snapshot(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    first = {**message("room"), "idempotency_key": "k1"}
    state.publish([first], now)
    restored = state_from_data(state_to_data(state), State())

    repeat = restored.publish([{**message("room"), "idempotency_key": "k1"}], now)

    assert repeat.deliveries == [] and repeat.accepted[0]["uuid"] == first["uuid"]
