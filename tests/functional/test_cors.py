"""CORS headers (F12): exact origin matching, the token header allowed, headers on errors."""

from __future__ import annotations

import uuid

import pytest
import webtest

from tests.functional.conftest import ApiClient, ClientFactory

ALLOW_ORIGIN = "Access-Control-Allow-Origin"
ALLOWED = "https://app.example.org:8443, example.com"


def _assert_cors_headers(response: webtest.TestResponse) -> None:
    headers = response.headers
    assert headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS, PUT, DELETE, PATCH"
    allowed_headers = [
        h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")
    ]
    assert "x-channelstream-secret" in allowed_headers
    assert "content-type" in allowed_headers
    assert headers["Access-Control-Max-Age"] == "86400"
    assert headers["XDomainRequestAllowed"] == "1"


def test_any_origin_is_allowed_when_allow_cors_is_empty(client: ApiClient) -> None:
    response = client.post("/connect", {"username": "a"}, headers={"Origin": "https://x.test"})

    assert response.headers[ALLOW_ORIGIN] == "*"
    _assert_cors_headers(response)


def test_any_origin_header_is_sent_without_an_origin_when_allow_cors_is_empty(
    client: ApiClient,
) -> None:
    assert client.post("/connect", {"username": "a"}).headers[ALLOW_ORIGIN] == "*"


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.org:8443",
        "https://APP.example.org:8443",
        "https://example.com",
        "http://example.com",
        "http://example.com:8080",
    ],
)
def test_a_matching_origin_is_echoed(make_client: ClientFactory, origin: str) -> None:
    client = make_client(allow_cors=ALLOWED)

    response = client.post("/connect", {"username": "a"}, headers={"Origin": origin})

    assert response.headers[ALLOW_ORIGIN] == origin
    assert "Origin" in response.headers.getall("Vary")
    _assert_cors_headers(response)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil-example.com",
        "https://example.com.evil.net",
        "https://sub.example.com",
        "https://app.example.org",
        "http://app.example.org:8443",
        "https://app.example.org:8443.evil.net",
        "null",
    ],
)
def test_a_non_matching_origin_gets_no_allow_origin_header(
    make_client: ClientFactory, origin: str
) -> None:
    client = make_client(allow_cors=ALLOWED)

    response = client.post("/connect", {"username": "a"}, headers={"Origin": origin})

    assert ALLOW_ORIGIN not in response.headers
    _assert_cors_headers(response)


def test_a_request_without_origin_gets_no_allow_origin_header_when_restricted(
    make_client: ClientFactory,
) -> None:
    client = make_client(allow_cors=ALLOWED)

    assert ALLOW_ORIGIN not in client.post("/connect", {"username": "a"}).headers


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/connect", {"token": "garbage"}, 401),
        ("POST", "/connect", {"signed": False}, 403),
        ("GET", "/no/such/path", {}, 404),
        ("PUT", "/message", {}, 404),
        ("POST", "/connect", {"raw_body": b"{"}, 400),
        ("POST", "/user_state", {}, 422),
        ("GET", "/listen", {"query": f"conn_id={uuid.uuid4()}", "signed": False}, 401),
    ],
)
def test_error_responses_carry_cors_headers(
    make_client: ClientFactory, method: str, path: str, kwargs: dict, status: int
) -> None:
    client = make_client(allow_cors=ALLOWED)
    origin = "https://example.com"

    response = client.call(
        method, path, {"user": "ghost"}, status=status, headers={"Origin": origin}, **kwargs
    )

    assert response.headers[ALLOW_ORIGIN] == origin
    _assert_cors_headers(response)


def test_errors_raised_before_the_view_carry_cors_headers(make_client: ClientFactory) -> None:
    client = make_client(enforce_https=True, max_message_size=10)

    response = client.post("/connect", {"username": "a"}, status=406)

    assert response.headers[ALLOW_ORIGIN] == "*"


def test_a_body_too_large_carries_cors_headers(make_client: ClientFactory) -> None:
    client = make_client(max_message_size=10)

    response = client.post("/connect", {"username": "a" * 20}, status=413)

    assert response.headers[ALLOW_ORIGIN] == "*"
    _assert_cors_headers(response)


@pytest.mark.parametrize("path", ["/connect", "/message", "/listen", "/anything/at/all", "/"])
def test_options_on_any_path_is_an_empty_200_with_cors_headers(
    make_client: ClientFactory, path: str
) -> None:
    client = make_client(allow_cors=ALLOWED)

    response = client.call(
        "OPTIONS",
        path,
        signed=False,
        headers={
            "Origin": "https://app.example.org:8443",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-channelstream-secret, content-type",
        },
        environ={"REMOTE_ADDR": "203.0.113.9"},
    )

    assert response.status_int == 200
    assert response.body == b""
    assert response.headers[ALLOW_ORIGIN] == "https://app.example.org:8443"
    _assert_cors_headers(response)


@pytest.mark.parametrize("origin", ["http://[::1", "://", "https://exa mple.com", ""])
def test_a_malformed_origin_is_simply_not_allowed(make_client: ClientFactory, origin: str) -> None:
    client = make_client(allow_cors=ALLOWED)

    response = client.post("/info", headers={"Origin": origin})
    preflight = client.call("OPTIONS", "/info", signed=False, headers={"Origin": origin})

    assert response.json == {"channels": {}, "users": []}
    for answer in (response, preflight):
        assert ALLOW_ORIGIN not in answer.headers
        _assert_cors_headers(answer)
