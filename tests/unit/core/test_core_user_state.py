"""/user_state: merge rules, public keys and user_state_change frames."""

from __future__ import annotations

from datetime import timedelta

NOTIFY = {"room": {"notify_state": True}}


def test_state_merges_new_and_changed_keys_and_reports_them(state, now):
    state.connect("alice", "a1", [], now, user_state={"a": 1, "b": "x"})

    outcome = state.set_user_state("alice", {"b": "y", "c": True}, now)

    assert outcome.user.state == {"a": 1, "b": "y", "c": True}
    assert outcome.changed == [{"key": "b", "value": "y"}, {"key": "c", "value": True}]


def test_writing_the_same_value_is_not_a_change(state, now):
    state.connect("alice", "a1", [], now, user_state={"a": 1, "s": "x"})

    outcome = state.set_user_state("alice", {"a": 1, "s": "x"}, now)

    assert outcome.changed == []


def test_null_on_a_missing_key_is_a_no_op(state, now):
    state.connect("alice", "a1", [], now, user_state={"a": 1})

    outcome = state.set_user_state("alice", {"missing": None}, now)

    assert outcome.changed == []
    assert state.users["alice"].state == {"a": 1}


def test_null_on_an_existing_key_is_written_and_the_key_stays(state, now):
    state.connect("alice", "a1", [], now, user_state={"a": 1})

    outcome = state.set_user_state("alice", {"a": None}, now)

    assert outcome.changed == [{"key": "a", "value": None}]
    assert state.users["alice"].state == {"a": None}


def test_user_state_refreshes_user_activity(state, now):
    state.connect("alice", "a1", [], now)
    later = now + timedelta(minutes=5)

    state.set_user_state("alice", {}, later)

    assert state.users["alice"].last_active == later


def test_public_keys_stay_unchanged_when_not_given(state, now):
    state.connect("alice", "a1", [], now, user_state={"a": 1}, state_public_keys=["a"])

    state.set_user_state("alice", {"b": 2}, now)

    assert state.users["alice"].public_keys == ["a"]
    assert state.users["alice"].public_state == {"a": 1}


def test_empty_public_keys_clear_the_public_state(state, now):
    state.connect("alice", "a1", [], now, user_state={"a": 1}, state_public_keys=["a"])

    state.set_user_state("alice", {}, now, state_public_keys=[])

    assert state.users["alice"].public_keys == []
    assert state.users["alice"].public_state == {}


def test_public_state_shows_only_public_keys_that_are_set(state, now):
    state.connect(
        "alice",
        "a1",
        [],
        now,
        user_state={"a": 1, "secret": 2},
        state_public_keys=["a", "unset"],
    )

    assert state.users["alice"].public_state == {"a": 1}


def test_state_change_goes_to_all_members_of_notify_state_channels_including_the_user(state, now):
    state.set_channel_configs({"room": {"notify_state": True}, "hall": {"notify_state": True}}, now)
    state.connect("alice", "a1", ["room"], now)
    state.connect("alice", "a2", ["hall"], now)
    state.connect("bob", "b1", ["room", "hall"], now)
    state.connect("carol", "k1", ["hall"], now)
    state.connect("dave", "d1", ["elsewhere"], now)

    outcome = state.set_user_state("alice", {"x": 1}, now)

    by_channel = {d.frame["channel"]: set(d.conn_ids) for d in outcome.deliveries}
    assert by_channel == {"hall": {"a2", "b1", "k1"}, "room": {"a1", "b1"}}


def test_no_state_change_frame_in_channels_without_notify_state(state, now):
    state.connect("alice", "a1", ["quiet"], now)
    state.connect("bob", "b1", ["quiet"], now)

    outcome = state.set_user_state("alice", {"x": 1}, now)

    assert outcome.deliveries == []
    assert outcome.changed == [{"key": "x", "value": 1}]


def test_one_state_change_frame_per_channel_even_with_several_connections(state, now):
    state.connect("alice", "a1", ["room"], now, channel_configs=NOTIFY)
    state.connect("alice", "a2", ["room"], now)

    outcome = state.set_user_state("alice", {"x": 1}, now)

    [delivery] = outcome.deliveries
    assert sorted(delivery.conn_ids) == ["a1", "a2"]


def test_state_change_frame_shape(state, now):
    state.connect(
        "alice",
        "a1",
        ["room"],
        now,
        channel_configs=NOTIFY,
        user_state={"color": "red", "secret": "s"},
        state_public_keys=["color"],
    )
    later = now + timedelta(seconds=1)

    [delivery] = state.set_user_state("alice", {"color": "blue", "secret": "t"}, later).deliveries

    frame = delivery.frame
    assert frame == {
        "seq": delivery.seq,  # every frame carries its position
        "uuid": frame["uuid"],
        "type": "user_state_change",
        "user": "alice",
        "timestamp": later,
        "catchup": False,
        "channel": "room",
        "message": {
            "state": {"color": "blue"},
            "changed": [{"key": "color", "value": "blue"}],
        },
    }


def test_state_change_is_sent_even_when_only_private_keys_changed(state, now):
    state.connect(
        "alice",
        "a1",
        ["room"],
        now,
        channel_configs=NOTIFY,
        user_state={"color": "red"},
        state_public_keys=["color"],
    )

    [delivery] = state.set_user_state("alice", {"secret": "s"}, now).deliveries

    assert delivery.frame["message"] == {"state": {"color": "red"}, "changed": []}


def test_no_state_change_frame_when_nothing_changed(state, now):
    state.connect("alice", "a1", ["room"], now, channel_configs=NOTIFY, user_state={"a": 1})

    outcome = state.set_user_state("alice", {"a": 1, "gone": None}, now)

    assert outcome.deliveries == []


def test_state_change_uses_public_keys_given_in_the_same_call(state, now):
    state.connect("alice", "a1", ["room"], now, channel_configs=NOTIFY)

    [delivery] = state.set_user_state(
        "alice", {"a": 1, "b": 2}, now, state_public_keys=["b"]
    ).deliveries

    assert delivery.frame["message"] == {
        "state": {"b": 2},
        "changed": [{"key": "b", "value": 2}],
    }


def test_state_change_is_replayed_in_catchup(state, now):
    state.connect("alice", "a1", ["room"], now, channel_configs=NOTIFY)
    state.connect("bob", "b1", ["room"], now)

    state.set_user_state("alice", {"x": 1}, now)

    frames = state.attach("b1", now).frames
    assert [f["type"] for f in frames] == ["user_state_change"]
    assert frames[0]["catchup"] is True
