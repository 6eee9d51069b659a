"""/connect, /subscribe, /unsubscribe, /disconnect and the limits, decided by the core."""

from __future__ import annotations

from datetime import timedelta

import pytest

from channelstream.core.errors import (
    ConnectionOwnedByOther,
    CoreError,
    TooManyChannels,
    TooManyConnections,
    TooManyUserConnections,
    UnknownConnection,
    UnknownUser,
)
from channelstream.core.state import Limits, State


def test_connect_creates_the_user_the_connection_and_the_channels(state, now):
    outcome = state.connect("alice", "c1", ["b", "a"], now)

    assert outcome.connection is state.connections["c1"]
    assert outcome.user is state.users["alice"]
    assert outcome.connection.username == "alice"
    assert list(outcome.connection.channels) == ["a", "b"]
    assert list(outcome.user.connections) == ["c1"]
    assert sorted(state.channels) == ["a", "b"]
    assert state.channels["a"].members == {"alice": {"c1": None}}
    assert outcome.deliveries == []


def test_connect_with_repeated_channel_names_joins_each_once(state, now):
    state.connect("alice", "c1", ["a", "a"], now)

    assert list(state.connections["c1"].channels) == ["a"]
    assert state.channels["a"].total_connections == 1


def test_fresh_user_state_applies_only_when_the_user_is_new(state, now):
    state.connect("alice", "c1", [], now, fresh_user_state={"color": "red"})
    state.connect("alice", "c2", [], now, fresh_user_state={"color": "blue"})

    assert state.users["alice"].state == {"color": "red"}


def test_user_state_given_to_connect_is_merged_every_time(state, now):
    state.connect("alice", "c1", [], now, user_state={"a": 1})
    state.connect("alice", "c2", [], now, user_state={"b": 2})

    assert state.users["alice"].state == {"a": 1, "b": 2}


def test_user_state_overrides_fresh_user_state_for_a_new_user(state, now):
    state.connect(
        "alice",
        "c1",
        [],
        now,
        fresh_user_state={"color": "red", "size": 1},
        user_state={"color": "green"},
    )

    assert state.users["alice"].state == {"color": "green", "size": 1}


def test_state_passed_to_connect_never_notifies_channels(state, now):
    configs = {"room": {"notify_state": True}}
    state.connect("bob", "b1", ["room"], now, channel_configs=configs)

    outcome = state.connect(
        "bob", "b2", [], now, user_state={"mood": "happy"}, state_public_keys=["mood"]
    )

    assert outcome.deliveries == []


def test_every_connect_overwrites_public_keys_and_omitting_them_empties_public_state(state, now):
    state.connect("alice", "c1", [], now, user_state={"x": 1}, state_public_keys=["x"])
    assert state.users["alice"].public_state == {"x": 1}

    state.connect("alice", "c2", [], now)

    assert state.users["alice"].public_keys == []
    assert state.users["alice"].public_state == {}


def test_channel_configs_apply_only_to_channels_the_connect_creates(state, now):
    state.connect("alice", "c1", ["old"], now)

    state.connect(
        "bob",
        "c2",
        ["old", "new"],
        now,
        channel_configs={
            "old": {"notify_presence": True},
            "new": {"store_history": True, "history_size": 3},
        },
    )

    assert state.channels["old"].config.notify_presence is False
    assert state.channels["new"].config.store_history is True
    assert state.channels["new"].config.history_size == 3


def test_connect_reusing_own_conn_id_updates_the_connection_in_place(state, now):
    first = state.connect("alice", "c1", ["a"], now, user_state={"x": 1})
    state.attach("c1", now)
    later = now + timedelta(seconds=5)

    second = state.connect("alice", "c1", ["b"], later, user_state={"y": 2})

    assert second.connection is first.connection
    assert list(state.connections) == ["c1"]
    assert list(state.users["alice"].connections) == ["c1"]
    assert sorted(second.connection.channels) == ["a", "b"]
    assert second.connection.listeners == 1  # the live socket is kept
    assert second.connection.last_active == later
    assert state.users["alice"].state == {"x": 1, "y": 2}
    assert state.channels["a"].members == {"alice": {"c1": None}}


def test_connect_reusing_own_conn_id_sends_no_second_joined(state, now):
    configs = {"room": {"notify_presence": True}}
    state.connect("bob", "b1", ["room"], now, channel_configs=configs)
    state.connect("alice", "c1", ["room"], now)

    outcome = state.connect("alice", "c1", ["room"], now)

    assert outcome.deliveries == []


