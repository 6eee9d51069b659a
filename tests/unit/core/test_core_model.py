"""Plain data of the core: channel configs and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from channelstream.core.model import ChannelConfig, utc_naive


def test_channel_config_defaults_match_0_7_1():
    assert ChannelConfig().as_dict() == {
        "notify_presence": False,
        "store_history": False,
        "history_size": 10,
        "broadcast_presence_with_user_lists": False,
        "notify_state": False,
        "store_frames": True,
        # added in 0.8: not in 0.7.1
        "history_ttl": 0,
        "catchup_size": 100,
    }


def test_merged_config_changes_only_given_keys_and_drops_unknown_ones():
    base = ChannelConfig(notify_presence=True, history_size=4)

    merged = base.merged({"store_history": True, "salvageable": True})

    assert merged == ChannelConfig(notify_presence=True, history_size=4, store_history=True)
    assert base == ChannelConfig(notify_presence=True, history_size=4)


def test_naive_timestamps_are_kept_as_given():
    moment = datetime(2026, 1, 1, 12, 30)

    assert utc_naive(moment) == moment


def test_aware_timestamps_become_naive_utc():
    """Fix F14: tz-aware input timestamps are converted to UTC."""
    plus_two = timezone(timedelta(hours=2))

    assert utc_naive(datetime(2026, 1, 1, 12, 0, tzinfo=plus_two)) == datetime(2026, 1, 1, 10, 0)
    assert utc_naive(datetime(2026, 1, 1, 12, 0, tzinfo=UTC)) == datetime(2026, 1, 1, 12, 0)
    assert utc_naive(datetime(2026, 1, 1, 12, 0, tzinfo=UTC)).tzinfo is None
