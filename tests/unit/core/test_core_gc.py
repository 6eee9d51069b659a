"""Garbage collection with an injected clock (fixes F7, F8, F16)."""

from __future__ import annotations

from datetime import timedelta

CONNS, USERS, CHANNELS = 30, 86400, 259200


def collect(state, at):
    return state.collect_garbage(
        at, connections_after=CONNS, users_after=USERS, channels_after=CHANNELS
    )


def after(now, seconds):
    return now + timedelta(seconds=seconds)


def test_a_connection_with_a_listener_is_never_collected_for_idleness(state, now):
    """Fix F7: 0.7.1 collected sockets attached late."""
    state.connect("alice", "a1", ["room"], now)
    state.attach("a1", now)

    outcome = collect(state, after(now, 10 * USERS))

    assert outcome.connections == []
    assert "a1" in state.connections
    assert "alice" in state.users
    assert "room" in state.channels


def test_an_idle_connection_without_listener_is_collected(state, now):
    state.connect("alice", "a1", ["room"], now)

    kept = collect(state, after(now, CONNS - 1))
    gone = collect(state, after(now, CONNS + 1))

    assert kept.connections == []
    assert gone.connections == ["a1"]
    assert state.connections == {}
    assert state.users["alice"].connections == {}
    assert state.channels["room"].members == {}


def test_a_connection_is_collected_once_its_last_listener_leaves(state, now):
    state.connect("alice", "a1", [], now)
    state.attach("a1", now)
    state.detach("a1", state.seq, after(now, 100))

    assert collect(state, after(now, 100 + CONNS - 1)).connections == []
    assert collect(state, after(now, 100 + CONNS + 1)).connections == ["a1"]


def test_collecting_a_connection_sends_parted_to_the_others(state, now):
    state.connect("bob", "b1", ["room"], now, channel_configs={"room": {"notify_presence": True}})
    state.attach("b1", now)
    state.connect("alice", "a1", ["room"], now)

    outcome = collect(state, after(now, CONNS + 1))

    [delivery] = outcome.deliveries
    assert delivery.conn_ids == ("b1",)
    assert delivery.frame["type"] == "presence"
    assert delivery.frame["user"] == "alice"
    assert delivery.frame["message"] == {"action": "parted"}


def test_touch_keeps_a_connection_and_its_user_alive(state, now):
    """Fix F16: every poll counts as activity for the connection and the user."""
    state.connect("alice", "a1", [], now)
    poll = after(now, CONNS - 5)

    assert state.touch("a1", poll) is True

    assert collect(state, after(now, CONNS + 1)).connections == []
    assert state.users["alice"].last_active == poll
    assert collect(state, after(poll, CONNS + 1)).connections == ["a1"]


def test_client_activity_through_other_calls_keeps_a_connection(state, now):
    state.connect("alice", "a1", [], now)
    state.subscribe("a1", ["room"], after(now, 20))
    state.unsubscribe("a1", ["room"], after(now, 40))

    assert collect(state, after(now, 40 + CONNS - 1)).connections == []


def test_reconnect_with_the_same_conn_id_refreshes_it(state, now):
    state.connect("alice", "a1", [], now)
    state.connect("alice", "a1", [], after(now, 25))

    assert collect(state, after(now, CONNS + 1)).connections == []


def test_a_user_without_connections_is_collected_after_users_after(state, now):
    state.connect("alice", "a1", [], now)
    state.disconnect("a1", after(now, 10))

    kept = collect(state, after(now, 10 + USERS - 1))
    gone = collect(state, after(now, 10 + USERS + 1))

    assert kept.users == []
    assert gone.users == ["alice"]
    assert "alice" not in state.users


def test_a_user_with_a_connection_is_never_collected(state, now):
    state.connect("alice", "a1", [], now)
    state.attach("a1", now)

    outcome = collect(state, after(now, 10 * USERS))

    assert outcome.users == []
    assert "alice" in state.users


def test_a_user_is_not_collected_in_the_sweep_that_drops_their_connection(state, now):
    state.connect("alice", "a1", [], now)

    outcome = collect(state, after(now, USERS + 1))

    assert outcome.connections == ["a1"]
    assert outcome.users == []
    assert "alice" in state.users


