"""Presence: "joined" on a user's first connection in a channel, "parted" on the last."""

from __future__ import annotations

from datetime import timedelta

PRESENCE = {"room": {"notify_presence": True}}
WITH_LISTS = {"room": {"notify_presence": True, "broadcast_presence_with_user_lists": True}}


def presence_deliveries(outcome):
    return [d for d in outcome.deliveries if d.frame["type"] == "presence"]


def only_presence(outcome):
    [delivery] = presence_deliveries(outcome)
    return delivery


def test_joined_goes_to_everyone_in_the_channel_except_the_joiner(state, now):
    state.connect("bob", "b1", ["room"], now, channel_configs=PRESENCE)
    state.connect("bob", "b2", ["room"], now)
    state.connect("carol", "k1", ["room"], now)

    outcome = state.connect("alice", "a1", ["room"], now)

    delivery = only_presence(outcome)
    assert set(delivery.conn_ids) == {"b1", "b2", "k1"}
    assert delivery.frame["user"] == "alice"
    assert delivery.frame["message"] == {"action": "joined"}


def test_joined_frame_carries_the_joiners_public_state(state, now):
    state.connect("bob", "b1", ["room"], now, channel_configs=PRESENCE)

    outcome = state.connect(
        "alice",
        "a1",
        ["room"],
        now,
        user_state={"color": "red", "secret": "x"},
        state_public_keys=["color"],
    )

    frame = only_presence(outcome).frame
    assert frame == {
        "seq": frame["seq"],  # every frame carries its position
        "uuid": frame["uuid"],
        "type": "presence",
        "user": "alice",
        "users": [],
        "timestamp": now,
        "channel": "room",
        "message": {"action": "joined"},
        "state": {"color": "red"},
        "catchup": False,
    }
    assert isinstance(frame["uuid"], str) and frame["uuid"]


def test_presence_frames_get_distinct_uuids(state, now):
    state.connect("bob", "b1", ["room"], now, channel_configs=PRESENCE)
    first = only_presence(state.connect("alice", "a1", ["room"], now))
    second = only_presence(state.connect("carol", "k1", ["room"], now))

    assert first.frame["uuid"] != second.frame["uuid"]


def test_a_users_second_connection_does_not_announce_them_again(state, now):
    state.connect("bob", "b1", ["room"], now, channel_configs=PRESENCE)
    state.connect("alice", "a1", ["room"], now)

    outcome = state.connect("alice", "a2", ["room"], now)

    assert presence_deliveries(outcome) == []


def test_subscribe_announces_joined(state, now):
    state.connect("bob", "b1", ["room"], now, channel_configs=PRESENCE)
    state.connect("alice", "a1", [], now)

    outcome = state.subscribe("a1", ["room"], now)

    assert only_presence(outcome).conn_ids == ("b1",)


def test_parted_only_when_the_users_last_connection_leaves(state, now):
    state.connect("bob", "b1", ["room"], now, channel_configs=PRESENCE)
    state.connect("alice", "a1", ["room"], now)
    state.connect("alice", "a2", ["room"], now)

    first = state.unsubscribe("a1", ["room"], now)
    last = state.unsubscribe("a2", ["room"], now)

    assert presence_deliveries(first) == []
    delivery = only_presence(last)
    assert delivery.conn_ids == ("b1",)
    assert delivery.frame["message"] == {"action": "parted"}
    assert delivery.frame["user"] == "alice"


def test_parted_frame_has_null_state(state, now):
    state.connect("bob", "b1", ["room"], now, channel_configs=PRESENCE)
    state.connect("alice", "a1", ["room"], now, user_state={"c": 1}, state_public_keys=["c"])
    later = now + timedelta(seconds=3)

    frame = only_presence(state.unsubscribe("a1", ["room"], later)).frame

    assert frame["state"] is None
    assert frame["timestamp"] == later
    assert frame["channel"] == "room"
    assert frame["users"] == []
    assert frame["catchup"] is False


