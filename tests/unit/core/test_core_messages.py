"""/message routing: channels with exclude/pm filters, direct messages, stats."""

from __future__ import annotations

from datetime import timedelta

FRAME_KEYS = {"channel", "uuid", "timestamp", "user", "message", "edited", "catchup", "type", "seq"}


def recipients(outcome):
    [delivery] = outcome.deliveries
    return set(delivery.conn_ids)


def room_with_three_users(state, now):
    state.connect("alice", "a1", ["room"], now)
    state.connect("alice", "a2", ["room"], now)
    state.connect("bob", "b1", ["room"], now)
    state.connect("carol", "k1", ["room"], now)
    state.connect("dave", "d1", ["elsewhere"], now)


def test_channel_message_reaches_every_connection_of_every_member(state, now, message):
    room_with_three_users(state, now)

    outcome = state.publish([message("room", user="outsider")], now)

    assert recipients(outcome) == {"a1", "a2", "b1", "k1"}


def test_sender_receives_their_own_channel_message(state, now, message):
    room_with_three_users(state, now)

    outcome = state.publish([message("room", user="alice")], now)

    assert {"a1", "a2"} <= recipients(outcome)


def test_delivered_frame_has_exactly_the_client_fields(state, now, message):
    room_with_three_users(state, now)
    item = message("room", user="alice", exclude_users=["carol"], pm_users=[], no_history=True)

    [delivery] = state.publish([item], now).deliveries

    assert delivery.frame == {
        "seq": delivery.seq,  # every frame carries its position
        "channel": "room",
        "uuid": item["uuid"],
        "timestamp": item["timestamp"],
        "user": "alice",
        "message": item["message"],
        "edited": None,
        "catchup": False,
        "type": "message",
    }


def test_frame_has_no_message_key_when_none_was_sent(state, now, message):
    room_with_three_users(state, now)
    item = message("room")
    del item["message"]

    [delivery] = state.publish([item], now).deliveries

    assert set(delivery.frame) == FRAME_KEYS - {"message"}


def test_exclude_users_skips_those_users(state, now, message):
    room_with_three_users(state, now)

    outcome = state.publish([message("room", exclude_users=["alice", "carol"])], now)

    assert recipients(outcome) == {"b1"}


def test_sender_in_exclude_users_does_not_receive_their_message(state, now, message):
    room_with_three_users(state, now)

    outcome = state.publish([message("room", user="bob", exclude_users=["bob"])], now)

    assert recipients(outcome) == {"a1", "a2", "k1"}


def test_pm_users_limits_a_channel_message_to_those_users(state, now, message):
    room_with_three_users(state, now)

    outcome = state.publish([message("room", pm_users=["alice", "dave"])], now)

    # dave is not in the channel: a channel PM only reaches members
    assert recipients(outcome) == {"a1", "a2"}


def test_exclude_users_wins_over_pm_users(state, now, message):
    room_with_three_users(state, now)

    outcome = state.publish(
        [message("room", pm_users=["alice", "bob"], exclude_users=["alice"])], now
    )

    assert recipients(outcome) == {"b1"}


def test_message_to_an_unknown_channel_is_accepted_but_goes_nowhere(state, now, message):
    room_with_three_users(state, now)
    item = message("ghost")

    outcome = state.publish([item], now)

    assert [a["uuid"] for a in outcome.accepted] == [item["uuid"]]
    assert outcome.deliveries == []
    assert "ghost" not in state.channels
    assert state.stats.total_unique_messages == 1
    assert state.stats.total_messages == 0


def test_items_with_neither_channel_nor_pm_users_are_dropped(state, now, message):
    room_with_three_users(state, now)
    kept = message("room")

    outcome = state.publish(
        [message(None), message("", pm_users=[]), kept, message(None, pm_users=None)],
        now,
    )

    assert [a["uuid"] for a in outcome.accepted] == [kept["uuid"]]
    assert len(outcome.deliveries) == 1
    assert state.stats.total_unique_messages == 1


