"""Whose keys are channelstream's: a section of its own (bare or prefixed keys, the prefixed
one winning whatever the order) versus a host app's settings (prefixed keys only)."""

import textwrap

import pytest

from channelstream.config_file import read_config_file
from channelstream.settings import Settings, host_app_values, section_values


@pytest.mark.parametrize(
    "section",
    [
        {"secret": "bare", "channelstream.secret": "prefixed"},
        {"channelstream.secret": "prefixed", "secret": "bare"},
    ],
    ids=["bare-first", "prefixed-first"],
)
def test_in_an_own_section_the_prefixed_key_wins_whatever_the_order(section):
    assert section_values(section) == {"secret": "prefixed"}
    assert Settings.from_sources(section, environ={}).secret == "prefixed"


def test_an_own_section_takes_bare_keys_and_skips_others():
    values = section_values({"port": "9000", "pyramid.reload_templates": "true", "use": "egg:x"})
    assert values == {"port": "9000"}


def test_a_host_apps_settings_give_only_their_prefixed_keys():
    host = {
        "secret": "host-secret",
        "port": "1234",
        "debug": "true",
        "channelstream.secret": "cs-secret",
        "channelstream.typo": "x",
        "channelstream.url": "http://127.0.0.1:8000",  # channelstream.client's, no setting
    }
    assert host_app_values(host) == {"secret": "cs-secret"}
    settings = Settings.from_sources(host_app_values(host), environ={})
    assert (settings.secret, settings.port) == ("cs-secret", 8000)


def write(tmp_path, text):
    path = tmp_path / "deploy.ini"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("order", ["bare-first", "prefixed-first"])
def test_a_pastedeploy_file_of_channelstream_prefers_the_prefixed_key(tmp_path, order):
    lines = ["secret = bare", "channelstream.secret = prefixed"]
    if order == "prefixed-first":
        lines.reverse()
    path = write(tmp_path, "[app:main]\nuse = egg:channelstream\n" + "\n".join(lines) + "\n")
    assert read_config_file(path).app_settings == {"secret": "prefixed"}


@pytest.mark.parametrize(
    "use", ["egg:channelstream", "egg:channelstream#main", "call:channelstream:main"]
)
def test_a_pastedeploy_file_of_channelstream_takes_bare_keys(tmp_path, use):
    path = write(tmp_path, f"[app:main]\nuse = {use}\nsecret = s\nport = 9000\n")
    assert read_config_file(path).app_settings == {"secret": "s", "port": "9000"}


def test_a_host_apps_pastedeploy_file_gives_only_prefixed_keys(tmp_path):
    path = write(
        tmp_path,
        """
        [app:main]
        use = egg:myapp
        secret = host-secret
        port = 1234
        channelstream.secret = cs-secret
        """,
    )
    assert read_config_file(path).app_settings == {"secret": "cs-secret"}
