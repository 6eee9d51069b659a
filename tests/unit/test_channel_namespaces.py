"""`channel_namespaces` and `max_connections_per_user`: parsed and checked at start, and
applied by the core when a channel is created (API.md §4.3, §4.5)."""

from __future__ import annotations

from datetime import datetime

import pytest

from channelstream.config_file import read_config_file
from channelstream.core.state import Limits, State
from channelstream.settings import Settings, SettingsError

NOW = datetime(2026, 1, 1)
CHAT = {"chat": {"notify_presence": True, "store_history": True, "history_size": 50}}


def test_defaults_are_no_namespaces_and_no_per_user_limit():
    settings = Settings.from_sources(environ={})
    assert settings.channel_namespaces == {}
    assert settings.max_connections_per_user == 0


def test_an_environment_variable_holds_json():
    environ = {"CHANNELSTREAM_CHANNEL_NAMESPACES": '{"chat": {"history_size": 5}}'}
    assert Settings.from_sources(environ=environ).channel_namespaces == {
        "chat": {"history_size": 5}
    }


def test_an_ini_holds_json_on_continuation_lines(tmp_path):
    path = tmp_path / "cs.ini"
    path.write_text(
        '[channelstream]\nchannel_namespaces = {\n    "chat": {"notify_presence": true,\n'
        '        "store_history": true, "history_size": 50}}\nmax_connections_per_user = 5\n'
    )
    settings = Settings.from_sources(*read_config_file(path).sources, environ={})
    assert settings.channel_namespaces == CHAT
    assert settings.max_connections_per_user == 5


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{chat", "expected a JSON object"),
        ("[1]", "expected a JSON object, got list"),
        ('{"chat": {"colour": "red"}}', "colour"),
        ('{"chat": {"history_size": -1}}', "history_size"),
        ('{"chat": {"store_history": "maybe"}}', "store_history"),
        ('{"chat": 5}', "namespace 'chat'"),
        ('{"a:b": {}}', "without ':'"),
        ('{"": {}}', "without ':'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_setting_and_its_source(raw, expected):
    with pytest.raises(SettingsError) as error:
        Settings.from_sources(environ={"CHANNELSTREAM_CHANNEL_NAMESPACES": raw})
    message = str(error.value)
    assert "'channel_namespaces' from environment variable CHANNELSTREAM_CHANNEL_NAMESPACES" in (
        message
    )
    assert expected in message
    assert "\n" not in message


def test_a_new_channel_of_a_namespace_starts_from_its_defaults_explicit_keys_win():
    state = State(Limits(channel_namespaces=CHAT))
    state.connect(
        "alice",
        "c1",
        ["chat:lobby", "chat:quiet", "news:1", "chat"],
        NOW,
        channel_configs={"chat:quiet": {"notify_presence": False}},
    )

    lobby = state.channels["chat:lobby"].config
    quiet = state.channels["chat:quiet"].config
    assert (lobby.notify_presence, lobby.store_history, lobby.history_size) == (True, True, 50)
    assert (quiet.notify_presence, quiet.store_history, quiet.history_size) == (False, True, 50)
    assert state.channels["news:1"].config.history_size == 10  # no namespace: the defaults
    assert state.channels["chat"].config.history_size == 10  # no ":": in no namespace


def test_channel_config_creating_a_channel_applies_the_namespace_too():
    state = State(Limits(channel_namespaces=CHAT))
    state.set_channel_configs({"chat:new": {"history_size": 3}}, NOW)

    config = state.channels["chat:new"].config
    assert (config.notify_presence, config.history_size) == (True, 3)


def test_namespaces_apply_only_when_a_channel_is_created():
    state = State(Limits(channel_namespaces=CHAT))
    state.set_channel_configs({"chat:x": {"store_history": False}}, NOW)
    state.connect("alice", "c1", ["chat:x"], NOW)

    assert state.channels["chat:x"].config.store_history is False
