"""The settings table: defaults, sources and their precedence, parsing errors."""

import ipaddress

import pytest

from channelstream.settings import (
    SETTINGS_TABLE,
    Settings,
    SettingsError,
    unknown_keys,
)


def test_defaults():
    settings = Settings.from_sources(environ={})
    assert settings.host == "0.0.0.0"
    assert settings.port == 8000
    assert settings.secret == "secret"
    assert settings.admin_user == "admin"
    assert settings.admin_secret == "admin_secret"
    assert settings.allow_posting_from == (ipaddress.ip_network("127.0.0.1/32"),)
    assert settings.trusted_proxies == ()
    assert settings.allow_cors == ()
    assert settings.validate_requests is True
    assert settings.legacy_signatures is True
    assert settings.enforce_https is False
    assert settings.log_level == "INFO"
    assert settings.heartbeat_interval == 5
    assert settings.gc_conns_after == 30
    assert settings.gc_users_after == 86400
    assert settings.gc_channels_after == 259200
    assert settings.max_connections == 0
    assert settings.broker == "memory"


def test_empty_cookie_secret_becomes_random_per_start():
    first = Settings.from_sources(environ={}).cookie_secret
    second = Settings.from_sources(environ={}).cookie_secret
    assert first and second and first != second
    assert Settings.from_sources({"cookie_secret": "kept"}).cookie_secret == "kept"


def test_ini_source_overrides_defaults():
    settings = Settings.from_sources({"port": "9000", "secret": "s3"}, environ={})
    assert (settings.port, settings.secret) == (9000, "s3")


def test_later_source_overrides_earlier():
    settings = Settings.from_sources({"port": "9000"}, {"port": "9001"}, environ={})
    assert settings.port == 9001


def test_environment_overrides_ini():
    settings = Settings.from_sources(
        {"port": "9000", "secret": "from-ini"},
        environ={"CHANNELSTREAM_PORT": "9100", "UNRELATED": "x"},
    )
    assert settings.port == 9100
    assert settings.secret == "from-ini"


def test_prefixed_app_settings_are_understood():
    settings = Settings.from_sources({"channelstream.secret": "p", "pyramid.reload": "true"})
    assert settings.secret == "p"


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("port", "eighty"),
        ("port", "70000"),
        ("validate_requests", "maybe"),
        ("allow_posting_from", "127.0.0.1, not-an-ip"),
        ("trusted_proxies", "10.0.0.0/33"),
        ("log_level", "LOUD"),
        ("http_scheme", "ftp"),
        ("heartbeat_interval", "0"),
        ("heartbeat_interval", "soon"),
        ("max_message_size", "0"),
        ("max_connections", "-1"),
        ("broker", "carrier-pigeon"),
    ],
)
def test_bad_value_names_the_key(key, bad):
    with pytest.raises(SettingsError, match=repr(key)):
        Settings.from_sources({key: bad}, environ={})


def test_bad_environment_value_names_the_key():
    with pytest.raises(SettingsError, match="'port'"):
        Settings.from_sources(environ={"CHANNELSTREAM_PORT": "x"})


def test_address_lists_accept_cidr_ranges_and_ipv6():
    settings = Settings.from_sources(
        {"allow_posting_from": "127.0.0.1,\n10.0.0.0/8, ::1", "trusted_proxies": ["192.168.0.0/16"]}
    )
    assert settings.allow_posting_from == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert settings.trusted_proxies == (ipaddress.ip_network("192.168.0.0/16"),)


def test_all_zeros_address_means_any_address():
    settings = Settings.from_sources({"allow_posting_from": "0.0.0.0"})
    for address in ("203.0.113.9", "10.1.2.3", "2001:db8::1"):
        ip = ipaddress.ip_address(address)
        assert any(
            ip in network
            for network in settings.allow_posting_from
            if ip.version == network.version
        )


def test_allow_cors_is_a_list():
    settings = Settings.from_sources({"allow_cors": "https://a.example, b.example"})
    assert settings.allow_cors == ("https://a.example", "b.example")


def test_every_setting_has_help_and_an_env_var():
    for setting in SETTINGS_TABLE:
        assert setting.help
        assert setting.env_var == "CHANNELSTREAM_" + setting.name.upper()


def test_unknown_keys_skips_settings_and_retired_keys():
    assert unknown_keys({"secret": "", "channelstream.port": "", "demo": "", "typo": ""}) == [
        "typo"
    ]


def test_log_format_and_metrics_allow_from():
    defaults = Settings.from_sources(environ={})
    assert defaults.log_format == "text"
    assert defaults.metrics_allow_from == ()
    settings = Settings.from_sources(
        {"log_format": " JSON ", "metrics_allow_from": "10.0.0.0/8, ::1"}, environ={}
    )
    assert settings.log_format == "json"
    assert settings.metrics_allow_from == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    from_env = Settings.from_sources(environ={"CHANNELSTREAM_LOG_FORMAT": "json"})
    assert from_env.log_format == "json"


@pytest.mark.parametrize(("key", "bad"), [("log_format", "yaml"), ("metrics_allow_from", "nope")])
def test_bad_log_format_or_metrics_networks_name_the_key(key, bad):
    with pytest.raises(SettingsError, match=key):
        Settings.from_sources({key: bad}, environ={})
