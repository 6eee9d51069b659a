"""The two ways a Pyramid deployment loads channelstream, and whose settings and logging each
one reads: `config.include("channelstream")` in a host app (only `channelstream.` keys; only
channelstream's own loggers touched) and the PasteDeploy factory (`use = egg:channelstream`:
the whole [app:main] is channelstream's, bare keys included)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from pyramid.router import Router
from pyramid.security import NO_PERMISSION_REQUIRED

from tests.e2e.conftest import PASTE_LOGGING
from tests.functional.conftest import LOCALHOST, ApiClient

OWN_LOGGERS = ("channelstream", "channelstream.websocket")


@pytest.fixture(autouse=True)
def _no_channelstream_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """CHANNELSTREAM_* variables of the machine running the tests would win over settings."""
    for name in list(os.environ):
        if name.startswith("CHANNELSTREAM_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _own_logger_levels() -> Iterator[None]:
    """Put back the levels an include sets, for the tests that run after these."""
    levels = {name: logging.getLogger(name).level for name in OWN_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def host_app() -> Iterator[Any]:
    """`host_app(settings)`: a host Pyramid app with channelstream included under /cs."""
    apps: list[Router] = []

    def build(settings: dict[str, str]) -> Router:
        config = Configurator(settings=settings)
        config.include("channelstream", route_prefix="/cs")
        app: Router = config.make_wsgi_app()
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.registry.channelstream_node.stop()


def api_client(app: Router, secret: str) -> ApiClient:
    return ApiClient(webtest.TestApp(app, extra_environ={"REMOTE_ADDR": LOCALHOST}), secret)


def test_a_host_app_signs_with_channelstream_secret_not_its_own_secret(host_app: Any) -> None:
    app = host_app(
        {
            "secret": "host-secret",
            "port": "1234",
            "debug": "true",
            "channelstream.secret": "cs-secret",
        }
    )

    api_client(app, "cs-secret").call("POST", "/cs/connect", {"username": "alice"}, status=200)
    api_client(app, "host-secret").call("POST", "/cs/connect", {"username": "bob"}, status=401)
    assert app.registry.channelstream_settings.port == 8000  # the host's 1234 is not ours


def test_a_host_apps_bare_keys_alone_configure_nothing(host_app: Any) -> None:
    app = host_app({"secret": "host-secret", "admin_user": "root", "max_connections": "1"})

    settings = app.registry.channelstream_settings
    assert (settings.admin_user, settings.max_connections) == ("admin", 0)
    assert settings.secret not in {"host-secret", ""}  # not given: made at random


def test_an_include_without_log_level_leaves_the_hosts_levels_alone(host_app: Any) -> None:
    logging.getLogger("channelstream").setLevel(logging.DEBUG)  # as a host's [logger_*] would
    root = logging.getLogger()
    root_level = root.level

    host_app({"channelstream.secret": "s"})

    assert logging.getLogger("channelstream").level == logging.DEBUG
    assert root.level == root_level
    # gevent-websocket's per-request DEBUG lines stay out of a host's DEBUG logging
    assert not logging.getLogger("channelstream.websocket").isEnabledFor(logging.DEBUG)


@pytest.mark.parametrize(("level", "websocket_level"), [("ERROR", "ERROR"), ("DEBUG", "DEBUG")])
def test_an_include_applies_channelstream_log_level_to_its_own_loggers_only(
    host_app: Any, level: str, websocket_level: str
) -> None:
    root = logging.getLogger()
    root_level = root.level

    host_app({"channelstream.secret": "s", "channelstream.log_level": level, "log_level": "INFO"})

    assert logging.getLevelName(logging.getLogger("channelstream").level) == level
    assert logging.getLevelName(logging.getLogger("channelstream.websocket").level) == (
        websocket_level
    )
    assert root.level == root_level


def test_an_include_never_changes_the_hosts_log_format(
    host_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler = logging.StreamHandler()
    formatter = logging.Formatter("host: %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with caplog.at_level(logging.WARNING, logger="channelstream"):
            host_app({"channelstream.secret": "s", "channelstream.log_format": "json"})
    finally:
        root.removeHandler(handler)

    assert handler.formatter is formatter
    assert "log_format = json is not applied under config.include" in caplog.text


# ------------------------------------------------------------- the PasteDeploy app factory

PASTE_LOAD = """
import json, logging, sys
from pyramid.paster import get_app, setup_logging

