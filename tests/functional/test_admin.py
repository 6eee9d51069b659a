"""The admin panel: sign-in, the session cookie, /admin/admin.json and the disconnect action.

The attacks on them (cross-origin actions, the throttle under concurrency, Host, charsets,
revoked cookies, /static) are in test_admin_hardening.py."""

from __future__ import annotations

from typing import Any

import pytest

from channelstream import __version__
from channelstream.api.throttle import FailureThrottle
from channelstream.settings import SettingsError
from tests.functional.conftest import (
    ADMIN_SECRET,
    CHANNEL_INFO_KEYS,
    ApiClient,
    ClientFactory,
    sign_in,
)

ADMIN_071_KEYS = {
    "remembered_user_count",
    "unique_user_count",
    "total_connections",
    "total_channels",
    "total_messages",
    "total_unique_messages",
    "channels",
    "users",
    "uptime",
    "version",
}
ADDED_KEYS = {
    "uptime_seconds",
    "started_at",
    "frames_dropped",
    "listeners",
    "node_id",
    "broker",
    "connections",
    "webhooks",
}


# What the admin panel's own page sends with its JSON actions (webtest's host is localhost:80).
SAME_ORIGIN = {"Origin": "http://localhost"}


def call(
    client: ApiClient, method: str, path: str, *args: Any, status: int = 200, **kwargs: Any
) -> Any:
    """`client.call`, checking the status whatever it is (`ApiClient.call` leaves webtest's
    status check off for any status but 200)."""
    response = client.call(method, path, *args, status=None, **kwargs)
    assert response.status_int == status, f"{method} {path}: {response.status} {response.text}"
    return response


class FrozenClock:
    """The sign-in throttle's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frozen_throttle(client: ApiClient) -> FrozenClock:
    """Give the app's sign-in throttle a clock that only moves when the test says so."""
    clock = FrozenClock()
    throttle: FailureThrottle = client.testapp.app.registry.channelstream_sign_in_throttle
    throttle.clock = clock
    return clock


# ----------------------------------------------------------------------------- redirects


@pytest.mark.parametrize(
    ("method", "path", "location"),
    [
        ("GET", "/admin", "/admin/sign_in"),
        ("GET", "/admin/admin.json", "/admin/sign_in"),
        ("POST", "/admin/admin.json", "/admin/sign_in"),
        ("POST", "/admin/disconnect", "/admin/sign_in"),
        ("GET", "/api-explorer", "/admin/sign_in?came_from=%2Fapi-explorer"),
    ],
)
def test_anonymous_visitors_are_sent_to_the_sign_in_page(
    client: ApiClient, method: str, path: str, location: str
) -> None:
    response = call(client, method, path, signed=False, status=302)

    assert response.headers["Location"] == location


def test_a_disallowed_address_is_sent_to_the_sign_in_page_too(client: ApiClient) -> None:
    response = call(
        client, "GET", "/admin/admin.json", environ={"REMOTE_ADDR": "192.0.2.9"}, status=302
    )

    assert response.headers["Location"].endswith("/admin/sign_in")


@pytest.mark.parametrize("path", ["/admin/", "/admin/debugger", "/admin/sign_in/x"])
def test_other_admin_paths_are_not_found(client: ApiClient, path: str) -> None:
    call(client, "GET", path, signed=False, status=404)


# ----------------------------------------------------------------------------- sign-in


def test_the_sign_in_form_asks_for_user_name_and_password(client: ApiClient) -> None:
    response = client.get("/admin/sign_in")

    assert response.content_type == "text/html"
    assert 'name="username"' in response.text and 'name="password"' in response.text
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


