"""Catchup: what a listener gets on attach, chosen by sequence numbers."""

from __future__ import annotations

from datetime import timedelta

from channelstream.core.model import CHANNEL_FRAMES_KEPT, USER_FRAMES_KEPT


def uuids(frames):
    return [f["uuid"] for f in frames if f["type"] != "gap"]


def gaps(frames):
    return [(f["channel"], f["seq"]) for f in frames if f["type"] == "gap"]


def test_messages_sent_between_connect_and_attach_are_caught_up(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    items = [message("room"), message("room")]
    state.publish(items, now)

    catchup = state.attach("a1", now)

    assert uuids(catchup.frames) == [i["uuid"] for i in items]
    assert all(f["catchup"] is True for f in catchup.frames)
    assert catchup.seq == state.seq


def test_a_new_connection_gets_nothing_from_before_it_existed(state, now, message):
    state.connect("bob", "b1", ["room"], now)
    state.publish([message("room"), message(None, pm_users=["alice"])], now)

    state.connect("alice", "a1", ["room"], now)

    assert state.attach("a1", now).frames == []


def test_frames_served_before_detach_are_not_replayed(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    state.attach("a1", now)
    seen = message("room")
    served = state.publish([seen], now).deliveries[0].seq
    state.detach("a1", served, now)
    missed = message("room")
    state.publish([missed], now)

    catchup = state.attach("a1", now)

    assert uuids(catchup.frames) == [missed["uuid"]]


def test_detach_records_how_far_the_listener_got(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    start = state.attach("a1", now).seq
    first, second = message("room"), message("room")
    state.publish([first, second], now)

    state.detach("a1", start, now)  # the socket died before sending anything

    assert uuids(state.attach("a1", now).frames) == [first["uuid"], second["uuid"]]


def test_cursor_moves_only_when_the_last_listener_leaves(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    state.attach("a1", now)
    state.attach("a1", now)
    state.publish([message("room")], now)

    state.detach("a1", state.seq, now)
    assert state.connections["a1"].listeners == 1
    assert state.connections["a1"].cursor == 0

    state.detach("a1", state.seq, now)
    assert state.connections["a1"].listeners == 0
    assert state.connections["a1"].cursor == state.seq


def test_extra_detach_never_makes_listeners_negative(state, now):
    state.connect("alice", "a1", [], now)

    state.detach("a1", 0, now)

    assert state.connections["a1"].listeners == 0


def test_a_detach_from_a_node_without_listeners_leaves_other_nodes_listeners(state, now):
    state.connect("alice", "a1", [], now)
    state.attach("a1", now, node="node-b")

    state.detach("a1", 0, now, node="node-a")  # e.g. re-sent after node-a was forgotten

    assert state.connections["a1"].listeners == 1
    assert state.connections["a1"].listeners_by_node == {"node-b": 1}


def test_catchup_skips_frames_excluding_the_user(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    hidden = message("room", exclude_users=["alice"])
    shown = message("room")
    state.publish([hidden, shown], now)

    assert uuids(state.attach("a1", now).frames) == [shown["uuid"]]


def test_catchup_skips_private_frames_for_other_users(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    state.connect("bob", "b1", ["room"], now)
    for_bob = message("room", pm_users=["bob"])
    state.publish([for_bob], now)

    assert state.attach("a1", now).frames == []
    assert uuids(state.attach("b1", now).frames) == [for_bob["uuid"]]


def test_catchup_applies_exclude_over_pm(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    state.publish([message("room", pm_users=["alice"], exclude_users=["alice"])], now)

    assert state.attach("a1", now).frames == []


def test_channels_with_store_frames_false_give_no_catchup(state, now, message):
    state.set_channel_configs({"live": {"store_frames": False}}, now)
    state.connect("alice", "a1", ["live", "room"], now)
    kept = message("room")
    state.publish([message("live"), kept], now)

    frames = state.attach("a1", now).frames
    assert uuids(frames) == [kept["uuid"]]
    position = frames[0]["seq"]  # the seq it connected at
    assert frames[0] == {"type": "gap", "channel": "live", "seq": position, "catchup": True}


def test_frames_from_before_joining_a_channel_are_never_replayed(state, now, message):
    state.connect("alice", "a1", [], now)
    state.connect("bob", "b1", ["room"], now)
    before = message("room")
    state.publish([before], now)

    state.subscribe("a1", ["room"], now)
    after = message("room")
    state.publish([after], now)

    assert uuids(state.attach("a1", now).frames) == [after["uuid"]]


def test_frames_sent_while_out_of_a_channel_are_not_replayed_after_rejoining(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    state.connect("bob", "b1", ["room"], now)
    state.unsubscribe("a1", ["room"], now)
    gap = message("room")
    state.publish([gap], now)
    state.subscribe("a1", ["room"], now)
    back = message("room")
    state.publish([back], now)

    assert uuids(state.attach("a1", now).frames) == [back["uuid"]]


def test_frames_of_a_channel_left_are_not_replayed(state, now, message):
    state.connect("alice", "a1", ["room", "hall"], now)
    state.publish([message("room")], now)
    kept = message("hall")
    state.publish([kept], now)

    state.unsubscribe("a1", ["room"], now)

    assert uuids(state.attach("a1", now).frames) == [kept["uuid"]]


def test_direct_frames_are_merged_with_channel_frames_in_send_order(state, now, message):
    state.connect("alice", "a1", ["room", "hall"], now)
    items = [
        message("hall"),
        message(None, pm_users=["alice"]),
        message("room"),
        message("hall"),
        message(None, pm_users=["alice"]),
    ]
    for item in items:
        state.publish([item], now)

    assert uuids(state.attach("a1", now).frames) == [i["uuid"] for i in items]


def test_catchup_copies_are_marked_without_changing_what_is_stored(state, now, message):
    state.set_channel_configs({"room": {"store_history": True}}, now)
    state.connect("alice", "a1", ["room"], now)
    state.connect("alice", "a2", ["room"], now)
    [delivery] = state.publish([message("room")], now).deliveries

    first = state.attach("a1", now).frames
    first[0]["message"] = "tampered"

    assert delivery.frame["catchup"] is False
    assert state.channels_info()["channels"]["room"]["history"][0]["catchup"] is False
    again = state.attach("a2", now).frames
    assert again[0]["catchup"] is True
    assert again[0]["message"] == delivery.frame["message"]


def test_catchup_keeps_the_last_100_frames_of_a_channel(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    items = [message("room") for _ in range(CHANNEL_FRAMES_KEPT + 20)]
    state.publish(items, now)

    frames = state.attach("a1", now).frames

    assert CHANNEL_FRAMES_KEPT == 100
    assert uuids(frames) == [i["uuid"] for i in items[-CHANNEL_FRAMES_KEPT:]]
    assert gaps(frames) == [("room", 0)] and frames[0]["type"] == "gap"


def test_catchup_keeps_the_last_50_direct_messages_of_a_user(state, now, message):
    state.connect("alice", "a1", [], now)
    items = [message(None, pm_users=["alice"]) for _ in range(USER_FRAMES_KEPT + 5)]
    state.publish(items, now)

    frames = state.attach("a1", now).frames

    assert USER_FRAMES_KEPT == 50
    assert uuids(frames) == [i["uuid"] for i in items[-USER_FRAMES_KEPT:]]
    assert gaps(frames) == [(None, 0)]  # direct messages lost: a gap with channel null


def test_attach_counts_a_listener_and_refreshes_activity(state, now):
    state.connect("alice", "a1", [], now)
    later = now + timedelta(seconds=10)

    state.attach("a1", later)

    assert state.connections["a1"].listeners == 1
    assert state.connections["a1"].last_active == later
    assert state.users["alice"].last_active == later


def test_detach_refreshes_activity(state, now):
    state.connect("alice", "a1", [], now)
    state.attach("a1", now)
    later = now + timedelta(seconds=10)

    state.detach("a1", state.seq, later)

    assert state.connections["a1"].last_active == later
    assert state.users["alice"].last_active == later
