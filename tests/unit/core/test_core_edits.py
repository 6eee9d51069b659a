"""PATCH /message (edits) and DELETE /message (deletes)."""

from __future__ import annotations

from datetime import datetime, timedelta

EDITED_AT = datetime(2026, 1, 1, 0, 5)


def chat(state, now):
    state.set_channel_configs({"room": {"store_history": True}}, now)
    state.connect("alice", "a1", ["room"], now)
    state.connect("bob", "b1", ["room"], now)
    state.connect("carol", "k1", ["room"], now)


def history(state, channel="room"):
    return state.channels_info()["channels"][channel]["history"]


def test_edit_changes_history_and_the_catchup_copy(state, now, message):
    chat(state, now)
    item = message("room", user="alice")
    state.publish([item], now)

    state.edit(
        [
            {
                "uuid": item["uuid"],
                "channel": "room",
                "message": {"text": "fixed"},
                "edited": EDITED_AT,
            }
        ],
        now,
    )

    [entry] = history(state)
    assert entry["message"] == {"text": "fixed"}
    assert entry["edited"] == EDITED_AT
    assert entry["user"] == "alice"
    replayed = [f for f in state.attach("b1", now).frames if f["type"] == "message"]
    assert replayed[0]["message"] == {"text": "fixed"}
    assert replayed[0]["edited"] == EDITED_AT


def test_edit_of_a_message_kept_only_for_catchup_updates_the_catchup_copy(state, now, message):
    chat(state, now)
    item = message("room", no_history=True)
    state.publish([item], now)

    state.edit([{"uuid": item["uuid"], "channel": "room", "user": "zed"}], now)

    replayed = [f for f in state.attach("b1", now).frames if f["type"] == "message"]
    assert replayed[0]["user"] == "zed"
    assert history(state) == []


def test_edit_frame_holds_only_the_sent_fields_plus_edited_and_type(state, now, message):
    chat(state, now)
    item = message("room")
    state.publish([item], now)

    outcome = state.edit(
        [
            {
                "uuid": item["uuid"],
                "channel": "room",
                "message": {"text": "new"},
                "edited": EDITED_AT,
            }
        ],
        now,
    )

    [delivery] = outcome.deliveries
    assert delivery.frame == {
        "seq": delivery.seq,  # every frame carries its position
        "channel": "room",
        "uuid": item["uuid"],
        "message": {"text": "new"},
        "edited": EDITED_AT,
        "type": "message:edit",
    }
    assert sorted(delivery.conn_ids) == ["a1", "b1", "k1"]


def test_edit_frame_with_every_editable_field(state, now, message):
    chat(state, now)
    item = message("room")
    state.publish([item], now)
    new_time = now + timedelta(days=1)

    [delivery] = state.edit(
        [
            {
                "uuid": item["uuid"],
                "channel": "room",
                "message": {"text": "new"},
                "user": "bob",
                "timestamp": new_time,
                "edited": EDITED_AT,
                "pm_users": [],
                "exclude_users": [],
                "no_history": False,
            }
        ],
        now,
    ).deliveries

    assert delivery.frame == {
        "seq": delivery.seq,  # every frame carries its position
        "channel": "room",
        "uuid": item["uuid"],
        "message": {"text": "new"},
        "user": "bob",
        "timestamp": new_time,
        "edited": EDITED_AT,
        "type": "message:edit",
    }
    [entry] = history(state)
    assert (entry["user"], entry["timestamp"]) == ("bob", new_time)


def test_edit_is_routed_by_the_edits_own_pm_and_exclude_users(state, now, message):
    chat(state, now)
    item = message("room", exclude_users=["carol"])
    state.publish([item], now)

    to_pm = state.edit(
        [{"uuid": item["uuid"], "channel": "room", "pm_users": ["carol", "bob"]}], now
    )
    to_rest = state.edit(
        [{"uuid": item["uuid"], "channel": "room", "exclude_users": ["alice"]}], now
    )

    assert sorted(to_pm.deliveries[0].conn_ids) == ["b1", "k1"]
    assert sorted(to_rest.deliveries[0].conn_ids) == ["b1", "k1"]


def test_edit_of_an_unknown_uuid_is_still_broadcast(state, now):
    chat(state, now)

    outcome = state.edit([{"uuid": "nope", "channel": "room", "edited": None}], now)

    assert sorted(outcome.deliveries[0].conn_ids) == ["a1", "b1", "k1"]
    assert outcome.accepted == [{"uuid": "nope", "channel": "room", "edited": None}]


def test_edit_in_an_unknown_channel_is_accepted_but_goes_nowhere(state, now):
    chat(state, now)

    outcome = state.edit([{"uuid": "u", "channel": "ghost"}], now)

    assert outcome.deliveries == []
    assert len(outcome.accepted) == 1
    assert "ghost" not in state.channels