def test_a_collected_user_starts_fresh_on_the_next_connect(state, now):
    state.connect("alice", "a1", [], now, fresh_user_state={"level": 1})
    state.set_user_state("alice", {"level": 5}, now)
    state.disconnect("a1", now)
    collect(state, after(now, USERS + 1))

    state.connect("alice", "a2", [], after(now, USERS + 2), fresh_user_state={"level": 1})

    assert state.users["alice"].state == {"level": 1}


def test_an_empty_idle_channel_is_collected(state, now):
    state.connect("alice", "a1", ["room"], now)
    state.unsubscribe("a1", ["room"], after(now, 5))
    state.attach("a1", now)

    kept = collect(state, after(now, 5 + CHANNELS - 1))
    gone = collect(state, after(now, 5 + CHANNELS + 1))

    assert kept.channels == []
    assert gone.channels == ["room"]
    assert "room" not in state.channels


def test_a_channel_with_members_is_never_collected(state, now):
    state.connect("alice", "a1", ["room"], now)
    state.attach("a1", now)

    outcome = collect(state, after(now, 10 * CHANNELS))

    assert outcome.channels == []
    assert "room" in state.channels


def test_a_channel_created_by_channel_config_is_collected_when_left_unused(state, now):
    state.set_channel_configs({"room": {"store_history": True}}, now)

    assert collect(state, after(now, CHANNELS + 1)).channels == ["room"]


def test_reconfiguring_a_channel_counts_as_activity(state, now):
    state.set_channel_configs({"room": {}}, now)
    state.set_channel_configs({"room": {"notify_state": True}}, after(now, CHANNELS))

    assert collect(state, after(now, CHANNELS + 10)).channels == []


def test_messages_to_an_empty_channel_keep_it_and_its_history(state, now, message):
    """F8: a channel is removed only after no connections *and no activity*."""
    state.set_channel_configs({"log": {"store_history": True}}, now)
    later = after(now, CHANNELS - 10)

    state.publish([message("log")], later)

    assert state.channels["log"].last_active == later
    assert collect(state, after(now, CHANNELS + 10)).channels == []
    assert len(state.channels_info()["channels"]["log"]["history"]) == 1


def test_channel_last_active_follows_every_frame_sent_to_it(state, now, message):
    state.set_channel_configs({"room": {"notify_state": True}}, now)
    state.connect("alice", "a1", ["room"], now)

    state.set_user_state("alice", {"x": 1}, after(now, 1))
    assert state.channels["room"].last_active == after(now, 1)
    state.publish([message("room", uuid="m")], after(now, 2))
    assert state.channels["room"].last_active == after(now, 2)
    state.edit([{"uuid": "m", "channel": "room"}], after(now, 3))
    assert state.channels["room"].last_active == after(now, 3)
    state.delete([{"uuid": "m", "channel": "room"}], after(now, 4))
    assert state.channels["room"].last_active == after(now, 4)


def test_one_sweep_collects_connection_user_and_channel_when_all_are_stale(state, now):
    state.connect("alice", "a1", ["room"], now)
    state.disconnect("a1", now)
    state.connect("bob", "b1", ["hall"], now)

    outcome = collect(state, after(now, CHANNELS + 1))

    assert outcome.connections == ["b1"]
    assert outcome.users == ["alice"]
    assert outcome.channels == ["room"]  # hall was just left by b1
    assert sorted(state.channels) == ["hall"]


def test_nothing_to_collect_on_an_empty_server(state, now):
    outcome = collect(state, now)

    assert (outcome.connections, outcome.users, outcome.channels) == ([], [], [])
    assert outcome.deliveries == []


def test_times_too_long_for_a_date_keep_everything(state, now):
    """A setting may say "practically never" (1e300 s): no overflow, nothing collected."""
    state.connect("alice", "a1", ["room"], now)
    state.disconnect("a1", now)

    outcome = state.collect_garbage(
        after(now, 10 * USERS),
        connections_after=1e300,
        users_after=1e300,
        channels_after=1e300,
        presence_grace=1e300,
    )

    assert (outcome.connections, outcome.users, outcome.channels) == ([], [], [])
    assert "alice" in state.users and "room" in state.channels


def test_idle_is_more_than_the_time_not_equal_to_it(state, now):
    state.connect("alice", "a1", [], now)

    assert collect(state, after(now, CONNS)).connections == []
    assert collect(state, after(now, CONNS + 0.000001)).connections == ["a1"]
