"""Start-up rules seen through the app: an empty `allow_posting_from` lets any address call
(signed), and a host app that includes channelstream gets its secrets made and logged, or a
SettingsError (never a SystemExit) for an empty one."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from pyramid.config import Configurator

from channelstream.settings import SettingsError
from tests.functional.conftest import ClientFactory

CONNECT = {"username": "alice"}


@pytest.fixture(autouse=True)
def _no_channelstream_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """CHANNELSTREAM_* variables of the machine running the tests would win over settings."""
    for name in list(os.environ):
        if name.startswith("CHANNELSTREAM_"):
            monkeypatch.delenv(name)


@pytest.fixture
def stop_nodes() -> Iterator[list[Configurator]]:
    configs: list[Configurator] = []
    yield configs
    for config in configs:
        config.registry.channelstream_node.stop()


@pytest.mark.parametrize("address", ["203.0.113.9", "10.1.2.3", "2001:db8::1"])
def test_an_empty_allow_posting_from_lets_any_address_call_with_a_signature(
    make_client: ClientFactory, address: str
) -> None:
    client = make_client(allow_posting_from="")
    environ = {"REMOTE_ADDR": address}

    client.post("/connect", CONNECT, environ=environ, status=200)
    client.post("/connect", CONNECT, environ=environ, signed=False, status=403)
    client.post("/connect", CONNECT, environ=environ, token="not-a-token", status=401)


def test_a_listed_allow_posting_from_still_refuses_other_addresses(
    make_client: ClientFactory,
) -> None:
    client = make_client(allow_posting_from="127.0.0.1")

    client.post("/connect", CONNECT, environ={"REMOTE_ADDR": "203.0.113.9"}, status=403)


def test_an_include_without_secrets_makes_and_logs_them(
    caplog: pytest.LogCaptureFixture, stop_nodes: list[Configurator]
) -> None:
    config = Configurator(settings={"secret": "the-host-apps-own"})
    with caplog.at_level(logging.WARNING, logger="channelstream"):
        config.include("channelstream")
    stop_nodes.append(config)

    settings = config.registry.channelstream_settings
    lines = [r.getMessage() for r in caplog.records if r.name == "channelstream"]
    assert lines == [
        f"secret is not set: made a random one for this run: {settings.secret} "
        "(set CHANNELSTREAM_SECRET to choose your own)",
        f"admin_secret is not set: made a random one for this run: {settings.admin_secret} "
        "(set CHANNELSTREAM_ADMIN_SECRET to choose your own)",
    ]


@pytest.mark.parametrize("key", ["secret", "admin_secret"])
def test_an_include_with_an_empty_secret_raises_settings_error(key: str) -> None:
    config = Configurator(settings={f"channelstream.{key}": ""})
    with pytest.raises(SettingsError) as error:
        config.include("channelstream")
    assert str(error.value).startswith(
        f"{key} is empty in the host app's settings (channelstream.{key}): "
    )
