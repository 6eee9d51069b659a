"""Reading 0.7-style and PasteDeploy ini files."""

import logging
import textwrap
from pathlib import Path

import pytest

from channelstream.config_file import read_config_file
from channelstream.settings import Settings, SettingsError


def write(tmp_path, text, name="channelstream.ini"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_channelstream_section(tmp_path):
    path = write(
        tmp_path,
        """
        [channelstream]
        secret = s3
        port = 9000
        allow_posting_from = 127.0.0.1
            10.0.0.1
        demo = true
        """,
    )
    config = read_config_file(path)
    assert config.app_settings == {
        "secret": "s3",
        "port": "9000",
        "allow_posting_from": "127.0.0.1\n10.0.0.1",
    }
    assert config.server == {}
    settings = Settings.from_sources(config.app_settings, environ={})
    assert [str(n) for n in settings.allow_posting_from] == ["127.0.0.1/32", "10.0.0.1/32"]


def test_channelstream_section_warns_about_unknown_keys(tmp_path, caplog):
    path = write(tmp_path, "[channelstream]\nsecret = s\nsecrte = x\ndebug = true\n")
    with caplog.at_level(logging.WARNING):
        config = read_config_file(path)
    assert config.app_settings == {"secret": "s"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "secrte" in warnings[0] and "debug" not in warnings[0]


@pytest.mark.parametrize("prefix", ["channelstream.", ""])
def test_pastedeploy_file(tmp_path, caplog, prefix):
    path = write(
        tmp_path,
        f"""
        [app:main]
        use = egg:channelstream
        pyramid.reload_templates = true
        pyramid.includes =
        {prefix}secret = s3
        {prefix}admin_secret = a3

        [server:main]
        use = egg:channelstream
        host = 127.0.0.1
        port = 6543
        threads = 4

        [loggers]
        keys = root
        """,
    )
    with caplog.at_level(logging.WARNING):
        config = read_config_file(path)
    assert config.app_settings == {"secret": "s3", "admin_secret": "a3"}
    assert config.server == {"host": "127.0.0.1", "port": "6543"}
    assert not caplog.records


def test_pastedeploy_prefixed_typo_warns(tmp_path, caplog):
    path = write(tmp_path, "[app:main]\nuse = egg:channelstream\nchannelstream.scret = x\n")
    with caplog.at_level(logging.WARNING):
        read_config_file(path)
    assert "channelstream.scret" in caplog.text


def test_here_and_file_interpolation(tmp_path):
    path = write(
        tmp_path,
        """
        [app:main]
        use = egg:channelstream
        channelstream.signature_checker = %(here)s/checker
        channelstream.secret = %(__file__)s
        """,
        name="deploy.ini",
    )
    config = read_config_file(path)
    assert config.app_settings["signature_checker"] == f"{tmp_path.resolve()}/checker"
    assert config.app_settings["secret"] == str((tmp_path / "deploy.ini").resolve())


def test_default_section_keys_are_not_settings(tmp_path):
    path = write(tmp_path, "[DEFAULT]\nsecret = global\n\n[channelstream]\nport = 1\n")
    assert read_config_file(path).app_settings == {"port": "1"}


def test_missing_file_names_it(tmp_path):
    path = tmp_path / "nope.ini"
    with pytest.raises(SettingsError, match="nope.ini"):
        read_config_file(path)


def test_no_known_section_names_the_file(tmp_path):
    path = write(tmp_path, "[something]\nsecret = x\n", name="other.ini")
    with pytest.raises(SettingsError, match="other.ini.*channelstream"):
        read_config_file(path)


def test_unparsable_file_names_it(tmp_path):
    path = write(tmp_path, "secret = no section header\n", name="broken.ini")
    with pytest.raises(SettingsError, match="broken.ini"):
        read_config_file(path)


def test_bad_interpolation_names_the_file(tmp_path):
    path = write(tmp_path, "[channelstream]\nsecret = 100%\n", name="pct.ini")
    with pytest.raises(SettingsError, match="pct.ini.*secret"):
        read_config_file(path)


ROOT = Path(__file__).resolve().parents[2]
# production.ini ships CHANGE-ME placeholders, refused at start: production sets its own.
PRODUCTION_SECRETS = {"CHANNELSTREAM_SECRET": "s", "CHANNELSTREAM_ADMIN_SECRET": "a"}


@pytest.mark.parametrize(
    ("name", "environ"), [("development.ini", {}), ("production.ini", PRODUCTION_SECRETS)]
)
def test_shipped_ini_files_are_valid(name, environ):
    config = read_config_file(ROOT / name)
    settings = Settings.from_sources(*config.sources, environ=environ)
    assert settings.port == int(config.server["port"])
    assert settings.start_warnings == ()


def test_production_ini_as_shipped_is_refused_for_its_placeholder_secret():
    config = read_config_file(ROOT / "production.ini")
    with pytest.raises(SettingsError) as error:
        Settings.from_sources(*config.sources, environ={"CHANNELSTREAM_SECRET": "s"})
    assert str(error.value) == (
        f"admin_secret in config file {ROOT / 'production.ini'} ([app:main] "
        "channelstream.admin_secret) is still the placeholder 'CHANGE-ME-admin-secret': set a "
        "long random value of your own"
    )