def test_signing_in_sets_a_30_day_lax_http_only_cookie_and_opens_the_panel(
    client: ApiClient,
) -> None:
    response = sign_in(client, username=" admin ", password=f" {ADMIN_SECRET}\t")

    assert response.status_int == 302
    assert response.headers["Location"] == "/admin"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("auth_tkt=")
    assert "Max-Age=2592000" in cookie and "SameSite=Lax" in cookie and "HttpOnly" in cookie
    assert "Domain=" not in cookie and "Secure" not in cookie  # host-only; plain http
    panel = client.get("/admin")
    assert panel.content_type == "text/html"
    assert "static/admin/admin.js" in panel.text
    assert panel.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("username", "password"),
    [("admin", "wrong"), ("root", ADMIN_SECRET), ("", ""), ("admin", ADMIN_SECRET + "x")],
)
def test_wrong_credentials_show_the_form_again_without_a_cookie(
    client: ApiClient, username: str, password: str
) -> None:
    response = sign_in(client, username, password)

    assert response.status_int == 200
    assert "Wrong user name or password." in response.text
    assert "Set-Cookie" not in response.headers
    call(client, "GET", "/admin", signed=False, status=302)


def test_the_form_keeps_the_user_name_escaped(client: ApiClient) -> None:
    response = sign_in(client, '<script>alert("x")</script>', "nope")

    assert "<script>alert" not in response.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in response.text


def test_repeated_failures_from_one_address_are_refused_for_a_growing_while(
    client: ApiClient,
) -> None:
    clock = frozen_throttle(client)
    assert sign_in(client, "admin", "guess").status_int == 200  # the first one is free
    windows = []
    for _ in range(6):
        assert sign_in(client, "admin", "guess").status_int == 200
        refused = sign_in(client)  # even the right password: not checked meanwhile
        assert refused.status_int == 429
        windows.append(int(refused.headers["Retry-After"]))
        clock.now += 8.0

    assert windows == [1, 1, 2, 4, 8, 8]  # 0.5 s rounded up, doubling to the cap
    assert sign_in(client).status_int == 302


def test_a_success_clears_the_count_and_other_addresses_are_not_refused(
    client: ApiClient,
) -> None:
    clock = frozen_throttle(client)
    for _ in range(3):
        clock.now += 2.0  # past the window of the failure before
        assert sign_in(client, "admin", "guess").status_int == 200
    other = client.testapp.post(
        "/admin/sign_in",
        {"username": "admin", "password": ADMIN_SECRET},
        extra_environ={"REMOTE_ADDR": "198.51.100.20"},
    )
    assert other.status_int == 302, "another address is not held back"
    assert sign_in(client).status_int == 429

    clock.now += 1.0  # the third failure's window
    assert sign_in(client).status_int == 302
    client.testapp.reset()
    assert sign_in(client, "admin", "guess").status_int == 200
    assert sign_in(client, "admin", "guess").status_int == 200, "the count started over"


def test_an_empty_admin_secret_is_refused_before_any_app_is_built(
    make_client: ClientFactory,
) -> None:
    """An empty admin_secret once meant "nobody may sign in"; it is now refused at start
    (API.md §4.4), so no app ever runs with an empty password."""
    with pytest.raises(SettingsError, match="^admin_secret is empty in the settings given"):
        make_client(admin_secret="")


def test_signing_out_clears_the_cookie(admin_client: ApiClient) -> None:
    response = admin_client.call("POST", "/admin/sign_out", {}, signed=False, headers=SAME_ORIGIN)

    assert response.json == {"signed_out": True}
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    call(admin_client, "GET", "/admin", signed=False, status=302)


def test_a_cookie_from_another_cookie_secret_is_not_a_session(
    redis_url: str, redis_prefix: str, make_client: ClientFactory
) -> None:
    """Three apps on one Redis (one cluster, so the session is open on each): the cookie is
    taken where the cookie_secret is the same, refused where it differs. (The apps are
    stopped before the prefix's keys are deleted: fixtures tear down in reverse order.)"""
    cluster = {"broker": redis_url, "redis_prefix": redis_prefix}
    first = make_client(cookie_secret="one", **cluster)
    sign_in(first)
    same_secret = make_client(cookie_secret="one", **cluster)
    other_secret = make_client(cookie_secret="two", **cluster)
    cookie = {"Cookie": f"auth_tkt={first.testapp.cookies['auth_tkt']}"}

    call(same_secret, "GET", "/admin", signed=False, headers=cookie)
    call(other_secret, "GET", "/admin", signed=False, headers=cookie, status=302)


# ----------------------------------------------------------------------------- admin.json