def test_accepted_items_echo_the_request_with_edited_null(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    item = message("room", exclude_users=["x"], no_history=True)

    [accepted] = state.publish([item], now).accepted

    assert accepted == {**item, "edited": None}
    assert "type" not in accepted
    assert "catchup" not in accepted


def test_messages_are_delivered_in_order_with_increasing_seq(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    items = [message("room"), message("room"), message("room")]

    outcome = state.publish(items, now)

    assert [d.frame["uuid"] for d in outcome.deliveries] == [i["uuid"] for i in items]
    seqs = [d.seq for d in outcome.deliveries]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert state.seq == seqs[-1]


# ---------------------------------------------------------------------------- direct


def test_direct_message_reaches_all_connections_of_each_listed_user(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    state.connect("alice", "a2", [], now)
    state.connect("bob", "b1", [], now)
    state.connect("carol", "k1", ["room"], now)

    outcome = state.publish([message(None, pm_users=["alice", "bob"])], now)

    [delivery] = outcome.deliveries
    assert sorted(delivery.conn_ids) == ["a1", "a2", "b1"]
    assert delivery.frame["channel"] is None
    assert delivery.frame["type"] == "message"
    assert set(delivery.frame) == FRAME_KEYS


def test_direct_message_skips_unknown_users(state, now, message):
    state.connect("alice", "a1", [], now)

    outcome = state.publish([message(None, pm_users=["ghost", "alice"])], now)

    assert recipients(outcome) == {"a1"}
    assert "ghost" not in state.users
    assert len(outcome.accepted) == 1


def test_direct_message_to_only_unknown_users_is_accepted_and_counted(state, now, message):
    outcome = state.publish([message(None, pm_users=["ghost"])], now)

    assert len(outcome.accepted) == 1
    assert recipients(outcome) == set()
    assert state.stats.total_unique_messages == 1
    assert state.stats.total_messages == 0


def test_direct_message_ignores_exclude_users(state, now, message):
    state.connect("alice", "a1", [], now)

    outcome = state.publish([message(None, pm_users=["alice"], exclude_users=["alice"])], now)

    assert recipients(outcome) == {"a1"}


def test_direct_message_listing_a_user_twice_reaches_them_once(state, now, message):
    state.connect("alice", "a1", [], now)

    outcome = state.publish([message(None, pm_users=["alice", "alice"])], now)

    assert outcome.deliveries[0].conn_ids == ("a1",)
    assert state.stats.total_messages == 1


def test_direct_message_is_kept_for_catchup_of_every_connection_of_the_user(state, now, message):
    state.connect("alice", "a1", [], now)
    state.connect("alice", "a2", ["room"], now)
    item = message(None, pm_users=["alice"])

    state.publish([item], now)

    for conn_id in ("a1", "a2"):
        frames = state.attach(conn_id, now).frames
        assert [f["uuid"] for f in frames] == [item["uuid"]]
        assert frames[0]["channel"] is None


def test_direct_message_refreshes_the_recipients_activity(state, now, message):
    state.connect("alice", "a1", [], now)
    later = now + timedelta(hours=2)

    state.publish([message(None, pm_users=["alice"])], later)

    assert state.users["alice"].last_active == later


def test_channel_pm_is_not_kept_as_a_direct_message(state, now, message):
    state.connect("alice", "a1", ["room"], now)
    state.connect("alice", "a2", [], now)  # same user, not in the channel

    outcome = state.publish([message("room", pm_users=["alice"])], now)

    assert recipients(outcome) == {"a1"}
    assert state.attach("a2", now).frames == []
    assert len(state.attach("a1", now).frames) == 1


def test_message_with_channel_and_pm_users_is_a_channel_message(state, now, message):
    state.connect("alice", "a1", [], now)
    state.connect("bob", "b1", ["room"], now)

    outcome = state.publish([message("room", pm_users=["alice", "bob"])], now)

    assert recipients(outcome) == {"b1"}
    assert outcome.deliveries[0].frame["channel"] == "room"


# ---------------------------------------------------------------------------- stats


def test_stats_count_accepted_items_and_connection_deliveries(state, now, message):
    room_with_three_users(state, now)  # 4 connections in room

    state.publish(
        [
            message("room"),  # 4 deliveries
            message("room", exclude_users=["alice"]),  # 2
            message(None, pm_users=["alice", "dave"]),  # 3
            message("ghost"),  # accepted, 0
            message(None),  # dropped
        ],
        now,
    )

    assert state.stats.total_unique_messages == 4
    assert state.stats.total_messages == 9


def test_connections_without_listeners_still_count_as_deliveries(state, now, message):
    state.connect("alice", "a1", ["room"], now)  # never attached

    state.publish([message("room")], now)

    assert state.connections["a1"].listeners == 0
    assert state.stats.total_messages == 1


def test_presence_and_state_frames_count_as_sent_frames_but_not_unique_messages(state, now):
    configs = {"room": {"notify_presence": True, "notify_state": True}}
    state.connect("bob", "b1", ["room"], now, channel_configs=configs)
    state.connect("alice", "a1", ["room"], now)  # joined -> b1

    state.set_user_state("alice", {"x": 1}, now)  # state change -> a1, b1

    assert state.stats.total_messages == 3
    assert state.stats.total_unique_messages == 0
