"""The settings table: defaults, sources and their precedence, parsing errors."""

import ipaddress

import pytest

from channelstream.config_file import read_config_file
from channelstream.settings import (
    ANY_ADDRESS_WARNING,
    SETTINGS_TABLE,
    Settings,
    SettingsError,
    SettingsSource,
    unknown_keys,
)


def test_defaults():
    settings = Settings.from_sources(environ={})
    assert settings.host == "0.0.0.0"
    assert settings.port == 8000
    assert settings.secret not in {"", "secret"}  # made at random: see test_secrets.py
    assert settings.admin_user == "admin"
    assert settings.admin_secret not in {"", "admin_secret"}
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
    assert settings.shutdown_timeout == 10
    assert settings.drain_grace == 2
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


# Python's own words for a bad number: a setting error must never show them.
PYTHON_INTERNALS = ("invalid literal", "could not convert", "base 10", "Traceback")


@pytest.mark.parametrize("bad", ["abc", "", "1.5e", "nan", "inf", "-1", "0x10", "  "])
@pytest.mark.parametrize("setting", SETTINGS_TABLE, ids=lambda setting: setting.name)
def test_a_bad_value_says_what_was_expected_and_what_was_given(setting, bad):
    try:
        Settings.from_sources({setting.name: bad}, environ={})
    except SettingsError as error:
        message = str(error)
        assert not any(words in message for words in PYTHON_INTERNALS), message
        assert repr(setting.name) in message or message.startswith(setting.name), message
        if message.startswith("invalid value"):
            assert "expected" in message and "got" in message, message


@pytest.mark.parametrize(
    ("key", "bad", "expected"),
    [
        ("port", "abc", "expected a port number 0..65535, got 'abc'"),
        ("port", "70000", "expected a port number 0..65535, got '70000'"),
        ("max_connections", "abc", "expected a whole number >= 0, got 'abc'"),
        ("max_message_size", "1.5", "expected a whole number >= 1, got '1.5'"),
        ("heartbeat_interval", "soon", "expected a number of seconds > 0, got 'soon'"),
        ("heartbeat_interval", "nan", "expected a number of seconds > 0, got 'nan'"),
        ("request_timeout", "-1", "expected a number of seconds >= 0, got '-1'"),
        ("log_level", "LOUD", "expected a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)"),
        ("trusted_proxies", "10.0.0.0/33", "expected IP addresses or CIDR ranges, got"),
        (
            "signature_checker",
            "no.such.Checker",
            "expected an importable module.Class, got 'no.such.Checker' (No module named 'no')",
        ),
        ("signature_checker", "itsdangerous.NoSuchName", "expected an importable module.Class"),
        ("signature_checker", "Checker", "expected an importable module.Class, got 'Checker'"),
    ],
)
def test_parsers_say_what_they_expected(key, bad, expected):
    with pytest.raises(SettingsError) as error:
        Settings.from_sources({key: bad}, environ={})
    assert expected in str(error.value)


@pytest.mark.parametrize(
    ("sources", "environ", "origin"),
    [
        ((), {"CHANNELSTREAM_PORT": "eighty"}, "from environment variable CHANNELSTREAM_PORT:"),
        (({"channelstream.port": "eighty"},), {}, "from the settings given (channelstream.port):"),
        (
            (SettingsSource.host_app("the host app's settings", {"channelstream.port": "x"}),),
            {},
            "from the host app's settings (channelstream.port):",
        ),
    ],
)
def test_a_bad_value_says_where_it_came_from(sources, environ, origin):
    with pytest.raises(SettingsError) as error:
        Settings.from_sources(*sources, environ=environ)
    assert origin in str(error.value)


