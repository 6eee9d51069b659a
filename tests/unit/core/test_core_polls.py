"""Long polls that say where their client is: served from a replica without attaching
(`catchup_from`), and kept active by one KeepPolling per node and second (`keep_polling`)."""

from __future__ import annotations

from datetime import timedelta

NOTIFY = {"room": {"notify_presence": True}}
GC = {"connections_after": 30, "users_after": 600, "channels_after": 600}


def uuids(frames):
    return [f["uuid"] for f in frames if f["type"] == "message"]


def test_a_poll_gets_what_came_after_what_its_client_has_seen(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    first, second, third = message("room"), message("room"), message("room")
    state.publish([first, second], now)
    seen = state.seq
    state.publish([third], now)
    before = (state.seq, state.connections["a1"].listeners, state.connections["a1"].cursor)

    catchup = state.catchup_from("a1", seen)

    assert catchup is not None
    assert uuids(catchup.frames) == [third["uuid"]]
    assert catchup.seq == state.seq
    # reads only: nothing of the state changed
    after = (state.seq, state.connections["a1"].listeners, state.connections["a1"].cursor)
    assert after == before


def test_a_poll_from_zero_gets_only_what_came_after_the_connection_joined(state, now, message):
    state.publish([message("room")], now)
    state.connect("alice", "a1", ["room"], now)
    later = message("room")
    state.publish([later, message(None, pm_users=["alice"])], now)
    state.publish([message(None, pm_users=["bob"])], now)

    catchup = state.catchup_from("a1", 0)

    assert catchup is not None
    assert len(uuids(catchup.frames)) == 2 and uuids(catchup.frames)[0] == later["uuid"]


def test_a_poll_whose_frames_are_gone_gets_a_gap_at_its_position(state, now, message):
    state.connect("alice", "a1", ["room"], now, channel_configs={"room": {"catchup_size": 1}})
    seen = state.seq
    state.publish([message("room"), message("room")], now)

    catchup = state.catchup_from("a1", seen)

    assert catchup is not None
    assert catchup.frames[0] == {"type": "gap", "channel": "room", "seq": seen, "catchup": True}
    assert len(uuids(catchup.frames)) == 1


def test_what_only_an_attach_can_serve(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    state.connect("bob", "b1", ["timed"], now, channel_configs={"timed": {"history_ttl": 60}})
    state.collect_garbage(now + timedelta(seconds=4), presence_grace=3, **GC)  # a1 absent

    assert state.catchup_from("nobody", 0) is None  # unknown here
    assert state.catchup_from("a1", 0) is None  # absent: presence must change
    assert state.catchup_from("b1", state.seq + 1) is None  # saw more than this replica has
    assert state.catchup_from("b1", -1) is None
    assert state.catchup_from("b1", 0) is None  # frames expire: a change


def test_keep_polling_keeps_a_connection_present_and_moves_its_position(state, now, message):
    state.connect("bob", "b1", ["room"], now, channel_configs=NOTIFY)
    state.attach("b1", now)
    state.connect("alice", "a1", ["room"], now)
    state.publish([message("room")], now)
    seen = state.seq

    for second in range(1, 10):  # a second apart, as each node says it
        state.keep_polling(["a1"], [seen], now + timedelta(seconds=second))
        outcome = state.collect_garbage(
            now + timedelta(seconds=second, milliseconds=500), presence_grace=3, **GC
        )
        assert outcome.absent == [] and outcome.connections == []
    missed = message("room")
    state.publish([missed], now + timedelta(seconds=10))

    assert state.connections["a1"].present
    assert state.connections["a1"].cursor == seen
    assert uuids(state.attach("a1", now + timedelta(seconds=10)).frames) == [missed["uuid"]]


def test_keep_polling_never_moves_a_position_back_or_past_the_replica(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    state.publish([message("room"), message("room")], now)

    state.keep_polling(["a1"], [state.seq], now)
    state.keep_polling(["a1"], [1], now)
    assert state.connections["a1"].cursor == state.seq
    state.keep_polling(["a1"], [state.seq + 50], now)
    assert state.connections["a1"].cursor == state.seq


def test_keep_polling_makes_an_absent_connection_present_again(state, now):
    state.connect("bob", "b1", ["room"], now, channel_configs=NOTIFY)
    state.attach("b1", now)
    state.connect("alice", "a1", ["room"], now)
    state.collect_garbage(now + timedelta(seconds=4), presence_grace=3, **GC)
    assert not state.connections["a1"].present

    outcome = state.keep_polling(["a1", "ended-meanwhile"], [0, 0], now + timedelta(seconds=5))

    actions = [(d.frame["user"], d.frame["message"]["action"]) for d in outcome.deliveries]
    assert actions == [("alice", "joined")]
    assert state.connections["a1"].present