def test_connect_reusing_another_users_conn_id_is_refused_and_changes_nothing(state, now):
    state.connect("alice", "c1", ["a"], now)

    with pytest.raises(ConnectionOwnedByOther):
        state.connect("mallory", "c1", ["b"], now)

    assert state.connections["c1"].username == "alice"
    assert list(state.connections["c1"].channels) == ["a"]
    assert "mallory" not in state.users
    assert "b" not in state.channels


def test_subscribe_joins_and_reports_only_newly_joined_channels(state, now):
    state.connect("alice", "c1", ["a"], now)

    outcome = state.subscribe("c1", ["c", "a", "b"], now)

    assert outcome.changed_channels == ["b", "c"]
    assert sorted(state.connections["c1"].channels) == ["a", "b", "c"]


def test_subscribe_refreshes_connection_activity(state, now):
    state.connect("alice", "c1", [], now)
    later = now + timedelta(seconds=9)

    state.subscribe("c1", ["a"], later)

    assert state.connections["c1"].last_active == later


def test_subscribe_channel_configs_apply_only_to_new_channels(state, now):
    state.connect("alice", "c1", ["old"], now)

    state.subscribe(
        "c1",
        ["new"],
        now,
        channel_configs={"new": {"notify_state": True}},
    )
    state.subscribe(
        "c1",
        ["old"],
        now,
        channel_configs={"old": {"notify_state": True}},
    )

    assert state.channels["new"].config.notify_state is True
    assert state.channels["old"].config.notify_state is False


def test_subscribe_with_unknown_connection_raises(state, now):
    with pytest.raises(UnknownConnection):
        state.subscribe("nope", ["a"], now)
    assert state.channels == {}


def test_unsubscribe_leaves_channels_and_ignores_unknown_or_unjoined_ones(state, now):
    state.connect("alice", "c1", ["a", "b"], now)
    state.connect("bob", "c2", ["other"], now)

    outcome = state.unsubscribe("c1", ["a", "other", "missing"], now)

    assert outcome.changed_channels == ["a"]
    assert list(state.connections["c1"].channels) == ["b"]
    assert state.channels["a"].members == {}
    assert state.channels["other"].members == {"bob": {"c2": None}}
    assert "missing" not in state.channels


def test_unsubscribe_keeps_user_in_channel_while_another_connection_remains(state, now):
    state.connect("alice", "c1", ["a"], now)
    state.connect("alice", "c2", ["a"], now)

    state.unsubscribe("c1", ["a"], now)

    assert state.channels["a"].members == {"alice": {"c2": None}}


def test_unsubscribe_with_unknown_connection_raises(state, now):
    with pytest.raises(UnknownConnection):
        state.unsubscribe("nope", ["a"], now)


def test_disconnect_removes_the_connection_at_once(state, now):
    state.connect("alice", "c1", ["a"], now)
    state.connect("alice", "c2", ["a"], now)

    outcome = state.disconnect("c1", now)

    assert outcome is not None
    assert "c1" not in state.connections
    assert list(state.users["alice"].connections) == ["c2"]
    assert state.channels["a"].members == {"alice": {"c2": None}}
    with pytest.raises(UnknownConnection):
        state.subscribe("c1", ["b"], now)


def test_disconnect_of_an_unknown_connection_returns_none(state, now):
    assert state.disconnect("nope", now) is None


def test_disconnect_is_final_for_later_listeners(state, now):
    state.connect("alice", "c1", ["a"], now)
    state.disconnect("c1", now)

    with pytest.raises(UnknownConnection):
        state.attach("c1", now)
    assert state.touch("c1", now) is False
    state.detach("c1", 0, now)  # a listener that outlived it goes away quietly
    assert "c1" not in state.connections


def test_attach_to_an_unknown_connection_raises(state, now):
    with pytest.raises(UnknownConnection):
        state.attach("nope", now)


def test_set_user_state_of_an_unknown_user_raises(state, now):
    with pytest.raises(UnknownUser):
        state.set_user_state("nobody", {"a": 1}, now)


def test_every_core_error_is_a_core_error():
    for error in (
        UnknownConnection("x"),
        UnknownUser("x"),
        ConnectionOwnedByOther("x"),
        TooManyChannels(3),
        TooManyConnections(),
    ):
        assert isinstance(error, CoreError)
    assert TooManyChannels(3).limit == 3
    assert "3" in str(TooManyChannels(3))


# ---------------------------------------------------------------------------- limits


def test_max_connections_refuses_a_new_connection_over_the_limit(now):
    state = State(Limits(max_connections=2))
    state.connect("alice", "c1", [], now)
    state.connect("bob", "c2", [], now)

    with pytest.raises(TooManyConnections):
        state.connect("carol", "c3", ["a"], now)

    assert sorted(state.connections) == ["c1", "c2"]
    assert "carol" not in state.users
    assert "a" not in state.channels


