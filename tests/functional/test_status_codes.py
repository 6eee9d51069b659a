"""Error statuses and their JSON bodies (F5), request limits, https enforcement, X-Script-Name."""

from __future__ import annotations

import json

import pytest
import webtest

from tests.functional.conftest import ApiClient, ClientFactory


def _assert_error_envelope(response: webtest.TestResponse, status: int, error: str) -> None:
    assert response.status_int == status
    assert response.content_type == "application/json"
    assert response.json["error"] == error
    assert isinstance(response.json["message"], str) and response.json["message"]


@pytest.mark.parametrize(
    ("path", "raw_body"),
    [
        ("/connect", b'{"username": '),
        ("/message", b"[{'user': 'single quotes'}]"),
        ("/channel_config", b"not json"),
        ("/info", b"{,}"),
        ("/connect", b"\xff\xfe"),
        ("/connect", b'{"username": "a", "user_state": {"x": NaN}}'),
        ("/connect", b'{"username": "a", "user_state": {"x": -Infinity}}'),
        ("/connect", b'{"username": "a", "user_state": {"x": 1e400}}'),
        ("/connect", b'{"username": "\\ud800"}'),
        ("/message", b'[{"user": "a", "channel": "c", "message": {"t": "\\udc00"}}]'),
    ],
    ids=[
        "truncated",
        "single-quotes",
        "not-json",
        "bad-comma",
        "not-utf8",
        "nan",
        "infinity",
        "float-overflow",
        "lone-high-surrogate",
        "lone-low-surrogate",
    ],
)
def test_a_malformed_json_body_is_a_json_bad_request(
    client: ApiClient, path: str, raw_body: bytes
) -> None:
    response = client.post(path, raw_body=raw_body, status=400)

    _assert_error_envelope(response, 400, "bad_request")


def test_a_surrogate_pair_escape_is_accepted(client: ApiClient) -> None:
    response = client.post("/connect", raw_body=b'{"username": "\\ud83d\\ude00"}')

    assert response.json["username"] == "\U0001f600"


def test_an_unknown_body_charset_is_an_unsupported_media_type(client: ApiClient) -> None:
    response = client.post(
        "/connect",
        raw_body=b'{"username": "a"}',
        headers={"Content-Type": "application/json; charset=no-such-charset"},
        status=415,
    )

    _assert_error_envelope(response, 415, "unsupported_media_type")


def test_an_empty_body_on_an_endpoint_that_needs_one_is_a_bad_request(client: ApiClient) -> None:
    response = client.post("/connect", status=400)

    _assert_error_envelope(response, 400, "bad_request")


def test_a_bad_signature_is_unauthorized(client: ApiClient) -> None:
    response = client.post("/connect", {"username": "a"}, token="garbage", status=401)

    assert response.content_type == "application/json"
    assert response.json == {"request": "Bad Signature"}


def test_a_call_without_a_token_is_forbidden(client: ApiClient) -> None:
    response = client.post("/connect", {"username": "a"}, signed=False, status=403)

    _assert_error_envelope(response, 403, "forbidden")


def test_a_call_from_a_disallowed_address_is_forbidden_even_with_a_valid_token(
    client: ApiClient,
) -> None:
    response = client.post(
        "/connect", {"username": "a"}, environ={"REMOTE_ADDR": "198.51.100.7"}, status=403
    )

    _assert_error_envelope(response, 403, "forbidden")
    assert "198.51.100.7" in response.json["message"]


@pytest.mark.parametrize("path", ["/nothing", "/nothing/", "/messages", "/admin/nothing/here"])
def test_an_unknown_path_is_a_json_not_found(client: ApiClient, path: str) -> None:
    response = client.call("GET", path, status=404)

    _assert_error_envelope(response, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/message"),
        ("GET", "/message"),
        ("GET", "/connect"),
        ("PATCH", "/subscribe"),
        ("DELETE", "/channel_config"),
        ("POST", "/listen"),
    ],
)
def test_a_wrong_method_is_a_json_not_found_as_in_071(
    client: ApiClient, method: str, path: str
) -> None:
    response = client.call(method, path, [], status=404)

    _assert_error_envelope(response, 404, "not_found")
    assert method in response.json["message"]


def test_a_body_over_max_message_size_is_too_large(make_client: ClientFactory) -> None:
    client = make_client(max_message_size=200)
    message = [{"user": "a", "channel": "c", "message": {"text": "x" * 300}}]

    response = client.post("/message", message, status=413)

    _assert_error_envelope(response, 413, "payload_too_large")