def test_disconnect_sends_parted_in_every_presence_channel(state, now):
    configs = {
        "room": {"notify_presence": True},
        "hall": {"notify_presence": True},
        "quiet": {},
    }
    state.connect("bob", "b1", ["room", "hall", "quiet"], now, channel_configs=configs)
    state.connect("alice", "a1", ["room", "hall", "quiet"], now)

    outcome = state.disconnect("a1", now)

    parted = presence_deliveries(outcome)
    assert sorted(d.frame["channel"] for d in parted) == ["hall", "room"]
    assert all(d.frame["message"] == {"action": "parted"} for d in parted)
    assert all(d.conn_ids == ("b1",) for d in parted)


def test_disconnect_of_one_of_two_connections_sends_no_parted(state, now):
    state.connect("bob", "b1", ["room"], now, channel_configs=PRESENCE)
    state.connect("alice", "a1", ["room"], now)
    state.connect("alice", "a2", ["room"], now)

    assert presence_deliveries(state.disconnect("a1", now)) == []


def test_no_presence_without_notify_presence(state, now):
    state.connect("bob", "b1", ["room"], now)

    joined = state.connect("alice", "a1", ["room"], now)
    parted = state.unsubscribe("a1", ["room"], now)
    state.subscribe("a1", ["room"], now)
    gone = state.disconnect("a1", now)

    assert joined.deliveries == []
    assert parted.deliveries == []
    assert gone.deliveries == []


def test_presence_to_an_otherwise_empty_channel_reaches_nobody(state, now):
    outcome = state.connect("alice", "a1", ["room"], now, channel_configs=PRESENCE)

    assert only_presence(outcome).conn_ids == ()


def test_joined_user_list_includes_the_joiner_with_public_state(state, now):
    state.connect(
        "bob",
        "b1",
        ["room"],
        now,
        channel_configs=WITH_LISTS,
        user_state={"mood": "ok", "token": "s"},
        state_public_keys=["mood"],
    )

    outcome = state.connect(
        "alice",
        "a1",
        ["room"],
        now,
        user_state={"color": "red", "password": "p"},
        state_public_keys=["color"],
    )

    assert only_presence(outcome).frame["users"] == [
        {"user": "alice", "state": {"color": "red"}},
        {"user": "bob", "state": {"mood": "ok"}},
    ]


def test_parted_user_list_excludes_the_leaver(state, now):
    state.connect("bob", "b1", ["room"], now, channel_configs=WITH_LISTS)
    state.connect("carol", "k1", ["room"], now)
    state.connect("alice", "a1", ["room"], now)

    outcome = state.disconnect("a1", now)

    assert only_presence(outcome).frame["users"] == [
        {"user": "bob", "state": {}},
        {"user": "carol", "state": {}},
    ]


def test_presence_is_replayed_in_catchup_but_never_kept_in_history(state, now):
    configs = {"room": {"notify_presence": True, "store_history": True}}
    state.connect("bob", "b1", ["room"], now, channel_configs=configs)

    state.connect("alice", "a1", ["room"], now)
    catchup = state.attach("b1", now)

    assert [f["type"] for f in catchup.frames] == ["presence"]
    assert catchup.frames[0]["user"] == "alice"
    assert catchup.frames[0]["catchup"] is True
    assert state.channels["room"].history == []
    assert state.channels_info()["channels"]["room"]["history"] == []


def test_a_user_never_catches_up_on_their_own_presence(state, now):
    state.connect("bob", "b1", ["room"], now, channel_configs=PRESENCE)
    state.connect("alice", "a1", [], now)
    state.connect("alice", "a2", [], now)

    state.subscribe("a1", ["room"], now)  # "joined" excluding alice
    state.subscribe("a2", ["room"], now)

    assert state.attach("a2", now).frames == []
    assert state.attach("a1", now).frames == []