def test_admin_json_keeps_071s_shape_and_adds_figures(admin_client: ApiClient) -> None:
    client = admin_client
    configs = {"room": {"store_history": True}}
    alice = client.connect(
        "alice",
        channels=["room"],
        channel_configs=configs,
        user_state={"mood": "fine", "secret": 1},
        state_public_keys=["mood"],
    )
    client.connect("alice", channels=["room", "other"], state_public_keys=["mood"])
    client.connect("bob", channels=["room"])
    client.publish({"channel": "room", "user": "bob", "message": {"text": "hi"}})
    client.post("/disconnect", {"conn_id": alice["conn_id"]}, signed=False)

    data = client.call("GET", "/admin/admin.json", signed=False).json

    assert set(data) == ADMIN_071_KEYS | ADDED_KEYS
    assert data["version"] == __version__
    assert data["remembered_user_count"] == 2
    assert data["unique_user_count"] == 2
    assert data["total_connections"] == 2
    assert data["total_channels"] == 2
    assert data["total_unique_messages"] == 1
    assert data["total_messages"] == 3  # to the three connections in room at the time
    assert set(data["channels"]) == {"room", "other"}
    assert set(data["channels"]["room"]) == CHANNEL_INFO_KEYS
    assert data["channels"]["room"]["users"] == ["alice", "bob"]
    assert [m["message"] for m in data["channels"]["room"]["history"]] == [{"text": "hi"}]
    users = {user["user"]: user for user in data["users"]}
    assert users["alice"]["state"] == {"mood": "fine"}, "public state only"
    assert len(users["alice"]["connections"]) == 1
    assert set(users["alice"]) == {"user", "uuid", "state", "connections"}
    assert data["uptime"].count(":") == 2
    assert data["frames_dropped"] == 0 and data["listeners"] == 0
    assert data["broker"]["broker"] == "memory"
    connections = {c["conn_id"]: c for c in data["connections"]}
    assert set(connections) == {*users["alice"]["connections"], *users["bob"]["connections"]}
    assert connections[users["alice"]["connections"][0]]["channels"] == ["other", "room"]


def test_admin_json_lists_only_users_with_connections(admin_client: ApiClient) -> None:
    conn_id = admin_client.connect("carol")["conn_id"]
    admin_client.post("/disconnect", {"conn_id": conn_id}, signed=False)

    data = admin_client.call("POST", "/admin/admin.json", signed=False).json

    assert data["users"] == [] and data["remembered_user_count"] == 1


def test_a_signed_call_is_admin_too(client: ApiClient) -> None:
    data = client.call("GET", "/admin/admin.json").json

    assert data["total_connections"] == 0


def test_a_bad_signature_on_admin_json_is_401(client: ApiClient) -> None:
    response = call(client, "GET", "/admin/admin.json", token="a.b.c", status=401)

    assert response.json == {"request": "Bad Signature"}


# ----------------------------------------------------------------------------- disconnect


def test_the_admin_can_end_a_connection(admin_client: ApiClient) -> None:
    conn_id = admin_client.connect("dave", channels=["room"])["conn_id"]

    body = {"conn_id": conn_id}
    first = admin_client.call("POST", "/admin/disconnect", body, signed=False, headers=SAME_ORIGIN)
    again = admin_client.call("POST", "/admin/disconnect", body, signed=False, headers=SAME_ORIGIN)

    assert first.json == {"conn_id": conn_id, "disconnected": True}
    assert again.json == {"conn_id": conn_id, "disconnected": False}
    assert conn_id not in admin_client.node.state.connections


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"conn_id": ["Missing data for required field."]}),
        ({"conn_id": "nope"}, {"conn_id": ["Not a valid UUID."]}),
        ([], {"_schema": ["Invalid input type."]}),
    ],
)
def test_admin_disconnect_validates_its_body(
    admin_client: ApiClient, body: Any, errors: dict[str, Any]
) -> None:
    response = call(
        admin_client,
        "POST",
        "/admin/disconnect",
        body,
        signed=False,
        headers=SAME_ORIGIN,
        status=422,
    )

    assert response.json == errors


def test_admin_disconnect_takes_post_only(admin_client: ApiClient) -> None:
    call(admin_client, "GET", "/admin/disconnect", signed=False, status=404)