def test_max_connections_still_lets_an_existing_connection_reconnect(now):
    state = State(Limits(max_connections=1))
    state.connect("alice", "c1", [], now)

    state.connect("alice", "c1", ["a"], now)

    assert list(state.connections["c1"].channels) == ["a"]


def test_max_connections_frees_a_slot_after_disconnect(now):
    state = State(Limits(max_connections=1))
    state.connect("alice", "c1", [], now)
    state.disconnect("c1", now)

    state.connect("bob", "c2", [], now)

    assert list(state.connections) == ["c2"]


def test_max_connections_zero_means_unlimited(now):
    state = State(Limits(max_connections=0))
    for n in range(50):
        state.connect(f"user{n}", f"c{n}", [], now)

    assert len(state.connections) == 50


def test_connect_over_max_channels_per_connection_is_refused_and_leaves_no_trace(
    now,
):
    state = State(Limits(max_channels_per_connection=2))

    with pytest.raises(TooManyChannels) as raised:
        state.connect("alice", "c1", ["a", "b", "c"], now)

    assert raised.value.limit == 2
    assert state.connections == {}
    assert state.users == {}
    assert state.channels == {}


def test_reconnect_counts_the_channels_the_connection_already_has(now):
    state = State(Limits(max_channels_per_connection=2))
    state.connect("alice", "c1", ["a", "b"], now)

    with pytest.raises(TooManyChannels):
        state.connect("alice", "c1", ["c"], now)

    assert sorted(state.connections["c1"].channels) == ["a", "b"]


def test_subscribe_over_max_channels_per_connection_joins_nothing(now):
    state = State(Limits(max_channels_per_connection=2))
    state.connect("alice", "c1", ["a"], now)

    with pytest.raises(TooManyChannels):
        state.subscribe("c1", ["b", "c"], now)

    assert list(state.connections["c1"].channels) == ["a"]
    assert "b" not in state.channels
    assert "c" not in state.channels


def test_subscribe_to_channels_already_joined_does_not_count_twice(now):
    state = State(Limits(max_channels_per_connection=2))
    state.connect("alice", "c1", ["a", "b"], now)

    outcome = state.subscribe("c1", ["a", "b"], now)

    assert outcome.changed_channels == []


def test_the_channel_limit_is_per_connection(now):
    state = State(Limits(max_channels_per_connection=1))
    state.connect("alice", "c1", ["a"], now)

    state.connect("alice", "c2", ["b"], now)

    assert sorted(state.channels) == ["a", "b"]


# ------------------------------------------------------------------ users as a whole (issue 13)


def test_max_connections_per_user_refuses_one_more_of_that_user_only(now):
    state = State(Limits(max_connections_per_user=2))
    state.connect("alice", "c1", ["a"], now)
    state.connect("alice", "c2", ["a"], now)

    with pytest.raises(TooManyUserConnections) as refused:
        state.connect("alice", "c3", ["a"], now)

    assert refused.value.limit == 2
    assert "c3" not in state.connections
    state.connect("bob", "c4", ["a"], now)  # another user is not limited by alice's
    state.connect("alice", "c1", ["b"], now)  # updating an existing one is not a new one
    assert sorted(state.connections["c1"].channels) == ["a", "b"]


def test_max_connections_per_user_counts_again_once_one_ended(now):
    state = State(Limits(max_connections_per_user=1))
    state.connect("alice", "c1", [], now)
    state.disconnect("c1", now)

    state.connect("alice", "c2", [], now)

    assert list(state.users["alice"].connections) == ["c2"]


def test_max_connections_per_user_zero_means_no_limit(now):
    state = State(Limits(max_connections_per_user=0))
    for index in range(20):
        state.connect("alice", f"c{index}", [], now)
    assert len(state.users["alice"].connections) == 20


def test_disconnect_users_ends_every_connection_of_those_users(state, now):
    state.connect("alice", "c1", ["a"], now)
    state.connect("alice", "c2", ["b"], now)
    state.connect("bob", "c3", ["a"], now)

    outcome = state.disconnect_users(["alice", "nobody", "alice"], now)

    assert outcome.ended == {"alice": ["c1", "c2"], "nobody": []}
    assert list(state.connections) == ["c3"]
    assert state.users["alice"].connections == {}
    assert state.channels["a"].members == {"bob": {"c3": None}}
    assert state.channels["b"].members == {}


def test_disconnect_users_sends_parted_where_presence_is_notified(state, now):
    state.connect("bob", "c0", ["a"], now, channel_configs={"a": {"notify_presence": True}})
    state.connect("alice", "c1", ["a"], now)

    outcome = state.disconnect_users(["alice"], now)

    (delivery,) = outcome.deliveries
    assert delivery.frame["message"] == {"action": "parted"}
    assert delivery.conn_ids == ("c0",)
