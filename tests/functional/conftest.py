"""Functional tests: the real WSGI app (`channelstream.app.make_app`) driven through webtest.

Fixtures:

- `make_client(**settings)`: builds an app from settings overrides and returns an `ApiClient`
  around a `webtest.TestApp` (peer address 127.0.0.1). Every Node built is stopped at teardown.
- `client`: an `ApiClient` on the default test settings.
- `admin_client`: the same, signed in to the admin panel (session cookie in its jar).
- `ApiClient.call(method, path, body, ...)`: a signed JSON call (token for `path` in the
  `x-channelstream-secret` header); `.connect(...)`, `.publish(...)` are shortcuts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import itsdangerous
import pytest
import webtest

from channelstream.app import make_app
from channelstream.node import Node
from channelstream.settings import Settings
from channelstream.signature import sign

SECRET = "functional-test-secret"
ADMIN_USER = "admin"
ADMIN_SECRET = "functional-admin-secret"
TOKEN_HEADER = "x-channelstream-secret"
LOCALHOST = "127.0.0.1"
NO_BODY = object()

DEFAULT_SETTINGS = {
    "notify_presence": False,
    "store_history": False,
    "history_size": 10,
    "broadcast_presence_with_user_lists": False,
    "notify_state": False,
    "store_frames": True,
    # added in 0.8 (not in 0.7.1)
    "history_ttl": 0,
    "catchup_size": 100,
}
CHANNEL_INFO_KEYS = {
    "uuid",
    "name",
    "long_name",
    "settings",
    "history",
    "last_active",
    "total_connections",
    "total_users",
    "users",
}


def token_at(secret: str, value: str, timestamp: int) -> str:
    """A TimestampSigner token for `value` dated `timestamp` (Unix seconds)."""

    class DatedSigner(itsdangerous.TimestampSigner):
        def get_timestamp(self) -> int:
            return timestamp

    return DatedSigner(secret).sign(value).decode("ascii")


def checked(response: webtest.TestResponse, status: int | str | None) -> webtest.TestResponse:
    """`response`, once its status is `status` (None or "*": any). webtest checks no status
    when errors are expected, so the check is made here."""
    if status is not None and status != "*":
        assert response.status_int == int(status), (
            f"expected {status}, got {response.status}: {response.body[:500]!r}"
        )
    return response


class ApiClient:
    """Signed JSON calls against one app."""

    def __init__(self, testapp: webtest.TestApp, secret: str = SECRET) -> None:
        self.testapp = testapp
        self.secret = secret

    @property
    def node(self) -> Node:
        node: Node = self.testapp.app.registry.channelstream_node
        return node

    def token(self, path: str) -> str:
        return sign(self.secret, path)

    def call(
        self,
        method: str,
        path: str,
        body: Any = NO_BODY,
        *,
        status: int | str | None = 200,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        signed: bool = True,
        query: str = "",
        raw_body: bytes | None = None,
        environ: dict[str, str] | None = None,
    ) -> webtest.TestResponse:
        """`method path?query` with `body` as JSON (or `raw_body` as is), signed for `path`
        unless `signed` is false or an explicit `token` is given."""
        all_headers = {}
        if signed:
            all_headers[TOKEN_HEADER] = token if token is not None else self.token(path)
        all_headers.update(headers or {})
        params: dict[str, Any] = {"method": method, "headers": all_headers}
        if raw_body is not None:
            params["body"] = raw_body
            params["content_type"] = "application/json"
        elif body is not NO_BODY:
            params["body"] = json.dumps(body).encode("utf-8")
            params["content_type"] = "application/json"
        url = f"{path}?{query}" if query else path
        if environ:
            params["environ"] = dict(environ)
        return checked(self.testapp.request(url, expect_errors=True, **params), status)

    def post(self, path: str, body: Any = NO_BODY, **kwargs: Any) -> webtest.TestResponse:
        return self.call("POST", path, body, **kwargs)

    def connect(self, username: str = "alice", **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.post("/connect", {"username": username, **fields}).json
        return result

    def publish(self, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.post("/message", list(messages)).json
        return result

    def info(self, **info: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.post("/info", {"info": info}).json
        return result

    def get(self, path: str, **kwargs: Any) -> webtest.TestResponse:
        """An unsigned GET (client endpoints)."""
        kwargs.setdefault("signed", False)
        return self.call("GET", path, **kwargs)


ClientFactory = Callable[..., ApiClient]


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    nodes: list[Node] = []

    def factory(**overrides: Any) -> ApiClient:
        settings = Settings.from_sources(
            {"secret": SECRET, "admin_secret": ADMIN_SECRET, **overrides}, environ={}
        )
        app = make_app(settings)
        nodes.append(app.registry.channelstream_node)
        testapp = webtest.TestApp(app, extra_environ={"REMOTE_ADDR": LOCALHOST})
        return ApiClient(testapp, settings.secret)

    yield factory
    for node in nodes:
        node.stop()


@pytest.fixture
def client(make_client: ClientFactory) -> ApiClient:
    return make_client()


@pytest.fixture
def polling_client(make_client: ClientFactory) -> ApiClient:
    """A client whose idle `/listen` answers after 0.2 s instead of 5 s."""
    return make_client(wake_connections_after=0.2)


def sign_in(client: ApiClient, username: str = ADMIN_USER, password: str = ADMIN_SECRET) -> Any:
    """Submit the admin sign-in form; the app's cookie jar keeps the session cookie."""
    return client.testapp.post(
        "/admin/sign_in", {"username": username, "password": password}, expect_errors=True
    )


@pytest.fixture
def admin_client(make_client: ClientFactory) -> ApiClient:
    """A client signed in to the admin panel (session cookie in its cookie jar)."""
    admin = make_client()
    response = sign_in(admin)
    assert response.status_int == 302, response.text
    return admin
