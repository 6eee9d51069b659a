"""The channels_info block of /info, /connect, /subscribe and /channel_config."""

from __future__ import annotations

import pytest


@pytest.fixture
def populated(state, now, message):
    state.set_channel_configs({"room": {"store_history": True}}, now)
    state.connect(
        "alice",
        "a1",
        ["room", "hall"],
        now,
        user_state={"color": "red", "secret": "s"},
        state_public_keys=["color"],
    )
    state.connect("alice", "a2", ["room"], now, state_public_keys=["color"])
    state.connect("bob", "b1", ["room"], now, user_state={"x": 1})
    state.connect("carol", "k1", ["lobby"], now)
    state.publish([message("room", uuid="m1")], now)
    return state


def test_all_channels_with_history_users_and_full_state_by_default(populated, now):
    info = populated.channels_info()

    assert list(info["channels"]) == ["hall", "lobby", "room"]
    room = info["channels"]["room"]
    assert room == {
        "uuid": populated.channels["room"].uuid,
        "name": "room",
        "long_name": None,
        "settings": {
            "notify_presence": False,
            "store_history": True,
            "history_size": 10,
            "broadcast_presence_with_user_lists": False,
            "notify_state": False,
            "store_frames": True,
            "history_ttl": 0,
            "catchup_size": 100,
        },
        "history": room["history"],
        "last_active": populated.channels["room"].last_active,
        "total_connections": 3,
        "total_users": 2,
        "users": ["alice", "bob"],
    }
    assert [e["uuid"] for e in room["history"]] == ["m1"]
    assert info["users"] == [
        {"user": "alice", "state": {"color": "red", "secret": "s"}},
        {"user": "bob", "state": {"x": 1}},
        {"user": "carol", "state": {}},
    ]


def test_channel_uuids_are_distinct(populated):
    uuids = {c["uuid"] for c in populated.channels_info()["channels"].values()}

    assert len(uuids) == 3


def test_include_history_false_leaves_history_empty(populated):
    info = populated.channels_info(include_history=False)

    assert info["channels"]["room"]["history"] == []
    assert info["channels"]["room"]["total_users"] == 2


def test_include_users_false_hides_every_username(populated):
    info = populated.channels_info(include_users=False)

    room = info["channels"]["room"]
    assert room["users"] == []
    assert room["total_users"] == 0
    assert room["total_connections"] == 3
    assert info["users"] == []


def test_exclude_channels_drops_them_and_their_users(populated):
    info = populated.channels_info(exclude_channels=["lobby", "hall"])

    assert list(info["channels"]) == ["room"]
    assert [u["user"] for u in info["users"]] == ["alice", "bob"]


def test_return_public_state_shows_only_public_keys(populated):
    info = populated.channels_info(["room"], return_public_state=True)

    assert info["users"] == [
        {"user": "alice", "state": {"color": "red"}},
        {"user": "bob", "state": {}},
    ]


def test_named_channels_only_skipping_unknown_names(populated):
    info = populated.channels_info(["lobby", "ghost", "lobby"])

    assert list(info["channels"]) == ["lobby"]
    assert info["users"] == [{"user": "carol", "state": {}}]
    assert "ghost" not in populated.channels


def test_no_names_means_no_channels(populated):
    assert populated.channels_info([]) == {"channels": {}, "users": []}


def test_channels_without_members_show_empty_user_lists(state, now):
    state.set_channel_configs({"empty": {}}, now)

    info = state.channels_info()

    assert info["channels"]["empty"]["users"] == []
    assert info["channels"]["empty"]["total_users"] == 0
    assert info["channels"]["empty"]["total_connections"] == 0
    assert info["users"] == []


def test_info_on_an_empty_server(state):
    assert state.channels_info() == {"channels": {}, "users": []}