def test_a_bad_value_in_a_file_names_the_file_section_and_key(tmp_path):
    path = tmp_path / "deploy.ini"
    path.write_text(
        "[app:main]\nuse = egg:channelstream\nchannelstream.port = eighty\n\n"
        "[server:main]\nport = 8000\n"
    )
    with pytest.raises(SettingsError) as error:
        Settings.from_sources(*read_config_file(path).sources, environ={})
    assert str(error.value) == (
        f"invalid value for setting 'port' from config file {path} ([app:main] "
        "channelstream.port): expected a port number 0..65535, got 'eighty'"
    )
    path.write_text("[app:main]\nuse = egg:channelstream\n\n[server:main]\nport = x\n")
    with pytest.raises(SettingsError, match=r"\(\[server:main\] port\): expected a port"):
        Settings.from_sources(*read_config_file(path).sources, environ={})
    path.write_text("[channelstream]\nmax_json_depth = deep\n")
    with pytest.raises(SettingsError, match=r"\(\[channelstream\] max_json_depth\): expected"):
        Settings.from_sources(*read_config_file(path).sources, environ={})


def test_an_importable_signature_checker_is_accepted():
    settings = Settings.from_sources({"signature_checker": "itsdangerous.TimestampSigner"})
    assert settings.signature_checker == "itsdangerous.TimestampSigner"
    assert Settings.from_sources({"signature_checker": ""}, environ={}).signature_checker == ""


def test_drain_grace_counts_within_shutdown_timeout():
    assert Settings.from_sources({"drain_grace": "0"}, environ={}).drain_grace == 0
    settings = Settings.from_sources({"drain_grace": "9.5", "shutdown_timeout": "10"})
    assert settings.drain_grace == 9.5
    with pytest.raises(SettingsError) as error:
        Settings.from_sources({"shutdown_timeout": "2"}, environ={"CHANNELSTREAM_DRAIN_GRACE": "2"})
    assert str(error.value) == (
        "drain_grace (2 from environment variable CHANNELSTREAM_DRAIN_GRACE) must be less than "
        "shutdown_timeout (2 from the settings given (shutdown_timeout)): the grace counts "
        "within the time a stop may take"
    )
    with pytest.raises(SettingsError, match="drain_grace .* the built-in default"):
        Settings.from_sources({"shutdown_timeout": "1"}, environ={})


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


@pytest.mark.parametrize("value", ["0.0.0.0", "", " "])
def test_all_zeros_or_empty_allow_posting_from_means_any_address(value):
    settings = Settings.from_sources({"allow_posting_from": value})
    for address in ("203.0.113.9", "10.1.2.3", "2001:db8::1"):
        ip = ipaddress.ip_address(address)
        assert any(
            ip in network
            for network in settings.allow_posting_from
            if ip.version == network.version
        )


def test_an_empty_allow_posting_from_from_any_source_is_warned_about():
    warning = ANY_ADDRESS_WARNING
    assert warning == (
        "Server API calls allowed from any address (allow_posting_from is empty); "
        "signatures are still required"
    )
    from_env = Settings.from_sources(environ={"CHANNELSTREAM_ALLOW_POSTING_FROM": ""})
    from_file = Settings.from_sources({"allow_posting_from": ""}, environ={})
    assert warning in from_env.start_warnings and warning in from_file.start_warnings
    assert from_env.allow_posting_from == from_file.allow_posting_from
    listed = Settings.from_sources({"allow_posting_from": "10.0.0.0/8"}, environ={})
    assert warning not in listed.start_warnings
    # the other address lists keep "empty: nobody"
    assert Settings.from_sources({"trusted_proxies": ""}, environ={}).trusted_proxies == ()


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


def test_presence_grace_is_a_few_seconds_within_gc_conns_after():
    assert Settings.from_sources({}, environ={}).presence_grace == 3
    assert Settings.from_sources({}, environ={}).idempotency_window == 300
    # unset, it never outlives the connection
    assert Settings.from_sources({"gc_conns_after": "1"}, environ={}).presence_grace == 1
    assert Settings.from_sources({"presence_grace": "0"}, environ={}).presence_grace == 0
    with pytest.raises(SettingsError, match=r"presence_grace \(6 from .*\) must be at most 5"):
        Settings.from_sources({"presence_grace": "6"}, environ={})
    with pytest.raises(SettingsError, match=r"at most gc_conns_after \(2 from"):
        Settings.from_sources({"presence_grace": "3", "gc_conns_after": "2"}, environ={})
