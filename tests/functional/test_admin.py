"""The admin panel: sign-in, the session cookie, /admin/admin.json and the disconnect action."""

from __future__ import annotations

from typing import Any

import pytest

from channelstream import __version__
from channelstream.api.throttle import FailureThrottle
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
}


def recorded_sleeps(client: ApiClient) -> list[float]:
    """Make the app's sign-in throttle record its delays instead of sleeping."""
    sleeps: list[float] = []
    throttle: FailureThrottle = client.testapp.app.registry.channelstream_sign_in_throttle
    throttle.sleep = sleeps.append
    return sleeps


# ----------------------------------------------------------------------------- redirects


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin"),
        ("GET", "/admin/admin.json"),
        ("POST", "/admin/admin.json"),
        ("POST", "/admin/disconnect"),
        ("GET", "/api-explorer"),
    ],
)
def test_anonymous_visitors_are_sent_to_the_sign_in_page(
    client: ApiClient, method: str, path: str
) -> None:
    response = client.call(method, path, signed=False, status=302)

    assert response.headers["Location"] == "http://localhost/admin/sign_in"


def test_a_disallowed_address_is_sent_to_the_sign_in_page_too(client: ApiClient) -> None:
    response = client.call(
        "GET", "/admin/admin.json", environ={"REMOTE_ADDR": "192.0.2.9"}, status=302
    )

    assert response.headers["Location"].endswith("/admin/sign_in")


@pytest.mark.parametrize("path", ["/admin/", "/admin/debugger", "/admin/sign_in/x"])
def test_other_admin_paths_are_not_found(client: ApiClient, path: str) -> None:
    client.call("GET", path, signed=False, status=404)


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
    assert response.headers["Location"] == "http://localhost/admin"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("auth_tkt=")
    assert "Max-Age=2592000" in cookie and "SameSite=Lax" in cookie and "HttpOnly" in cookie
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
    recorded_sleeps(client)

    response = sign_in(client, username, password)

    assert response.status_int == 200
    assert "Wrong user name or password." in response.text
    assert "Set-Cookie" not in response.headers
    client.call("GET", "/admin", signed=False, status=302)


def test_the_form_keeps_the_user_name_escaped(client: ApiClient) -> None:
    recorded_sleeps(client)

    response = sign_in(client, '<script>alert("x")</script>', "nope")

    assert "<script>alert" not in response.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in response.text


def test_repeated_failures_from_one_address_wait_longer_each_time(client: ApiClient) -> None:
    sleeps = recorded_sleeps(client)

    for _ in range(6):
        sign_in(client, "admin", "guess")

    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_a_success_clears_the_count_and_other_addresses_are_not_slowed(
    client: ApiClient,
) -> None:
    sleeps = recorded_sleeps(client)
    for _ in range(3):
        sign_in(client, "admin", "guess")
    client.testapp.post(
        "/admin/sign_in",
        {"username": "admin", "password": "guess"},
        extra_environ={"REMOTE_ADDR": "198.51.100.20"},
    )
    assert sleeps == [0.5, 1.0, 2.0, 0.5]

    assert sign_in(client).status_int == 302
    client.testapp.reset()
    sign_in(client, "admin", "guess")
    assert sleeps[-1] == 0.5


def test_an_empty_admin_secret_lets_nobody_in(make_client: ClientFactory) -> None:
    client = make_client(admin_secret="")
    recorded_sleeps(client)

    assert sign_in(client, "admin", "").status_int == 200


def test_signing_out_clears_the_cookie(admin_client: ApiClient) -> None:
    response = admin_client.testapp.get("/admin/sign_out")

    assert response.status_int == 302
    assert response.headers["Location"] == "http://localhost/admin/sign_in"
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    admin_client.call("GET", "/admin", signed=False, status=302)


def test_a_cookie_from_another_cookie_secret_is_not_a_session(
    make_client: ClientFactory,
) -> None:
    first = make_client(cookie_secret="one")
    sign_in(first)
    second = make_client(cookie_secret="two")
    cookie = first.testapp.cookies["auth_tkt"]

    second.call("GET", "/admin", signed=False, headers={"Cookie": f"auth_tkt={cookie}"}, status=302)


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
    response = client.call("GET", "/admin/admin.json", token="a.b.c", status=401)

    assert response.json == {"request": "Bad Signature"}


# ----------------------------------------------------------------------------- disconnect


def test_the_admin_can_end_a_connection(admin_client: ApiClient) -> None:
    conn_id = admin_client.connect("dave", channels=["room"])["conn_id"]

    first = admin_client.call("POST", "/admin/disconnect", {"conn_id": conn_id}, signed=False)
    again = admin_client.call("POST", "/admin/disconnect", {"conn_id": conn_id}, signed=False)

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
    response = admin_client.call("POST", "/admin/disconnect", body, signed=False, status=422)

    assert response.json == errors


def test_admin_disconnect_takes_post_only(admin_client: ApiClient) -> None:
    admin_client.call("GET", "/admin/disconnect", signed=False, status=404)
