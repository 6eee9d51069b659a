"""The console scripts' pure parts: make_config, settings_doc, --version; the upgrade gate."""

import configparser
import ipaddress
import json
import uuid
from pathlib import Path

import pytest

import channelstream
from channelstream.cli import (
    main,
    make_config,
    readme_settings_section,
    replace_readme_settings_section,
    settings_doc,
    utils_main,
)
from channelstream.config_file import read_config_file
from channelstream.server import websocket_upgrade_refused
from channelstream.settings import SETTINGS_TABLE, Settings, SettingsError

README = Path(__file__).resolve().parents[2] / "README.md"


def run_make_config(capsys, *args):
    utils_main(["make_config", *args])
    return capsys.readouterr().out


def load(tmp_path, text):
    path = tmp_path / "made.ini"
    path.write_text(text)
    return Settings.from_sources(read_config_file(path).app_settings, environ={})


def test_make_config_writes_every_setting_with_a_comment(capsys, monkeypatch):
    for setting in SETTINGS_TABLE:
        monkeypatch.delenv(setting.env_var, raising=False)
    text = run_make_config(capsys)
    lines = text.splitlines()
    parser = configparser.ConfigParser()
    parser.read_string(text)
    assert set(parser.options("channelstream")) == {s.name for s in SETTINGS_TABLE}
    for setting in SETTINGS_TABLE:
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{setting.name} ="))
        assert lines[index - 1] == f"# Environment variable: {setting.env_var}"
        assert lines[index - 2].startswith("# ")


def test_make_config_round_trips_defaults(tmp_path, monkeypatch):
    for setting in SETTINGS_TABLE:
        monkeypatch.delenv(setting.env_var, raising=False)
    settings = load(tmp_path, make_config())
    defaults = Settings.from_sources(environ={})
    for setting in SETTINGS_TABLE:
        if not setting.secret:
            assert getattr(settings, setting.name) == getattr(defaults, setting.name)
    # the secrets not given get random values baked into the file
    again = load(tmp_path, make_config())
    for name in ("secret", "admin_secret", "cookie_secret"):
        assert len(getattr(settings, name)) == 64
        assert getattr(settings, name) != getattr(again, name)
    assert settings.start_warnings == ()


def test_make_config_keeps_given_secrets_and_refuses_empty_ones(tmp_path):
    settings = load(tmp_path, make_config({"secret": "mine"}))
    assert settings.secret == "mine" and len(settings.admin_secret) == 64
    with pytest.raises(
        SettingsError, match=r"^admin_secret is empty in the -j JSON \(admin_secret\)"
    ):
        make_config({"admin_secret": ""})


def test_make_config_precedence_defaults_env_json(tmp_path):
    environ = {"CHANNELSTREAM_SECRET": "from-env", "CHANNELSTREAM_PORT": "9001"}
    text = make_config({"port": 9002, "enforce_https": True}, environ=environ)
    settings = load(tmp_path, text)
    assert settings.secret == "from-env"
    assert settings.port == 9002
    assert settings.enforce_https is True
    assert "enforce_https = true" in text.splitlines()


def test_make_config_json_allow_posting_from_as_string(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CHANNELSTREAM_ALLOW_POSTING_FROM", raising=False)
    text = run_make_config(capsys, "-j", json.dumps({"allow_posting_from": "10.0.0.1"}))
    assert "allow_posting_from = 10.0.0.1" in text.splitlines()
    settings = load(tmp_path, text)
    assert settings.allow_posting_from == (ipaddress.ip_network("10.0.0.1/32"),)


def test_make_config_json_allow_posting_from_as_list(tmp_path, capsys):
    value = ["127.0.0.1", "10.0.0.0/8", "::1"]
    text = run_make_config(capsys, "-j", json.dumps({"allow_posting_from": value}))
    assert "allow_posting_from = 127.0.0.1, 10.0.0.0/8, ::1" in text.splitlines()
    settings = load(tmp_path, text)
    assert [str(n) for n in settings.allow_posting_from] == [
        "127.0.0.1/32",
        "10.0.0.0/8",
        "::1/128",
    ]


def test_make_config_keeps_percent_signs_and_writes_output_file(tmp_path, capsys):
    out = tmp_path / "out.ini"
    utils_main(["make_config", "-o", str(out), "-j", json.dumps({"secret": "50%off"})])
    assert capsys.readouterr().out == ""
    assert Settings.from_sources(read_config_file(out).app_settings).secret == "50%off"


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({"port": "eighty"}, "'port'"),
        ({"allow_posting_from": ["10.0.0.1", "nonsense"]}, "'allow_posting_from'"),
        ({"no_such_setting": 1}, "'no_such_setting'"),
    ],
)
def test_make_config_bad_json_value_exits_2_naming_the_key(capsys, payload, named):
    with pytest.raises(SystemExit) as exit_info:
        utils_main(["make_config", "-j", json.dumps(payload)])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert named in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]"])
def test_make_config_rejects_bad_json(capsys, bad):
    with pytest.raises(SystemExit) as exit_info:
        utils_main(["make_config", "-j", bad])
    assert exit_info.value.code == 2
    assert "-j" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == channelstream.__version__


def test_settings_doc_lists_every_setting(capsys):
    utils_main(["settings_doc"])
    out = capsys.readouterr().out
    assert out == settings_doc()
    for setting in SETTINGS_TABLE:
        assert f"| `{setting.name}` |" in out
        assert f"`{setting.env_var}`" in out


def test_readme_settings_section_is_up_to_date():
    """`make settings-doc` regenerates it; this fails when the table and the README differ."""
    assert readme_settings_section(README.read_text()) == settings_doc()


def test_replace_readme_settings_section():
    text = "intro\n<!-- settings:start -->\nold\n<!-- settings:end -->\noutro\n"
    updated = replace_readme_settings_section(text, "| new |\n")
    assert updated == "intro\n<!-- settings:start -->\n| new |\n<!-- settings:end -->\noutro\n"
    assert readme_settings_section(updated) == "| new |\n"


CONN_ID = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("path", "query", "refused"),
    [
        ("/ws", f"conn_id={CONN_ID}", False),
        ("/prefix/ws", f"conn_id={CONN_ID}&x=1", False),
        ("/ws", "", True),
        ("/ws", "conn_id=", True),
        ("/ws", "conn_id=not-a-uuid", True),
        ("/ws", "other=1", True),
        ("/ws", f"conn_id=bad&conn_id={CONN_ID}", False),  # the last one counts, as in pyramid
        ("/prefix/ws", "", True),
        # never upgraded, whatever the headers: only /ws is served as a websocket
        ("/listen", f"conn_id={CONN_ID}", True),
        ("/sse", f"conn_id={CONN_ID}", True),
        ("/health", "", True),
        ("/wss", f"conn_id={CONN_ID}", True),
        ("/", "", True),
    ],
)
def test_websocket_upgrade_refused(path, query, refused):
    assert websocket_upgrade_refused({"PATH_INFO": path, "QUERY_STRING": query}) is refused


def test_websocket_upgrade_refused_without_query_string():
    assert websocket_upgrade_refused({"PATH_INFO": "/ws"}) is True
    assert websocket_upgrade_refused({}) is True