setup_logging(sys.argv[1])
app = get_app(sys.argv[1])
settings = app.registry.channelstream_settings
app.registry.channelstream_node.stop()
print(json.dumps({
    "secret": settings.secret,
    "admin_user": settings.admin_user,
    "port": settings.port,
    "channelstream": logging.getLevelName(logging.getLogger("channelstream").level),
    "websocket": logging.getLevelName(logging.getLogger("channelstream.websocket").level),
    "root": logging.getLevelName(logging.getLogger().level),
    "formatters": [type(h.formatter).__name__ for h in logging.getLogger().handlers],
}))
"""


def load_paste_app(tmp_path: Path, app_section: str) -> dict[str, Any]:
    """Load an ini the way pserve does (logging first, then the app) in a fresh process: the
    factory patches gevent, which this test process must not be."""
    ini = tmp_path / "deploy.ini"
    ini.write_text(textwrap.dedent(app_section) + PASTE_LOGGING)
    result = subprocess.run(
        [sys.executable, "-c", PASTE_LOAD, str(ini)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("CHANNELSTREAM_")},
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_the_paste_factory_reads_bare_and_prefixed_keys_prefixed_winning(tmp_path: Path) -> None:
    loaded = load_paste_app(
        tmp_path,
        """
        [app:main]
        use = egg:channelstream
        channelstream.secret = prefixed
        secret = bare
        admin_user = root
        port = 9001
        """,
    )

    assert (loaded["secret"], loaded["admin_user"], loaded["port"]) == ("prefixed", "root", 9001)


def test_the_paste_factory_applies_log_level_and_log_format_under_pserve(tmp_path: Path) -> None:
    loaded = load_paste_app(
        tmp_path,
        """
        [app:main]
        use = egg:channelstream
        log_format = json
        """,
    )

    assert loaded["channelstream"] == "INFO"
    assert loaded["websocket"] == "WARNING"  # the ini's root is DEBUG
    assert loaded["root"] == "DEBUG"  # the ini's, kept
    assert loaded["formatters"] == ["JsonFormatter"]


# ------------------------------------------------------------- "/" stays the host's


def host_home(request: Request) -> Response:
    return Response(b"the host's home page", content_type="text/plain")


@pytest.mark.parametrize("route_prefix", [None, "/cs"])
def test_an_include_leaves_the_hosts_own_home_page_alone(route_prefix: str | None) -> None:
    """channelstream's "/" page is its own app's only: a host that mounts channelstream, with
    or without a prefix, and registers its "/" afterwards still answers it."""
    config = Configurator(settings={"channelstream.secret": "s"})
    config.include("channelstream", route_prefix=route_prefix)
    config.add_route("host_home", "/")
    # public: the include sets channelstream's security policy and default permission
    config.add_view(host_home, route_name="host_home", permission=NO_PERMISSION_REQUIRED)
    app = config.make_wsgi_app()
    try:
        testapp = webtest.TestApp(app, extra_environ={"REMOTE_ADDR": LOCALHOST})
        prefix = route_prefix or ""
        assert testapp.get("/").text == "the host's home page"
        if route_prefix:
            testapp.get(f"{prefix}/", status=404)
        document = api_client(app, "s").call("GET", f"{prefix}/openapi.json").json
        assert "/" not in document["paths"] and "/health" in document["paths"]
    finally:
        app.registry.channelstream_node.stop()