def test_edit_frame_replays_in_catchup_but_never_enters_history(state, now, message):
    chat(state, now)
    item = message("room")
    state.publish([item], now)

    state.edit([{"uuid": item["uuid"], "channel": "room", "edited": EDITED_AT}], now)

    frames = state.attach("b1", now).frames
    assert [f["type"] for f in frames] == ["message", "message:edit"]
    assert frames[1]["catchup"] is True
    assert [e["type"] for e in history(state)] == ["message"]


def test_edit_of_a_direct_message_updates_it_for_catchup_and_tells_the_users(state, now, message):
    state.connect("alice", "a1", [], now)
    state.connect("alice", "a2", [], now)
    state.connect("bob", "b1", [], now)
    item = message(None, pm_users=["alice", "bob"])
    state.publish([item], now)

    outcome = state.edit(
        [
            {
                "uuid": item["uuid"],
                "pm_users": ["alice"],
                "message": {"text": "edited"},
                "edited": EDITED_AT,
            }
        ],
        now,
    )

    [delivery] = outcome.deliveries
    assert sorted(delivery.conn_ids) == ["a1", "a2"]
    assert delivery.frame == {
        "seq": delivery.seq,  # every frame carries its position
        "channel": None,
        "uuid": item["uuid"],
        "message": {"text": "edited"},
        "edited": EDITED_AT,
        "type": "message:edit",
    }
    frames = state.attach("a1", now).frames
    assert [f["type"] for f in frames] == ["message", "message:edit"]
    assert frames[0]["message"] == {"text": "edited"}


def test_edit_with_neither_channel_nor_pm_users_sends_nothing(state, now, message):
    chat(state, now)

    outcome = state.edit([{"uuid": "u", "message": {"x": 1}}], now)

    assert outcome.deliveries == []


def test_edit_counts_no_new_unique_message(state, now, message):
    chat(state, now)
    item = message("room")
    state.publish([item], now)

    state.edit([{"uuid": item["uuid"], "channel": "room"}], now)

    assert state.stats.total_unique_messages == 1
    assert state.stats.total_messages == 6


# ---------------------------------------------------------------------------- deletes


def test_delete_removes_the_message_from_history_and_catchup(state, now, message):
    chat(state, now)
    doomed, kept = message("room"), message("room")
    state.publish([doomed, kept], now)

    state.delete([{"uuid": doomed["uuid"], "channel": "room"}], now)

    assert [e["uuid"] for e in history(state)] == [kept["uuid"]]
    frames = state.attach("b1", now).frames
    assert [(f["type"], f["uuid"]) for f in frames] == [
        ("message", kept["uuid"]),
        ("message:delete", doomed["uuid"]),
    ]


def test_delete_frame_shape_and_routing(state, now, message):
    chat(state, now)
    item = message("room")
    state.publish([item], now)

    outcome = state.delete(
        [
            {
                "uuid": item["uuid"],
                "channel": "room",
                "pm_users": ["alice", "bob"],
                "exclude_users": ["bob"],
                "no_history": False,
            }
        ],
        now,
    )

    [delivery] = outcome.deliveries
    assert delivery.frame == {
        "seq": delivery.seq,  # every frame carries its position
        "channel": "room",
        "uuid": item["uuid"],
        "type": "message:delete",
    }
    assert delivery.conn_ids == ("a1",)
    assert outcome.accepted[0]["uuid"] == item["uuid"]


def test_delete_of_an_unknown_uuid_is_still_broadcast(state, now):
    chat(state, now)

    outcome = state.delete([{"uuid": "nope", "channel": "room"}], now)

    assert sorted(outcome.deliveries[0].conn_ids) == ["a1", "b1", "k1"]


def test_delete_of_nothing_returns_nothing(state, now):
    outcome = state.delete([], now)

    assert outcome.accepted == []
    assert outcome.deliveries == []


def test_delete_of_a_direct_message_removes_it_from_every_listed_users_catchup(state, now, message):
    state.connect("alice", "a1", [], now)
    state.connect("bob", "b1", [], now)
    item = message(None, pm_users=["alice", "bob"])
    state.publish([item], now)

    outcome = state.delete([{"uuid": item["uuid"], "pm_users": ["alice", "bob"]}], now)

    [delivery] = outcome.deliveries
    assert sorted(delivery.conn_ids) == ["a1", "b1"]
    assert delivery.frame == {
        "seq": delivery.seq,  # every frame carries its position
        "channel": None,
        "uuid": item["uuid"],
        "type": "message:delete",
    }
    for conn_id in ("a1", "b1"):
        frames = state.attach(conn_id, now).frames
        assert [f["type"] for f in frames] == ["message:delete"]


def test_delete_never_enters_history(state, now, message):
    chat(state, now)
    item = message("room")
    state.publish([item], now)

    state.delete([{"uuid": item["uuid"], "channel": "room"}], now)

    assert history(state) == []
