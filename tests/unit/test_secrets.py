"""Secrets at start (API.md §4.4): a secret nobody set is made at random and logged; an empty
one, or production.ini's CHANGE-ME placeholder, is refused naming the key and its source; the
secrets may come from files (`CHANNELSTREAM_<KEY>_FILE`, Docker and Kubernetes secrets)."""

import logging
import re

import pytest

from channelstream.settings import Settings, SettingsError, log_start_warnings

MADE = re.compile(
    r"^(secret|admin_secret) is not set: made a random one for this run: (\S+) "
    r"\(set (CHANNELSTREAM_\w+) to choose your own\)$"
)


def made_secrets(settings):
    """{name: value} of the secrets the start warnings say were made at random."""
    made = {}
    for line in settings.start_warnings:
        match = MADE.match(line)
        if match:
            assert match[3] == "CHANNELSTREAM_" + match[1].upper()
            made[match[1]] = match[2]
    return made


def test_secrets_nobody_set_are_made_at_random_and_each_warned_about_once():
    first = Settings.from_sources(environ={})
    second = Settings.from_sources(environ={})
    assert made_secrets(first) == {"secret": first.secret, "admin_secret": first.admin_secret}
    assert len(first.secret) >= 40 and first.secret != second.secret
    assert first.admin_secret != first.secret
    assert len(first.start_warnings) == 2


def test_the_warnings_are_logged_by_the_channelstream_logger(caplog):
    settings = Settings.from_sources({"secret": "given"}, environ={})
    with caplog.at_level(logging.WARNING, logger="channelstream"):
        log_start_warnings(settings)
    [record] = caplog.records
    assert (record.name, record.levelno) == ("channelstream", logging.WARNING)
    assert record.getMessage() == (
        f"admin_secret is not set: made a random one for this run: {settings.admin_secret} "
        "(set CHANNELSTREAM_ADMIN_SECRET to choose your own)"
    )


def test_a_secret_given_anywhere_is_not_made():
    settings = Settings.from_sources(
        {"channelstream.secret": "from-file"}, environ={"CHANNELSTREAM_ADMIN_SECRET": "env"}
    )
    assert (settings.secret, settings.admin_secret) == ("from-file", "env")
    assert settings.start_warnings == ()


@pytest.mark.parametrize("name", ["secret", "admin_secret"])
@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_secret_in_a_file_is_refused_naming_the_key(name, value):
    with pytest.raises(SettingsError) as error:
        Settings.from_sources({f"channelstream.{name}": value}, environ={})
    assert str(error.value).startswith(
        f"{name} is empty in the settings given (channelstream.{name}): set a long random value"
    )


@pytest.mark.parametrize("name", ["secret", "admin_secret"])
def test_an_empty_secret_in_the_environment_is_refused_naming_the_variable(name):
    variable = "CHANNELSTREAM_" + name.upper()
    with pytest.raises(SettingsError, match=f"^{name} is empty in environment variable {variable}"):
        Settings.from_sources({name: "from-file"}, environ={variable: ""})


@pytest.mark.parametrize("name", ["secret", "admin_secret", "cookie_secret"])
@pytest.mark.parametrize("value", ["CHANGE-ME-api-secret", "change-me", "CHANGE-ME"])
def test_a_change_me_placeholder_is_refused(name, value):
    with pytest.raises(SettingsError) as error:
        Settings.from_sources({name: value}, environ={})
    assert str(error.value) == (
        f"{name} in the settings given ({name}) is still the placeholder {value!r}: set a "
        "long random value of your own"
    )


def test_an_empty_cookie_secret_is_still_random_per_start():
    settings = Settings.from_sources({"cookie_secret": ""}, environ={})
    assert len(settings.cookie_secret) == 32


@pytest.mark.parametrize("name", ["secret", "admin_secret"])
def test_the_well_known_0_7_1_values_are_accepted_with_a_warning(name):
    settings = Settings.from_sources({name: name}, environ={})
    assert getattr(settings, name) == name
    [warning] = [line for line in settings.start_warnings if line.startswith(f"{name} is ")]
    assert warning == (
        f"{name} is {name!r}, the well-known default of channelstream 0.7.1 (from the settings "
        f"given ({name})): set your own (CHANNELSTREAM_{name.upper()}) before exposing this "
        "server"
    )


@pytest.mark.parametrize("name", ["secret", "admin_secret", "cookie_secret"])
def test_a_secret_file_gives_its_content_stripped(tmp_path, name):
    path = tmp_path / name
    path.write_text(f"  from-the-{name}-file\n")
    variable = f"CHANNELSTREAM_{name.upper()}_FILE"
    settings = Settings.from_sources({name: "from-ini"}, environ={variable: str(path)})
    assert getattr(settings, name) == f"from-the-{name}-file"


def test_a_secret_and_its_file_both_set_are_refused_naming_both(tmp_path):
    path = tmp_path / "secret"
    path.write_text("s")
    environ = {"CHANNELSTREAM_SECRET": "s", "CHANNELSTREAM_SECRET_FILE": str(path)}
    with pytest.raises(SettingsError) as error:
        Settings.from_sources(environ=environ)
    assert str(error.value) == (
        "both CHANNELSTREAM_SECRET and CHANNELSTREAM_SECRET_FILE are set: set only one"
    )


def test_an_unreadable_secret_file_is_refused_naming_the_variable_and_the_path(tmp_path):
    missing = tmp_path / "no-such-file"
    with pytest.raises(SettingsError) as error:
        Settings.from_sources(environ={"CHANNELSTREAM_ADMIN_SECRET_FILE": str(missing)})
    assert str(error.value) == (
        f"CHANNELSTREAM_ADMIN_SECRET_FILE: cannot read {missing}: No such file or directory"
    )
    with pytest.raises(SettingsError, match="CHANNELSTREAM_SECRET_FILE: cannot read .*director"):
        Settings.from_sources(environ={"CHANNELSTREAM_SECRET_FILE": str(tmp_path)})
    with pytest.raises(SettingsError, match="CHANNELSTREAM_SECRET_FILE is empty"):
        Settings.from_sources(environ={"CHANNELSTREAM_SECRET_FILE": ""})


def test_an_empty_secret_file_is_an_empty_secret_and_refused(tmp_path):
    path = tmp_path / "empty"
    path.write_text("\n")
    with pytest.raises(SettingsError) as error:
        Settings.from_sources(environ={"CHANNELSTREAM_SECRET_FILE": str(path)})
    assert str(error.value).startswith(
        f"secret is empty in file {path} (CHANNELSTREAM_SECRET_FILE): set a long random value"
    )