def test_a_body_at_max_message_size_is_accepted(make_client: ClientFactory) -> None:
    client = make_client(max_message_size=200)
    padding = 200 - len(json.dumps({"username": "a", "user_state": {"pad": ""}}).encode())
    body = {"username": "a", "user_state": {"pad": "x" * padding}}
    assert len(json.dumps(body).encode()) == 200

    assert client.post("/connect", body).status_int == 200


def test_a_plain_http_request_is_refused_when_https_is_enforced(
    make_client: ClientFactory,
) -> None:
    client = make_client(enforce_https=True)

    response = client.post("/connect", {"username": "a"}, status=406)

    _assert_error_envelope(response, 406, "https_required")


def test_https_is_seen_through_x_forwarded_proto_from_a_trusted_proxy(
    make_client: ClientFactory,
) -> None:
    client = make_client(enforce_https=True, trusted_proxies="127.0.0.1")

    response = client.post("/connect", {"username": "a"}, headers={"X-Forwarded-Proto": "https"})

    assert response.json["username"] == "a"


def test_x_forwarded_proto_from_an_untrusted_peer_is_ignored(make_client: ClientFactory) -> None:
    client = make_client(enforce_https=True, trusted_proxies="10.0.0.1")

    response = client.post(
        "/connect", {"username": "a"}, headers={"X-Forwarded-Proto": "https"}, status=406
    )

    _assert_error_envelope(response, 406, "https_required")


@pytest.mark.parametrize("header", ["X-Scheme", "X-Url-Scheme"])
def test_https_is_seen_through_x_scheme(make_client: ClientFactory, header: str) -> None:
    client = make_client(enforce_https=True)

    response = client.post("/connect", {"username": "a"}, headers={header: "https"})

    assert response.json["username"] == "a"


def test_a_direct_https_request_passes_enforce_https(make_client: ClientFactory) -> None:
    client = make_client(enforce_https=True)

    response = client.post("/connect", {"username": "a"}, environ={"wsgi.url_scheme": "https"})

    assert response.json["username"] == "a"


def test_too_many_channels_for_a_connection_is_unprocessable(make_client: ClientFactory) -> None:
    client = make_client(max_channels_per_connection=1)

    response = client.post("/connect", {"username": "a", "channels": ["x", "y"]}, status=422)

    assert response.content_type == "application/json"
    assert response.json == {"channels": ["A connection may join at most 1 channels"]}


def test_too_many_connections_is_service_unavailable(make_client: ClientFactory) -> None:
    client = make_client(max_connections=2)
    client.connect("a")
    client.connect("b")

    response = client.post("/connect", {"username": "c"}, status=503)

    _assert_error_envelope(response, 503, "unavailable")


def test_x_script_name_prefix_is_routed_to_the_endpoint(client: ApiClient) -> None:
    response = client.call(
        "POST",
        "/prefix/connect",
        {"username": "a"},
        token=client.token("/connect"),
        headers={"X-Script-Name": "/prefix"},
    )

    assert response.json["username"] == "a"


def test_x_script_name_prefix_accepts_a_token_for_the_full_path(client: ApiClient) -> None:
    response = client.call(
        "POST", "/prefix/info", signed=True, headers={"X-Script-Name": "/prefix/"}
    )

    assert response.json == {"channels": {}, "users": []}


@pytest.mark.parametrize(
    ("method", "url", "headers"),
    [
        ("GET", "/%ff", {}),
        ("GET", "/listen?conn_id=%ff", {}),
        ("GET", "/disconnect?conn_id=%ed%a0%80", {}),
        ("POST", "/info?secret=%ff", {}),
        ("POST", "/subscribe?conn_id=%ff", {}),
        ("POST", "/p/%ff", {"X-Script-Name": "/p"}),
    ],
)
def test_a_url_that_is_not_utf8_is_a_json_bad_request(
    client: ApiClient, method: str, url: str, headers: dict[str, str]
) -> None:
    path, _, query = url.partition("?")

    response = client.call(
        method, path, {"channels": ["a"]}, query=query, headers=headers, signed=False, status=400
    )

    _assert_error_envelope(response, 400, "bad_request")
    assert response.headers["Access-Control-Allow-Origin"] == "*"
