"""Hostile and broken input through the whole WSGI app: limits on bodies (size, framing, JSON
nesting and breadth), the answers to odd requests, and the one log line each refusal writes.

`docs/security.md` lists every bad input with its answer and the test that proves it; the
tests here cover the rows no older test covers. Over-the-wire cases (raw sockets, websocket
frames) are in `tests/e2e/test_hostile_input.py`.
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from typing import Any
from urllib.parse import quote

import pytest
import webtest

from channelstream.signature import sign
from tests.functional.conftest import (
    SECRET,
    TOKEN_HEADER,
    ApiClient,
    ClientFactory,
    checked,
    token_at,
)

PEER = "127.0.0.1"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog, capturing channelstream's INFO lines and above."""
    caplog.set_level(logging.INFO, logger="channelstream")
    return caplog


def refused(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The `refused ...` log records written so far."""
    return [r for r in caplog.records if r.getMessage().startswith("refused ")]


def assert_logged_once(
    caplog: pytest.LogCaptureFixture, level: int, route: str, *needles: str
) -> logging.LogRecord:
    """Exactly one refusal line was logged, at `level`, naming the route, the client address
    and every needle; no stack trace."""
    records = refused(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    [record] = records
    message = record.getMessage()
    assert record.levelno == level, message
    assert f"refused {route} from {PEER}: " in message
    for needle in needles:
        assert needle in message
    assert record.exc_info is None
    return record


def assert_too_large(response: webtest.TestResponse, limit: str) -> None:
    assert response.status_int == 413
    assert response.content_type == "application/json"
    assert response.json["error"] == "payload_too_large"
    assert response.json["limit"] == limit
    assert limit in response.json["message"]


def nested(depth: int) -> Any:
    """A message payload: `depth` levels of objects (the innermost holds a string)."""
    value: Any = "bottom"
    for _ in range(depth):
        value = {"d": value}
    return value


def message(payload: Any) -> dict[str, Any]:
    return {"user": "mallory", "channel": "c", "message": payload}


def still_serves(client: ApiClient) -> None:
    """Another caller is unaffected: a connect and a publish still work."""
    conn_id = client.connect("bystander", channels=["quiet"])["conn_id"]
    client.publish({"user": "bystander", "channel": "quiet", "message": {"text": "ok"}})
    assert client.get("/listen", query=f"conn_id={conn_id}").json[0]["message"] == {"text": "ok"}


class CountingStream(io.RawIOBase):
    """A request body of `size` bytes made on demand, counting what the app reads."""

    def __init__(self, size: int, byte: bytes = b" ") -> None:
        self.size = size
        self.byte = byte
        self.read_so_far = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.size - self.read_so_far)
        buffer[:count] = self.byte * count
        self.read_so_far += count
        return count


def raw_request(
    client: ApiClient, path: str, environ: dict[str, Any], status: int
) -> webtest.TestResponse:
    """A signed POST whose environ (body stream, framing headers) the test sets itself."""
    request = webtest.TestRequest.blank(path, method="POST")
    request.headers[TOKEN_HEADER] = client.token(path)
    request.environ.update({"REMOTE_ADDR": PEER, **environ})
    return checked(client.testapp.do_request(request, expect_errors=True), status)


# ---------------------------------------------------------------------------------- body size


def test_a_declared_body_over_max_message_size_is_refused_unread_and_logged_once(
    make_client: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    client = make_client(max_message_size=1000)
    stream = CountingStream(10_000_000)

    response = raw_request(
        client,
        "/message",
        {"wsgi.input": stream, "CONTENT_LENGTH": "10000000", "CONTENT_TYPE": "application/json"},
        status=413,
    )

    assert_too_large(response, "max_message_size")
    assert stream.read_so_far == 0
    assert_logged_once(logs, logging.WARNING, "POST /message", "max_message_size")
    still_serves(client)


def test_a_chunked_body_over_max_message_size_is_read_no_further_than_the_limit(
    make_client: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    client = make_client(max_message_size=1000)
    stream = CountingStream(10_000_000, b"[")

    response = raw_request(
        client,
        "/message",
        {"wsgi.input": stream, "HTTP_TRANSFER_ENCODING": "chunked"},
        status=413,
    )

    assert_too_large(response, "max_message_size")
    assert stream.read_so_far == 1001
    assert_logged_once(logs, logging.WARNING, "POST /message", "max_message_size")


def test_a_chunked_body_within_the_limit_is_accepted(client: ApiClient) -> None:
    body = json.dumps({"username": "chunky"}).encode()

    response = raw_request(
        client,
        "/connect",
        {"wsgi.input": io.BytesIO(body), "HTTP_TRANSFER_ENCODING": "chunked"},
        status=200,
    )

    assert response.json["username"] == "chunky"


def test_a_body_shorter_than_its_content_length_is_a_bad_request_not_a_crash(
    client: ApiClient, logs: pytest.LogCaptureFixture
) -> None:
    body = b'{"username": "a"'

    response = raw_request(
        client, "/connect", {"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": "100"}, status=400
    )

    assert response.json["error"] == "bad_request"
    assert "ended before its Content-Length (100 bytes)" in response.json["message"]
    assert_logged_once(
        logs, logging.INFO, "POST /connect", "ended before its Content-Length (100 bytes)"
    )
    still_serves(client)


# ---------------------------------------------------------------------------------- JSON depth


def test_json_nested_deeper_than_max_json_depth_is_refused_before_parsing(
    make_client: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    client = make_client(max_json_depth=10)
    # the body's array (1), the message object (2), then 9 objects of payload: 11 levels
    body = [message(nested(9))]

    response = client.post("/message", body, status=413)

    assert_too_large(response, "max_json_depth")
    assert_logged_once(logs, logging.WARNING, "POST /message", "max_json_depth (10)")
    still_serves(client)


def test_json_nested_exactly_max_json_depth_deep_is_accepted(make_client: ClientFactory) -> None:
    client = make_client(max_json_depth=10)

    [accepted] = client.publish(message(nested(8)))  # 10 levels

    assert accepted["message"] == nested(8)


@pytest.mark.parametrize(
    "raw_body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # past what the parser could follow
        b"[" * 500_000,  # and not even well formed: refused before it is parsed
        b'{"a": ' * 100 + b"1" + b"}" * 100,
    ],
    ids=["deep-arrays", "unclosed-arrays", "deep-objects"],
)
def test_deep_nesting_is_a_413_at_the_default_depth(client: ApiClient, raw_body: bytes) -> None:
    response = client.post("/connect", raw_body=raw_body, status=413)

    assert_too_large(response, "max_json_depth")
    assert "(64)" in response.json["message"]


def test_brackets_inside_strings_do_not_count_as_nesting(make_client: ClientFactory) -> None:
    client = make_client(max_json_depth=4)
    text = '[[[{"\\"": "]]]]"}]]]' + "[{" * 50 + '\\"' + "]}"

    [accepted] = client.publish(message({"text": text}))

    assert accepted["message"] == {"text": text}


def test_the_parser_depth_fallback_answers_400_when_max_json_depth_is_set_very_high(
    make_client: ClientFactory,
) -> None:
    client = make_client(max_json_depth=1_000_000)

    response = client.post("/connect", raw_body=b"[" * 100_000 + b"]" * 100_000, status=400)

    assert response.json["error"] == "bad_request"
    assert "nested too deeply" in response.json["message"]


# ---------------------------------------------------------------------------------- JSON breadth


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/message", [message({"n": i}) for i in range(6)]),
        ("/connect", {"username": "a", "channels": [f"c{i}" for i in range(6)]}),
        ("/message", [message({"list": list(range(6))})]),
        ("/connect", {"username": "a", "user_state": {f"k{i}": i for i in range(6)}}),
        ("/channel_config", {f"c{i}": {} for i in range(6)}),
    ],
    ids=["message-batch", "channels", "list-in-payload", "object-members", "channel-config-map"],
)
def test_an_array_or_object_over_max_json_items_is_refused(
    make_client: ClientFactory,
    logs: pytest.LogCaptureFixture,
    path: str,
    body: Any,
) -> None:
    client = make_client(max_json_items=5)

    response = client.post(path, body, status=413)

    assert_too_large(response, "max_json_items")
    assert_logged_once(logs, logging.WARNING, f"POST {path}", "max_json_items (5)")


def test_arrays_and_objects_of_exactly_max_json_items_are_accepted(
    make_client: ClientFactory,
) -> None:
    client = make_client(max_json_items=5)
    payload = {"list": list(range(5)), "a": 1, "b": 2, "c": 3, "d": 4}

    accepted = client.publish(*[message(payload) for _ in range(5)])

    assert [item["message"] for item in accepted] == [payload] * 5


def test_commas_inside_strings_do_not_count_as_items(make_client: ClientFactory) -> None:
    client = make_client(max_json_items=5)

    [accepted] = client.publish(message({"text": "," * 100}))

    assert accepted["message"] == {"text": "," * 100}


def test_a_long_list_at_the_default_max_json_items_is_refused(client: ApiClient) -> None:
    body = {"username": "a", "state_public_keys": ["k"] * 10_001}

    response = client.post("/connect", body, status=413)

    assert_too_large(response, "max_json_items")
    assert "(10000)" in response.json["message"]


# ---------------------------------------------------------------------------------- odd JSON


@pytest.mark.parametrize(
    "raw_body",
    [
        b'{"username": "a", "user_state": {"n": ' + b"9" * 5000 + b"}}",
        b'\xef\xbb\xbf{"username": "a"}',
        b'{"username": "a"} trailing',
        b'{"username": "a",}',
    ],
    ids=["5000-digit-integer", "byte-order-mark", "trailing-garbage", "trailing-comma"],
)
def test_other_malformed_json_is_a_bad_request_logged_once_at_info(
    client: ApiClient, logs: pytest.LogCaptureFixture, raw_body: bytes
) -> None:
    response = client.post("/connect", raw_body=raw_body, status=400)

    assert response.json["error"] == "bad_request"
    assert_logged_once(logs, logging.INFO, "POST /connect", "400 Request body is not valid JSON")


def test_a_duplicated_key_counts_once_with_its_last_value(client: ApiClient) -> None:
    response = client.post("/connect", raw_body=b'{"username": "first", "username": "last"}')

    assert response.json["username"] == "last"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_the_content_type_is_not_checked_the_body_is_read_as_json(
    client: ApiClient, content_type: str
) -> None:
    """0.7.1 clients do not always send `application/json`; the body must be JSON anyway."""
    response = client.post(
        "/connect",
        raw_body=b'{"username": "typed"}',
        headers={"Content-Type": content_type},
    )

    assert response.json["username"] == "typed"


def test_a_validation_error_is_logged_once_at_info(
    client: ApiClient, logs: pytest.LogCaptureFixture
) -> None:
    client.post("/connect", {"username": 5, "channels": "lobby"}, status=422)

    assert_logged_once(logs, logging.INFO, "POST /connect", "422 invalid: ", "username")


# ---------------------------------------------------------------------------------- other limits


def test_max_connections_is_a_503_naming_the_limit_logged_once(
    make_client: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    client = make_client(max_connections=1)
    conn_id = client.connect("first", channels=["room"])["conn_id"]

    response = client.post("/connect", {"username": "second"}, status=503)

    assert response.json["error"] == "unavailable"
    assert response.json["limit"] == "max_connections"
    assert_logged_once(logs, logging.WARNING, "POST /connect", "max_connections (1)")
    # the connection already held is unaffected
    client.publish({"user": "x", "channel": "room", "message": {"text": "still"}})
    polled = client.get("/listen", query=f"conn_id={conn_id}").json
    assert polled[0]["message"] == {"text": "still"}


def test_max_channels_per_connection_is_a_422_logged_once(
    make_client: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    client = make_client(max_channels_per_connection=2)
    conn_id = client.connect("a", channels=["x", "y"])["conn_id"]

    response = client.post("/subscribe", {"conn_id": conn_id, "channels": ["z"]}, status=422)

    assert response.json == {"channels": ["A connection may join at most 2 channels"]}
    assert_logged_once(logs, logging.WARNING, "POST /subscribe", "max_channels_per_connection (2)")


# ---------------------------------------------------------------------------------- tokens


def test_a_token_replayed_within_its_minute_on_the_same_path_is_accepted(
    client: ApiClient,
) -> None:
    """Tokens carry no nonce (as in 0.7.1): a captured token works for its path until it is
    60 s old. Its path binds it: the same token on another path is refused."""
    token = token_at(SECRET, "/connect", int(time.time()) - 5)

    first = client.post("/connect", {"username": "a"}, token=token)
    again = client.post("/connect", {"username": "b"}, token=token)
    elsewhere = client.post("/info", token=token, status=401)

    assert (first.json["username"], again.json["username"]) == ("a", "b")
    assert elsewhere.json == {"request": "Bad Signature"}


def test_a_replayed_token_past_its_minute_is_refused_and_logged_once(
    client: ApiClient, logs: pytest.LogCaptureFixture
) -> None:
    token = token_at(SECRET, "/connect", int(time.time()) - 61)

    response = client.post("/connect", {"username": "a"}, token=token, status=401)

    assert response.json == {"request": "Bad Signature"}
    assert_logged_once(logs, logging.WARNING, "POST /connect", "401 bad API signature")


@pytest.mark.parametrize(
    "secret", ["another-environments-secret", SECRET + "-old"], ids=["other", "rotated"]
)
def test_a_refused_token_s_signature_never_reaches_the_log(
    client: ApiClient, logs: pytest.LogCaptureFixture, secret: str
) -> None:
    """itsdangerous quotes the signature it refused; the log line says why in our words."""
    token = sign(secret, "/connect")

    client.post("/connect", {"username": "a"}, token=token, status=401)

    [record] = refused(logs)
    assert "401 bad API signature: signature does not match" in record.getMessage()
    assert token.rsplit(".", 1)[1] not in logs.text


def test_a_call_from_outside_allow_posting_from_is_logged_once_as_a_warning(
    client: ApiClient, logs: pytest.LogCaptureFixture
) -> None:
    client.post("/connect", {"username": "a"}, environ={"REMOTE_ADDR": "198.51.100.7"}, status=403)

    [record] = refused(logs)
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("refused POST /connect from 198.51.100.7: 403 ")


def test_a_spoofed_x_forwarded_for_does_not_change_the_logged_address(
    client: ApiClient, logs: pytest.LogCaptureFixture
) -> None:
    client.post(
        "/connect",
        {"username": "a"},
        token="garbage",
        headers={"X-Forwarded-For": "203.0.113.66"},
        status=401,
    )

    record = assert_logged_once(logs, logging.WARNING, "POST /connect", "401")
    assert "203.0.113.66" not in record.getMessage()


# ---------------------------------------------------------------------------------- query strings


def test_a_conn_id_in_the_body_wins_over_one_in_the_query_string(client: ApiClient) -> None:
    mine = client.connect("alice")["conn_id"]
    theirs = client.connect("bob")["conn_id"]

    response = client.post(
        "/subscribe", {"conn_id": mine, "channels": ["c"]}, query=f"conn_id={theirs}"
    )

    assert response.json["channels"] == ["c"]
    assert client.info()["channels"]["c"]["users"] == ["alice"]


def test_a_disconnect_body_conn_id_wins_over_the_query_string(client: ApiClient) -> None:
    mine = client.connect("alice")["conn_id"]
    theirs = client.connect("bob")["conn_id"]

    response = client.post(
        "/disconnect", {"conn_id": mine}, signed=False, query=f"conn_id={theirs}"
    )

    assert response.json is True
    assert client.post("/disconnect", {"conn_id": theirs}, signed=False).json is True


@pytest.mark.parametrize("path", ["/listen", "/sse", "/ws"])
def test_of_repeated_conn_id_parameters_the_last_counts(client: ApiClient, path: str) -> None:
    """As the server's pre-upgrade check of /ws does: `?conn_id=<uuid>&conn_id=junk` is a
    malformed conn_id, whichever parameter an attacker hoped would be read."""
    good = str(uuid.uuid4())

    response = client.get(path, query=f"conn_id={good}&conn_id=junk", status=422)

    assert response.json == {"conn_id": ["Not a valid UUID."]}


@pytest.mark.parametrize(
    "conn_id", ["not-a-uuid", "' OR 1=1 --", "../../etc/passwd", "%00", "a" * 10_000]
)
def test_a_non_uuid_conn_id_is_422_on_every_client_endpoint(
    client: ApiClient, conn_id: str
) -> None:
    for path in ("/listen", "/sse", "/ws", "/disconnect"):
        response = client.get(path, query=f"conn_id={quote(conn_id)}", status=422)
        assert response.json == {"conn_id": ["Not a valid UUID."]}, path
