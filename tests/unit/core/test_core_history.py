"""Channel history (with fixes F1 and F4) and /channel_config merging (fix F2)."""

from __future__ import annotations

from datetime import timedelta

from channelstream.core.model import ChannelConfig

HISTORY = {"store_history": True}


def history_uuids(state, channel="room"):
    return [entry["uuid"] for entry in state.channels_info()["channels"][channel]["history"]]


def room(state, now, **config):
    state.set_channel_configs({"room": config}, now)
    state.connect("alice", "a1", ["room"], now)


def test_without_store_history_nothing_is_kept(state, now, message):
    room(state, now)

    state.publish([message("room")], now)

    assert history_uuids(state) == []


def test_messages_are_kept_in_order(state, now, message):
    room(state, now, **HISTORY)
    items = [message("room"), message("room")]

    state.publish(items, now)

    assert history_uuids(state) == [i["uuid"] for i in items]


def test_history_is_trimmed_to_history_size_keeping_the_newest(state, now, message):
    room(state, now, store_history=True, history_size=3)
    items = [message("room") for _ in range(5)]

    state.publish(items, now)

    assert history_uuids(state) == [i["uuid"] for i in items[-3:]]


def test_history_size_zero_keeps_no_history(state, now, message):
    """Fix F1: 0.7.1 kept everything."""
    room(state, now, store_history=True, history_size=0)

    state.publish([message("room") for _ in range(3)], now)

    assert history_uuids(state) == []


def test_history_size_zero_still_delivers_and_catches_up(state, now, message):
    room(state, now, store_history=True, history_size=0)
    item = message("room")

    outcome = state.publish([item], now)

    assert outcome.deliveries[0].conn_ids == ("a1",)
    assert [f["uuid"] for f in state.attach("a1", now).frames] == [item["uuid"]]


def test_no_history_messages_are_delivered_but_not_kept(state, now, message):
    room(state, now, **HISTORY)

    outcome = state.publish([message("room", no_history=True)], now)

    assert outcome.deliveries[0].conn_ids == ("a1",)
    assert history_uuids(state) == []


def test_private_channel_messages_never_enter_history(state, now, message):
    """Fix F4: 0.7.1 exposed pm_users messages through /info and /connect."""
    room(state, now, **HISTORY)
    state.connect("bob", "b1", ["room"], now)
    private = message("room", pm_users=["bob"])
    public = message("room")

    state.publish([private, public], now)

    assert history_uuids(state) == [public["uuid"]]
    # its recipient still gets it live and in catchup
    assert [f["uuid"] for f in state.attach("b1", now).frames] == [
        private["uuid"],
        public["uuid"],
    ]
    assert [f["uuid"] for f in state.attach("a1", now).frames] == [public["uuid"]]


def test_presence_and_state_frames_never_enter_history(state, now, message):
    room(state, now, store_history=True, notify_presence=True, notify_state=True)

    state.connect("bob", "b1", ["room"], now)
    state.set_user_state("bob", {"x": 1}, now)
    state.disconnect("b1", now)

    assert history_uuids(state) == []


def test_history_entry_carries_the_delivery_fields_like_0_7_1(state, now, message):
    room(state, now, **HISTORY)
    item = message("room", user="alice", exclude_users=["bob"])

    state.publish([item], now)

    [entry] = state.channels_info()["channels"]["room"]["history"]
    assert entry == {
        "seq": entry["seq"],  # added: its position, for /history
        "channel": "room",
        "uuid": item["uuid"],
        "timestamp": item["timestamp"],
        "user": "alice",
        "message": item["message"],
        "edited": None,
        "catchup": False,
        "type": "message",
        "pm_users": [],
        "exclude_users": ["bob"],
        "no_history": False,
    }


def test_history_of_a_channel_without_members_still_grows(state, now, message):
    state.set_channel_configs({"log": HISTORY}, now)
    item = message("log")

    outcome = state.publish([item], now)

    assert outcome.deliveries[0].conn_ids == ()
    assert history_uuids(state, "log") == [item["uuid"]]


# ---------------------------------------------------------------------------- configs


def test_channel_config_creates_missing_channels_with_defaults_for_omitted_keys(state, now):
    names = state.set_channel_configs({"new": {"notify_presence": True}}, now)

    assert names == ["new"]
    settings = state.channels_info()["channels"]["new"]["settings"]
    assert settings == {**ChannelConfig().as_dict(), "notify_presence": True}
    assert state.channels["new"].last_active == now


def test_channel_config_merges_into_an_existing_channel(state, now):
    """Fix F2: 0.7.1 reset every key that was not given."""
    state.set_channel_configs(
        {"room": {"notify_presence": True, "store_history": True, "history_size": 4}},
        now,
    )

    state.set_channel_configs({"room": {"notify_state": True}}, now)

    config = state.channels["room"].config
    assert config.notify_presence is True
    assert config.store_history is True
    assert config.history_size == 4
    assert config.notify_state is True


def test_channel_config_ignores_unknown_keys(state, now):
    state.set_channel_configs({"room": {"salvageable": True, "bogus": 1}}, now)

    assert state.channels["room"].config == ChannelConfig()


def test_channel_config_refreshes_channel_activity(state, now):
    state.set_channel_configs({"room": {}}, now)
    later = now + timedelta(hours=1)

    state.set_channel_configs({"room": {"notify_state": True}}, later)

    assert state.channels["room"].last_active == later


def test_lowering_history_size_trims_existing_history(state, now, message):
    room(state, now, store_history=True, history_size=5)
    items = [message("room") for _ in range(5)]
    state.publish(items, now)

    state.set_channel_configs({"room": {"history_size": 2}}, now)

    assert history_uuids(state) == [i["uuid"] for i in items[-2:]]


def test_channel_config_applies_to_later_messages(state, now, message):
    room(state, now)
    state.publish([message("room")], now)

    state.set_channel_configs({"room": HISTORY}, now)
    item = message("room")
    state.publish([item], now)

    assert history_uuids(state) == [item["uuid"]]


def test_channel_config_keeps_members(state, now):
    room(state, now)

    state.set_channel_configs({"room": {"notify_presence": True}}, now)

    assert state.channels["room"].members == {"alice": {"a1": None}}
